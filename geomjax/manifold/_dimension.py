"""Global dimensionality measures and the random projection used before manifold analysis.

Stephenson et al. (NeurIPS 2019) report, beside the MFTMA quantities, the participation ratio
``D_PR`` and the explained-variance dimension ``D_EV`` of all manifold points of a layer, and
project layers wider than 5000 units to 5000 random features first.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from geomjax._checks import as_array, check_finite

__all__ = ["participation_ratio", "explained_variance_dimension", "random_projection",
           "pooled_points"]


def pooled_points(x, name: str = "x"):
    """All points as one ``(n_points, N)`` array from ``(n, N)``, ``(P, M, N)`` or a list of
    ``(M_mu, N)`` manifolds (rows are points)."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError(f"`{name}` is empty; pass at least one (M, N) array.")
        arrs = [jnp.asarray(as_array(m, f"{name}[{i}]")) for i, m in enumerate(x)]
        for i, a in enumerate(arrs):
            if a.ndim != 2 or a.shape[1] != arrs[0].shape[1]:
                raise ValueError(
                    f"`{name}[{i}]` must be (M, N) with N = {arrs[0].shape[-1]}; got "
                    f"{tuple(a.shape)}.")
        a = jnp.concatenate(arrs, axis=0)
    else:
        a = jnp.asarray(as_array(x, name))
        if a.ndim == 3:
            a = a.reshape(-1, a.shape[-1])
        elif a.ndim != 2:
            raise ValueError(
                f"`{name}` must be (n_points, N), (P, M, N) or a list of (M, N); got "
                f"{tuple(a.shape)}.")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"`{name}` needs at least 2 points and 1 feature; got {tuple(a.shape)}.")
    check_finite(a, name)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    return a


@jax.jit
def _spectrum(a):
    a = a - jnp.mean(a, axis=0, keepdims=True)
    s = jnp.linalg.svd(a, compute_uv=False)  # thin: no N x N factor
    return s * s


def participation_ratio(x) -> jax.Array:
    """Participation ratio ``D_PR = (sum_i lambda_i)^2 / sum_i lambda_i^2``.

    ``lambda_i`` are the eigenvalues of the covariance of all points after subtracting the global
    mean (squared singular values of the centred ``(n_points, N)`` matrix, thin SVD). The
    reference code drops the last singular value; after centring that value is zero whenever
    ``n_points <= N`` so the two agree there, and here no value is dropped.

    Args:
        x: ``(n_points, N)``, ``(P, M, N)`` or a list of ``(M_mu, N)`` manifolds.
    """
    lam = _spectrum(pooled_points(x))
    return jnp.sum(lam) ** 2 / jnp.sum(lam * lam)


def explained_variance_dimension(x, threshold: float = 0.9, *,
                                 reference_convention: bool = False) -> int:
    """Number of principal components needed to explain ``threshold`` of the variance (``D_EV``).

    ``D_EV = min{k : sum_{i<=k} lambda_i / sum_i lambda_i >= threshold}`` on the globally centred
    points (rows), so ``D_EV >= 1``.

    The reference implementation instead counts ``#{k : cumulative ratio <= threshold}``, which
    is one less (the component that crosses the threshold is not counted), and runs PCA on the
    transposed ``(N, n_points)`` matrix, which also centres each point across features. Set
    ``reference_convention=True`` for its count (on the single centring used here).

    Args:
        x: ``(n_points, N)``, ``(P, M, N)`` or a list of ``(M_mu, N)`` manifolds.
        threshold: fraction of variance in ``(0, 1]``.
        reference_convention: return the reference's off-by-one count.
    """
    if not (0 < float(threshold) <= 1):
        raise ValueError(f"`threshold` must be in (0, 1]; got {threshold}.")
    lam = np.asarray(_spectrum(pooled_points(x)), dtype=np.float64)
    ratio = np.cumsum(lam) / np.sum(lam)
    if reference_convention:
        return int(np.sum(ratio <= threshold))
    # Guard the last component against round-off in the cumulative sum.
    return int(min(np.searchsorted(ratio, threshold - 1e-12, side="left") + 1, lam.size))


@functools.partial(jax.jit, static_argnames=("n_in", "n_features", "dtype"))
def _projection_matrix(key, n_in, n_features, dtype):
    W = jax.random.normal(key, (n_features, n_in), dtype)
    return W / jnp.linalg.norm(W, axis=1, keepdims=True)


def random_projection(key, x, n_features: int = 5000):
    """Project features to ``n_features`` random directions with unit-norm rows.

    ``y = x Pi^T`` with ``Pi in R^{n_features x N}``, ``Pi_ij ~ N(0, 1)`` and every row of ``Pi``
    normalised to unit length, so distances scale by about ``sqrt(n_features / N)`` and capacity,
    radius and dimension are unchanged in expectation. One ``Pi`` is drawn per call and shared by
    every manifold passed in (all manifolds of a layer must be projected together). If
    ``N <= n_features`` the input is returned unchanged, as in the reference pipeline.

    Args:
        key: ``jax.random.key``.
        x: ``(..., N)`` array, or a list of ``(M_mu, N)`` arrays (projected with the same ``Pi``).
        n_features: output width.

    Returns:
        The projected array (or list), last axis ``n_features``; dtype follows the input.
    """
    if int(n_features) < 1:
        raise ValueError(f"`n_features` must be >= 1; got {n_features}.")
    is_list = isinstance(x, (list, tuple))
    xs = list(x) if is_list else [x]
    if not xs:
        raise ValueError("`x` is empty; pass an array or a non-empty list of arrays.")
    xs = [jnp.asarray(as_array(a, "x")) for a in xs]
    N = xs[0].shape[-1] if xs[0].ndim else 0
    for i, a in enumerate(xs):
        if a.ndim < 1 or a.shape[-1] != N or N == 0:
            raise ValueError(
                f"`x` arrays must share a non-empty last (feature) axis N={N}; item {i} has shape "
                f"{tuple(a.shape)}.")
    if N <= n_features:
        return list(xs) if is_list else xs[0]
    dt = jnp.result_type(*[a.dtype for a in xs])
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    Pi = _projection_matrix(key, int(N), int(n_features), jnp.dtype(dt).name)
    out = [jnp.matmul(a.astype(dt), Pi.T, precision=lax.Precision.HIGHEST) for a in xs]
    return out if is_list else out[0]
