"""Batched non-negative least squares: FISTA on the dual with an active-set polish.

The anchor-point QP of mean-field manifold analysis (Chung, Lee & Sompolinsky, PRX 2018, §IIIa)
is, in its dual, a non-negative least-squares problem
(see :func:`geomjax.manifold.anchor_geometry`)::

    x* = argmin_{x >= 0} 1/2 ||A x - b||^2  =  argmin_{x >= 0} 1/2 x^T G x - c^T x,
    G = A^T A,  c = A^T b.

The solver works on the Gram form ``(G, c)``. One problem is one right-hand side; batches are
``jax.vmap`` over ``c`` (with ``G`` unbatched, the Gram matrix, its largest eigenvalue and the
matrix products are shared, so a vmap over right-hand sides runs as matrix-matrix products).

Algorithm (per problem):

1. **Warm start** at the best single coordinate ``k = argmax_i c_i``, ``x0 = [c_k]_+ / G_kk e_k``
   (for the anchor problem this is the max-projection vertex; it is exact for interior and
   single-vertex samples).
2. **FISTA** (projected gradient with Nesterov momentum) with step ``1/L``, ``L = lambda_max(G)``,
   and the gradient-based adaptive restart of O'Donoghue & Candes (2015): momentum is reset when
   ``(y - x_new) . (x_new - x) > 0``.
3. Every ``check_every`` steps an **active-set polish**: least squares on the support of the
   iterate (a small Cholesky solve on at most ``polish_size`` coordinates), followed by up to
   ``polish_rounds - 1`` Lawson-Hanson steps (drop coordinates that came out negative, or add the
   coordinate with the most negative gradient). The polished point is accepted only if it is
   feasible and passes the KKT test; it is then exact to round-off. Otherwise the FISTA iterate
   is kept and iteration continues.
4. **Stop** on the natural (KKT) residual
   ``r(x) = ||min(x, G x - c)||_inf <= atol + rtol ||c||_inf`` inside a ``lax.while_loop``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from geomjax._types import Solution, SolverSettings

__all__ = ["nnls", "nnls_gram", "kkt_residual", "default_rtol"]

_HI = lax.Precision.HIGHEST


def default_rtol(dtype) -> float:
    """Default relative KKT tolerance: 1e-10 in float64, 1e-4 in float32/lower."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-4


def kkt_residual(G, c, x, mask=None):
    """Natural residual ``||min(x, G x - c)||_inf`` of ``min_{x>=0} x^T G x / 2 - c^T x``.

    Zero exactly at the solution; coordinates outside ``mask`` (fixed at zero) are ignored.
    """
    g = jnp.matmul(G, x, precision=_HI) - c
    r = jnp.abs(jnp.minimum(x, g))
    if mask is not None:
        r = jnp.where(mask, r, 0)
    return jnp.max(r, initial=0)


def _polish(G, c, x, mask, L, tol, polish_size, polish_rounds, exact_start=False):
    """Least squares on the support of ``x`` plus Lawson-Hanson forward steps.

    ``exact_start``: ``x`` is already the least-squares solution on its support (e.g. the
    single-coordinate warm start), so the first round adds a coordinate instead of re-solving.
    Returns ``(x_polished, ok)``; ``ok`` means feasible, finite and KKT residual <= tol.
    """
    n = G.shape[0]
    dt = G.dtype
    eps = jnp.finfo(dt).eps
    # A tiny ridge keeps the Cholesky defined when the support is rank-deficient (duplicate
    # points); its bias is O(eps) and the KKT test decides acceptance.
    ridge = eps * jnp.max(jnp.abs(jnp.diagonal(G)))
    # Identify the support: drop coordinates that a projected-gradient step would zero.
    g0 = jnp.matmul(G, x, precision=_HI) - c
    support = (x > 0) & (x * L > g0) & mask
    # Compact the support into `polish_size` slots (cumulative-sum scatter, cheaper than a
    # sort); a larger support cannot be polished and leaves the iterate to FISTA.
    pos = jnp.cumsum(support) - 1
    slot = jnp.where(support & (pos < polish_size), pos, polish_size)
    idx = jnp.zeros(polish_size, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32),
                                                         mode="drop")
    m = jnp.zeros(polish_size, bool).at[slot].set(True, mode="drop")
    fits = jnp.sum(support) <= polish_size

    def solve(idx, m):
        mm = m[:, None] & m[None, :]
        H = jnp.where(mm, G[idx][:, idx], 0) + jnp.diag(jnp.where(m, ridge, 1).astype(dt))
        rhs = jnp.where(m, c[idx], 0)
        Lc = jnp.linalg.cholesky(H)
        z = jax.scipy.linalg.cho_solve((Lc, True), rhs)
        # One step of iterative refinement.
        z = z + jax.scipy.linalg.cho_solve((Lc, True), rhs - jnp.matmul(H, z, precision=_HI))
        z = jnp.where(m, z, 0)
        xp = jnp.zeros(n, dt).at[idx].add(z)
        return xp, z, jnp.all(jnp.isfinite(z)), jnp.all(z >= 0)

    def cond(carry):
        return carry[4] & (carry[5] < polish_rounds)

    def body(carry):
        xp, idx, m, ok, alive, r = carry
        xn, z, valid, nonneg = solve(idx, m)
        g = jnp.matmul(G, xn, precision=_HI) - c
        res = jnp.max(jnp.where(mask, jnp.abs(jnp.minimum(xn, g)), 0), initial=0)
        passed = alive & valid & nonneg & (res <= tol)
        xp = jnp.where(passed, xn, xp)
        ok = ok | passed
        # Infeasible: drop the coordinates that came out negative (backward step). Feasible but
        # not optimal: add the most violating coordinate to a free slot (forward step).
        in_sup = jnp.zeros(n, jnp.int32).at[idx].max(m.astype(jnp.int32)) > 0
        j = jnp.argmin(jnp.where(mask & ~in_sup, g, jnp.inf)).astype(jnp.int32)
        free = jnp.argmin(m)
        has_free = ~jnp.all(m)
        idx_f = jnp.where(nonneg, idx.at[free].set(j), idx)
        m_f = jnp.where(nonneg, m.at[free].set(True), m & (z > 0))
        alive = alive & valid & ~ok & (has_free | ~nonneg)
        return xp, idx_f, m_f, ok, alive, r + 1

    if exact_start:
        # The forward step of the loop body, taken from x itself (feasible and optimal on its
        # support): add the most violating coordinate.
        g = jnp.matmul(G, x, precision=_HI) - c
        in_sup = jnp.zeros(n, jnp.int32).at[idx].max(m.astype(jnp.int32)) > 0
        j = jnp.argmin(jnp.where(mask & ~in_sup, g, jnp.inf)).astype(jnp.int32)
        free = jnp.argmin(m)
        fits = fits & ~jnp.all(m)
        idx, m = idx.at[free].set(j), m.at[free].set(True)
    init = (x, idx, m, jnp.asarray(False), fits, jnp.asarray(0))
    xp, _, _, ok, _, _ = lax.while_loop(cond, body, init)
    return xp, ok


@functools.partial(
    jax.jit,
    static_argnames=("max_steps", "check_every", "polish", "polish_size", "polish_rounds",
                     "exact_start"),
)
def _nnls_gram_core(G, c, x0, mask, L, rtol, atol, max_steps, check_every, polish, polish_size,
                    polish_rounds, exact_start=False):
    dt = G.dtype
    scale = jnp.max(jnp.where(mask, jnp.abs(c), 0), initial=0)
    tol = atol + rtol * scale
    inv_L = 1 / L

    def res_of(x):
        return kkt_residual(G, c, x, mask)

    def fista_step(state):
        x, x_prev, theta = state
        theta_new = (1 + jnp.sqrt(1 + 4 * theta * theta)) / 2
        beta = (theta - 1) / theta_new
        y = x + beta * (x - x_prev)
        grad = jnp.matmul(G, y, precision=_HI) - c
        x_new = jnp.where(mask, jnp.maximum(y - inv_L * grad, 0), 0)
        restart = jnp.vdot(y - x_new, x_new - x) > 0
        theta_new = jnp.where(restart, jnp.ones_like(theta_new), theta_new)
        x_prev_new = jnp.where(restart, x_new, x)
        return x_new, x_prev_new, theta_new

    def try_polish(x, done, exact=False):
        if not polish:
            return x, done
        xp, ok = _polish(G, c, x, mask, L, tol, polish_size, polish_rounds, exact)
        return jnp.where(ok & ~done, xp, x), done | ok

    x0 = jnp.where(mask, x0, 0)
    r0 = res_of(x0)
    done0 = r0 <= tol
    x0, done0 = try_polish(x0, done0, exact_start)
    r0 = res_of(x0)

    def cond(s):
        _, _, _, k, _, done = s
        return (~done) & (k < max_steps)

    def body(s):
        x, x_prev, theta, k, _, _ = s
        x, x_prev, theta = lax.fori_loop(
            0, check_every, lambda _, st: fista_step(st), (x, x_prev, theta)
        )
        k = k + check_every
        r = res_of(x)
        done = r <= tol
        xp, done = try_polish(x, done)
        # A polished point restarts the momentum from itself.
        moved = jnp.any(xp != x)
        x_prev = jnp.where(moved, xp, x_prev)
        theta = jnp.where(moved, jnp.ones_like(theta), theta)
        return xp, x_prev, theta, k, res_of(xp), done

    init = (x0, x0, jnp.asarray(1, dt), jnp.asarray(0, jnp.int32), r0, done0)
    x, _, _, k, r, done = lax.while_loop(cond, body, init)
    return x, r <= tol, k, r


def nnls_gram(
    G,
    c,
    *,
    x0=None,
    mask=None,
    lipschitz=None,
    rtol: float | None = None,
    atol: float = 0.0,
    max_steps: int = 10_000,
    check_every: int = 10,
    polish: bool = True,
    polish_size: int | None = None,
    polish_rounds: int = 8,
    exact_start: bool = False,
    strict: bool = False,
) -> Solution:
    """Solve ``min_{x >= 0} 1/2 x^T G x - c^T x`` for one right-hand side (vmap for batches).

    Args:
        G: ``(n, n)`` symmetric positive semi-definite Gram matrix ``A^T A``.
        c: ``(n,)`` linear term ``A^T b``.
        x0: optional ``(n,)`` non-negative warm start; default is the best single coordinate
            ``[c_k]_+ / G_kk e_k`` with ``k = argmax c`` (the max-projection vertex).
        mask: optional ``(n,)`` bool; coordinates outside it are fixed at zero (padding).
        lipschitz: optional step constant ``L >= lambda_max(G)``; default ``eigvalsh(G)[-1]``.
        rtol, atol: KKT stopping test ``||min(x, G x - c)||_inf <= atol + rtol ||c||_inf``;
            ``rtol`` defaults to 1e-10 (float64) or 1e-4 (float32).
        max_steps: FISTA step budget.
        check_every: FISTA steps between residual checks / polish attempts.
        polish: run the active-set polish (makes the answer exact to round-off).
        polish_size: largest support the polish handles (default ``min(n, 8)``); larger
            supports fall back to FISTA.
        polish_rounds: least-squares solves per polish (1 + Lawson-Hanson forward steps).
        exact_start: ``x0`` is the exact least-squares solution on its own support (true for
            the default single-coordinate start); the first polish then begins with a forward
            step instead of re-solving on that support.
        strict: raise :class:`geomjax._types.NotConvergedError` if unconverged (eager calls only).

    Returns:
        :class:`geomjax._types.Solution` with ``value`` = ``x``, ``converged``, ``num_steps``
        (FISTA steps; 0 when the warm start or its polish was already optimal) and ``residual``
        (the KKT residual above). Follows the dtype of ``G``/``c``.
    """
    G = jnp.asarray(G)
    c = jnp.asarray(c)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"`G` must be a square (n, n) Gram matrix; got shape {tuple(G.shape)}.")
    if c.ndim != 1 or c.shape[0] != G.shape[0]:
        raise ValueError(
            f"`c` must have shape ({G.shape[0]},) to match `G`; got {tuple(c.shape)}. "
            "Use jax.vmap over right-hand sides for batches."
        )
    if G.shape[0] == 0:
        raise ValueError("`G` is empty (n=0); NNLS needs at least one coordinate.")
    dt = jnp.result_type(G.dtype, c.dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    G, c = G.astype(dt), c.astype(dt)
    n = G.shape[0]
    if mask is None:
        mask = jnp.ones(n, bool)
    else:
        mask = jnp.asarray(mask, bool)
        if mask.shape != (n,):
            raise ValueError(f"`mask` must have shape ({n},); got {tuple(mask.shape)}.")
    if x0 is None:
        cm = jnp.where(mask, c, -jnp.inf)
        k = jnp.argmax(cm)
        diag = jnp.diagonal(G)
        val = jnp.where(diag[k] > 0, jnp.maximum(c[k], 0) / jnp.where(diag[k] > 0, diag[k], 1), 0)
        x0 = jnp.zeros(n, dt).at[k].set(val)
    else:
        x0 = jnp.maximum(jnp.asarray(x0, dt), 0)
    if lipschitz is None:
        lipschitz = jnp.linalg.eigvalsh(jnp.where(mask[:, None] & mask[None, :], G, 0))[-1]
    L = jnp.maximum(jnp.asarray(lipschitz, dt), jnp.finfo(dt).tiny)
    rtol = default_rtol(dt) if rtol is None else rtol
    ps = min(n, 8) if polish_size is None else max(1, min(int(polish_size), n))
    if max_steps < 0 or check_every < 1:
        raise ValueError(
            f"`max_steps` must be >= 0 and `check_every` >= 1; got {max_steps}, {check_every}."
        )
    x, conv, k, r = _nnls_gram_core(
        G, c, x0, mask, L, jnp.asarray(rtol, dt), jnp.asarray(atol, dt), int(max_steps),
        int(check_every), bool(polish), ps, int(polish_rounds), bool(exact_start),
    )
    sol = Solution(
        value=x,
        converged=conv,
        num_steps=k,
        residual=r,
        settings=SolverSettings(rtol=float(rtol), atol=float(atol), max_steps=int(max_steps),
                                method="fista+polish" if polish else "fista"),
    )
    if strict:
        if isinstance(conv, jax.core.Tracer):
            raise ValueError("`strict=True` needs an eager call; check `converged` under jit/vmap.")
        sol.raise_if_unconverged("nnls")
    return sol


def nnls(A, b, **kwargs) -> Solution:
    """Non-negative least squares ``min_{x >= 0} ||A x - b||_2`` for one right-hand side.

    Forms ``G = A^T A`` and ``c = A^T b`` (``precision=HIGHEST``) and calls :func:`nnls_gram`; all
    keyword arguments are passed on. ``vmap`` over ``b`` batches right-hand sides sharing ``A``.

    Args:
        A: ``(m, n)`` matrix.
        b: ``(m,)`` target.

    Returns:
        :class:`geomjax._types.Solution` with ``value`` the ``(n,)`` coefficients.
    """
    A = jnp.asarray(A)
    b = jnp.asarray(b)
    if A.ndim != 2:
        raise ValueError(f"`A` must be a matrix (m, n); got shape {tuple(A.shape)}.")
    if b.ndim != 1 or b.shape[0] != A.shape[0]:
        raise ValueError(
            f"`b` must have shape ({A.shape[0]},) to match `A` {tuple(A.shape)}; got "
            f"{tuple(b.shape)}. Use jax.vmap over right-hand sides for batches."
        )
    G = jnp.matmul(A.T, A, precision=_HI)
    c = jnp.matmul(A.T, b, precision=_HI)
    return nnls_gram(G, c, **kwargs)
