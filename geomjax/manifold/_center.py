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
from geomjax.solvers._stiefel import _rgrad

__all__ = ["center_correlation", "center_basis", "fit_center_subspace", "fit_center_subspaces",
           "max_rank_budget"]

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
    this at the solution (:func:`_checked`) and solve such restarts again on :func:`_corr_direct`.
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


def _starts(key, k, n, n_reps, dt):
    """The ``n_reps`` random starting points of rank ``k``: ``split(fold_in(key, k), n_reps)``."""
    keys = jax.random.split(jax.random.fold_in(key, k), n_reps)
    return jax.vmap(lambda kk: random_stiefel(kk, n, k, dt))(keys)


def _lbfgs_fit(v, X, C, E, max_steps, gtol):
    # The cost is a function of span(V) (the residuals r = (I - V V^T) x): invariant.
    return stiefel_lbfgs(_corr_cost_fast, v, X, C, E, gtol=gtol, max_steps=max_steps,
                         invariant=True)[0]


def _gbb_fit(v, X, C, E, max_steps, gtol):
    return stiefel_minimize(_corr_cost, v, X, C, E, gtol=gtol, max_steps=max_steps)[0]


def _fields(s):
    return s.value, s.converged, s.num_steps, s.residual


def _direct_gnorm(V, X, C, E):
    """Riemannian gradient norm of the direct form at ``V`` (exact to round-off wherever the
    cost is defined)."""
    _, G = _corr_direct(V, X, C, E)
    return jnp.linalg.norm(_rgrad(V, G))


def _checked(first, X, C, E, gtol):
    """The L-BFGS fields with convergence judged by the direct form's gradient. The expanded
    cost the L-BFGS runs on loses digits to cancellation once a centre has lost most of its
    norm, and a monotone line search can stall on a cost known to a few digits (float32):
    where the direct gradient is above ``gtol``, the restart is solved again by the fallback."""
    gn = _direct_gnorm(first[0], X, C, E)
    return (first[0], gn <= gtol, first[2], gn)


def _merge(first, second, redo):
    """Per restart, the fallback's point (``second``, solved from the same start) where the
    restart needed it and the fallback ended at a smaller gradient; the steps of both count.
    Past the rank of the shared structure both solvers can stop short of the tolerance (a flat
    valley), and the non-monotone method does not always get further."""
    use = redo & (second[3] < first[3])
    out = tuple(jnp.where(use.reshape(use.shape + (1,) * (a.ndim - use.ndim)), a, b)
                for a, b in zip(second, first, strict=True))
    return out[0], out[1], first[2] + jnp.where(redo, second[2], 0), out[3]


def _fallback_batch(first, rerun):
    """Batched restarts: the fallback (``rerun()``, all restarts) runs once, only if some
    restart needs it (a batched predicate would run both branches always), merged per restart."""
    redo = ~first[1]
    return lax.cond(jnp.any(redo), lambda: _merge(first, rerun(), redo), lambda: first)


def _solve_restarts(V0, X, C, E, max_steps, gtol, batched):
    """All restarts of one rank: L-BFGS on the expanded cost from ``V0``, then, for a restart
    whose direct-form gradient is above ``gtol`` (:func:`_checked`), the non-monotone gradient
    method on the direct form from the same start (:func:`_merge`; started from the L-BFGS
    point instead it stalls at once where the L-BFGS stalled on round-off, as in float32). Returns
    ``(V, converged, num_steps, grad_norm)`` with a leading restart axis."""

    def lbfgs(v):
        return _checked(_fields(_lbfgs_fit(v, X, C, E, max_steps, gtol)), X, C, E, gtol)

    def gbb(v):
        return _fields(_gbb_fit(v, X, C, E, max_steps, gtol))

    if not batched:
        # One restart after the other: each loop stops at its own step count, and the
        # unbatched small matrix products are several times cheaper on CPU than batched. The
        # fallback runs only for the restarts that need it.
        def one(v):
            first = lbfgs(v)
            redo = ~first[1]
            return lax.cond(redo, lambda: _merge(first, gbb(v), redo), lambda: first)

        return lax.map(one, V0)
    return _fallback_batch(jax.vmap(lbfgs)(V0), lambda: jax.vmap(gbb)(V0))


def _pick(X, xn, V, conv, steps, gnorm):
    """The most stable restart and its residual centre correlation."""
    R = X[None] - jnp.einsum("pn,rnj,rmj->rpm", X, V, V, precision=_HI)
    stab = jnp.min(jnp.linalg.norm(R, axis=2) / xn, axis=1)  # (reps,)
    best = jnp.argmax(stab)
    res = _mean_abs_cos(R[best])
    # Removing every centre direction (K = P-1) leaves residual centres at round-off level: their
    # correlation is meaningless and the later normalisation by ||c^ns|| would blow up.
    gone = stab[best] < jnp.sqrt(jnp.finfo(X.dtype).eps)
    res = jnp.where(gone, jnp.inf, res)
    return (V[best], res, conv[best], steps[best], gnorm[best])


def _fit_one_k(key, X, C, E, xn, k, n_reps, max_steps, gtol, batched):
    V0 = _starts(key, k, X.shape[1], n_reps, X.dtype)
    return _pick(X, xn, *_solve_restarts(V0, X, C, E, max_steps, gtol, batched))


def _fit_one_k_many(keys, Xs, Cs, Es, xns, k, n_reps, max_steps, gtol):
    """:func:`_fit_one_k` for ``B`` analyses, analyses and restarts vmapped together. The
    fallback solver runs (for the whole batch, its results kept only where needed) only if some
    restart of some analysis needs it, so that a batched predicate does not make both branches
    run always."""
    V0 = jax.vmap(lambda kk, x: _starts(kk, k, x.shape[1], n_reps, x.dtype))(keys, Xs)

    def solve(fit, starts):
        one = jax.vmap(lambda v, x, c, e: _fields(fit(v, x, c, e, max_steps, gtol)),
                       in_axes=(0, None, None, None))
        return jax.vmap(one)(starts, Xs, Cs, Es)

    first = solve(_lbfgs_fit, V0)
    first = jax.vmap(jax.vmap(_checked, in_axes=(0, None, None, None, None)),
                     in_axes=(0, 0, 0, 0, None))(first, Xs, Cs, Es, gtol)
    fields = _fallback_batch(first, lambda: solve(_gbb_fit, V0))  # (B, n_reps, ...)
    return jax.vmap(_pick)(Xs, xns, *fields)


def _fit_ks_one(key, X, ks, n_reps, max_steps, gtol, batched):
    xn = jnp.linalg.norm(X, axis=1)
    C = jnp.matmul(X, X.T, precision=_HI)
    E = C * C
    return tuple(_fit_one_k(key, X, C, E, xn, k, n_reps, max_steps, gtol, batched) for k in ks)


@functools.partial(jax.jit, static_argnames=("ks", "n_reps", "max_steps", "gtol", "batched"))
def _fit_ks(key, X, ks, n_reps, max_steps, gtol, batched=False):
    """Fit each rank in ``ks`` (one compiled program for all of them: no host round trip per K).

    Per rank, the ``n_reps`` restarts ``split(fold_in(key, k), n_reps)`` are solved (one after the
    other, or vmapped with ``batched``) and the most stable one is kept. Returns one
    ``(V, residual_correlation, converged, num_steps, grad_norm)`` tuple per rank.
    """
    return _fit_ks_one(key, X, ks, n_reps, max_steps, gtol, batched)


@functools.partial(jax.jit, static_argnames=("ks", "n_reps", "max_steps", "gtol"))
def _fit_ks_many(keys, Xs, ks, n_reps, max_steps, gtol):
    """:func:`_fit_ks` for ``B`` analyses at once (``keys`` ``(B,)``, ``Xs`` ``(B, P, P-1)``):
    analyses and restarts vmapped together, one program per rank block. Returns per rank a
    tuple of ``(B, ...)`` arrays."""
    xns = jnp.linalg.norm(Xs, axis=2)
    Cs = jnp.einsum("bpn,bqn->bpq", Xs, Xs, precision=_HI)
    Es = Cs * Cs
    return tuple(_fit_one_k_many(keys, Xs, Cs, Es, xns, k, n_reps, max_steps, gtol) for k in ks)


def _restarts_batched() -> bool:
    """Restarts (and, in :func:`fit_center_subspaces`, analyses) vmapped: on accelerators. On
    CPU one after the other is faster (small unbatched products, each loop its own length)."""
    return jax.default_backend() != "cpu"


def _setup(centers, K, max_k):
    """Validation, the ``(P, P-1)`` coordinates and the rank range of one analysis."""
    centers = jnp.asarray(centers)
    if centers.ndim != 2 or centers.shape[0] < 2:
        raise ValueError(f"`centers` must be (P, N) with P >= 2; got {tuple(centers.shape)}.")
    P, N = centers.shape
    X, proj = center_basis(centers)
    rho0 = _mean_abs_cos(X)
    if K is not None:
        if not (0 <= int(K) <= P - 1):
            raise ValueError(f"`K` must be in [0, P-1] = [0, {P - 1}]; got {K}.")
        k_first = k_last = int(K)
    else:
        width = (_rank_budget(np.linalg.svd(np.asarray(X, np.float64), compute_uv=False), P)
                 if max_k is None else max(0, min(int(max_k), P - 1)))
        k_first, k_last = (1, width) if width else (0, 0)
    return dict(P=P, N=N, X=X, proj=proj, rho0=rho0, k_first=k_first, k_last=k_last)


def _gtol(dt, gtol):
    return (1e-6 if jnp.finfo(dt).bits >= 64 else 1e-3) if gtol is None else float(gtol)


def _first_block(k_first, k_last):
    """The ranks fitted in the first program: the early stop can act only once five ranks are
    fitted, so those five go together (no host round trip per rank)."""
    return tuple(range(k_first, min(k_first + 4, k_last) + 1))


def _stops(res, auto: bool) -> bool:
    """The reference's early stop: after K = 4, the residual correlation rose three times."""
    i = len(res)
    return auto and i > 4 and res[i - 1] > res[i - 2] > res[i - 3] > res[i - 4]


def _choose(st, fits, res) -> dict:
    """The result dict of one analysis from its per-rank fits (argmin of the residual
    correlation; nothing removed when only degenerate ranks were possible)."""
    dt = st["X"].dtype
    out = {"center_correlation": st["rho0"], "residual_correlation": st["rho0"], "n_k_tried": 0,
           "converged": True, "num_steps": 0, "grad_norm": 0.0}
    if not fits or not np.isfinite(res).any():  # no rank asked for, or only degenerate ones
        out.update(V=jnp.zeros((st["N"], 0), dt), K=0, n_k_tried=len(res))
        return out
    ib = int(np.argmin(res))
    Vb, rb, cv, sp, gn = fits[ib]
    out.update(
        V=jnp.matmul(st["proj"], Vb, precision=_HI), K=st["k_first"] + ib,
        residual_correlation=rb, n_k_tried=len(res), converged=bool(cv), num_steps=int(sp),
        grad_norm=float(gn),
    )
    return out


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
    (:func:`geomjax.solvers.stiefel_lbfgs`) on the expanded cost, and its end point is checked
    on the direct form (exact where the expanded one loses digits). A restart whose gradient is
    still above ``gtol`` there (cancellation, a stall on a cost known to few digits in float32,
    a flat valley past the rank of the shared structure) is solved again from its start by the
    non-monotone gradient method (:func:`geomjax.solvers.stiefel_minimize`) on the direct form,
    and whichever end point has the smaller gradient is kept. Restarts run one after the other
    on CPU and vmapped on accelerators. For many analyses at once see
    :func:`fit_center_subspaces`.

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
    st = _setup(centers, K, max_k)
    gt = _gtol(st["X"].dtype, gtol)
    batched = _restarts_batched()
    res, fits = [], []
    k = st["k_first"]
    while 1 <= k <= st["k_last"]:
        ks = _first_block(k, st["k_last"]) if k == st["k_first"] else (k,)
        for fit in _fit_ks(key, st["X"], ks, int(n_reps), int(max_steps), gt, batched):
            fits.append(fit)
            res.append(float(fit[1]))
        k += len(ks)
        if _stops(res, K is None):
            break
    return _choose(st, fits, res)


def fit_center_subspaces(
    keys,
    centers,
    K: int | None = None,
    *,
    n_reps: int = 10,
    max_k: int | None = None,
    max_steps: int = 1000,
    gtol: float | None = None,
    batched: bool | None = None,
) -> list[dict]:
    """:func:`fit_center_subspace` for many analyses (e.g. the layers x time steps of a sweep).

    Each analysis gets exactly what :func:`fit_center_subspace` would give it with its key (to
    round-off: batched matrix products round differently). With ``batched`` (the default on
    accelerators) analyses of the same ``P`` and dtype are fitted together: all their restarts
    of a rank block are one vmapped program, so a sweep of hundreds of analyses costs a handful
    of solver runs instead of one per analysis; after the first five ranks, the analyses whose
    K search goes on are fitted together one rank at a time (in batches padded to a power of
    two, which bounds the compilations). On CPU the analyses are fitted one after the other,
    which is faster there.

    Args:
        keys: one ``jax.random.key`` per analysis (a list, or a ``(B,)`` key array).
        centers: ``B`` arrays ``(P_b, N_b)`` of manifold centres.
        K, n_reps, max_k, max_steps, gtol: as :func:`fit_center_subspace` (the same for all).
        batched: fit analyses of equal shape together (default: on accelerators only).

    Returns:
        One dict per analysis, as :func:`fit_center_subspace` returns.
    """
    keys = list(keys)
    centers = list(centers)
    if len(keys) != len(centers):
        raise ValueError(f"`keys` and `centers` must have one entry per analysis; got "
                         f"{len(keys)} keys and {len(centers)} centre arrays.")
    batched = _restarts_batched() if batched is None else bool(batched)
    if not batched:
        return [fit_center_subspace(k, c, K, n_reps=n_reps, max_k=max_k, max_steps=max_steps,
                                    gtol=gtol) for k, c in zip(keys, centers, strict=True)]
    sts = []
    for i, c in enumerate(centers):
        try:
            sts.append(_setup(c, K, max_k))
        except ValueError as e:
            raise ValueError(f"analysis {i}: {e}") from None
    groups: dict[tuple, list[int]] = {}
    for i, st in enumerate(sts):
        if st["k_last"] >= 1:
            groups.setdefault((st["X"].shape, str(st["X"].dtype)), []).append(i)
    res = [[] for _ in sts]
    fits = [[] for _ in sts]
    for (_, dts), idx in groups.items():
        gt = _gtol(jnp.dtype(dts), gtol)
        k_first = sts[idx[0]]["k_first"]  # 1 for the K search, K when fixed: the same for all

        def run(members, ks, gt=gt):
            # Pad the batch to a power of two with copies of its first member (bounded
            # compilations when the set of analyses still searching shrinks).
            pad = members + [members[0]] * ((1 << (len(members) - 1).bit_length()) - len(members))
            out = _fit_ks_many(jnp.stack([keys[i] for i in pad]),
                               jnp.stack([sts[i]["X"] for i in pad]), ks, int(n_reps),
                               int(max_steps), gt)
            for j, i in enumerate(members):
                for r, k in enumerate(ks):
                    if k <= sts[i]["k_last"]:
                        fit = tuple(o[j] for o in out[r])
                        fits[i].append(fit)
                        res[i].append(float(fit[1]))

        ks = _first_block(k_first, max(sts[i]["k_last"] for i in idx))
        run(idx, ks)
        k = ks[-1] + 1
        while True:
            going = [i for i in idx if k <= sts[i]["k_last"] and not _stops(res[i], K is None)]
            if not going:
                break
            run(going, (k,))
            k += 1
    return [_choose(st, fits[i], res[i]) for i, st in enumerate(sts)]
