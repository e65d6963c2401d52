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

:func:`lawson_hanson_lanes` solves many problems at once (one Gram matrix per group of them,
e.g. per manifold) by Lawson-Hanson active-set steps alone from the single-coordinate warm start,
gathering only the unfinished problems into each round; the anchor solver runs it first and
gives the few problems it leaves to :func:`nnls_gram`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from geomjax._types import Solution, SolverSettings

__all__ = ["nnls", "nnls_gram", "kkt_residual", "default_rtol", "lawson_hanson_lanes"]

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


def _support_solve(G, c, idx, m, ridge):
    """Least squares on a support given as slots: ``z = G_AA^{-1} c_A`` with ``A = idx[m]``
    (Cholesky of the slot matrix, unit diagonal in empty slots, plus one step of iterative
    refinement); empty slots come out zero."""
    dt = G.dtype
    mm = m[:, None] & m[None, :]
    H = jnp.where(mm, G[idx][:, idx], 0) + jnp.diag(jnp.where(m, ridge, 1).astype(dt))
    rhs = jnp.where(m, c[idx], 0)
    Lc = jnp.linalg.cholesky(H)
    z = jax.scipy.linalg.cho_solve((Lc, True), rhs)
    z = z + jax.scipy.linalg.cho_solve((Lc, True), rhs - jnp.matmul(H, z, precision=_HI))
    return jnp.where(m, z, 0)


def _cholesky_solve_small(H, rhs):
    """``H^{-1} rhs`` for a small SPD ``H`` (``(k, k)``, k a handful): Cholesky and both
    substitutions unrolled into elementwise work (batched LAPACK calls on tiny matrices cost
    more than their arithmetic), plus one step of iterative refinement."""
    k = H.shape[0]
    L = [[None] * k for _ in range(k)]
    for j in range(k):
        d = H[j, j] - sum((L[j][q] * L[j][q] for q in range(j)), jnp.zeros((), H.dtype))
        L[j][j] = jnp.sqrt(d)
        inv = 1 / L[j][j]
        for i in range(j + 1, k):
            L[i][j] = (H[i, j] - sum((L[i][q] * L[j][q] for q in range(j)),
                                     jnp.zeros((), H.dtype))) * inv

    def solve(b):
        y = []
        for i in range(k):
            y.append((b[i] - sum((L[i][q] * y[q] for q in range(i)), jnp.zeros((), H.dtype)))
                     / L[i][i])
        z = [None] * k
        for i in reversed(range(k)):
            z[i] = (y[i] - sum((L[q][i] * z[q] for q in range(i + 1, k)),
                               jnp.zeros((), H.dtype))) / L[i][i]
        return jnp.stack(z)

    z = solve(rhs)
    return z + solve(rhs - jnp.sum(H * z[None, :], axis=1))


def _lawson_hanson_round(G, grp, c, idx, m, xs, mask, tol, ridge):
    """One Lawson-Hanson step for one problem whose support is held in slots.

    The problem is ``min_{x >= 0} x^T G_grp x / 2 - c^T x`` with ``G_grp = G[grp]``; only the
    rows of ``G_grp`` on the support are read. State: slot indices ``idx``, occupied slots ``m``
    and the slot values ``xs`` of a feasible point. The least-squares solution ``z`` on the
    support is computed; if it is positive it is the new point, accepted as the answer when the
    KKT test passes, otherwise the coordinate with the most negative gradient is added to a free
    slot (forward step). If ``z`` has non-positive entries the point moves from ``xs`` towards
    ``z`` until the first coordinate reaches zero, and that coordinate leaves the support
    (backward step), as in Lawson & Hanson (1974), ch. 23. Every operation is per problem
    (elementwise, gathers, reductions over the problem's own axes), so a problem's arithmetic
    does not depend on the batch it is solved in.

    Returns ``(idx, m, xs, passed, alive, res)``: ``passed`` -- ``xs`` on ``idx[m]`` is the
    solution (KKT residual ``res`` <= tol); ``alive`` -- not passed and another round can be
    taken.
    """
    n = G.shape[-1]
    dt = G.dtype
    ps = idx.shape[0]
    rows = G[grp, idx]  # (ps, n)
    mm = m[:, None] & m[None, :]
    H = jnp.where(mm, rows[:, idx], 0) + jnp.diag(jnp.where(m, ridge, 1).astype(dt))
    z = jnp.where(m, _cholesky_solve_small(H, jnp.where(m, c[idx], 0)), 0)
    valid = jnp.all(jnp.isfinite(z))
    feasible = jnp.all(jnp.where(m, z > 0, True))
    x = jnp.zeros(n, dt).at[idx].add(z)
    g = jnp.sum(z[:, None] * rows, axis=0) - c
    res = jnp.max(jnp.where(mask, jnp.abs(jnp.minimum(x, g)), 0), initial=0)
    passed = valid & feasible & (res <= tol)
    # Forward step.
    in_sup = jnp.zeros(n, jnp.int32).at[idx].max(m.astype(jnp.int32)) > 0
    j = jnp.argmin(jnp.where(mask & ~in_sup, g, jnp.inf)).astype(idx.dtype)
    free = jnp.argmin(m)
    has_free = ~jnp.all(m)
    # Backward step: the largest step from xs towards z that keeps every coordinate >= 0.
    neg = m & (z <= 0)
    gap = xs - z
    ratio = jnp.where(neg, xs / jnp.where(gap > 0, gap, 1), jnp.inf)
    k = jnp.argmin(ratio)
    xb = xs + jnp.minimum(ratio[k], 1) * (z - xs)
    mb = m & (xb > 0) & (jnp.arange(ps) != k)
    grow = feasible & ~passed & has_free
    idx_n = jnp.where(grow, idx.at[free].set(j), idx)
    m_n = jnp.where(grow, m.at[free].set(True), jnp.where(feasible, m, mb))
    xs_n = jnp.where(feasible, z, jnp.where(mb, xb, 0))
    alive = valid & ~passed & (~feasible | has_free)
    return idx_n, m_n, xs_n, passed, alive, res


def lawson_hanson_lanes(G, c, i0, v, mask, tol, group=None, *, polish_size=8, max_rounds=16,
                        buffer=32):
    """Exact NNLS for many problems by Lawson-Hanson active-set steps from a single-coordinate
    warm start, with the unfinished problems compacted between rounds.

    Problem ``b`` is ``min_{x >= 0} x^T G_b x / 2 - c_b^T x`` with ``G_b = G[group[b]]`` (one of
    a stack of Gram matrices, e.g. one per manifold). Its warm start is ``v_b e_{i0_b}``, which
    must be optimal on that coordinate (``v = [c_k]_+ / G_kk``; the max-projection vertex of the
    anchor problem); its KKT test settles the problems solved by one coordinate (or none) at
    once. Each round then gathers the first ``buffer`` unfinished problems and takes one
    least-squares solve for each, so the later rounds cost only the problems still working.

    Args:
        G: ``(P, n, n)`` Gram matrices (or one ``(n, n)``). c: ``(B, n)`` linear terms.
        i0: ``(B,)`` int warm-start coordinates. v: ``(B,)`` their values (>= 0).
        mask: ``(P, n)`` (or ``(n,)``) bool, coordinates allowed to be non-zero.
        tol: ``(B,)`` KKT tolerances on ``||min(x, G x - c)||_inf``.
        group: ``(B,)`` int index into ``G`` (default all 0).
        polish_size: largest support handled (slots per problem).
        max_rounds: least-squares solves per problem before it is handed back unfinished.
        buffer: problems per round. A problem's arithmetic does not depend on which buffer (or
            batch) it lands in.

    Returns:
        ``(x, ok, rounds, res)``: ``(B, n)`` solutions (for problems not ``ok``, a feasible point
        on the way, a warm start for another method), ``(B,)`` bool KKT test passed, ``(B,)``
        int32 least-squares solves taken, ``(B,)`` KKT residual of the last solve (of the warm
        start if none).
    """
    G, c, i0, v, mask, tol = (jnp.asarray(a) for a in (G, c, i0, v, mask, tol))
    if G.ndim == 2:
        G = G[None]
    if mask.ndim == 1:
        mask = mask[None]
    B, n = c.shape
    dt = G.dtype
    group = jnp.zeros(B, jnp.int32) if group is None else jnp.asarray(group, jnp.int32)
    ps = max(1, min(int(polish_size), n))
    buf = max(1, min(int(buffer), B))
    ridge = jnp.finfo(dt).eps * jnp.max(jnp.abs(jnp.diagonal(G, axis1=1, axis2=2)), axis=1)
    ar = jnp.arange(B)
    i0 = i0.astype(jnp.int32)
    # The warm start and its KKT test, from one row of G per problem.
    lane_mask = mask[group]
    g0 = G[group, i0] * v[:, None] - c
    x0 = jnp.where(jnp.arange(n)[None, :] == i0[:, None], v[:, None], 0).astype(dt)
    res0 = jnp.max(jnp.where(lane_mask, jnp.abs(jnp.minimum(x0, g0)), 0), axis=1, initial=0)
    done = res0 <= tol
    j0 = jnp.argmin(jnp.where(lane_mask & (jnp.arange(n)[None, :] != i0[:, None]), g0,
                              jnp.inf), axis=1).astype(jnp.int32)
    idx = jnp.zeros((B, ps), jnp.int32).at[:, 0].set(i0)
    m = jnp.zeros((B, ps), bool).at[:, 0].set(True)
    xs = jnp.zeros((B, ps), dt).at[:, 0].set(v)
    if ps > 1:
        idx = idx.at[:, 1].set(j0)
        m = m.at[:, 1].set(jnp.sum(lane_mask, axis=1) > 1)
    alive = ~done & (ps > 1) & (max_rounds > 0)
    rounds = jnp.zeros(B, jnp.int32)
    if ps > 2 and max_rounds > 1:
        # The first least-squares solve, on {i0, j0}, in closed form for every problem at once
        # (2 x 2, with one step of refinement): it settles two-point supports and takes the
        # next forward step without the gathers of the general round. Problems whose 2 x 2
        # solution is not positive start the general rounds from the warm start instead.
        ar_n = jnp.arange(n)[None, :]
        two = m[:, 1] & alive
        Gi = G[group, i0]
        Gj = G[group, j0]
        rid = ridge[group]

        def at(a, k):
            return jnp.take_along_axis(a, k[:, None], axis=1)[:, 0]

        a, b, d = at(Gi, i0) + rid, at(Gi, j0), at(Gj, j0) + rid
        ci, cj = at(c, i0), at(c, j0)
        det = a * d - b * b
        zi = (d * ci - b * cj) / det
        zj = (a * cj - b * ci) / det
        ri, rj = ci - (a * zi + b * zj), cj - (b * zi + d * zj)
        zi = zi + (d * ri - b * rj) / det
        zj = zj + (a * rj - b * ri) / det
        pos = two & (zi > 0) & (zj > 0) & jnp.isfinite(zi) & jnp.isfinite(zj)
        g1 = zi[:, None] * Gi + zj[:, None] * Gj - c
        x1 = jnp.where(ar_n == i0[:, None], zi[:, None], jnp.where(ar_n == j0[:, None],
                                                                   zj[:, None], 0))
        res1 = jnp.max(jnp.where(lane_mask, jnp.abs(jnp.minimum(x1, g1)), 0), axis=1,
                       initial=0)
        passed = pos & (res1 <= tol)
        grow = pos & ~passed
        j1 = jnp.argmin(jnp.where(lane_mask & (ar_n != i0[:, None]) & (ar_n != j0[:, None]),
                                  g1, jnp.inf), axis=1).astype(jnp.int32)
        idx = idx.at[:, 2].set(jnp.where(grow, j1, 0))
        m = m.at[:, 2].set(grow)
        xs = xs.at[:, 0].set(jnp.where(pos, zi, v)).at[:, 1].set(jnp.where(pos, zj, 0))
        done = done | passed
        rounds = pos.astype(jnp.int32)
        res0 = jnp.where(pos, res1, res0)
        alive = alive & ~passed

    def cond(st):
        return jnp.any(st[4])

    def body(st):
        idx, m, xs, done, alive, rounds, res = st
        pos = jnp.cumsum(alive) - 1
        slot = jnp.where(alive & (pos < buf), pos, buf)
        bi = jnp.zeros(buf, ar.dtype).at[slot].set(ar, mode="drop")
        valid = jnp.zeros(buf, bool).at[slot].set(True, mode="drop")
        gb = group[bi]
        out = jax.vmap(lambda gg, cc, ii, mm, xx, mk, tt, rr: _lawson_hanson_round(
            G, gg, cc, ii, mm, xx, mk, tt, rr))(gb, c[bi], idx[bi], m[bi], xs[bi], mask[gb],
                                                tol[bi], ridge[gb])
        i_n, m_n, x_n, p_n, a_n, res_n = out
        dest = jnp.where(valid, bi, B)
        r_n = rounds[bi] + 1
        idx = idx.at[dest].set(i_n, mode="drop")
        m = m.at[dest].set(m_n, mode="drop")
        xs = xs.at[dest].set(x_n, mode="drop")
        done = done.at[dest].set(p_n, mode="drop")
        alive = alive.at[dest].set(a_n & (r_n < max_rounds), mode="drop")
        rounds = rounds.at[dest].set(r_n, mode="drop")
        res = res.at[dest].set(res_n, mode="drop")
        return idx, m, xs, done, alive, rounds, res

    idx, m, xs, done, _, rounds, res = lax.while_loop(
        cond, body, (idx, m, xs, done, alive, rounds, res0))
    x = jax.vmap(lambda ii, mm, xx: jnp.zeros(n, dt).at[ii].add(jnp.where(mm, xx, 0)))(idx, m, xs)
    return x, done, rounds, res


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
        z = _support_solve(G, c, idx, m, ridge)
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
