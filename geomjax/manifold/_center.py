"""Centre correlations of P manifolds and their removal on the Stiefel manifold.

Following Cohen, Chung, Lee & Sompolinsky (Nat. Commun. 2020, Methods "correlations between
manifold centres"), the globally centred centres ``c_mu`` are written in a ``P-1``-dimensional
orthonormal basis (``X``, ``(P, P-1)``, same Gram matrix). For ``K = 1, 2, ...`` an orthonormal
``V`` (``(P-1, K)``) is found that minimises

    cost(V) = 1/2 sum_{mu,nu} (C_{mu nu} - (X V)_mu . (X V)_nu)^2 / (c0_mu c0_nu),
    C = X X^T,  c0_mu = ||x_mu||^2 - ||V^T x_mu||^2,

i.e. ``P/2 + sum_{mu<nu} cos^2(r_mu, r_nu)`` for the residual centres ``r_mu = (I - V V^T) x_mu``.
The residual centre correlation for each ``K`` is the mean absolute cosine between the residual
centres; the ``K`` with the smallest residual correlation is kept (at least one direction, as
in the reference procedure), and the search stops early once it has risen three times in a row
after ``K = 4``. Among the random restarts of each ``K`` the one with the largest *stability*
``min_mu ||r_mu|| / ||x_mu||`` is kept (the reference's rule, not the lowest cost).

Differences from the reference: ``max K`` is capped at ``P - 1`` (the reference can exceed it
and crash for small P), and a K that removes the whole centre space (residual centres at
round-off level, always the case for ``K = P - 1``) is never chosen; if no other K exists
(``P = 2``) nothing is removed (``K = 0``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from geomjax.solvers import random_stiefel, stiefel_lbfgs, stiefel_minimize

__all__ = ["center_correlation", "center_basis", "fit_center_subspace", "max_rank_budget"]

_HI = lax.Precision.HIGHEST


def _mean_abs_cos(X):
    """(sum_{mu != nu} |cos(x_mu, x_nu)|) / (P (P-1)) for the rows of ``X``."""
    P = X.shape[0]
    nrm = jnp.linalg.norm(X, axis=1)
    C = jnp.matmul(X, X.T, precision=_HI) / (nrm[:, None] * nrm[None, :])
    return (jnp.sum(jnp.abs(C)) - jnp.sum(jnp.abs(jnp.diagonal(C)))) / (P * (P - 1))


@jax.jit
def center_basis(centers):
    """Globally centred centres in a ``P-1``-dimensional orthonormal basis.

    Args:
        centers: ``(P, N)`` manifold centres (rows).

    Returns:
        ``(X, proj)``: ``X`` ``(P, P-1)`` coordinates with ``X X^T = c~ c~^T``, and ``proj``
        ``(N, P-1)`` the orthonormal basis (Q factor of ``c~^T``), so ``c~ = X proj^T``.
    """
    P = centers.shape[0]
    ct = centers - jnp.mean(centers, axis=0, keepdims=True)
    q, _ = jnp.linalg.qr(ct.T)  # (N, min(N, P))
    proj = q[:, : P - 1]
    return jnp.matmul(ct, proj, precision=_HI), proj


def center_correlation(centers) -> jax.Array:
    """Mean absolute cosine between the globally centred manifold centres (``rho_center``).

    ``rho = 1/(P(P-1)) sum_{mu != nu} |cos(c~_mu, c~_nu)|`` with ``c~_mu = c_mu - mean_nu c_nu``
    (Cohen et al. 2020; the reference's ``res_coeff0``).

    Args:
        centers: ``(P, N)`` centres, ``P >= 2``.
    """
    centers = jnp.asarray(centers)
    if centers.ndim != 2 or centers.shape[0] < 2:
        raise ValueError(f"`centers` must be (P, N) with P >= 2; got {tuple(centers.shape)}.")
    ct = centers - jnp.mean(centers, axis=0, keepdims=True)
    return _mean_abs_cos(ct)


def max_rank_budget(centers) -> int:
    """The reference's ``maxK``: ``K95 + 9`` from the centres' spectrum, capped at ``P - 1``.

    ``tau_k`` is the cumulative fraction of ``sum sigma^2`` of the globally centred centres;
    the reference computes ``argmax([tau if tau < 0.95 else 0]) + 11`` (11 when ``tau_1 >= 0.95``),
    which can exceed ``P - 1`` and crash for small P; here it is capped at ``P - 1``.
    """
    c = np.asarray(centers, dtype=np.float64)
    ct = c - c.mean(axis=0, keepdims=True)
    return _rank_budget(np.linalg.svd(ct, compute_uv=False), c.shape[0])


def _rank_budget(s, P: int) -> int:
    """:func:`max_rank_budget` from the singular values ``s`` of the centred centres (those of
    the ``(P, P-1)`` coordinates ``X`` are the same, and far cheaper than an SVD of ``(P, N)``)."""
    s = np.asarray(s, dtype=np.float64)
    tot = np.sum(s**2)
    if tot <= 0:
        return 0
    tau = np.cumsum(s**2) / tot
    below = tau < 0.95
    idx = int(np.argmax(np.where(below, tau, 0))) if below.any() else 0
    return int(min(idx + 11, P - 1))


def _corr_direct(V, X, C, E):
    """Cost and Euclidean gradient on ``D = C - c c^T`` (the form the objective is written in)."""
    c = jnp.matmul(X, V, precision=_HI)
    c0 = jnp.diagonal(C) - jnp.sum(c * c, axis=1)
    u = 1 / c0  # P divisions instead of P^2
    D = C - jnp.matmul(c, c.T, precision=_HI)
    A = D * u[:, None] * u[None, :]
    # d cost / d c = -2 A c + 2 (sum_nu A_{mu nu}^2 c0_nu) c_mu, and d cost / d V = X^T (d / d c).
    w = jnp.matmul(A * A, c0, precision=_HI)
    gc = 2 * w[:, None] * c - 2 * jnp.matmul(A, c, precision=_HI)
    return jnp.sum(D * A) / 2, jnp.matmul(X.T, gc, precision=_HI)


def _corr_expanded(V, X, C, E):
    """The same cost and gradient with the square expanded (``E = C o C``).

    With ``u = 1 / c0`` and ``cu = u * c`` (rows scaled),
    ``cost = 1/2 u^T E u - <cu, C cu> + 1/2 ||cu^T c||_F^2``: two ``P x P`` products per
    evaluation instead of forming ``D`` and its weighted square (about 1.5-2.5x less time). Its
    terms grow as ``u_mu C_mu,mu`` (a centre's squared norm over its residual's), so it loses
    digits to cancellation when the removed directions carry most of some centre; the fits check
    this at the solution (:func:`_fit_one_k`) and redo such fits with :func:`_corr_direct`.
    """
    c = jnp.matmul(X, V, precision=_HI)
    u = 1 / (jnp.diagonal(C) - jnp.sum(c * c, axis=1))
    cu = u[:, None] * c
    Ccu = jnp.matmul(C, cu, precision=_HI)
    Eu = jnp.matmul(E, u, precision=_HI)
    Mk = jnp.matmul(cu.T, c, precision=_HI)
    f = jnp.dot(u, Eu) / 2 - jnp.sum(cu * Ccu) + jnp.sum(Mk * Mk) / 2
    # d/dc at fixed u: 2 U (c M - C U c), M = cu^T c; d/du_mu = (E u)_mu - 2 c_mu.(C cu)_mu
    # + c_mu.(c M)_mu; and d u_mu / d c_mu = 2 u_mu^2 c_mu.
    cM = jnp.matmul(c, Mk, precision=_HI)
    gu = Eu - 2 * jnp.sum(c * Ccu, axis=1) + jnp.sum(c * cM, axis=1)
    gc = 2 * u[:, None] * (cM - Ccu) + (2 * gu * u * u)[:, None] * c
    return f, jnp.matmul(X.T, gc, precision=_HI)


def _with_grad(value_grad):
    """A cost ``(V, X, C, E) -> scalar`` whose VJP is the written-out gradient."""

    @jax.custom_vjp
    def cost(V, X, C, E):
        return value_grad(V, X, C, E)[0]

    def bwd(G, g):
        return g * G, None, None, None

    cost.defvjp(value_grad, bwd)
    return cost


#: ``1/2 sum_{mu,nu} (C - c c^T)^2 / (c0 c0^T)`` with ``c = X V``, ``c0 = diag(C) - ||c_mu||^2``
#: (``E = C o C`` unused): the direct form, and the expanded one used first.
_corr_cost = _with_grad(_corr_direct)
_corr_cost_fast = _with_grad(_corr_expanded)


def _fit_one_k(key, X, C, E, xn, k, n_reps, max_steps, gtol):
    n = X.shape[1]
    dt = X.dtype
    keys = jax.random.split(jax.random.fold_in(key, k), n_reps)
    V0 = jax.vmap(lambda kk: random_stiefel(kk, n, k, dt))(keys)

    def lbfgs(v):
        # The cost is a function of span(V) (the residuals r = (I - V V^T) x): invariant.
        return stiefel_lbfgs(_corr_cost_fast, v, X, C, E, gtol=gtol, max_steps=max_steps,
                             invariant=True)[0]

    def gbb(v):
        return stiefel_minimize(_corr_cost, v, X, C, E, gtol=gtol, max_steps=max_steps)[0]

    def solve(fit):
        if jax.default_backend() == "cpu":
            # One restart after the other: each loop stops at its own step count, and the
            # unbatched small matrix products are several times cheaper on CPU than batched.
            return lax.map(fit, V0)
        return jax.vmap(fit)(V0)

    sol = solve(lbfgs)
    # The expanded cost is exact to round-off only while no centre has lost most of its norm
    # (u_mu C_mu,mu <= 4 at the solution), and a monotone line search can stall on a cost known
    # only to a few digits (float32). In either case all restarts are redone with the direct
    # form by the non-monotone gradient method (the slower, more forgiving solver): one branch
    # for the whole batch, taken only in such cases.
    c = jnp.einsum("pn,rnj->rpj", X, sol.value, precision=_HI)
    ratio = jnp.max(jnp.diagonal(C) / (jnp.diagonal(C) - jnp.sum(c * c, axis=2)), axis=1)
    redo = jnp.any((ratio > 4) | ~sol.converged)
    def fields(s):
        return s.value, s.converged, s.num_steps, s.residual

    V, conv, steps, gnorm = lax.cond(redo, lambda: fields(solve(gbb)), lambda: fields(sol))
    R = X[None] - jnp.einsum("pn,rnj,rmj->rpm", X, V, V, precision=_HI)
    stab = jnp.min(jnp.linalg.norm(R, axis=2) / xn, axis=1)  # (reps,)
    best = jnp.argmax(stab)
    res = _mean_abs_cos(R[best])
    # Removing every centre direction (K = P-1) leaves residual centres at round-off level: their
    # correlation is meaningless and the later normalisation by ||c^ns|| would blow up.
    gone = stab[best] < jnp.sqrt(jnp.finfo(dt).eps)
    res = jnp.where(gone, jnp.inf, res)
    return (V[best], res, conv[best], steps[best], gnorm[best])


@functools.partial(jax.jit, static_argnames=("ks", "n_reps", "max_steps", "gtol"))
def _fit_ks(key, X, ks, n_reps, max_steps, gtol):
    """Fit each rank in ``ks`` (one compiled program for all of them: no host round trip per K).

    Per rank, the ``n_reps`` restarts ``split(fold_in(key, k), n_reps)`` are solved (one after the
    other on CPU, vmapped elsewhere) and the most stable one is kept. Returns one
    ``(V, residual_correlation, converged, num_steps, grad_norm)`` tuple per rank.
    """
    xn = jnp.linalg.norm(X, axis=1)
    C = jnp.matmul(X, X.T, precision=_HI)
    E = C * C
    return tuple(_fit_one_k(key, X, C, E, xn, k, n_reps, max_steps, gtol) for k in ks)


def fit_center_subspace(
    key,
    centers,
    K: int | None = None,
    *,
    n_reps: int = 10,
    max_k: int | None = None,
    max_steps: int = 1000,
    gtol: float | None = None,
) -> dict:
    """Find the low-rank shared centre subspace ``V`` (``(N, K)``) to project out.

    The first (up to) five ranks are one compiled program, later ranks one each; every rank's
    ``n_reps`` random restarts are solved by Riemannian L-BFGS
    (:func:`geomjax.solvers.stiefel_lbfgs`) on the expanded cost, or, for a rank where that
    cannot be trusted (cancellation, or a stall on a cost known to few digits, e.g. float32), by
    the non-monotone gradient method (:func:`geomjax.solvers.stiefel_minimize`) on the direct
    form.

    Args:
        key: ``jax.random.key``; restarts of rank K draw from ``split(fold_in(key, K), n_reps)``.
        centers: ``(P, N)`` manifold centres (raw; they are globally centred here).
        K: ``None`` chooses K as the reference does (argmin of the residual correlation over
            ``K = 1..max_k`` with its early stop); an int fixes it (``0`` removes nothing).
        n_reps: random restarts per K; the most *stable* one is kept.
        max_k: cap on the K search; default :func:`max_rank_budget` (``<= P - 1``).
        max_steps, gtol: Stiefel solver budget and gradient tolerance.

    Returns:
        dict with ``V`` ``(N, K)`` orthonormal, ``K``, ``center_correlation`` (before removal),
        ``residual_correlation`` (after removal), ``n_k_tried``, and ``converged``,
        ``num_steps``, ``grad_norm`` of the chosen restart.
    """
    centers = jnp.asarray(centers)
    if centers.ndim != 2 or centers.shape[0] < 2:
        raise ValueError(f"`centers` must be (P, N) with P >= 2; got {tuple(centers.shape)}.")
    P, N = centers.shape
    X, proj = center_basis(centers)
    rho0 = _mean_abs_cos(X)
    dt = X.dtype
    gtol = (1e-6 if jnp.finfo(dt).bits >= 64 else 1e-3) if gtol is None else float(gtol)
    out = {"center_correlation": rho0, "residual_correlation": rho0, "n_k_tried": 0,
           "converged": True, "num_steps": 0, "grad_norm": 0.0}
    if K is not None:
        if not (0 <= int(K) <= P - 1):
            raise ValueError(f"`K` must be in [0, P-1] = [0, {P - 1}]; got {K}.")
        k_first = k_last = width = int(K)
    else:
        width = (_rank_budget(np.linalg.svd(np.asarray(X, np.float64), compute_uv=False), P)
                 if max_k is None else max(0, min(int(max_k), P - 1)))
        k_first, k_last = 1, width
    if width == 0:
        out.update(V=jnp.zeros((N, 0), dt), K=0)
        return out
    # K = k_first, k_first + 1, ...: the early stop can act only once five ranks are fitted, so
    # those five are one compiled program (no host round trip per rank); after that one rank at
    # a time (the stop needs each K's residual correlation before the next K is fitted).
    res, fits = [], []
    k = k_first
    while k <= k_last:
        ks = tuple(range(k, min(k + 4, k_last) + 1)) if k == k_first else (k,)
        for fit in _fit_ks(key, X, ks, int(n_reps), int(max_steps), gtol):
            fits.append(fit)
            res.append(float(fit[1]))
        k += len(ks)
        i = len(res)
        if K is None and i > 4 and res[i - 1] > res[i - 2] > res[i - 3] > res[i - 4]:
            break
    if not np.isfinite(res).any():  # only degenerate ranks were possible (e.g. P = 2)
        out.update(V=jnp.zeros((N, 0), dt), K=0, n_k_tried=len(res))
        return out
    ib = int(np.argmin(res))
    kb = k_first + ib
    Vb, rb, cv, st, gn = fits[ib]
    out.update(
        V=jnp.matmul(proj, Vb, precision=_HI), K=kb, residual_correlation=rb,
        n_k_tried=len(res), converged=bool(cv), num_steps=int(st), grad_norm=float(gn),
    )
    return out
