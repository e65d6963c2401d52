"""HSIC and CKA between two representations (linear and RBF kernels; biased and unbiased).

References:
    Gretton et al. 2005, "Measuring statistical dependence with Hilbert-Schmidt norms"
    (biased HSIC).
    Song et al. 2012, "Feature selection via dependence maximization" (unbiased HSIC).
    Kornblith et al. 2019, "Similarity of neural network representations revisited", eqs. 3-5
    (CKA; feature-space linear CKA; RBF bandwidth as a fraction of the median distance).
    Nguyen, Raghu & Kornblith 2021, "Do wide and deep networks learn the same things?", eq. 3.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ._kernels import (
    _gram_rbf,
    center,
    center_gram,
    debiased_dot,
    hsic_biased_gram,
    hsic_unbiased_gram,
    median_sq_distance,
    mm,
    u_center_gram,
)
from ._validate import check_choice, prep_one, prep_pair, prep_square, warn_if_nan

__all__ = [
    "hsic",
    "hsic_gram",
    "cka",
    "linear_cka",
    "rbf_cka",
    "debiased_cka",
    "cka_gram",
    "gram_linear",
    "gram_rbf",
    "rbf_bandwidth",
    "linear_cka_method",
]

KERNELS = ("linear", "rbf")
ESTIMATORS = ("biased", "unbiased")
METHODS = ("auto", "feature", "gram")


def linear_cka_method(n: int, dx: int, dy: int) -> str:
    """Which space linear CKA/HSIC is cheaper in: ``"feature"`` (cost ~ N(Dx+Dy)^2, memory D^2)
    or ``"gram"`` (cost ~ N^2(Dx+Dy), memory N^2). Feature space wins whenever D < N."""
    feature = n * (dx + dy) ** 2
    gram = n * n * (dx + dy + 3)
    return "feature" if feature <= gram else "gram"


def _resolve_method(method, n, dx, dy):
    check_choice(method, "method", METHODS)
    return linear_cka_method(n, dx, dy) if method == "auto" else method


@partial(jax.jit, static_argnames=("method", "unbiased", "normalise"))
def _linear_stats(x, y, method: str, unbiased: bool, normalise: bool):
    """(HSIC_xy, HSIC_xx, HSIC_yy) of linear kernels, in feature or Gram space."""
    n = x.shape[0]
    xc, yc = center(x), center(y)
    if normalise:
        # CKA is invariant to isotropic scaling: unit Frobenius norm keeps the fourth-power sums
        # below overflow for huge activations in float32. A constant input gives 0/0 = NaN.
        xc = xc / jnp.linalg.norm(xc)
        yc = yc / jnp.linalg.norm(yc)
    if method == "feature":
        a_xy = jnp.sum(mm(xc.T, yc) ** 2)
        a_xx = jnp.sum(mm(xc.T, xc) ** 2)
        a_yy = jnp.sum(mm(yc.T, yc) ** 2)
    else:
        k, l = mm(xc, xc.T), mm(yc, yc.T)
        a_xy, a_xx, a_yy = jnp.sum(k * l), jnp.sum(k * k), jnp.sum(l * l)
    if unbiased:
        rx, ry = jnp.sum(xc * xc, axis=1), jnp.sum(yc * yc, axis=1)
        scale = n * (n - 3)
        return (
            debiased_dot(a_xy, rx, ry, n) / scale,
            debiased_dot(a_xx, rx, rx, n) / scale,
            debiased_dot(a_yy, ry, ry, n) / scale,
        )
    scale = (n - 1) ** 2
    return a_xy / scale, a_xx / scale, a_yy / scale


def _rbf_sigmas(sigma):
    if sigma is None:
        return None, None
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(
                f"`sigma` must be a number or a pair (sigma_x, sigma_y); got {sigma!r}."
            )
        sx, sy = sigma
    else:
        sx = sy = sigma
    for name, s in (("sigma_x", sx), ("sigma_y", sy)):
        if s is not None and not isinstance(s, jax.core.Tracer) and not float(s) > 0:
            raise ValueError(f"`sigma` ({name}) must be > 0; got {s!r}.")
    return sx, sy


@partial(jax.jit, static_argnames=("unbiased", "include_diagonal"))
def _rbf_stats(x, y, sx, sy, factor, unbiased: bool, include_diagonal: bool):
    k, _ = _gram_rbf(x, sx, factor, include_diagonal)
    l, _ = _gram_rbf(y, sy, factor, include_diagonal)
    return _gram_stats(k, l, unbiased)


def _gram_stats(k, l, unbiased: bool):
    if unbiased:
        n = k.shape[0]
        ku, lu = u_center_gram(k), u_center_gram(l)
        s = n * (n - 3)
        return jnp.sum(ku * lu) / s, jnp.sum(ku * ku) / s, jnp.sum(lu * lu) / s
    n = k.shape[0]
    kc, lc = center_gram(k), center_gram(l)
    s = (n - 1) ** 2
    return jnp.sum(kc * lc) / s, jnp.sum(kc * kc) / s, jnp.sum(lc * lc) / s


_gram_stats_jit = jax.jit(_gram_stats, static_argnames=("unbiased",))
_hsic_b_jit = jax.jit(hsic_biased_gram)
_hsic_u_jit = jax.jit(hsic_unbiased_gram)


def _cka_from(stats):
    hxy, hxx, hyy = stats
    return hxy / jnp.sqrt(hxx * hyy)


_MAX_RBF_N = 46340  # N^2 < 2^31: the exact median's counts are int32 without x64


def _check_rbf_size(n: int) -> None:
    if n > _MAX_RBF_N:
        raise ValueError(
            f"RBF CKA forms N x N Gram matrices; N={n} exceeds {_MAX_RBF_N}. Use the linear "
            "kernel (feature space, memory D^2) or minibatch CKA, or subsample the rows."
        )


def _check_common(kernel, estimator=None):
    check_choice(kernel, "kernel", KERNELS)
    if estimator is not None:
        check_choice(estimator, "estimator", ESTIMATORS)


def hsic(
    x,
    y,
    *,
    kernel: str = "linear",
    estimator: str = "biased",
    sigma=None,
    bandwidth_factor: float = 0.5,
    median_include_diagonal: bool = True,
    method: str = "auto",
):
    """Hilbert-Schmidt Independence Criterion between two representations.

    * ``estimator="biased"`` (Gretton et al. 2005): ``HSIC_b = tr(K H L H) / (N-1)^2``.
    * ``estimator="unbiased"`` (Song et al. 2012; Nguyen et al. 2021 eq. 3): with ``K~``, ``L~``
      the Grams with zero diagonals, ``HSIC_u = [tr(K~L~) + (1'K~1)(1'L~1)/((N-1)(N-2))
      - 2/(N-2) 1'K~L~1] / (N(N-3))``. Needs N >= 4; it can be negative.

    Linear kernels are evaluated in feature space when that is cheaper (``||X_c^T Y_c||_F^2``,
    memory D^2) and in Gram space otherwise; ``method`` forces one.

    Args:
        x: ``(N, Dx)`` activations, rows are samples.
        y: ``(N, Dy)`` activations of the same N samples.
        kernel: ``"linear"`` or ``"rbf"`` (``exp(-||a-b||^2 / (2 sigma^2))``).
        estimator: ``"biased"`` or ``"unbiased"``.
        sigma: RBF bandwidth (a number, or a pair for x and y); ``None`` uses the median rule.
        bandwidth_factor: median rule factor: ``sigma = factor * sqrt(median ||x_i - x_j||^2)``
            (0.5 as in Kornblith et al. 2019; kisungyou/repsim uses 1.0).
        median_include_diagonal: take the median over all N^2 pairs including the zero diagonal
            (Kornblith et al.) or over the N(N-1) off-diagonal pairs.
        method: ``"auto"``, ``"feature"`` or ``"gram"`` (linear kernel only).

    Returns:
        A scalar in the input dtype.
    """
    _check_common(kernel, estimator)
    unbiased = estimator == "unbiased"
    xa, ya = prep_pair(x, y, min_samples=4 if unbiased else 2)
    if kernel == "linear":
        m = _resolve_method(method, xa.shape[0], xa.shape[1], ya.shape[1])
        return _linear_stats(xa, ya, m, unbiased, False)[0]
    _check_rbf_size(xa.shape[0])
    sx, sy = _rbf_sigmas(sigma)
    return _rbf_stats(xa, ya, sx, sy, bandwidth_factor, unbiased, median_include_diagonal)[0]


def hsic_gram(k, l, *, estimator: str = "biased"):
    """HSIC from precomputed Gram matrices ``K``, ``L`` (``(N, N)``); see :func:`hsic`."""
    check_choice(estimator, "estimator", ESTIMATORS)
    unbiased = estimator == "unbiased"
    ka = prep_square(k, "k", min_samples=4 if unbiased else 2)
    la = prep_square(l, "l", min_samples=4 if unbiased else 2, dtype=ka.dtype)
    if ka.shape != la.shape:
        raise ValueError(f"`k` is {ka.shape} but `l` is {la.shape}; both must be (N, N).")
    return (_hsic_u_jit if unbiased else _hsic_b_jit)(ka, la)


def cka(
    x,
    y,
    *,
    kernel: str = "linear",
    debiased: bool = False,
    sigma=None,
    bandwidth_factor: float = 0.5,
    median_include_diagonal: bool = True,
    method: str = "auto",
):
    """Centred Kernel Alignment (Kornblith et al. 2019, eq. 4).

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``; the 1/(N-1)^2 or 1/(N(N-3)) scales cancel.
    With ``debiased=True`` every HSIC is the unbiased U-statistic (debiased CKA; Kornblith et al.
    2019 appendix, Nguyen et al. 2021), which can be negative and needs N >= 4. This is not
    kisungyou/repsim's "debiased CKA", which divides the unbiased numerator by *biased*
    self-HSICs, nor wrongu/repsim's diagonal-masked estimate (0.57642 vs 0.576419).

    Linear CKA in feature space: ``||X_c^T Y_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)``; the
    debiased feature-space form is ``dot_u(X, Y) / sqrt(dot_u(X, X) dot_u(Y, Y))`` with
    ``dot_u`` as in :func:`geomjax.similarity._kernels.debiased_dot`. Features are centred in the
    input dtype before any Gram is formed (Gram-then-centre loses all precision in float32 when
    features carry an offset).

    Args:
        x: ``(N, Dx)``; y: ``(N, Dy)`` -- widths may differ.
        kernel: ``"linear"`` or ``"rbf"``.
        debiased: use the unbiased HSIC estimator.
        sigma, bandwidth_factor, median_include_diagonal: RBF bandwidth, see :func:`hsic`.
        method: ``"auto"``/``"feature"``/``"gram"`` for the linear kernel.

    Returns:
        A scalar in the input dtype: in [0, 1] (biased), in [-1, 1] (debiased). A constant
        representation gives NaN with a ``RuntimeWarning``.
    """
    _check_common(kernel)
    xa, ya = prep_pair(x, y, min_samples=4 if debiased else 2)
    if kernel == "linear":
        m = _resolve_method(method, xa.shape[0], xa.shape[1], ya.shape[1])
        out = _cka_from(_linear_stats(xa, ya, m, bool(debiased), True))
    else:
        _check_rbf_size(xa.shape[0])
        sx, sy = _rbf_sigmas(sigma)
        out = _cka_from(
            _rbf_stats(xa, ya, sx, sy, bandwidth_factor, bool(debiased), median_include_diagonal)
        )
    return warn_if_nan(out, "CKA")


def linear_cka(x, y, *, debiased: bool = False, method: str = "auto"):
    """Linear-kernel CKA; see :func:`cka`."""
    return cka(x, y, kernel="linear", debiased=debiased, method=method)


def rbf_cka(
    x,
    y,
    *,
    sigma=None,
    bandwidth_factor: float = 0.5,
    median_include_diagonal: bool = True,
    debiased: bool = False,
):
    """RBF-kernel CKA; bandwidth ``sigma`` or ``bandwidth_factor * sqrt(median sq. distance)``.

    Limits: sigma -> 0 gives K = L = I and CKA -> 1; sigma -> inf tends to linear CKA.
    """
    return cka(
        x,
        y,
        kernel="rbf",
        debiased=debiased,
        sigma=sigma,
        bandwidth_factor=bandwidth_factor,
        median_include_diagonal=median_include_diagonal,
    )


def debiased_cka(x, y, *, kernel: str = "linear", **kw):
    """CKA with the unbiased (U-statistic) HSIC estimator; see :func:`cka`."""
    return cka(x, y, kernel=kernel, debiased=True, **kw)


def cka_gram(k, l, *, debiased: bool = False):
    """CKA from precomputed Gram matrices ``K``, ``L`` (``(N, N)``)."""
    ka = prep_square(k, "k", min_samples=4 if debiased else 2)
    la = prep_square(l, "l", min_samples=4 if debiased else 2, dtype=ka.dtype)
    if ka.shape != la.shape:
        raise ValueError(f"`k` is {ka.shape} but `l` is {la.shape}; both must be (N, N).")
    return warn_if_nan(_cka_from(_gram_stats_jit(ka, la, bool(debiased))), "CKA")


def gram_linear(x):
    """Linear Gram ``X_c X_c^T`` of the centred features, ``(N, N)``."""
    from ._kernels import gram_linear as _g

    return _g(prep_one(x, "x"))


def gram_rbf(
    x,
    *,
    sigma=None,
    bandwidth_factor: float = 0.5,
    median_include_diagonal: bool = True,
):
    """RBF Gram ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))``, ``(N, N)``.

    Squared distances are formed from centred features and clamped at 0 with an exact zero
    diagonal. Without ``sigma``, ``sigma = bandwidth_factor * sqrt(median sq. distance)``
    (median computed exactly by selection, not by sorting N^2 values).
    """
    xa = prep_one(x, "x")
    sx, _ = _rbf_sigmas(sigma)
    return _gram_rbf(xa, sx, bandwidth_factor, median_include_diagonal)[0]


def rbf_bandwidth(x, *, bandwidth_factor: float = 0.5, median_include_diagonal: bool = True):
    """Median-rule RBF bandwidth ``factor * sqrt(median_ij ||x_i - x_j||^2)`` (Kornblith et al.
    2019 use factor 0.5 and the median over all N^2 pairs, diagonal included)."""
    xa = prep_one(x, "x")
    return bandwidth_factor * jnp.sqrt(median_sq_distance(xa, median_include_diagonal))
