"""CCA, SVCCA and PWCCA between two representations (rows are samples).

Definitions (each a named, documented variant; libraries disagree by several hundredths):

* **CCA** -- the canonical correlations ``rho_i`` are the singular values of ``Q_x^T Q_y`` with
  ``Q_x``, ``Q_y`` orthonormal bases of the *centred* X and Y (thin SVD, rank-revealing with a
  relative tolerance). There are ``min(rank X, rank Y)`` of them. This equals google/svcca
  ``cca_core.get_cca_similarity(X.T, Y.T, epsilon)["cca_coef1"]``, which whitens ``np.cov``
  (centred) with ``pinv`` and an eigh square root, including its ``epsilon``: neurons with
  variance below ``epsilon * max variance`` are dropped and ``epsilon * max variance`` is added
  to the covariance diagonal (ridge). google-research ``cca()`` does not centre; netrep
  ``LinearMetric(alpha=0)`` zero-pads widths and divides by ``sqrt(Dx Dy)`` (0.4746 where mean
  rho is 0.6712); kisungyou/repsim calls mean rho^2 "Yanai" and mean rho "Pillai".
* **SVCCA** (Raghu et al. 2017) -- centre, SVD, keep the smallest k with cumulative
  ``s^2 >= threshold`` of the total (variance rule, 99 % by default), project on the top k and
  run CCA; report mean rho. The kept k is returned. anatome keeps 99 % of the cumulative
  *singular values* of the *uncentred* matrix instead (994 vs 881 kept dims, 0.662 vs 0.621).
  google/svcca's ``"mean"`` output is a truncated mean (top coefficients up to 98 % mass):
  :func:`truncated_mean` reproduces it.
* **PWCCA** (Morcos et al. 2018, eq. in sec. 3.2) -- with canonical variates ``h_i`` (unit-norm
  N-vectors) of one side, ``alpha~_i = sum_j |<h_i, x_c,j>|`` over that side's centred neurons,
  ``alpha = alpha~ / sum alpha~`` and ``PWCCA = sum_i alpha_i rho_i``. It is not symmetric:
  ``side`` says whose neurons weight. google/svcca ``compute_pwcca`` differs: it builds its
  "directions" from the unwhitened rotation ``u^T (X - mu) + mu``, weights with the uncentred
  activations, and picks the side with fewer neurons (0.7897 vs 0.7397 here; swapping arguments
  raises there): ``pwcca(..., variant="svcca_repo")`` reproduces it. anatome gives 0.6347;
  kisungyou/repsim averages both sides.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._types import pytree_dataclass

from ._kernels import center, mm
from ._validate import check_choice, prep_pair

__all__ = ["CCAResult", "PWCCAResult", "cca", "svcca", "pwcca", "truncated_mean", "cca_method"]


@pytree_dataclass
class CCAResult:
    """Canonical correlations of one pair (leading axes appear under ``vmap``).

    Attributes:
        rho: ``(K,)`` canonical correlations sorted descending, ``K = min(N, Dx, Dy)``; entries
            past ``n_components`` are 0.
        n_components: number of valid correlations, ``min(kept_x, kept_y)``.
        mean: mean of the valid rho (the "CCA similarity"; SVCCA's reported value).
        mean_sq: mean of the valid rho^2 (R^2_CCA, "Yanai").
        rank_x, rank_y: numerical ranks of the centred inputs.
        kept_x, kept_y: dimensions entering CCA (the SVCCA k; equal to the ranks for CCA).
    """

    rho: jax.Array
    n_components: jax.Array
    mean: jax.Array
    mean_sq: jax.Array
    rank_x: jax.Array
    rank_y: jax.Array
    kept_x: jax.Array
    kept_y: jax.Array

    @property
    def valid_rho(self) -> np.ndarray:
        """The valid correlations as a NumPy array (single pair only)."""
        return np.asarray(self.rho)[: int(self.n_components)]


@pytree_dataclass(meta=("side",))
class PWCCAResult:
    """Projection-weighted CCA of one pair.

    Attributes:
        value: ``sum_i alpha_i rho_i``.
        weights: ``(K,)`` alpha, >= 0, summing to 1 over the valid components (0 past them).
        rho: ``(K,)`` canonical correlations (see :class:`CCAResult`).
        n_components: number of valid components.
        side: ``"x"`` or ``"y"``, whose neurons define the weights.
    """

    value: jax.Array
    weights: jax.Array
    rho: jax.Array
    n_components: jax.Array
    side: str


def _basis(x, epsilon, rtol, threshold, method: str = "svd"):
    """Centred thin SVD with google/svcca's neuron pruning and ridge, rank and SVCCA masks.

    Returns ``(u, s, vt, f, rank, kept)`` where the whitening/shrinkage factor ``f_i`` is
    ``sqrt(lam_i / (lam_i + epsilon * max_var))`` on kept directions (1 without ridge) and 0
    elsewhere, ``lam_i = s_i^2 / (N-1)`` the covariance eigenvalues.
    """
    n = x.shape[0]
    xc = center(x)
    var = jnp.sum(xc * xc, axis=0) / (n - 1)
    vmax = jnp.max(var)
    keep = var >= epsilon * vmax  # google/svcca remove_small on the max-scaled covariance
    xc = jnp.where(keep[None, :], xc, 0)
    if method == "svd":
        u, s, vt = jnp.linalg.svd(xc, full_matrices=False)
    else:
        # N >> D: eigh of the D x D cross-product (one GEMM + a D^3 eigensolver) instead of an
        # SVD of the N x D matrix; U = X_c V S^-1 on the numerically non-null directions.
        lam, v = jnp.linalg.eigh(mm(xc.T, xc))
        lam, v = lam[::-1], v[:, ::-1]
        s = jnp.sqrt(jnp.maximum(lam, 0))
        vt = v.T
        u = mm(xc, v) / jnp.where(s > rtol * s[0], s, 1)[None, :]
    tol = rtol * s[0]
    rank = jnp.sum(s > tol)
    idx = jnp.arange(s.shape[0])
    if threshold is None:
        kept = rank
    else:
        e = s * s
        frac = jnp.cumsum(e) / jnp.sum(e)
        kept = jnp.minimum(jnp.sum(frac < threshold) + 1, rank)
    lam = s * s / (n - 1)
    ridge = epsilon * vmax
    f = jnp.where(idx < kept, jnp.sqrt(lam / jnp.where(lam + ridge > 0, lam + ridge, 1)), 0)
    return u, s, vt, f, rank, kept


def _default_rtol(n, d, dtype, method: str = "svd"):
    eps = float(jnp.finfo(dtype).eps)
    if method == "cov":  # eigenvalues of X^T X carry eps * s_max^2 noise: s below ~sqrt is null
        return float(np.sqrt(max(n, d) * eps))
    return float(max(n, d) * eps)


def cca_method(n: int, dx: int, dy: int, dtype) -> str:
    """``"cov"`` (GEMM + eigh of D x D) for float64 with N >= 2 max(Dx, Dy), else ``"svd"``.

    The covariance route squares the condition number, so it is chosen only in float64, where
    directions whose singular value is below ``sqrt(max(N, D) eps) * s_max`` are treated as null
    (they carry less than ~1e-12 of the variance).
    """
    if jnp.dtype(dtype) == jnp.float64 and n >= 2 * max(dx, dy):
        return "cov"
    return "svd"


@partial(jax.jit, static_argnames=("use_threshold", "method"))
def _cca_core(x, y, epsilon, rtol_x, rtol_y, threshold, use_threshold: bool, method: str):
    thr = threshold if use_threshold else None
    ux, sx, vtx, fx, rx, kx = _basis(x, epsilon, rtol_x, thr, method)
    uy, sy, vty, fy, ry, ky = _basis(y, epsilon, rtol_y, thr, method)
    m = mm((ux * fx[None, :]).T, uy * fy[None, :])
    w, rho, zt = jnp.linalg.svd(m, full_matrices=False)
    ncomp = jnp.minimum(kx, ky)
    k = rho.shape[0]
    valid = jnp.arange(k) < ncomp
    rho = jnp.where(valid, jnp.clip(rho, 0, 1), 0)
    cnt = jnp.maximum(ncomp, 1)
    res = CCAResult(
        rho=rho,
        n_components=ncomp,
        mean=jnp.sum(rho) / cnt,
        mean_sq=jnp.sum(rho * rho) / cnt,
        rank_x=rx,
        rank_y=ry,
        kept_x=kx,
        kept_y=ky,
    )
    return res, (w, zt, fx, sx, vtx, fy, sy, vty, valid)


def _prep_cca(x, y, epsilon, rtol, method):
    check_choice(method, "method", ("auto", "svd", "cov"))
    xa, ya = prep_pair(x, y, min_samples=2)
    eps = float(epsilon)
    if not eps >= 0:
        raise ValueError(f"`epsilon` (ridge) must be >= 0; got {epsilon!r}.")
    n = xa.shape[0]
    if method == "auto":
        method = cca_method(n, xa.shape[1], ya.shape[1], xa.dtype)
    if rtol is None:
        rx = _default_rtol(n, xa.shape[1], xa.dtype, method)
        ry = _default_rtol(n, ya.shape[1], ya.dtype, method)
    else:
        rx = ry = float(rtol)
    return xa, ya, eps, rx, ry, method


def cca(
    x, y, *, epsilon: float = 0.0, rtol: float | None = None, method: str = "auto"
) -> CCAResult:
    """Canonical correlation analysis (Hotelling 1936) of two representations.

    ``rho`` are the singular values of ``(Sxx + r_x I)^{-1/2} Sxy (Syy + r_y I)^{-1/2}``, computed
    from thin SVDs of the centred data: ``svd(diag(f_x) U_x^T U_y diag(f_y))`` with
    ``f = sqrt(lam / (lam + r))``. ``r = epsilon * max variance`` is google/svcca's ridge.

    Invariant to invertible linear maps of either side (and translations); the count of
    correlations is ``min(rank X, rank Y)`` (numerical rank: ``s > rtol * s_max``, default
    ``rtol = max(N, D) * eps``). With N < Dx + Dy and no ridge, every correlation is 1
    (overfitting); ``epsilon > 0`` makes the problem well posed.

    Args:
        x: ``(N, Dx)``; y: ``(N, Dy)``.
        epsilon: ridge relative to the largest neuron variance (also drops neurons whose
            variance is below it, as google/svcca does).
        rtol: relative singular value tolerance for the rank.
        method: ``"svd"`` (thin SVD of the centred data), ``"cov"`` (eigh of ``X_c^T X_c``,
            much cheaper when N >> D) or ``"auto"`` (see :func:`cca_method`).

    Returns:
        :class:`CCAResult`.
    """
    xa, ya, eps, rx, ry, m = _prep_cca(x, y, epsilon, rtol, method)
    return _cca_core(xa, ya, eps, rx, ry, 1.0, False, m)[0]


def svcca(
    x,
    y,
    *,
    threshold: float = 0.99,
    epsilon: float = 0.0,
    rtol: float | None = None,
    method: str = "auto",
) -> CCAResult:
    """SVCCA (Raghu et al. 2017): SVD truncation to ``threshold`` of the variance, then CCA.

    Each side is centred and reduced to its top ``k`` singular directions, the smallest ``k``
    with ``sum_{i<=k} s_i^2 >= threshold * sum_i s_i^2`` (the variance rule of the paper and
    google/svcca's tutorial); CCA of the projections is then reported as mean rho. With
    ``threshold=1`` it equals :func:`cca`. Not invariant to general invertible maps (the
    truncation depends on the spectrum).

    Returns:
        :class:`CCAResult` with ``kept_x``, ``kept_y`` the retained dimensions.
    """
    thr = float(threshold)
    if not 0 < thr <= 1:
        raise ValueError(f"`threshold` must be in (0, 1]; got {threshold!r}.")
    xa, ya, eps, rx, ry, m = _prep_cca(x, y, epsilon, rtol, method)
    return _cca_core(xa, ya, eps, rx, ry, thr, True, m)[0]


@partial(jax.jit, static_argnames=("side", "use_threshold", "variant", "method"))
def _pwcca_core(
    x, y, epsilon, rtol_x, rtol_y, threshold, side: str, use_threshold: bool, variant: str,
    method: str,
):
    res, (w, zt, fx, sx, vtx, fy, sy, vty, valid) = _cca_core(
        x, y, epsilon, rtol_x, rtol_y, threshold, use_threshold, method
    )
    if side == "x":
        coef, f, s, vt, a = w, fx, sx, vtx, x  # h = U_x diag(f) w_i
    else:
        coef, f, s, vt, a = zt.T, fy, sy, vty, y
    if variant == "morcos":
        # <h_i, x_c,j> = (w_i^T diag(f) U^T X_c)_j = (w_i^T diag(f s) V^T)_j; h_i normalised.
        proj = mm(coef.T * (f * s)[None, :], vt)  # (K, D)
        hnorm = jnp.sqrt(jnp.sum((coef * f[:, None]) ** 2, axis=0))
        alpha = jnp.sum(jnp.abs(proj), axis=1) / jnp.where(hnorm > 0, hnorm, 1)
    else:
        # google/svcca compute_pwcca: "directions" R^T (A - mu) + mu with R the singular
        # vectors of the whitened cross-covariance arr = V_x (U_x^T U_y) V_y^T, orthonormalised
        # by QR, and weights from the uncentred activations. Adding mu after the rotation makes
        # the value depend on the SVD's sign convention, so R comes from an SVD of that same
        # D_x x D_y matrix (LAPACK gesdd on CPU, as in NumPy).
        vxf = vtx.T * fx[None, :]
        vyf = vty.T * fy[None, :]
        arr = mm(mm(vxf, mm(w * res.rho[None, :], zt)), vyf.T)
        u_full, _, vh_full = jnp.linalg.svd(arr, full_matrices=True)
        rot = u_full if side == "x" else vh_full.T
        dirns_t = mm(center(a), rot) + jnp.mean(a, axis=0)[None, :]
        p, _ = jnp.linalg.qr(dirns_t)
        alpha = jnp.sum(jnp.abs(mm(p.T, a)), axis=1)[: res.rho.shape[0]]
    alpha = jnp.where(valid, alpha, 0)
    alpha = alpha / jnp.sum(alpha)
    return PWCCAResult(
        value=jnp.sum(alpha * res.rho),
        weights=alpha,
        rho=res.rho,
        n_components=res.n_components,
        side=side,
    )


def pwcca(
    x,
    y,
    *,
    side: str | None = None,
    variant: str = "morcos",
    epsilon: float = 0.0,
    threshold: float | None = None,
    rtol: float | None = None,
    method: str = "auto",
) -> PWCCAResult:
    """Projection-weighted CCA (Morcos, Raghu & Bengio 2018, sec. 3.2).

    ``PWCCA = sum_i alpha_i rho_i`` with ``alpha_i`` proportional to
    ``sum_j |<h_i, x_c,j>|``: how much of the chosen side's centred neurons the unit-norm
    canonical variate ``h_i`` accounts for. Weights are >= 0 and sum to 1, so PWCCA lies in
    ``[min rho, max rho]``; PWCCA(X, X) = 1. Not symmetric, and not invariant to orthogonal maps
    of the weighting side (only to permutations and sign flips of its neurons).

    ``variant="svcca_repo"`` reproduces google/svcca ``pwcca.compute_pwcca`` instead: its
    directions are ``u^T (A - mu) + mu`` (the whitened-space rotation applied to unwhitened
    activations), orthonormalised by QR, weighted by the *uncentred* activations, on the side
    with fewer neurons (X on ties). google/svcca raises IndexError when that is Y (its Y branch
    indexes the first input); here the Y branch is computed as intended. It needs full column
    rank on the weighting side and ``epsilon=0`` (its neuron pruning changes the widths).
    Because the mean is added after the rotation, that value depends on the sign convention of
    the SVD (it is not a function of the data alone); on CPU both use LAPACK ``gesdd``.

    Args:
        x: ``(N, Dx)``; y: ``(N, Dy)``.
        side: ``"x"`` or ``"y"``: whose neurons define the weights (default ``"x"``; for
            ``variant="svcca_repo"`` the side with fewer neurons, and another side is an error).
        variant: ``"morcos"`` (the paper's definition) or ``"svcca_repo"``.
        epsilon: ridge as in :func:`cca`.
        threshold: optional SVD variance truncation before CCA (as in :func:`svcca`).
        method: ``"auto"``, ``"svd"`` or ``"cov"``, as in :func:`cca`.

    Returns:
        :class:`PWCCAResult`.
    """
    check_choice(variant, "variant", ("morcos", "svcca_repo"))
    xa, ya, eps, rx, ry, m = _prep_cca(x, y, epsilon, rtol, method)
    if variant == "svcca_repo":
        auto = "x" if xa.shape[1] <= ya.shape[1] else "y"
        if side is not None and side != auto:
            raise ValueError(
                f"`side`={side!r} with variant='svcca_repo': google/svcca weights the side with "
                f"fewer neurons, here {auto!r}; use variant='morcos' to choose the side."
            )
        if eps != 0 or threshold is not None:
            raise ValueError(
                "variant='svcca_repo' reproduces compute_pwcca(epsilon=0) without truncation; "
                "use variant='morcos' with `epsilon`/`threshold`."
            )
        side = auto
    side = "x" if side is None else side
    check_choice(side, "side", ("x", "y"))
    use = threshold is not None
    thr = float(threshold) if use else 1.0
    if use and not 0 < thr <= 1:
        raise ValueError(f"`threshold` must be in (0, 1]; got {threshold!r}.")
    return _pwcca_core(xa, ya, eps, rx, ry, thr, side, use, variant, m)


def truncated_mean(rho, threshold: float = 0.98) -> float:
    """google/svcca's ``"mean"`` summary: the mean of the leading correlations holding
    ``threshold`` of their total mass (``cca_core.sum_threshold``: the first index i with
    ``sum(rho[:i]) / sum(rho) >= threshold``)."""
    r = np.asarray(rho, dtype=np.float64)
    r = r[r > 0] if r.size else r
    if r.size == 0:
        raise ValueError("`rho` has no positive correlations.")
    frac = np.concatenate([[0.0], np.cumsum(r)]) / np.sum(r)
    i = int(np.argmax(frac >= threshold))
    return float(np.mean(r[:i])) if i > 0 else float("nan")
