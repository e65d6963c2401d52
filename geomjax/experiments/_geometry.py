"""Manifold geometry of layer activations as tidy rows: MFTMA capacity (normalised by the 2/M
lower bound), radius, dimension/M and centre correlation, plus D_PR and D_EV, and the
simulated capacity check (alpha_SIM vs alpha_MFT).

Every layer is brought to one width ``n_features`` before the analysis: wider layers by a
Gaussian random projection with unit-norm rows (which preserves alpha, R and D in expectation,
as in Stephenson et al.), narrower ones by zero padding (which changes no inner product). One
width means one compiled MFTMA program for all layers, time steps and epochs.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "layer_matrix",
    "project_features",
    "participation_ratio",
    "explained_variance_dimension",
    "manifold_metrics",
    "simulated_capacity",
]


def layer_matrix(a: np.ndarray, lengths=None, how: str = "flatten") -> np.ndarray:
    """``(n, ...)`` activations of one layer -> ``(n, D)``.

    ``how``: ``"flatten"`` (all units at all positions, the CNN convention), ``"centre"`` (the
    centre valid time step of a sequence layer ``(n, T, ...)``) or ``"mean"`` (mean over valid
    steps).
    """
    a = np.asarray(a)
    n = a.shape[0]
    if how == "flatten" or a.ndim == 2:
        return a.reshape(n, -1)
    T = a.shape[1]
    L = np.full(n, T) if lengths is None else np.asarray(lengths)
    if how == "centre":
        t = np.clip(L // 2, 0, T - 1)
        return a[np.arange(n), t].reshape(n, -1)
    if how == "mean":
        m = (np.arange(T)[None, :] < L[:, None]).astype(a.dtype)
        m = m.reshape(m.shape + (1,) * (a.ndim - 2))
        return ((a * m).sum(1) / np.maximum(m.sum(1), 1)).reshape(n, -1)
    raise ValueError(f"`how` must be 'flatten', 'centre' or 'mean'; got {how!r}.")


def project_features(
    x: np.ndarray, n_features: int, seed: int = 0, exact: bool = True
) -> np.ndarray:
    """``(n, D) -> (n, n_features)`` float32, preserving the geometry of the ``n`` points.

    * ``D <= n_features``: zero padding (no inner product changes).
    * ``D > n_features >= n`` and ``exact``: an exact isometric embedding -- the points span at
      most ``n`` dimensions, so coordinates in an orthonormal basis of their span (``U
      sqrt(Lambda)`` from the eigendecomposition of the ``n x n`` Gram matrix, in float64) keep
      every inner product, hence capacity, radius, dimension, centre correlation, D_PR and D_EV
      of the unprojected layer exactly. This is the limit the papers' random projection
      approximates (its distances are preserved only in expectation), and it costs one Gram
      matrix instead of a ``D x n_features`` Gaussian draw and product.
    * otherwise: Gaussian projection with unit-norm rows (seeded by ``seed``).
    """
    x = np.asarray(x, np.float32)
    n, D = x.shape
    if D <= n_features:
        out = np.zeros((n, n_features), np.float32)
        out[:, :D] = x
        return out
    if exact and n <= n_features:
        x64 = x.astype(np.float64)
        lam, U = np.linalg.eigh(x64 @ x64.T)
        Y = U * np.sqrt(np.clip(lam, 0.0, None))[None, :]
        out = np.zeros((n, n_features), np.float32)
        out[:, :n] = Y[:, ::-1]  # largest directions first
        return out
    import jax
    import jax.numpy as jnp

    W = jax.random.normal(jax.random.key(seed), (n_features, D), jnp.float32)
    W = W / jnp.linalg.norm(W, axis=1, keepdims=True)
    return np.asarray(jnp.asarray(x) @ W.T)


def _eigs(points: np.ndarray) -> np.ndarray:
    A = np.asarray(points, np.float64)
    A = A - A.mean(0, keepdims=True)
    s = np.linalg.svd(A, compute_uv=False)
    return s**2


def participation_ratio(points) -> float:
    """``D_PR = (sum lambda)^2 / sum lambda^2`` of the globally centred points ``(n, N)``."""
    try:  # the library's version where it exists
        from geomjax.manifold import participation_ratio as pr

        return float(pr(np.asarray(points)))
    except (ImportError, TypeError):
        lam = _eigs(points)
        return float(lam.sum() ** 2 / max((lam**2).sum(), 1e-300))


def explained_variance_dimension(points, threshold: float = 0.9) -> float:
    """``D_EV``: principal components whose cumulative explained variance stays at or below
    ``threshold`` (the reference count: one less than the number needed to reach it)."""
    try:
        from geomjax.manifold import explained_variance_dimension as ev

        return float(ev(np.asarray(points), threshold))
    except (ImportError, TypeError):
        lam = _eigs(points)
        c = np.cumsum(lam) / max(lam.sum(), 1e-300)
        return float(np.sum(c <= threshold))


def manifold_metrics(key, X: np.ndarray, n_t: int) -> dict:
    """MFTMA and dimension metrics of ``X`` ``(P, M, N)``.

    Returns:
        ``capacity`` (alpha_M), ``capacity_ratio`` (alpha_M / (2/M)), ``radius``, ``dimension``,
        ``dimension_ratio`` (D_M / M), ``center_correlation``, ``d_pr``, ``d_ev``,
        ``n_unconverged``.
    """
    from geomjax.manifold import mftma

    X = np.asarray(X, np.float32)
    return metrics_from_result(mftma(key, X, n_t=n_t, n_reps=2, stiefel_steps=300), X)


def mftma_results(keys, Xs, n_t: int, mesh=None, memory_budget=None) -> list:
    """MFTMA results of the ``(P, M, N)`` sets ``Xs``, set ``i`` with ``keys[i]``, with the
    settings :func:`manifold_metrics` uses. ``mesh=None``: one
    :func:`geomjax.manifold.mftma` call per set; else one
    :func:`geomjax.distributed.mftma_sweep` with every set's anchor problems pooled and sharded
    over ``mesh`` (the same per-manifold keys and programs, so the same numbers: bitwise on
    CPU)."""
    Xs = [np.asarray(X, np.float32) for X in Xs]
    keys = list(keys)
    if len(keys) != len(Xs):
        raise ValueError(f"{len(keys)} keys for {len(Xs)} manifold sets.")
    if not Xs:
        return []
    if mesh is None:
        from geomjax.manifold import mftma

        return [
            mftma(k, X, n_t=n_t, n_reps=2, stiefel_steps=300) for k, X in zip(keys, Xs, strict=True)
        ]
    import jax

    from geomjax.distributed import mftma_sweep

    return mftma_sweep(
        jax.numpy.stack(keys),
        Xs,
        n_t=n_t,
        n_reps=2,
        stiefel_steps=300,
        mesh=mesh,
        memory_budget=memory_budget,
    )


def manifold_metrics_sharded(key, Xs, n_t: int, mesh, memory_budget=None) -> list[dict]:
    """:func:`manifold_metrics` of several ``(P, M, N)`` sets (e.g. every layer) in one
    :func:`geomjax.distributed.mftma_sweep` with the anchor problems sharded over ``mesh``.

    ``key`` is one key, used for every set as :func:`manifold_metrics` would be called with it,
    or a list of keys, one per set; either way entry ``i`` holds the numbers
    ``manifold_metrics(key_i, Xs[i], n_t)`` gives (bitwise on CPU)."""
    Xs = [np.asarray(X, np.float32) for X in Xs]
    keys = list(key) if isinstance(key, (list, tuple)) else [key] * len(Xs)
    res = mftma_results(keys, Xs, n_t, mesh, memory_budget)
    return [metrics_from_result(r, X) for r, X in zip(res, Xs, strict=True)]


def metrics_from_result(r, X: np.ndarray) -> dict:
    """The :func:`manifold_metrics` row of an MFTMA result ``r`` of ``X`` ``(P, M, N)``."""
    P, M, N = X.shape
    pts = X.reshape(P * M, N)
    return {
        "capacity": float(r.capacity),
        "capacity_ratio": float(r.capacity_ratio),
        "radius": float(r.radius),
        "dimension": float(r.dimension),
        "dimension_ratio": float(r.dimension_ratio),
        "center_correlation": float(r.center_correlation),
        "d_pr": participation_ratio(pts),
        "d_ev": explained_variance_dimension(pts),
        "n_unconverged": int(r.n_unconverged),
    }


def simulated_capacity(
    key,
    X: np.ndarray,
    n_dichotomies: int,
    capacity_guess: float | None,
    mesh=None,
    memory_budget=None,
):
    """alpha_SIM of ``X`` ``(P, M, N)`` with its confidence interval, or None when the library
    has no empirical-capacity routine. With ``mesh`` the dichotomies are sharded over it (same
    result)."""
    try:
        from geomjax.manifold import empirical_capacity
    except ImportError:
        return None
    if mesh is None:
        r = empirical_capacity(
            key, np.asarray(X, np.float32), n_dichotomies, capacity_guess=capacity_guess
        )
    else:
        from geomjax.distributed import empirical_capacity_sharded

        r = empirical_capacity_sharded(
            key,
            np.asarray(X, np.float32),
            n_dichotomies,
            capacity_guess=capacity_guess,
            mesh=mesh,
            memory_budget=memory_budget,
        )
    s = r.summary()
    return {
        "alpha_sim": s["alpha_sim"],
        "alpha_sim_lo": s["alpha_ci_low"],
        "alpha_sim_hi": s["alpha_ci_high"],
        "n_censored": s["n_censored"],
    }
