"""Empirical (simulated) manifold capacity alpha_SIM.

The fraction ``p(n)`` of random balanced dichotomies of P manifolds that a hyperplane with bias
separates after a random Gaussian projection of the (globally centred) data to ``n`` features
falls from 1 to 0 as ``n`` shrinks; the critical ``n_c`` where it crosses 1/2 gives the
simulated capacity ``alpha_SIM = P / n_c`` (Chung, Lee & Sompolinsky, PRX 2018, Sec. V;
Cohen et al., Nat. Commun. 2020; Stephenson et al., NeurIPS 2019, where alpha_SIM is checked
against the mean-field capacity). The mean-field theory predicts it in the large-P limit.

How it is measured here:

* **Dichotomies and projections.** Dichotomy ``d`` has its own key: a random permutation labels
  ``P // 2`` manifolds +1 and the rest -1, and a Gaussian matrix ``W_d`` (``N x n_max``, drawn in
  column blocks keyed by block index, every column normalised to unit length) projects the
  points, ``x -> W_d[:, :n]^T x``. Projections to different ``n`` are *nested* (the first ``n``
  columns of one draw), the strongest form of common random numbers across ``n``: each column
  is still an exact ``N(0, I)/||.||`` draw, so ``p(n)`` is unbiased at every ``n``.
* **Monotone by construction.** With nested projections a dichotomy separable with ``n``
  features stays separable with more (pad the normal with zeros), so each dichotomy has a
  critical size ``n*_d = min{n : separable}``, found by a fixed-length branch-free bisection
  (:func:`geomjax.solvers.integer_bisection`) vmapped over dichotomies, each test a certified
  separability check (:func:`geomjax.solvers.separability`). The measured curve
  ``p(n) = #{d : n*_d <= n} / n_dichotomies`` is then known at every ``n`` and is monotone, so
  its 1/2-crossing is well defined (no interpolation between out-of-order noisy points).
* **Crossing and uncertainty.** ``n_c`` interpolates ``p`` linearly between the last ``n`` with
  ``p < 1/2`` and the next one (the reference's rule, on a monotone curve), i.e. it is the sample
  median of the ``n*_d``. Its confidence interval is the distribution-free interval for a
  median from binomial order statistics of the ``n_dichotomies`` draws; ``alpha_SIM``'s interval
  is ``P`` over its ends. Each point of the curve carries its binomial standard error.
* **Exact cheaper projections.** With ``X = A Q^T`` (``Q`` an orthonormal basis of the row
  space, rank ``r``), ``X w / ||w||`` for a Gaussian ``w`` has the law of
  ``A z / sqrt(||z||^2 + c)`` with ``z ~ N(0, I_r)`` and ``c ~ chi^2_{N-r}`` independent, so
  the projections cost ``r / N`` of the direct ones (:func:`factored_projection`). ``A`` is the
  canonical principal-component scores. When every manifold spans few dimensions (clouds of
  dimension ``d`` around centres), it is found through the spans: each manifold's small Gram
  matrix gives an orthonormal basis ``B_mu`` of its span, and the Gram matrix of the stacked
  span coordinates ``C = blkdiag(B)^T X`` (``sum_mu q_mu`` rows) gives ``G`` with
  ``A = blkdiag(B) G``, applied in two products (:func:`manifold_factored_projection`);
  otherwise a randomised range finder finds the numerical rank when that is cheap
  (``low_rank``), and the direct projection is used when it is not.
* **Guided splits.** On CPU, after 8 pilot dichotomies bisected plainly, the others split their
  brackets where the pilot's critical sizes lie (skipping closed brackets, and checking ``n_max``
  only when the search ends there): the same critical sizes with fewer checks.
* **Shared work per dichotomy.** The label-free moments ``Y^T Y`` (from the span coordinates
  when the span factor is used) and ``1^T Y`` of a dichotomy's projected points are formed once;
  each check's first Newton step updates the all-active Hessian they give instead of forming
  it from all points (``point_gram`` of the separability solver).
* **Cheap bracket.** The search runs over ``(0, n_max]`` with ``n_max`` from an estimate of the
  capacity (``1.5 P / capacity_guess``, e.g. the mean-field capacity of
  :func:`geomjax.manifold.mftma`) or ``2 P``, not the full ``N``; it is doubled (up to ``N``) only
  while the upper confidence bound is censored. Zero features never separate a balanced
  dichotomy (the bias alone cannot), so ``n*_d >= 1``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from geomjax._checks import check_manifolds
from geomjax._types import NotConvergedError, pytree_dataclass, result_dtype
from geomjax.solvers._bisection import (
    bisection_steps,
    guided_bisection_steps,
    integer_bisection,
)
from geomjax.solvers._separability import _separability_impl

__all__ = [
    "EmpiricalCapacity",
    "empirical_capacity",
    "balanced_dichotomy",
    "nested_projection",
    "factored_projection",
    "manifold_factored_projection",
]

_HI = lax.Precision.HIGHEST
_N_PILOT = 8  # dichotomies bisected plainly to place the guided splits of the others
# Guided splits stay at least 1/16 of the bracket from its ends (about 10 % fewer checks than
# 1/4 on the benchmark's critical sizes; the uniform part of the prior bounds the bad cases).
_MIN_SPLIT = 16


@pytree_dataclass(meta=("n_dichotomies", "confidence", "n_manifolds", "n_features"))
class EmpiricalCapacity:
    """Result of :func:`empirical_capacity`.

    Attributes:
        alpha_sim: ``P / n_critical`` (NaN if fewer than half the dichotomies separate at
            ``n_max``).
        alpha_ci: ``(2,)`` confidence interval of ``alpha_sim`` (lower, upper); the lower end is
            0 when the upper end of ``n_critical_ci`` is censored at ``n_max``.
        n_critical: critical number of features ``n_c`` (1/2-crossing of ``p(n)``).
        n_critical_ci: ``(2,)`` confidence interval of ``n_c`` (inf if censored).
        n: ``(n_max + 1,)`` feature counts ``0..n_max`` of the curve.
        fraction: ``(n_max + 1,)`` fraction of dichotomies separable at each ``n``.
        fraction_stderr: binomial standard error ``sqrt(p (1 - p) / n_dichotomies)``.
        n_tested: ``(n_max + 1,)`` number of separability checks run directly at each ``n``
            (the other values follow from monotonicity).
        n_star: ``(n_dichotomies,)`` each dichotomy's critical size (``n_max + 1`` = not
            separable at ``n_max``, censored).
        n_max: upper end of the bracket actually used.
        n_censored: dichotomies not separable at ``n_max``.
        n_undecided: separability checks left undecided (counted as not separable).
        n_checks: separability checks run.
        newton_steps_max, newton_steps_mean: solver effort per check.
        max_residual: largest Gordan residual among non-separable verdicts.
        ci_coverage: exact coverage of the median interval (below ``confidence`` only when
            there are too few dichotomies, e.g. fewer than 6 at 95 %).
        n_dichotomies, confidence, n_manifolds, n_features: settings and sizes.
    """

    alpha_sim: Any
    alpha_ci: Any
    n_critical: Any
    n_critical_ci: Any
    n: Any
    fraction: Any
    fraction_stderr: Any
    n_tested: Any
    n_star: Any
    n_max: Any
    n_censored: Any
    n_undecided: Any
    n_checks: Any
    newton_steps_max: Any
    newton_steps_mean: Any
    max_residual: Any
    ci_coverage: Any
    n_dichotomies: int = 0
    confidence: float = 0.95
    n_manifolds: int = 0
    n_features: int = 0

    def summary(self) -> dict[str, Any]:
        """Scalars of the result as a flat dict."""
        return {
            "alpha_sim": float(self.alpha_sim),
            "alpha_ci_low": float(np.asarray(self.alpha_ci)[0]),
            "alpha_ci_high": float(np.asarray(self.alpha_ci)[1]),
            "n_critical": float(self.n_critical),
            "n_critical_ci_low": float(np.asarray(self.n_critical_ci)[0]),
            "n_critical_ci_high": float(np.asarray(self.n_critical_ci)[1]),
            "n_max": int(self.n_max),
            "n_dichotomies": int(self.n_dichotomies),
            "confidence": float(self.confidence),
            "n_manifolds": int(self.n_manifolds),
            "n_features": int(self.n_features),
            "n_censored": int(self.n_censored),
            "n_undecided": int(self.n_undecided),
            "n_checks": int(self.n_checks),
            "newton_steps_max": int(self.newton_steps_max),
            "newton_steps_mean": float(self.newton_steps_mean),
            "max_residual": float(self.max_residual),
            "ci_coverage": float(self.ci_coverage),
        }

    def to_frame(self):
        """Tidy table of the measured curve: one row per ``n`` with ``fraction``, its binomial
        standard error, the number of direct checks, and the scalar results as columns (also in
        ``DataFrame.attrs``)."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "n": np.asarray(self.n),
                "fraction": np.asarray(self.fraction),
                "fraction_stderr": np.asarray(self.fraction_stderr),
                "n_tested": np.asarray(self.n_tested),
            }
        )
        s = self.summary()
        for k in ("alpha_sim", "alpha_ci_low", "alpha_ci_high", "n_critical"):
            df[k] = s[k]
        df.attrs.update(s)
        return df


def balanced_dichotomy(key, n_manifolds: int) -> jax.Array:
    """Random balanced labels: ``n_manifolds // 2`` manifolds get +1, the rest -1 (int32)."""
    perm = jax.random.permutation(key, n_manifolds)
    rank = jnp.argsort(perm)
    return jnp.where(rank < n_manifolds // 2, 1, -1).astype(jnp.int32)


def nested_projection(key, n_features: int, n_columns: int, block: int, dtype) -> jax.Array:
    """Gaussian ``(n_features, n_columns)`` matrix with unit-norm columns, drawn in blocks of
    ``block`` columns keyed by block index, so its first columns do not depend on
    ``n_columns`` (nested projections; ``n_columns`` a multiple of ``block``)."""
    n_blocks = n_columns // block
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(n_blocks))
    W = jax.vmap(lambda k: jax.random.normal(k, (n_features, block), dtype))(keys)
    W = jnp.transpose(W, (1, 0, 2)).reshape(n_features, n_columns)
    return W / jnp.linalg.norm(W, axis=0, keepdims=True)


def _factored_columns(key, r: int, n_columns: int, block: int, n_extra: int, dt):
    """The ``r``-dimensional Gaussian coordinates ``z`` (``(r, n_columns)``) of the projection
    columns, drawn in blocks keyed by block index, and each column's full norm
    ``sqrt(||z||^2 + chi^2_{n_extra})`` (the ``n_extra`` dimensions outside the factor)."""

    def draw(b):
        kz, kc = jax.random.split(jax.random.fold_in(key, b))
        z = jax.random.normal(kz, (r, block), dt)
        c = 2.0 * jax.random.gamma(kc, 0.5 * n_extra, (block,), dt) if n_extra else 0.0
        return z, jnp.sum(z * z, axis=0) + c

    z, sq = jax.vmap(draw)(jnp.arange(n_columns // block))
    return jnp.transpose(z, (1, 0, 2)).reshape(r, n_columns), jnp.sqrt(sq.reshape(n_columns))


def factored_projection(key, factor, n_extra: int, n_columns: int, block: int) -> jax.Array:
    """Points ``X W`` for a Gaussian ``W`` with unit-norm columns, sampled from a factor.

    With ``X = A Q^T`` (``Q`` an ``N x r`` orthonormal basis of the row space, ``A = X Q``) and a
    Gaussian column ``w``, ``z = Q^T w ~ N(0, I_r)`` and ``||w||^2 = ||z||^2 + c`` with
    ``c ~ chi^2_{N - r}`` independent of ``z``; so ``X w / ||w|| = A z / sqrt(||z||^2 + c)`` has
    exactly the distribution of the direct projection, at ``r / N`` of its cost. Columns are
    drawn in blocks keyed by block index (nested, as :func:`nested_projection`).

    Returns:
        ``(K, n_columns)`` projected points.
    """
    K, r = factor.shape
    dt = factor.dtype
    z, norm = _factored_columns(key, r, n_columns, block, n_extra, dt)
    return jnp.matmul(factor, z, precision=_HI) / norm[None, :]


def _row_space_factor(key, X, max_rank: int, block: int = 128):
    """``A = X Q`` with ``Q`` an orthonormal basis of the row space of ``X``, or None.

    A randomised range finder (Halko, Martinsson & Tropp 2011, Alg. 4.2 in blocks): sketch
    ``X^T Omega`` block by block, orthogonalise against the basis so far (twice), and keep the
    singular directions above the numerical-rank tolerance ``max(K, N) eps sigma_1`` (NumPy's
    ``matrix_rank`` rule). It stops when a block adds fewer directions than it has columns (the
    row space is exhausted) and gives up (None) once the rank would exceed ``max_rank``. The
    factor is accepted only if a randomised estimate of ``||X - A Q^T||_F`` (8 Gaussian probes)
    is below ``eps^(3/4) ||X||_F``: the dropped part is then below round-off of the data.
    """
    K, N = X.shape
    dt = X.dtype
    eps = float(jnp.finfo(dt).eps)
    xnorm = float(jnp.linalg.norm(X))
    if xnorm == 0.0 or max_rank < 1:
        return None
    Q = jnp.zeros((N, 0), dt)
    tol = None
    done = False
    b = 0
    while not done:
        width = min(block, max_rank + 1 - Q.shape[1])
        if width < 1:
            return None
        U, sv = _range_block(jax.random.fold_in(key, b), X, Q, width)
        if tol is None:
            tol = max(K, N) * eps * float(sv[0])
        keep = int(jnp.sum(sv > tol))
        Q = jnp.concatenate([Q, U[:, :keep]], axis=1)
        done = keep < width
        b += 1
        if Q.shape[1] > max_rank:
            return None
    A, resid = _factor_and_residual(jax.random.fold_in(key, b + 1), X, Q)
    if float(resid) > eps**0.75 * xnorm:
        return None
    return A


@partial(jax.jit, static_argnames=("width",))
def _range_block(key, X, Q, width):
    """One block of the range finder: ``X^T Omega`` orthogonalised against ``Q`` (twice), and
    its left singular vectors and values (QR first, so the SVD is ``width x width``)."""
    om = jax.random.normal(key, (X.shape[0], width), X.dtype)
    S = jnp.matmul(X.T, om, precision=_HI)
    for _ in range(2):
        S = S - jnp.matmul(Q, jnp.matmul(Q.T, S, precision=_HI), precision=_HI)
    Qs, R = jnp.linalg.qr(S)
    Ur, sv, _ = jnp.linalg.svd(R)
    return jnp.matmul(Qs, Ur, precision=_HI), sv


@jax.jit
def _factor_and_residual(key, X, Q):
    """``A = X Q V`` and a randomised estimate of ``||X - A (QV)^T||_F`` from 8 Gaussian probes.

    ``V`` (eigenvectors of ``(XQ)^T XQ``, each signed so that its column of ``A`` has its
    largest entry positive) turns ``A`` into the principal-component scores ``U S`` of ``X``,
    which do not depend on the range finder's basis: the projections drawn from ``A`` are then
    reproducible across BLAS builds and thread counts, not just a draw from the right law."""
    A = jnp.matmul(X, Q, precision=_HI)
    _, V = jnp.linalg.eigh(jnp.matmul(A.T, A, precision=_HI))
    A = jnp.matmul(A, V, precision=_HI)
    Q = jnp.matmul(Q, V, precision=_HI)
    big = jnp.take_along_axis(A, jnp.argmax(jnp.abs(A), axis=0)[None, :], axis=0)[0]
    sgn = jnp.where(big < 0, -1.0, 1.0).astype(A.dtype)
    A, Q = A * sgn, Q * sgn
    probe = jax.random.normal(key, (X.shape[1], 8), X.dtype)
    R = jnp.matmul(X, probe, precision=_HI) - jnp.matmul(
        A, jnp.matmul(Q.T, probe, precision=_HI), precision=_HI
    )
    return A, jnp.linalg.norm(R) / jnp.sqrt(8.0)


def manifold_factored_projection(key, factor, n_extra: int, n_columns: int,
                                 block: int) -> jax.Array:
    """:func:`factored_projection` from a per-manifold factor ``(B, G, rows)``.

    ``B`` (``P x m x q``) holds an orthonormal basis of each manifold's point span, ``G``
    (``P q x r``) the row-space factor of the stacked coordinates ``C_mu = B_mu^T X_mu``, and
    ``rows`` (``K,``) the flat index ``mu * m + i`` of each point; then ``X = blkdiag(B) C`` and
    ``A = blkdiag(B) G`` is the row-space factor of :func:`factored_projection`, applied in two
    cheap products (``P q r + K q`` per column instead of ``K r``). The draws are those of
    :func:`factored_projection` with ``A`` (same keys, same ``z`` and ``c``).

    Returns:
        ``(K, n_columns)`` projected points.
    """
    return _two_level_points(key, factor, n_extra, n_columns, block)[0]


def _two_level_points(key, factor, n_extra, n_columns, block):
    """:func:`manifold_factored_projection` and the span coordinates ``V`` of the points
    (``P q x n_columns``, ``Y_mu = B_mu V_mu``), whose ``V^T V`` is ``Y^T Y`` (``B_mu`` has
    orthonormal columns) at ``P q / K`` of its cost."""
    B, G, rows = factor
    P_, m, q = B.shape
    r = G.shape[1]
    dt = G.dtype
    z, norm = _factored_columns(key, r, n_columns, block, n_extra, dt)
    V = jnp.matmul(G, z, precision=_HI) / norm[None, :]
    Y = jnp.matmul(B, V.reshape(P_, q, n_columns), precision=_HI).reshape(P_ * m, n_columns)
    if rows is not None:
        Y = Y[rows]
    return Y, V


def _padded(X, rows, shape):
    """The points in padded per-manifold order, ``P x m x N`` (zero rows as padding)."""
    if rows is None:
        return X.reshape(shape)
    return jnp.zeros((shape[0] * shape[1], shape[2]), X.dtype).at[rows].set(X).reshape(shape)


@partial(jax.jit, static_argnames=("shape",))
def _manifold_spans(X, rows, shape):
    """The Frobenius norm of the points and the eigen-decompositions (ascending) of each
    manifold's Gram matrix ``X_mu X_mu^T``."""
    # One 2-D product per manifold (XLA's CPU batched product is several times slower).
    gram = lax.map(lambda x: jnp.matmul(x, x.T, precision=_HI), _padded(X, rows, shape))
    lam, U = jnp.linalg.eigh(gram)
    return jnp.linalg.norm(X), lam, U


@partial(jax.jit, static_argnames=("shape", "q"))
def _stacked_gram(X, rows, shape, U, keep, q):
    """``B`` (the ``q`` leading eigenvectors of each manifold, zeroed where not kept), the
    stacked coordinates ``C = B^T X`` (``P q x N``) and the eigen-decomposition of ``C C^T``."""
    Xp = _padded(X, rows, shape)
    B = U[:, :, -q:] * keep[:, None, -q:]
    C = lax.map(lambda bx: jnp.matmul(bx[0].T, bx[1], precision=_HI), (B, Xp))
    C = C.reshape(-1, Xp.shape[2])
    lam, E = jnp.linalg.eigh(jnp.matmul(C, C.T, precision=_HI))
    return B, C, lam, E


@partial(jax.jit, static_argnames=("shape", "r"))
def _manifold_factor_and_residual(key, X, rows, shape, B, C, lam, E, r):
    """``G = E_r Lambda_r^(1/2)`` (the principal-component scores of ``C``, so ``blkdiag(B) G``
    are those of ``X``, each column signed to have its largest entry positive) and a randomised
    estimate of ``||X - blkdiag(B) E_r E_r^T C||_F`` from 8 Gaussian probes."""
    Xp = _padded(X, rows, shape)
    P_, m, q = B.shape
    E = E[:, -r:]
    lam = jnp.maximum(lam[-r:], 0.0)
    G = E * jnp.sqrt(lam)[None, :]
    A = jnp.matmul(B, G.reshape(P_, q, r), precision=_HI).reshape(P_ * m, r)
    big = jnp.take_along_axis(A, jnp.argmax(jnp.abs(A), axis=0)[None, :], axis=0)[0]
    G = G * jnp.where(big < 0, -1.0, 1.0).astype(G.dtype)
    probe = jax.random.normal(key, (Xp.shape[2], 8), Xp.dtype)
    Cp = jnp.matmul(E, jnp.matmul(E.T, jnp.matmul(C, probe, precision=_HI), precision=_HI),
                    precision=_HI)
    R = jnp.matmul(Xp, probe, precision=_HI) - jnp.matmul(B, Cp.reshape(P_, q, 8),
                                                          precision=_HI)
    return G, jnp.linalg.norm(R) / jnp.sqrt(8.0)


def _manifold_factor(key, X, counts, max_rank: int):
    """Row-space factor of ``X`` through each manifold's span, or None.

    When every manifold spans few dimensions (e.g. ``d``-dimensional clouds around centres),
    ``X = blkdiag(B) C`` with ``B_mu`` an orthonormal basis of manifold ``mu``'s span (from its
    ``M_mu x M_mu`` Gram matrix) and ``C`` the stacked coordinates (``sum_mu q_mu x N``); the
    row space of ``X`` is that of ``C``, whose Gram matrix is small. The kept directions are those
    above ``max(m, N) eps lambda_1`` at both levels, and the factor is accepted only if a
    randomised estimate of the dropped part is below ``eps^(3/4) ||X||_F`` (as
    :func:`_row_space_factor`): the projections drawn from it are then exact in distribution.
    None when the spans are not small (``P q > K / 2``) or the rank exceeds
    ``max_rank``; the caller then falls back to :func:`_row_space_factor`.

    Returns:
        ``(B, G, rows)`` for :func:`manifold_factored_projection` (``rows`` None when the points
        are already in padded order), or None.
    """
    K, N = X.shape
    P_ = len(counts)
    m = int(max(counts))
    if max_rank < 1 or P_ * m > 2 * K:
        return None
    dt = X.dtype
    eps = float(jnp.finfo(dt).eps)
    if all(int(c) == m for c in counts):
        rows = None
    else:
        within = np.concatenate([np.arange(int(c)) for c in counts])
        rows = jnp.asarray(np.repeat(np.arange(P_), counts) * m + within, jnp.int32)
    shape = (P_, m, N)
    xnorm, lam, U = _manifold_spans(X, rows, shape)
    xnorm = float(xnorm)
    lam_np = np.asarray(lam)
    if xnorm == 0.0:
        return None
    tol = max(m, N) * eps * float(lam_np.max())
    keep_np = lam_np > tol
    q = int(keep_np.sum(axis=1).max())
    if q < 1 or P_ * q > K // 2:
        return None
    B, C, lam2, E = _stacked_gram(X, rows, shape, U, jnp.asarray(keep_np, dt), q)
    lam2_np = np.asarray(lam2)
    tol2 = max(P_ * q, N) * eps * float(lam2_np.max())
    r = int(np.sum(lam2_np > tol2))
    if r < 1 or r > max_rank:
        return None
    G, resid = _manifold_factor_and_residual(key, X, rows, shape, B, C, lam2, E, r)
    if float(resid) > eps**0.75 * xnorm:
        return None
    return B, G, rows


@partial(
    jax.jit,
    static_argnames=("n_manifolds", "n_max", "n_cols", "block", "max_steps", "rtol", "ridge",
                     "chunk_size", "warm_start", "n_extra", "factored"),
)
def _critical_sizes(keys, X, manifold_index, *, n_manifolds, n_max, n_cols, block, max_steps,
                    rtol, ridge, chunk_size, warm_start=True, n_extra=0, factored=False,
                    prior=None):
    """Per-dichotomy critical sizes ``n*_d`` by certified bisection on nested projections.

    ``X`` is the centred data, or with ``factored=True`` its row-space factor ``A`` and
    ``n_extra = N - r`` (see :func:`factored_projection`).

    Without ``prior`` each dichotomy is checked at ``n_max`` (censored if not separable) and then
    bisected over ``(0, n_max]``. With ``prior = (centre, scale)`` (a guess of the distribution
    of ``n*``) the splits follow that prior (:func:`~geomjax.solvers._bisection.integer_bisection`
    with ``cdf``), closed brackets are skipped, and ``n_max`` is checked only if the search ends
    there. The critical sizes are the same either way; only the number of checks changes."""
    two_level = isinstance(X, (tuple, list))
    if two_level:
        B_, G_, rows_ = X
        dt = G_.dtype
        K = int(rows_.shape[0]) if rows_ is not None else int(B_.shape[0] * B_.shape[1])
    else:
        dt = X.dtype
        K = X.shape[0]
    guided = prior is not None
    num_steps = (guided_bisection_steps(n_max, _MIN_SPLIT) if guided
                 else bisection_steps(n_max))
    skip = guided and chunk_size == 1
    if guided:
        grid = jnp.arange(n_max + 1, dtype=dt)
        z = (grid + 0.5 - prior[0]) / jnp.maximum(prior[1], 1.0)
        # A normal guess mixed with a uniform one: cheap near the guess, safe away from it.
        cdf = 0.9 * jax.scipy.stats.norm.cdf(z) + 0.1 * (grid + 1.0) / (n_max + 1.0)
    else:
        cdf = None
    # Columns are drawn in whole blocks; those past n_max are never used, so the checks work
    # on the first n_max only (width n_max + 1 with the bias).
    n_update = max(16, (n_max + 1) // 2) if chunk_size == 1 else 0
    cols = jnp.arange(n_max)

    def one(key):
        k_lab, k_proj = jax.random.split(key)
        y = balanced_dichotomy(k_lab, n_manifolds)[manifold_index]
        V = None
        if two_level:
            Y, V = _two_level_points(k_proj, X, n_extra, n_cols, block)
            Y, V = Y[:, :n_max], V[:, :n_max]
        elif factored:
            Y = factored_projection(k_proj, X, n_extra, n_cols, block)[:, :n_max]
        else:
            W = nested_projection(k_proj, X.shape[1], n_cols, block, dt)[:, :n_max]
            Y = jnp.matmul(X, W, precision=_HI)
        mask = jnp.ones((K,), bool)
        w0 = jnp.zeros((n_max + 1,), dt)
        if n_update:
            # Label-free moments of the points, once per dichotomy: every check's first Newton
            # step from few inactive points updates their Hessian instead of forming it.
            T = (jnp.matmul(V.T, V, precision=_HI) if V is not None
                 else jnp.matmul(Y.T, Y, precision=_HI))
            u = jnp.sum(Y, axis=0)

        def check(n, w_start):
            keep = (cols < n).astype(dt)
            gram = (T * keep[:, None] * keep[None, :], u * keep) if n_update else None
            cert, steps, res = _separability_impl(
                Y * keep, y, mask, w_start, max_steps=max_steps, rtol=rtol, ridge=ridge,
                n_update=n_update, point_gram=gram,
            )
            # Warm start: the last non-separable iterate (fewer features) stays valid for any
            # larger n with zero-padded weights, and is close to the next minimiser.
            w_fin = jnp.concatenate([cert.w, cert.b[None]])
            w_next = jnp.where(cert.separable, w_start, w_fin * jnp.append(keep, 1.0))
            aux = (cert.decided, steps, jnp.where(cert.separable, 0.0, res))
            return cert.separable, aux, w_next

        w_init = w0 if warm_start else None
        pred = check if warm_start else (lambda n: check(n, w0)[:2])
        if guided:
            bis = integer_bisection(pred, jnp.int32(0), jnp.int32(n_max), num_steps,
                                    init_state=w_init, cdf=cdf, skip_closed=skip,
                                    min_split=_MIN_SPLIT)
            # The bracket assumed separability at n_max: check it only if the search ends there.
            need_top = bis.hi >= n_max
            w_top = bis.state if warm_start else w0
            if skip:
                def no_check(n, w):
                    zero = jnp.zeros((), dt)
                    return jnp.bool_(True), (jnp.bool_(True), jnp.int32(0), zero), w

                sep_top, aux_top, _ = lax.cond(need_top, check, no_check, jnp.int32(n_max),
                                               w_top)
            else:
                sep_top, aux_top, _ = check(jnp.int32(n_max), w_top)
                sep_top = sep_top | ~need_top
            top_tested = need_top
        else:
            sep_top, aux_top, _ = check(jnp.int32(n_max), w0)
            # Censored dichotomies close their bracket at once; their later checks are ignored.
            lo0 = jnp.where(sep_top, 0, n_max)
            bis = integer_bisection(pred, lo0, jnp.int32(n_max), num_steps, init_state=w_init)
            top_tested = jnp.bool_(True)
        n_star = jnp.where(sep_top, bis.hi, n_max + 1)
        live = bis.tested_n >= 0
        dec, steps, res = bis.aux
        aux_top = (aux_top[0] | ~top_tested, jnp.where(top_tested, aux_top[1], 0),
                   jnp.where(top_tested, aux_top[2], 0.0))
        return dict(
            n_star=n_star,
            tested_n=jnp.concatenate([jnp.where(top_tested, n_max, -1)[None].astype(jnp.int32),
                                      bis.tested_n]),
            n_undecided=(~aux_top[0]).astype(jnp.int32) + jnp.sum(live & ~dec),
            n_checks=top_tested.astype(jnp.int32) + jnp.sum(live).astype(jnp.int32),
            steps_max=jnp.maximum(aux_top[1], jnp.max(jnp.where(live, steps, 0))),
            steps_sum=aux_top[1] + jnp.sum(jnp.where(live, steps, 0)),
            max_residual=jnp.maximum(
                jnp.where(aux_top[0], aux_top[2], 0.0), jnp.max(jnp.where(live & dec, res, 0.0))
            ),
        )

    if chunk_size >= keys.shape[0]:
        return jax.vmap(one)(keys)
    if chunk_size == 1:
        return lax.map(one, keys)  # unbatched: the solver's lax.cond branches really branch
    return lax.map(one, keys, batch_size=chunk_size)


def _median_ci_ranks(n: int, confidence: float) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` of the order statistics bracketing the median: the narrowest
    symmetric pair with coverage ``P(l <= B < u) >= confidence``, ``B ~ Binomial(n, 1/2)``, or
    ``(1, n)`` when even that falls short (see :func:`_median_ci_coverage`)."""
    from scipy.stats import binom

    a = (1.0 - confidence) / 2.0
    l = int(binom.ppf(a, n, 0.5))  # P(B <= l - 1) <= a
    while l > 0 and binom.cdf(l - 1, n, 0.5) > a:
        l -= 1
    l = max(l, 1)
    return l, n - l + 1


def _median_ci_coverage(n: int, l: int, u: int) -> float:
    from scipy.stats import binom

    return float(binom.cdf(u - 1, n, 0.5) - binom.cdf(l - 1, n, 0.5))


def _check_settings(manifolds, n_dichotomies, confidence, capacity_guess, n_max, block):
    """Validate the shared arguments of the empirical-capacity entry points.

    Returns:
        ``(manifolds as a list of arrays, P, N)``.
    """
    mans = check_manifolds(manifolds, "manifolds", min_points=1)
    P = len(mans)
    N = int(mans[0].shape[1])
    if not isinstance(n_dichotomies, (int, np.integer)) or n_dichotomies < 1:
        raise ValueError(f"`n_dichotomies` must be a positive int; got {n_dichotomies!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence}.")
    if capacity_guess is not None and not (np.isfinite(capacity_guess) and capacity_guess > 0):
        raise ValueError(f"`capacity_guess` must be a positive finite float; got {capacity_guess}.")
    if n_max is not None and not (isinstance(n_max, (int, np.integer)) and 1 <= n_max <= N):
        raise ValueError(f"`n_max` must be an int in [1, N={N}]; got {n_max!r}.")
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"`block` must be a positive int; got {block!r}.")
    return mans, P, N


def empirical_capacity(
    key,
    manifolds,
    n_dichotomies: int = 64,
    *,
    capacity_guess: float | None = None,
    n_max: int | None = None,
    center: bool = True,
    confidence: float = 0.95,
    block: int = 16,
    max_steps: int = 100,
    rtol: float | None = None,
    chunk_size: int | None = None,
    warm_start: bool = True,
    low_rank: bool | None = None,
    strict: bool = False,
    dtype=None,
) -> EmpiricalCapacity:
    """Simulated manifold capacity ``alpha_SIM = P / n_c`` from random dichotomies.

    ``p(n)`` is the fraction of ``n_dichotomies`` random balanced dichotomies of the P manifolds
    that a hyperplane with bias separates after a random Gaussian projection to ``n`` features
    (unit-norm columns); ``n_c`` is where ``p`` crosses 1/2 (see the module docstring for the
    nested-projection design, the bisection and the median confidence interval).

    Args:
        key: ``jax.random.key``. Dichotomy ``d`` uses ``fold_in(key, d)``, split into a labels key
            and a projection key, so its outcome does not depend on ``n_dichotomies``,
            ``chunk_size`` or ``n_max`` (unless censored at ``n_max``).
        manifolds: list of ``(M_mu, N)`` arrays (rows are points, ``M_mu`` may differ, ``M_mu = 1``
            gives points) or one ``(P, M, N)`` array.
        n_dichotomies: number of random dichotomies (their binomial noise sets the interval).
        capacity_guess: an estimate of the capacity (e.g. the mean-field ``mftma(...).capacity``)
            to place the bracket at ``1.5 P / capacity_guess``; default ``2 P`` features.
        n_max: fix the upper end of the bracket instead (no automatic doubling).
        center: subtract the global mean of all points first.
        confidence: level of the confidence intervals.
        block: projection columns are drawn in blocks of this many (and a bracket from
            ``capacity_guess`` is rounded up to whole blocks).
        max_steps, rtol: separability solver settings (:func:`geomjax.solvers.separability`).
        chunk_size: dichotomies solved at once (``lax.map`` batch size). Default: all at once
            (``vmap``) on accelerators; one at a time on CPU, where a batched while-loop would
            run every problem to the slowest one's step count. Results do not depend on it.
        warm_start: start each bisection check from the last non-separable solution.
        low_rank: sample the projections from a row-space factor of the data (exact in
            distribution, see :func:`factored_projection`), at ``rank / N`` of the projection
            cost. ``None`` (default): when the manifolds' spans or a randomised range finder
            find the numerical rank cheaply (at most ``N / 2`` and 1/4 of all projection
            columns, so a failed attempt costs at most 1/4 of the projections); ``True``:
            whenever the rank is below ``N``;
            ``False``: never. Either way the outcome is a draw from the same distribution, but
            not the same draw.
        strict: raise :class:`~geomjax._types.NotConvergedError` if any check was undecided.
        dtype: computation dtype (default: the input's floating dtype).

    Returns:
        :class:`EmpiricalCapacity`.

    Raises:
        ValueError: bad manifolds (see :func:`geomjax._checks.check_manifolds`), bad sizes or
            settings.
    """
    mans, P, N = _check_settings(manifolds, n_dichotomies, confidence, capacity_guess, n_max, block)
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")
    return _estimate(key, mans, P, N, n_dichotomies, capacity_guess=capacity_guess, n_max=n_max,
                     center=center, confidence=confidence, block=block, max_steps=max_steps,
                     rtol=rtol, chunk_size=chunk_size, warm_start=warm_start, low_rank=low_rank,
                     strict=strict, dtype=dtype)


def _run_local(static, keys, data, manifold_index, prior):
    """Run :func:`_critical_sizes` on this process's default device."""
    return _critical_sizes(keys, data, manifold_index, prior=prior, **static)


def _estimate(key, mans, P, N, n_dichotomies, *, capacity_guess, n_max, center, confidence,
              block, max_steps, rtol, chunk_size, warm_start, low_rank, strict, dtype,
              run=_run_local, name="empirical_capacity"):
    """The estimate of :func:`empirical_capacity` from validated manifolds.

    ``run(static, keys, data, manifold_index, prior)`` evaluates :func:`_critical_sizes` with
    the keyword settings ``static`` for a batch of dichotomy keys; the sharded form passes a
    runner that splits ``keys`` over a device mesh, so both compute the same draws, splits and
    summaries."""
    try:
        key = jnp.asarray(key)
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key_ok = key.shape == ()
        else:
            key_ok = key.dtype == jnp.uint32 and key.shape == (2,)
    except TypeError:
        key_ok = False
    if not key_ok:
        raise TypeError("`key` must be a single jax.random.key (or legacy PRNGKey); got "
                        f"{type(key).__name__}.")
    dt = jnp.dtype(dtype) if dtype is not None else result_dtype(*mans)
    counts = np.array([m.shape[0] for m in mans])
    X = jnp.concatenate([jnp.asarray(m, dt) for m in mans], axis=0)
    manifold_index = jnp.asarray(np.repeat(np.arange(P), counts), jnp.int32)
    if center:
        X = X - jnp.mean(X, axis=0, keepdims=True)
    # fold_in per index: dichotomy d is the same whatever n_dichotomies (prefix-stable).
    keys = jax.vmap(lambda d: jax.random.fold_in(key, d))(jnp.arange(n_dichotomies))
    eps = float(jnp.finfo(dt).eps)
    rtol_ = float(eps**0.5) if rtol is None else float(rtol)
    ridge = 1e4 * eps
    l_rank, u_rank = _median_ci_ranks(n_dichotomies, confidence)
    if chunk_size is None:
        on_cpu = jax.devices()[0].platform == "cpu"
        chunk_size = 1 if on_cpu else n_dichotomies

    if n_max is not None:
        hi, auto = int(n_max), False
    else:
        if capacity_guess is None:
            hi = 2 * P  # fixed by P: no rounding needed for the compile cache
        else:  # rounded up to whole blocks, so nearby guesses share one compiled kernel
            hi = max(block, int(math.ceil(1.5 * P / float(capacity_guess) / block)) * block)
        hi, auto = min(N, hi), True
    K = int(X.shape[0])
    factor = None
    if low_rank is None:
        n_cols0 = int(math.ceil(hi / block)) * block
        max_rank = min(K, N // 2, n_dichotomies * n_cols0 // 4)
    elif low_rank:
        max_rank = min(K, N - 1)
    else:
        max_rank = 0
    if max_rank >= 1:
        k_fac = jax.random.fold_in(key, 2**31 - 1)
        # Through the manifolds' spans when they are small (cheap Gram matrices, cheaper
        # projections); else the randomised range finder on all points.
        factor = _manifold_factor(k_fac, X, counts, max_rank)
        if factor is None:
            factor = _row_space_factor(k_fac, X, max_rank)
    if factor is None:
        data, n_extra = X, 0
    elif isinstance(factor, tuple):
        data, n_extra = factor, N - int(factor[1].shape[1])
    else:
        data, n_extra = factor, N - int(factor.shape[1])
    n_pilot = _N_PILOT if (chunk_size == 1 and n_dichotomies > 2 * _N_PILOT) else 0
    while True:
        n_cols = int(math.ceil(hi / block)) * block
        static = dict(
            n_manifolds=P, n_max=hi, n_cols=n_cols, block=int(block), max_steps=int(max_steps),
            rtol=rtol_, ridge=ridge, chunk_size=int(chunk_size), warm_start=bool(warm_start),
            n_extra=n_extra, factored=factor is not None,
        )

        def kernel(keys_, data_, prior=None, static=static):
            return run(static, keys_, data_, manifold_index, prior)

        if n_pilot:
            # Pilot dichotomies by plain bisection; the rest split their brackets where the
            # pilot's critical sizes lie (same results, fewer checks: see _critical_sizes).
            first = jax.tree_util.tree_map(np.asarray, kernel(keys[:n_pilot], data))
            ns = np.minimum(first["n_star"], hi).astype(float)
            prior = jnp.asarray([np.median(ns), max(2.0, 1.25 * float(np.std(ns)))], dt)
            rest = jax.tree_util.tree_map(np.asarray,
                                          kernel(keys[n_pilot:], data, prior=prior))
            width = max(first["tested_n"].shape[1], rest["tested_n"].shape[1])
            for part in (first, rest):
                t = part["tested_n"]
                part["tested_n"] = np.pad(t, ((0, 0), (0, width - t.shape[1])),
                                          constant_values=-1)
            out = {k: np.concatenate([first[k], rest[k]], axis=0) for k in first}
        else:
            out = jax.tree_util.tree_map(np.asarray, kernel(keys, data))
        n_star = out["n_star"]
        n_sep_top = int(np.sum(n_star <= hi))
        if not auto or n_sep_top >= u_rank or hi >= N:
            break
        hi = min(N, 2 * hi)

    D = n_dichotomies
    grid = np.arange(hi + 1)
    frac = (n_star[None, :] <= grid[:, None]).mean(axis=1)
    stderr = np.sqrt(frac * (1.0 - frac) / D)
    tested = out["tested_n"].ravel()
    n_tested = np.bincount(tested[tested >= 0], minlength=hi + 1)[: hi + 1]
    above = np.nonzero(frac >= 0.5)[0]
    if above.size:
        nb = int(above[0])
        na = nb - 1
        pa, pb = frac[na], frac[nb]
        n_c = na + (0.5 - pa) / (pb - pa)
    else:
        n_c = np.nan
    s = np.sort(n_star).astype(float)
    s[s > hi] = np.inf
    ci_n = np.array([s[l_rank - 1] - 1.0, s[u_rank - 1]])
    alpha = P / n_c if np.isfinite(n_c) else np.nan
    alpha_ci = np.array([P / ci_n[1] if np.isfinite(ci_n[1]) else 0.0,
                         P / ci_n[0] if ci_n[0] > 0 else np.inf])
    n_checks = int(out["n_checks"].sum())
    res = EmpiricalCapacity(
        alpha_sim=np.asarray(alpha),
        alpha_ci=alpha_ci,
        n_critical=np.asarray(n_c),
        n_critical_ci=ci_n,
        n=grid,
        fraction=frac,
        fraction_stderr=stderr,
        n_tested=n_tested,
        n_star=n_star,
        n_max=np.asarray(hi),
        n_censored=np.asarray(int(np.sum(n_star > hi))),
        n_undecided=np.asarray(int(out["n_undecided"].sum())),
        n_checks=np.asarray(n_checks),
        newton_steps_max=np.asarray(int(out["steps_max"].max())),
        newton_steps_mean=np.asarray(float(out["steps_sum"].sum()) / max(n_checks, 1)),
        max_residual=np.asarray(float(out["max_residual"].max())),
        ci_coverage=np.asarray(_median_ci_coverage(D, l_rank, u_rank)),
        n_dichotomies=int(D),
        confidence=float(confidence),
        n_manifolds=int(P),
        n_features=int(N),
    )
    if strict and int(res.n_undecided):
        raise NotConvergedError(
            f"{name}: {int(res.n_undecided)} of {n_checks} separability checks were "
            f"undecided within max_steps={max_steps}; raise max_steps or loosen rtol."
        )
    return res
