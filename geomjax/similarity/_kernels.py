"""Jitted building blocks: centring, Gram matrices, the RBF bandwidth and the HSIC estimators.

Notation (rows are samples): ``x`` is ``(N, D)``; ``H = I - 11^T/N``; ``K``, ``L`` are Gram
matrices. Everything follows the input dtype; matmuls use ``precision=HIGHEST`` so float32 on GPU
is not silently TF32.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

HI = lax.Precision.HIGHEST


def mm(a, b):
    return jnp.matmul(a, b, precision=HI)


def center(x):
    """Column-centre ``x`` with a second correction pass.

    Subtracting the mean twice removes the rounding left by the first pass, which matters in
    float32 when features carry a large common offset (Gram-then-centre fails there).
    """
    xc = x - jnp.mean(x, axis=0, keepdims=True)
    return xc - jnp.mean(xc, axis=0, keepdims=True)


def center_gram(k):
    """``H K H`` by subtracting row, column and grand means (no N x N matmul)."""
    r = jnp.mean(k, axis=0)
    return k - r[None, :] - r[:, None] + jnp.mean(r)


def u_center_gram(k):
    """U-centring (Szekely & Rizzo 2014): the Gram whose Frobenius inner product, divided by
    ``N (N - 3)``, is the unbiased HSIC of Song et al. (2012).

    With ``K~`` = ``K`` with zero diagonal, for ``i != j``::

        U(K)_ij = K~_ij - r_i/(N-2) - r_j/(N-2) + s/((N-1)(N-2)),  r = K~ 1,  s = 1^T K~ 1

    and ``U(K)_ii = 0``.
    """
    n = k.shape[0]
    eye = jnp.eye(n, dtype=bool)
    kt = jnp.where(eye, 0, k)
    r = jnp.sum(kt, axis=1)
    s = jnp.sum(r)
    u = kt - r[:, None] / (n - 2) - r[None, :] / (n - 2) + s / ((n - 1) * (n - 2))
    return jnp.where(eye, 0, u)


@jax.jit
def gram_linear(x):
    """Linear Gram matrix ``X_c X_c^T`` of the column-centred features (already ``H K H``)."""
    xc = center(x)
    return mm(xc, xc.T)


def sq_distances(x):
    """Squared Euclidean distances ``||x_i - x_j||^2`` (translation-invariant: computed from
    centred features), clamped at 0 and with an exact zero diagonal."""
    xc = center(x)
    g = mm(xc, xc.T)
    d = jnp.diagonal(g)
    sq = jnp.maximum(d[:, None] + d[None, :] - 2 * g, 0)
    return jnp.where(jnp.eye(x.shape[0], dtype=bool), 0, sq)


def _order_statistic_nonneg(v, k):
    """The ``k``-th smallest (0-based) entry of a non-negative float array, exactly.

    Bisection on the IEEE bit pattern (monotone for non-negative floats): one pass of counting
    per bit, no sort. ``jnp.median`` sorts all N^2 entries, which is the slowest step of RBF CKA
    on CPU.
    """
    itype = jnp.int64 if v.dtype == jnp.float64 else jnp.int32
    nbits = 64 if v.dtype == jnp.float64 else 32
    bits = lax.bitcast_convert_type(v, itype)
    lo = jnp.zeros((), itype)
    hi = jnp.max(bits)

    def body(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo) // 2
        cnt = jnp.sum(bits <= mid)
        ok = cnt >= k + 1
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    lo, _ = lax.fori_loop(0, nbits, body, (lo, hi))
    return lo, bits


def median_nonneg(v):
    """``np.median`` of a non-negative array (mean of the two middle entries when the count is
    even), via exact selection."""
    n = v.size
    k = (n - 1) // 2
    lo, bits = _order_statistic_nonneg(v, k)
    a = lax.bitcast_convert_type(lo, v.dtype)
    if n % 2 == 1:
        return a
    # the (k+1)-th order statistic: equal to a if a repeats, else the smallest entry above a
    cnt = jnp.sum(bits <= lo)
    above = jnp.min(jnp.where(bits > lo, v, jnp.asarray(jnp.inf, v.dtype)))
    b = jnp.where(cnt >= k + 2, a, above)
    return (a + b) / 2


@partial(jax.jit, static_argnames=("include_diagonal",))
def median_sq_distance(x, include_diagonal: bool = True):
    """Median of the squared pairwise distances (over the full N x N matrix by default, as
    Kornblith et al. 2019 do; ``include_diagonal=False`` uses the N(N-1) off-diagonal pairs)."""
    sq = sq_distances(x)
    if include_diagonal:
        return median_nonneg(sq)
    n = x.shape[0]
    iu = jnp.triu_indices(n, k=1)
    return median_nonneg(sq[iu])  # each off-diagonal pair appears twice: same median


def rbf_from_sq(sq, sigma):
    return jnp.exp(-sq / (2 * sigma**2))


@partial(jax.jit, static_argnames=("include_diagonal",))
def _gram_rbf(x, sigma, factor, include_diagonal: bool):
    sq = sq_distances(x)
    if sigma is None:
        if include_diagonal:
            med = median_nonneg(sq)
        else:
            iu = jnp.triu_indices(x.shape[0], k=1)
            med = median_nonneg(sq[iu])
        sigma = factor * jnp.sqrt(med)
    return rbf_from_sq(sq, sigma), sigma


def hsic_biased_gram(k, l):
    """Biased HSIC (Gretton et al. 2005): ``tr(K H L H) / (N-1)^2``."""
    n = k.shape[0]
    return jnp.sum(center_gram(k) * center_gram(l)) / (n - 1) ** 2


def hsic_unbiased_gram(k, l):
    """Unbiased HSIC (Song et al. 2012; Nguyen et al. 2021 eq. 3).

    ``[tr(K~L~) + (1^T K~ 1)(1^T L~ 1)/((N-1)(N-2)) - 2/(N-2) 1^T K~ L~ 1] / (N (N-3))`` with
    ``K~``, ``L~`` the Grams with zeroed diagonals. O(N^2): ``1^T K~ L~ 1 = (K~1).(L~1)``.
    """
    n = k.shape[0]
    eye = jnp.eye(n, dtype=bool)
    kt = jnp.where(eye, 0, k)
    lt = jnp.where(eye, 0, l)
    rk, rl = jnp.sum(kt, axis=1), jnp.sum(lt, axis=1)
    term = (
        jnp.sum(kt * lt)
        + jnp.sum(rk) * jnp.sum(rl) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * jnp.dot(rk, rl, precision=HI)
    )
    return term / (n * (n - 3))


def debiased_dot(a_xy, r_x, r_y, n):
    """Feature-space U-statistic ``N (N-3) HSIC_u`` of linear kernels on centred features
    (Kornblith et al. 2019, debiased feature-space CKA)::

        a_xy - N/(N-2) sum_i r_x,i r_y,i + s_x s_y / ((N-1)(N-2))

    with ``a_xy = ||X_c^T Y_c||_F^2``, ``r`` the squared row norms and ``s = sum_i r_i``.
    """
    return (
        a_xy
        - n / (n - 2) * jnp.dot(r_x, r_y, precision=HI)
        + jnp.sum(r_x) * jnp.sum(r_y) / ((n - 1) * (n - 2))
    )
