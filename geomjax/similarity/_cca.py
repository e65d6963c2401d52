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
    kept, f = _kept_and_whitening(s, rank, n, threshold, epsilon * vmax)
    return u, s, vt, f, rank, kept


def _kept_and_whitening(s, rank, n, threshold, ridge):
    """Directions kept (the numerical rank, or the SVCCA ``threshold`` variance truncation
    within it) and the ridge-whitening factors ``sqrt(lam / (lam + ridge))`` of the singular
    values ``s`` (descending), zero beyond the kept ones."""
    if threshold is None:
        kept = rank
    else:
        e = s * s
        frac = jnp.cumsum(e) / jnp.sum(e)
        kept = jnp.minimum(jnp.sum(frac < threshold) + 1, rank)
    lam = s * s / (n - 1)
    f = jnp.where(jnp.arange(s.shape[0]) < kept,
                  jnp.sqrt(lam / jnp.where(lam + ridge > 0, lam + ridge, 1)), 0)
    return kept, f


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


def _center_once(x):
    """Column-centre; the second correction pass of :func:`center` only matters below float64."""
    if x.dtype == jnp.float64:
        return x - jnp.mean(x, axis=0, keepdims=True)
    return center(x)


def _gram_blocks(xc, yc, block: int = 512):
    """``X^T X``, ``Y^T Y`` and ``X^T Y`` from the upper block triangle of ``Z^T Z``,
    ``Z = [X Y]``: each symmetric block is formed once (XLA has no symmetric rank-k update), 21
    instead of 28 block products at the benchmark widths."""
    dx = xc.shape[1]
    cols = [xc[:, i : i + block] for i in range(0, dx, block)]
    cols += [yc[:, i : i + block] for i in range(0, yc.shape[1], block)]
    nb = len(cols)
    up = {(i, j): mm(cols[i].T, cols[j]) for i in range(nb) for j in range(i, nb)}
    g = jnp.block([[up[i, j] if j >= i else up[j, i].T for j in range(nb)] for i in range(nb)])
    return g[:dx, :dx], g[dx:, dx:], g[:dx, dx:]


def _cholesky_certified(g, rtol):
    """Cholesky factor of the Gram ``g`` and whether whitening with it is as good as the
    eigen-route: finite, and ``lambda_min / lambda_max`` (inverse / power iteration, 6 steps
    each, both on D-vectors) at least ``1e3 * rtol^2``, so no direction is near the rank
    tolerance ``s > rtol * s_max`` of the eigen-route (the factor 1e3 covers the iterations'
    estimation error). Otherwise the caller falls back to the rank-revealing eigen-route."""
    d = g.shape[0]
    # g is exactly symmetric (assembled from one triangle): no symmetrising pass
    l_fac = jax.lax.linalg.cholesky(g, symmetrize_input=False)
    v0 = jnp.cos(1.7 * jnp.arange(d, dtype=g.dtype) + 0.3)
    v0 = v0 / jnp.linalg.norm(v0)

    def power(_, v):
        w = mm(g, v)
        return w / jnp.linalg.norm(w)

    def inverse(_, v):
        w = jax.scipy.linalg.cho_solve((l_fac, True), v)
        return w / jnp.linalg.norm(w)

    vmax = jax.lax.fori_loop(0, 6, power, v0)
    vmin = jax.lax.fori_loop(0, 6, inverse, v0)
    lmax, lmin = vmax @ mm(g, vmax), vmin @ mm(g, vmin)
    pivot = jnp.min(jnp.diagonal(l_fac)) ** 2  # >= lambda_min
    floor = 1e3 * rtol * rtol * lmax
    ok = jnp.all(jnp.isfinite(l_fac)) & (lmin >= floor) & (pivot >= floor) & (lmax > 0)
    return l_fac, ok


def _eigh_basis_from_gram(g, n, epsilon, rtol, threshold):
    """The ``"cov"`` basis from the Gram ``X_c^T X_c`` (no N x D products): eigenvectors ``v``,
    singular values ``s`` of ``X_c``, shrinkage ``f`` (see :func:`_basis`), rank and kept."""
    var = jnp.diagonal(g) / (n - 1)
    vmax = jnp.max(var)
    keep = var >= epsilon * vmax
    g = jnp.where(keep[:, None] & keep[None, :], g, 0)
    lam, v = jnp.linalg.eigh(g)
    lam, v = lam[::-1], v[:, ::-1]
    s = jnp.sqrt(jnp.maximum(lam, 0))
    rank = jnp.sum(s > rtol * s[0])
    kept, f = _kept_and_whitening(s, rank, n, threshold, epsilon * vmax)
    return v, s, f, rank, kept, keep


def _rho_only(m):
    """Singular values of ``m`` (descending) from ``eigvalsh`` of its smaller Gram: abs error
    <= ~sqrt(eps) (1.5e-8 in float64) for correlations near 0, relative eps elsewhere."""
    p = m if m.shape[0] <= m.shape[1] else m.T
    return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(mm(p, p.T))[::-1], 0))


def _left_vectors(p):
    """Canonical correlations and left singular vectors of ``p`` (rows = the weighting side):
    eigh of ``p p^T`` when ``p`` is wide (rho error <= sqrt(eps) ~ 1.5e-8 near 0, relative
    eps elsewhere), else a thin SVD. Sorted descending; ``(rho, w)`` with ``w`` ``(D, K)``."""
    dp, dq = p.shape
    if dp <= dq:
        mu, w = jnp.linalg.eigh(mm(p, p.T))
        return jnp.sqrt(jnp.maximum(mu[::-1], 0)), w[:, ::-1]
    w, rho, _ = jnp.linalg.svd(p, full_matrices=False)
    return rho, w


def _host_cross_products(xa, ya):
    """``(X_c^T X_c, Y_c^T Y_c, X_c^T Y_c)`` as NumPy arrays from the host BLAS, or ``None``
    where it does not apply (traced values, arrays on an accelerator).

    On CPU these three products are most of the cost of CCA/PWCCA when N >> D. NumPy's BLAS
    forms ``A^T A`` with a symmetric rank-k update (half the flops) and its GEMM is faster than
    XLA:CPU's (measured: 0.96 vs 1.46 CPU-s for N=5000, Dx=1024, Dy=2048, one thread); XLA has
    no symmetric product. Under ``jit``/``vmap``/``grad`` the XLA route is used instead.
    """
    if isinstance(xa, jax.core.Tracer) or isinstance(ya, jax.core.Tracer):
        return None
    try:
        on_cpu = all(d.platform == "cpu" for d in (*xa.devices(), *ya.devices()))
    except AttributeError:
        return None
    if not on_cpu:
        return None
    a, b = np.asarray(xa), np.asarray(ya)
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    if a.dtype != np.float64:  # second pass, as in :func:`center`
        ac, bc = ac - ac.mean(axis=0), bc - bc.mean(axis=0)
    # ``A.T @ A`` on the same buffer is NumPy's symmetric rank-k path (a symmetric result)
    return ac.T @ ac, bc.T @ bc, ac.T @ bc


# ---------------------------------------------------------------- host LAPACK route (CPU, f64)
#
# For one concrete float64 pair on CPU the whole CCA-family computation after the cross-products
# runs in host LAPACK (SciPy) with the same definitions, tolerances and fallbacks as the jitted
# :func:`_cca_from_grams` (a test holds the two to 1e-10). It can use what XLA cannot express
# with static shapes: eigenvectors are formed only for the directions that are kept (SVCCA keeps
# 1347 of 2048 on the benchmark data), by tridiagonalisation (``dsytrd``), divide and conquer on
# the tridiagonal (``dstevd``) and back-transformation of just those vectors (``dormqr``), and
# the products shrink to the kept widths. Measured at N=5000, Dx=1024, Dy=2048 (one thread):
# SVCCA after the cross-products 2.5 -> ~1.4 CPU-s, PWCCA 0.9 -> ~0.65.


class _LeadingVectors:
    """The leading eigenvectors ``V = Q Z`` (``(D, k)``) of a tridiagonalised symmetric matrix,
    kept as the Householder reflectors of ``Q`` and the tridiagonal's eigenvectors ``Z``:
    ``b V`` then costs ``2 D^2 rows(b)`` flops instead of the ``2 D^2 k`` of forming ``V``
    (SVCCA: 695 rows against 1347 kept vectors on the benchmark data)."""

    def __init__(self, z, c=None, tau=None):
        self.z, self.c, self.tau = z, c, tau  # c None: z is V itself (small matrices)
        self.k = z.shape[1]

    def _q(self, side, trans, b):
        """``Q b`` (side "L") or ``b Q`` (side "R"); ``Q = H(1) ... H(D-1)`` acts on indices
        2..D (LAPACK ``dormtr`` with ``uplo="L"`` is this ``dormqr``)."""
        from scipy.linalg import lapack

        d = self.c.shape[0]
        a = self.c[1:, : d - 1]
        out = np.array(b, order="F")
        if out.size == 0:
            return out
        part = out[1:] if side == "L" else out[:, 1:]
        part = np.asfortranarray(part)
        lw = int(lapack.dormqr(side, trans, a, self.tau, part, -1)[1][0])
        q, _, info = lapack.dormqr(side, trans, a, self.tau, part, lw, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"dormqr failed (info={info})")
        if side == "L":
            out[1:] = q
        else:
            out[:, 1:] = q
        return out

    def form(self):
        """``V`` ``(D, k)``."""
        if self.c is None or self.k == 0:
            return self.z
        return self._q("L", "N", self.z)

    def v_dot(self, b):
        """``V b``."""
        return self.z @ b if self.c is None else self._q("L", "N", self.z @ b)

    def dot_v(self, b):
        """``b V``."""
        if self.c is None or self.k == 0:
            return b @ self.z
        return self._q("R", "N", b) @ self.z


def _host_eigh_leading(g, count):
    """Eigenvalues of the symmetric ``g`` (descending) and the eigenvectors of the leading
    ``k = count(lam)`` of them as :class:`_LeadingVectors`; the others are never formed."""
    from scipy.linalg import eigh_tridiagonal, lapack

    d = g.shape[0]
    if d < 64:  # tiny: one LAPACK call
        lam, v = np.linalg.eigh(g)
        lam, v = lam[::-1], v[:, ::-1]
        return lam, _LeadingVectors(np.ascontiguousarray(v[:, : count(lam)]))
    lwork = int(lapack.dsytrd_lwork(d, lower=1)[0])  # the default work size is unblocked
    c, diag, off, tau, info = lapack.dsytrd(g, lower=1, lwork=lwork)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsytrd failed (info={info})")
    lam, z = eigh_tridiagonal(diag, off, lapack_driver="stevd", check_finite=False)
    lam, z = lam[::-1], z[:, ::-1]
    return lam, _LeadingVectors(np.ascontiguousarray(z[:, : count(lam)]), c, tau)


def _host_eigen_basis(g, n, epsilon, rtol, threshold):
    """:func:`_eigh_basis_from_gram` on the host, with eigenvectors of the kept directions
    only: ``(v, s (D,), f (kept,), rank, kept)``, ``v`` a :class:`_LeadingVectors`."""
    var = np.diagonal(g) / (n - 1)
    vmax = float(np.max(var))
    keep = var >= epsilon * vmax
    if not keep.all():
        g = np.where(keep[:, None] & keep[None, :], g, 0.0)
    state = {}

    def count(lam):
        s = np.sqrt(np.maximum(lam, 0))
        rank = int(np.sum(s > rtol * s[0]))
        if threshold is None:
            kept = rank
        else:
            e = s * s
            kept = min(int(np.sum(np.cumsum(e) / np.sum(e) < threshold)) + 1, rank)
        state.update(s=s, rank=rank, kept=kept)
        return kept

    _, v = _host_eigh_leading(g, count)
    s, kept = state["s"], state["kept"]
    lam = s[:kept] ** 2 / (n - 1)
    ridge = epsilon * vmax
    den = lam + ridge
    f = np.sqrt(lam / np.where(den > 0, den, 1))
    return v, s, f, state["rank"], kept


def _host_cholesky_certified(g, rtol):
    """:func:`_cholesky_certified` on the host, the same test: ``(U, ok)`` with ``U`` the
    Fortran-ordered upper factor, ``g = U^T U`` (``U^T`` is the lower factor ``L``). The
    symmetric ``g`` is passed as ``g.T``, its Fortran-ordered self: no transposing copies."""
    from scipy.linalg import lapack

    u, info = lapack.dpotrf(g.T, lower=0, clean=1)
    if info != 0 or not np.all(np.isfinite(u)):
        return None, False
    d = g.shape[0]
    v0 = np.cos(1.7 * np.arange(d) + 0.3)
    vmax = vmin = v0 / np.linalg.norm(v0)
    for _ in range(6):
        w = g @ vmax
        vmax = w / np.linalg.norm(w)
        w = lapack.dpotrs(u, vmin, lower=0)[0]
        vmin = w / np.linalg.norm(w)
    lmax, lmin = vmax @ (g @ vmax), vmin @ (g @ vmin)
    floor = 1e3 * rtol * rtol * lmax
    ok = lmin >= floor and np.min(np.diagonal(u)) ** 2 >= floor and lmax > 0
    return u, bool(ok)


def _host_rho_only(m):
    """:func:`_rho_only` on the host (``m`` may be empty)."""
    if m.size == 0:
        return np.zeros(0)
    p = m if m.shape[0] <= m.shape[1] else m.T
    return np.sqrt(np.maximum(np.linalg.eigvalsh(p @ p.T)[::-1], 0))


def _host_left_vectors(p):
    """:func:`_left_vectors` on the host: ``(rho, w)``, descending, ``w`` ``(Dp, min(Dp, Dq))``."""
    dp, dq = p.shape
    if dp == 0 or dq == 0:
        return np.zeros(0), np.zeros((dp, 0))
    if dp <= dq:
        mu, w = _host_eigh_leading(p @ p.T, lambda lam: lam.shape[0])
        return np.sqrt(np.maximum(mu, 0)), w.form()
    w, rho, _ = np.linalg.svd(p, full_matrices=False)
    return rho, w


def _host_cca(
    gxx, gyy, gxy, n, epsilon, rtol_x, rtol_y, threshold, use_threshold, method, weights
):
    """:func:`_cca_from_grams` for float64 NumPy cross-products, in host LAPACK."""
    from scipy.linalg import solve_triangular
    from scipy.linalg.blas import dtrmm

    dx, dy = gxx.shape[0], gyy.shape[0]
    k = min(dx, dy)
    thr = threshold if use_threshold else None
    done = False
    if method == "chol":
        ux, okx = _host_cholesky_certified(gxx, rtol_x)
        uy, oky = _host_cholesky_certified(gyy, rtol_y) if okx else (None, False)
        if okx and oky:
            lsolve = partial(solve_triangular, trans="T", lower=False, check_finite=False)
            t = lsolve(uy, gxy.T)  # L_y^-1 G_yx  (L = U^T)
            m = lsolve(ux, t.T)  # L_x^-1 G_xy L_y^-T
            rx, ry, kx, ky = dx, dy, dx, dy
            if weights is None:
                rho, alpha = _host_rho_only(m), None
            else:
                p, uf = (m, ux) if weights == "x" else (m.T, uy)
                rho, w = _host_left_vectors(p)
                # h_i = A_c L^-T w_i (unit variance up to sqrt(N-1)); A_c^T h_i = (N-1) L w_i
                alpha = np.sum(np.abs(dtrmm(1.0, uf, w, lower=0, trans_a=1)), axis=0)  # L w
            done = True
    if not done:
        vx, sx, fx, rx, kx = _host_eigen_basis(gxx, n, epsilon, rtol_x, thr)
        vy, sy, fy, ry, ky = _host_eigen_basis(gyy, n, epsilon, rtol_y, thr)
        cx = fx / np.where(fx > 0, sx[:kx], 1)  # X_c V diag(f/s) = U_x diag(f)
        cy = fy / np.where(fy > 0, sy[:ky], 1)
        # m = diag(cx) V_x^T G_xy V_y diag(cy): the side with fewer kept vectors is formed and
        # multiplies G_xy; the other side's reflectors act on that (k_small, D) product
        if kx <= ky:
            b = (vx.form() * cx[None, :]).T @ gxy
            m = vy.dot_v(b) * cy[None, :]
        else:
            b = gxy @ (vy.form() * cy[None, :])
            m = vx.dot_v(b.T).T * cx[:, None]
        if weights is None:
            rho, alpha = _host_rho_only(m), None
        else:
            p, f, s, v = (m, fx, sx, vx) if weights == "x" else (m.T, fy, sy, vy)
            rho, w = _host_left_vectors(p)
            # <h_i, a_c,j> with h_i = U diag(f) w_i / ||diag(f) w_i||
            proj = v.v_dot(w * (f * s[: f.shape[0]])[:, None])
            hnorm = np.sqrt(np.sum((w * f[:, None]) ** 2, axis=0))
            alpha = np.sum(np.abs(proj), axis=0) / np.where(hnorm > 0, hnorm, 1)
    ncomp = min(kx, ky)
    valid = np.arange(k) < ncomp
    rho_k = np.zeros(k)
    r = min(k, rho.shape[0])
    rho_k[:r] = rho[:r]
    rho_k = np.where(valid, np.clip(rho_k, 0, 1), 0)
    cnt = max(ncomp, 1)
    i64 = np.int64
    res = CCAResult(
        rho=jnp.asarray(rho_k),
        n_components=jnp.asarray(i64(ncomp)),
        mean=jnp.asarray(np.sum(rho_k) / cnt),
        mean_sq=jnp.asarray(np.sum(rho_k * rho_k) / cnt),
        rank_x=jnp.asarray(i64(rx)),
        rank_y=jnp.asarray(i64(ry)),
        kept_x=jnp.asarray(i64(kx)),
        kept_y=jnp.asarray(i64(ky)),
    )
    if weights is None:
        return res
    a_k = np.zeros(k)
    a_k[:r] = alpha[:r]
    a_k = np.where(valid, a_k, 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero weights: NaN, as jitted
        a_k = a_k / np.sum(a_k)
    return PWCCAResult(
        value=jnp.asarray(np.sum(a_k * rho_k)),
        weights=jnp.asarray(a_k),
        rho=jnp.asarray(rho_k),
        n_components=jnp.asarray(i64(ncomp)),
        side=weights,
    )


@partial(jax.jit, static_argnames=("use_threshold", "method", "weights"))
def _cca_gram_core(
    x, y, epsilon, rtol_x, rtol_y, threshold, use_threshold: bool, method: str, weights: str | None
):
    """CCA from the D x D cross-products only: ``method="chol"`` whitens with Cholesky factors
    (falling back to the eigen-route when either side is not certified full rank), ``"cov"``
    with eigendecompositions. ``weights`` ``"x"``/``"y"`` also returns PWCCA's alpha~."""
    gxx, gyy, gxy = _gram_blocks(_center_once(x), _center_once(y))
    return _cca_from_grams(
        gxx,
        gyy,
        gxy,
        x.shape[0],
        epsilon,
        rtol_x,
        rtol_y,
        threshold,
        use_threshold,
        method,
        weights,
    )


@partial(jax.jit, static_argnames=("n", "use_threshold", "method", "weights"))
def _cca_host_core(
    gxx,
    gyy,
    gxy,
    n: int,
    epsilon,
    rtol_x,
    rtol_y,
    threshold,
    use_threshold: bool,
    method: str,
    weights: str | None,
):
    return _cca_from_grams(
        gxx, gyy, gxy, n, epsilon, rtol_x, rtol_y, threshold, use_threshold, method, weights
    )


def _cca_from_grams(
    gxx,
    gyy,
    gxy,
    n,
    epsilon,
    rtol_x,
    rtol_y,
    threshold,
    use_threshold: bool,
    method: str,
    weights: str | None,
):
    k = min(gxx.shape[0], gyy.shape[0])
    thr = threshold if use_threshold else None
    valid_all = jnp.ones((k,), bool)

    def eigen_route(_):
        vx, sx, fx, rx, kx = _eigh_basis_from_gram(gxx, n, epsilon, rtol_x, thr)[:5]
        vy, sy, fy, ry, ky = _eigh_basis_from_gram(gyy, n, epsilon, rtol_y, thr)[:5]
        ax = vx * (fx / jnp.where(fx > 0, sx, 1))[None, :]  # X_c V diag(f/s) = U_x diag(f)
        ay = vy * (fy / jnp.where(fy > 0, sy, 1))[None, :]
        m = mm(mm(ax.T, gxy), ay)
        ncomp = jnp.minimum(kx, ky)
        if weights is None:
            rho = _rho_only(m)[:k]
            return rho, jnp.zeros((k,), m.dtype), rx, ry, kx, ky, ncomp
        p, f, s, v = (m, fx, sx, vx) if weights == "x" else (m.T, fy, sy, vy)
        rho, w = _left_vectors(p)
        rho, w = rho[:k], w[:, :k]
        # <h_i, a_c,j> with h_i = U diag(f) w_i / ||diag(f) w_i||
        proj = mm(v, w * (f * s)[:, None])
        hnorm = jnp.sqrt(jnp.sum((w * f[:, None]) ** 2, axis=0))
        alpha = jnp.sum(jnp.abs(proj), axis=0) / jnp.where(hnorm > 0, hnorm, 1)
        return rho, alpha, rx, ry, kx, ky, ncomp

    if method == "cov":
        rho, alpha, rx, ry, kx, ky, ncomp = eigen_route(None)
    else:
        lx, okx = _cholesky_certified(gxx, rtol_x)
        ly, oky = _cholesky_certified(gyy, rtol_y)

        def chol_route(_):
            idt = jnp.sum(jnp.zeros((1,), bool)).dtype  # the dtype of the eigen-route's ranks
            dx, dy = jnp.asarray(gxx.shape[0], idt), jnp.asarray(gyy.shape[0], idt)
            t = jax.scipy.linalg.solve_triangular(ly, gxy.T, lower=True)  # L_y^-1 G_yx
            m = jax.scipy.linalg.solve_triangular(lx, t.T, lower=True)  # L_x^-1 G_xy L_y^-T
            if weights is None:
                rho = _rho_only(m)[:k]
                return rho, jnp.zeros((k,), m.dtype), dx, dy, dx, dy, jnp.minimum(dx, dy)
            p, lf = (m, lx) if weights == "x" else (m.T, ly)
            rho, w = _left_vectors(p)
            # h_i = A_c L^-T w_i (unit variance up to sqrt(N-1)); A_c^T h_i = (N-1) L w_i
            alpha = jnp.sum(jnp.abs(mm(lf, w[:, :k])), axis=0)
            return rho[:k], alpha, dx, dy, dx, dy, jnp.minimum(dx, dy)

        rho, alpha, rx, ry, kx, ky, ncomp = jax.lax.cond(okx & oky, chol_route, eigen_route, None)
    valid = (jnp.arange(k) < ncomp) & valid_all
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
    if weights is None:
        return res
    alpha = jnp.where(valid, alpha, 0)
    alpha = alpha / jnp.sum(alpha)
    return PWCCAResult(
        value=jnp.sum(alpha * rho),
        weights=alpha,
        rho=rho,
        n_components=ncomp,
        side=weights,
    )


def _gram_route(xa, ya, eps, rx, ry, thr, use, m, weights):
    """CCA/PWCCA by the cross-product routes (``"cov"``/``"chol"``), the products from the host
    BLAS on CPU (see :func:`_host_cross_products`) and from XLA otherwise."""
    grams = _host_cross_products(xa, ya)
    if grams is None:
        return _cca_gram_core(xa, ya, eps, rx, ry, thr, use, m, weights)
    if grams[0].dtype == np.float64:
        return _host_cca(*grams, xa.shape[0], eps, rx, ry, thr, use, m, weights)
    grams = tuple(jnp.asarray(g) for g in grams)
    return _cca_host_core(*grams, xa.shape[0], eps, rx, ry, thr, use, m, weights)


def _prep_cca(x, y, epsilon, rtol, method, chol_ok: bool = True):
    check_choice(method, "method", ("auto", "svd", "cov", "chol"))
    xa, ya = prep_pair(x, y, min_samples=2)
    eps = float(epsilon)
    if not eps >= 0:
        raise ValueError(f"`epsilon` (ridge) must be >= 0; got {epsilon!r}.")
    n = xa.shape[0]
    if method == "auto":
        method = cca_method(n, xa.shape[1], ya.shape[1], xa.dtype)
        # Cholesky whitening needs neither the spectrum (SVCCA truncation) nor pruning (epsilon)
        if method == "cov" and eps == 0 and chol_ok:
            method = "chol"
    if method == "chol" and (eps != 0 or not chol_ok):
        method = "cov"
    if rtol is None:
        rtol_kind = "cov" if method == "chol" else method
        rx = _default_rtol(n, xa.shape[1], xa.dtype, rtol_kind)
        ry = _default_rtol(n, ya.shape[1], ya.dtype, rtol_kind)
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
            much cheaper when N >> D), ``"chol"`` (Cholesky whitening of the cross-products,
            cheaper still; used only where both sides are certified full rank well above the
            rank tolerance, else it falls back to ``"cov"``; needs ``epsilon=0``) or ``"auto"``
            (:func:`cca_method`, upgraded from ``"cov"`` to ``"chol"`` when ``epsilon=0`` and
            no SVCCA truncation is asked for). The ``"cov"``/``"chol"`` routes work from the
            D x D cross-products only; on CPU, for concrete arrays, the host BLAS forms those,
            and for float64 the rest runs in host LAPACK too, forming eigenvectors only for
            the kept directions (same definitions and tolerances as the jitted kernel).

    Returns:
        :class:`CCAResult`.
    """
    xa, ya, eps, rx, ry, m = _prep_cca(x, y, epsilon, rtol, method)
    if m != "svd":
        return _gram_route(xa, ya, eps, rx, ry, 1.0, False, m, None)
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
    xa, ya, eps, rx, ry, m = _prep_cca(x, y, epsilon, rtol, method, chol_ok=thr == 1)
    if m != "svd":
        return _gram_route(xa, ya, eps, rx, ry, thr, True, m, None)
    return _cca_core(xa, ya, eps, rx, ry, thr, True, m)[0]


@partial(jax.jit, static_argnames=("side", "use_threshold", "variant", "method"))
def _pwcca_core(
    x,
    y,
    epsilon,
    rtol_x,
    rtol_y,
    threshold,
    side: str,
    use_threshold: bool,
    variant: str,
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
        method: ``"auto"``, ``"svd"``, ``"cov"`` or ``"chol"``, as in :func:`cca`.

    Returns:
        :class:`PWCCAResult`.
    """
    check_choice(variant, "variant", ("morcos", "svcca_repo"))
    xa, ya, eps, rx, ry, m = _prep_cca(
        x, y, epsilon, rtol, method, chol_ok=variant == "morcos" and threshold is None
    )
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
    if variant == "morcos" and m != "svd":
        return _gram_route(xa, ya, eps, rx, ry, thr, use, m, side)
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
