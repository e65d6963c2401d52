"""Optimisation on the Stiefel manifold ``St(n, k) = {V in R^{n x k} : V^T V = I_k}``.

Riemannian gradient descent (Absil, Mahony & Sepulchre 2008, ch. 4) with Barzilai-Borwein step
sizes and non-monotone Armijo backtracking (Zhang & Hager 2004), as in Wen & Yin (2013,
``OptStiefelGBB``), but with the polar retraction ``R_V(-tau xi) = polar(V - tau xi)`` instead
of the Cayley transform, computed from the ``k x k`` Gram ``Y^T Y = I + tau^2 xi^T xi`` by one
tiny ``eigh`` (cheap for the few-column problems it is used on, which are dispatch-bound on
CPU). The Euclidean gradient ``G`` comes from
``jax.grad``; the Riemannian gradient for the embedded metric is ``xi = G - V sym(V^T G)`` and
convergence is ``||xi||_F <= gtol`` (pymanopt's criterion). Columns of ``V`` that are exactly zero
and on which the cost does not depend stay zero, which lets callers pad ``k`` to a fixed width.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg
from jax import lax

from geomjax._types import Solution, SolverSettings

__all__ = ["stiefel_minimize", "stiefel_lbfgs", "random_stiefel"]

_HI = lax.Precision.HIGHEST


def random_stiefel(key, n: int, k: int, dtype=jnp.float32):
    """A random point of ``St(n, k)``: Q factor of an ``n x k`` Gaussian matrix (Haar measure)."""
    if k > n:
        raise ValueError(f"Stiefel St(n, k) needs k <= n; got n={n}, k={k}.")
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, k), dtype))
    return q * jnp.where(jnp.diagonal(r) < 0, -1, 1).astype(dtype)


def _rgrad(V, G):
    s = jnp.matmul(V.T, G, precision=_HI)
    return G - jnp.matmul(V, (s + s.T) / 2, precision=_HI)


def _polar_factor(Y):
    """``polar(Y) = Y (Y^T Y)^{-1/2}`` from the eigendecomposition of the small ``k x k`` Gram.

    Exactly-zero columns of ``Y`` stay zero (their Gram entries are replaced by the identity).
    """
    if Y.shape[1] == 1:  # one column: the polar factor is the normalised column
        n2 = jnp.sum(Y * Y)
        return jnp.where(n2 > 0, Y / jnp.sqrt(jnp.where(n2 > 0, n2, 1)), 0).astype(Y.dtype)
    M = jnp.matmul(Y.T, Y, precision=_HI)
    d = jnp.diagonal(M)
    zero = d == 0
    M = M + jnp.diag(zero.astype(Y.dtype))
    w, Q = jnp.linalg.eigh(M)
    # For a tangent step the eigenvalues are >= ~1 (see _polar_retract); clip for safety.
    w = jnp.maximum(w, jnp.finfo(Y.dtype).tiny)
    out = jnp.matmul(Y, jnp.matmul(Q / jnp.sqrt(w), Q.T, precision=_HI), precision=_HI)
    return jnp.where(zero, 0, out).astype(Y.dtype)


def _polar_retract(V, xi, tau):
    """``polar(V - tau xi)``: the orthonormal polar factor of the step (zero columns stay zero).

    For a tangent ``xi`` (``V^T xi`` skew) ``Y = V - tau xi`` has ``Y^T Y = I + tau^2 xi^T xi``,
    well conditioned, so the ``k x k`` inverse square root by ``eigh`` is exact to round-off (the
    problems here have ``k`` of a few columns: one tiny eigendecomposition per trial step is
    cheaper than matmul-only Newton-Schulz iterations).
    """
    return _polar_factor(V - tau * xi)


@functools.partial(jax.jit, static_argnames=("cost", "max_steps", "max_backtracks"))
def _stiefel_core(cost, V0, args, gtol, ftol, max_steps, max_backtracks):
    vg = jax.value_and_grad(cost)
    dt = V0.dtype
    f0, G0 = vg(V0, *args)

    def cond(s):
        V, f, G, xi, tau, k, gn, stall, Cr, Q = s
        return (gn > gtol) & (k < max_steps) & (stall < 5)

    def body(s):
        V, f, G, xi, tau, k, gn, stall, Cr, Q = s
        xin = jnp.sqrt(jnp.sum(xi * xi))
        deriv = -xin * xin

        def bt_cond(b):
            t, Y, fy, Gy, j = b
            return (fy > Cr + 1e-4 * t * deriv) & (j < max_backtracks)

        def bt_body(b):
            t, _, _, _, j = b
            t = t * 0.2
            Y = _polar_retract(V, xi, t)
            fy, Gy = vg(Y, *args)
            return t, Y, fy, Gy, j + 1

        Y = _polar_retract(V, xi, tau)
        fy, Gy = vg(Y, *args)
        t, Y, fy, Gy, _ = lax.while_loop(bt_cond, bt_body, (tau, Y, fy, Gy, 0))
        accept = fy <= Cr
        Y = jnp.where(accept, Y, V)
        fy = jnp.where(accept, fy, f)
        Gy = jnp.where(accept, Gy, G)
        xiy = jnp.where(accept, _rgrad(Y, Gy), xi)
        # Barzilai-Borwein step for the next iteration (alternating long/short forms).
        Sd = Y - V
        Yd = xiy - xi
        sy = jnp.abs(jnp.sum(Sd * Yd))
        bb = jnp.where(
            k % 2 == 0, jnp.sum(Sd * Sd) / jnp.maximum(sy, 1e-300), sy / jnp.maximum(
                jnp.sum(Yd * Yd), 1e-300)
        )
        tau_new = jnp.where(jnp.isfinite(bb) & (bb > 0), jnp.clip(bb, 1e-10, 1e10), t)
        tau_new = jnp.where(accept, tau_new, t * 0.2).astype(dt)
        rel = jnp.abs(f - fy) / (1 + jnp.abs(f))
        stall = jnp.where(rel <= ftol, stall + 1, 0)
        gn = jnp.linalg.norm(xiy)
        # Non-monotone reference value of Zhang & Hager (2004), eta = 0.85, as in Wen & Yin.
        Qn = 0.85 * Q + 1
        Cr = (0.85 * Q * Cr + fy) / Qn
        return Y, fy, Gy, xiy, tau_new, k + 1, gn, stall, Cr, Qn

    xi0 = _rgrad(V0, G0)
    gn0 = jnp.linalg.norm(xi0)
    init = (V0, f0, G0, xi0, jnp.asarray(1e-3, dt), jnp.asarray(0, jnp.int32), gn0, jnp.asarray(0),
            f0, jnp.asarray(1, dt))
    V, f, _, _, _, k, gn, *_ = lax.while_loop(cond, body, init)
    return V, f, k, gn


def stiefel_minimize(
    cost: Callable,
    V0,
    *args,
    gtol: float | None = None,
    ftol: float | None = None,
    max_steps: int = 1000,
    max_backtracks: int = 30,
    strict: bool = False,
) -> tuple[Solution, jax.Array]:
    """Minimise ``cost(V, *args)`` over ``V^T V = I`` from ``V0`` (vmap over ``V0`` for restarts).

    Args:
        cost: scalar function of ``V`` (and ``args``) differentiable by ``jax.grad``; must be a
            hashable callable (a module-level function), it is a static argument.
        V0: ``(n, k)`` starting point with orthonormal columns (see :func:`random_stiefel`).
        *args: extra array arguments of ``cost``.
        gtol: stop when the Riemannian gradient norm ``||G - V sym(V^T G)||_F <= gtol``
            (default 1e-6 in float64, 1e-3 in float32).
        ftol: stop after 5 consecutive steps with relative cost change ``<= ftol`` (default 0:
            only when no step decreases the cost any more, i.e. at the round-off floor); such a
            stop counts as converged only if the gradient test also passes.
        max_steps: iteration budget.
        max_backtracks: Armijo backtracking steps per iteration.
        strict: raise if unconverged (eager calls only).

    Returns:
        ``(solution, cost_value)``: :class:`geomjax._types.Solution` with ``value`` the optimum
        ``V``, ``residual`` the Riemannian gradient norm; and the final cost.
    """
    V0, gtol = _start(V0, gtol)
    dt = V0.dtype
    ftol = 0.0 if ftol is None else ftol
    V, f, k, gn = _stiefel_core(cost, V0, tuple(args), jnp.asarray(gtol, dt),
                                jnp.asarray(ftol, dt), int(max_steps), int(max_backtracks))
    return _finish(V, k, gn, gtol, max_steps, "stiefel-rgd-bb-polar", strict,
                   "stiefel_minimize"), f


def _start(V0, gtol):
    """Validated starting point (floating dtype) and the default gradient tolerance
    (1e-6 in float64, 1e-3 in float32)."""
    V0 = jnp.asarray(V0)
    if V0.ndim != 2 or V0.shape[1] > V0.shape[0]:
        raise ValueError(f"`V0` must be (n, k) with k <= n; got shape {tuple(V0.shape)}.")
    if not jnp.issubdtype(V0.dtype, jnp.floating):
        V0 = V0.astype(jnp.result_type(float))
    f64 = jnp.finfo(V0.dtype).bits >= 64
    return V0, ((1e-6 if f64 else 1e-3) if gtol is None else gtol)


def _finish(V, k, gn, gtol, max_steps, method, strict, name):
    """The shared result type of the Stiefel solvers; ``strict`` raises if unconverged."""
    sol = Solution(
        value=V, converged=gn <= gtol, num_steps=k, residual=gn,
        settings=SolverSettings(rtol=0.0, atol=float(gtol), max_steps=int(max_steps),
                                method=method),
    )
    if strict:
        if isinstance(gn, jax.core.Tracer):
            raise ValueError("`strict=True` needs an eager call; check `converged` under jit/vmap.")
        sol.raise_if_unconverged(name)
    return sol


def _qf(Y):
    """Q factor with positive ``diag(R)`` of the few columns of ``Y`` (the ``qf`` retraction of
    Absil et al. 2008, ex. 4.1.3, applied to ``V + eta``).

    Up to 6 columns: modified Gram-Schmidt unrolled over the columns (a handful of fused vector
    operations; on CPU several times cheaper than a LAPACK QR or a Cholesky and triangular solve
    for these sizes). Beyond: Cholesky-QR of the well-conditioned Gram ``I + eta^T eta``.
    Exactly-zero columns stay zero.
    """
    k = Y.shape[1]
    if k <= 6:
        cols = []
        for j in range(k):
            v = Y[:, j]
            for q in cols:
                v = v - jnp.dot(q, v, precision=_HI) * q
            n2 = jnp.dot(v, v, precision=_HI)
            cols.append(jnp.where(n2 > 0, v / jnp.sqrt(jnp.where(n2 > 0, n2, 1)), 0))
        return jnp.stack(cols, axis=1).astype(Y.dtype)
    M = jnp.matmul(Y.T, Y, precision=_HI)
    zero = jnp.diagonal(M) == 0
    L = jnp.linalg.cholesky(M + jnp.diag(zero.astype(Y.dtype)))
    Q = jax.scipy.linalg.solve_triangular(L, Y.T, lower=True).T
    return jnp.where(zero, 0, Q).astype(Y.dtype)


def _sym(A):
    return (A + A.T) / 2


@functools.partial(jax.jit, static_argnames=("cost", "memory", "max_steps", "max_backtracks",
                                             "invariant"))
def _lbfgs_core(cost, V0, args, gtol, memory, max_steps, max_backtracks, invariant=False):
    vg = jax.value_and_grad(cost)
    dt = V0.dtype
    n, k = V0.shape
    m = memory
    f0, G0 = vg(V0, *args)
    xi0 = _rgrad(V0, G0)
    gn0 = jnp.linalg.norm(xi0)

    def direction(xi, S, Yb, rho, gam):
        # L-BFGS two-loop recursion on flattened pairs (newest first; empty slots have rho = 0).
        q, a = xi.reshape(-1), []
        for i in range(m):
            a.append(rho[i] * jnp.dot(S[i], q, precision=_HI))
            q = q - a[i] * Yb[i]
        r = gam * q
        for i in reversed(range(m)):
            r = r + (a[i] - rho[i] * jnp.dot(Yb[i], r, precision=_HI)) * S[i]
        return r.reshape(n, k)

    def cond(s):
        return (s[6] > gtol) & (s[7] < max_steps) & ~s[9]

    def body(s):
        V, f, xi, S, Yb, rho, gn, it, nev, _, gam = s
        r = direction(xi, S, Yb, rho, gam)
        if invariant:
            # The pairs are tangent vectors at earlier points, so r is tangent up to a small
            # V sym(V^T r) part, which moves the span only at second order (qf(V + t V S) =
            # V qf(I + t S) spans V); the slope <d, xi> stays exact since V^T xi = 0 here.
            d = -r
        else:
            d = jnp.matmul(V, _sym(jnp.matmul(V.T, r, precision=_HI)), precision=_HI) - r
        slope = jnp.sum(d * xi)
        bad = ~(slope < 0)  # not a descent direction (stale pairs, round-off): steepest descent
        d = jnp.where(bad, -gam * xi, d)
        slope = jnp.where(bad, -gam * gn * gn, slope)

        # Armijo test, with the cost's round-off as slack: near the optimum the decrease of a
        # step that still shrinks the gradient can be below the cost's resolution.
        floor = 4 * jnp.finfo(dt).eps * jnp.abs(f)

        def bt_cond(b):
            t, _, fy, _, j = b
            return ~(fy <= f + 1e-4 * t * slope + floor) & (j < max_backtracks)

        def bt_body(b):
            t, _, fy, _, j = b
            # Minimiser of the quadratic through f, slope and f(t), kept in [0.1 t, 0.5 t].
            den = 2 * (fy - f - slope * t)
            tq = jnp.where(jnp.isfinite(fy) & (den > 0),
                           -slope * t * t / jnp.where(den > 0, den, 1), 0.1 * t)
            t = jnp.clip(tq, 0.1 * t, 0.5 * t)
            Y = _qf(V + t * d)
            fy, Gy = vg(Y, *args)
            return t, Y, fy, Gy, j + 1

        Y = _qf(V + d)
        fy, Gy = vg(Y, *args)
        t, Y, fy, Gy, nb = lax.while_loop(bt_cond, bt_body, (jnp.asarray(1.0, dt), Y, fy, Gy, 0))
        fail = ~(fy <= f + 1e-4 * t * slope + floor)  # no decrease left
        # Riemannian gradient at Y and the curvature pair moved into Y's tangent space (vector
        # transport by projection), the three projections in two matrix products.
        W = jnp.matmul(Y.T, jnp.concatenate([Gy, t * d, xi], axis=1), precision=_HI)
        Pr = jnp.matmul(Y, jnp.concatenate([_sym(W[:, :k]), _sym(W[:, k:2 * k]),
                                            _sym(W[:, 2 * k:])], axis=1), precision=_HI)
        xiy = Gy - Pr[:, :k]
        sv = (t * d - Pr[:, k:2 * k]).reshape(-1)
        yv = (xiy - xi + Pr[:, 2 * k:]).reshape(-1)
        sy = jnp.dot(sv, yv, precision=_HI)
        yy = jnp.dot(yv, yv, precision=_HI)
        ss = jnp.dot(sv, sv, precision=_HI)
        ok = ~fail & (sy > jnp.sqrt(jnp.finfo(dt).eps) * jnp.sqrt(ss * yy))
        S = jnp.where(ok, jnp.concatenate([sv[None], S[:-1]]), S)
        Yb = jnp.where(ok, jnp.concatenate([yv[None], Yb[:-1]]), Yb)
        rho = jnp.where(ok, jnp.concatenate([(1 / jnp.where(ok, sy, 1))[None], rho[:-1]]), rho)
        gam = jnp.where(ok, sy / jnp.maximum(yy, jnp.finfo(dt).tiny), gam)
        Y = jnp.where(fail, V, Y)
        fy = jnp.where(fail, f, fy)
        xiy = jnp.where(fail, xi, xiy)
        gn = jnp.where(fail, gn, jnp.sqrt(jnp.sum(xiy * xiy)))
        return Y, fy, xiy, S, Yb, rho, gn, it + 1, nev + 1 + nb, fail, gam

    z = jnp.zeros((m, n * k), dt)
    # First step: steepest descent of length at most 1, then the quasi-Newton scale s.y / y.y.
    gam0 = (1 / jnp.maximum(gn0, 1)).astype(dt)
    init = (V0, f0, xi0, z, z, jnp.zeros((m,), dt), gn0, jnp.asarray(0, jnp.int32),
            jnp.asarray(1, jnp.int32), jnp.asarray(False), gam0)
    V, f, _, _, _, _, gn, it, nev, _, _ = lax.while_loop(cond, body, init)
    return V, f, it, gn, nev


def stiefel_lbfgs(
    cost: Callable,
    V0,
    *args,
    gtol: float | None = None,
    memory: int = 5,
    max_steps: int = 1000,
    max_backtracks: int = 30,
    invariant: bool = False,
    strict: bool = False,
) -> tuple[Solution, jax.Array]:
    """Minimise ``cost(V, *args)`` over ``V^T V = I`` by Riemannian L-BFGS (vmap over ``V0``).

    Limited-memory BFGS on the Stiefel manifold (Huang, Gallivan & Absil 2015; Ring & Wirth
    2012) in its simplest sound form: the two-loop recursion on the ``memory`` most recent
    curvature pairs ``(s, y)`` (step and gradient change, both projected onto the tangent space
    where they were formed), the result projected onto the current tangent space (falling back
    to steepest descent if it is not a descent direction), the ``qf`` retraction (Q factor of
    ``V + eta``),
    and Armijo backtracking from the unit quasi-Newton step with safeguarded quadratic
    interpolation. Pairs with too little curvature (``s.y`` not positive) are skipped. Stops when
    the Riemannian gradient norm ``||G - V sym(V^T G)||_F <= gtol`` (as :func:`stiefel_minimize`)
    or when no step decreases the cost any more (round-off floor; converged only if the gradient
    test passes).

    On the centre-correlation problem of :func:`geomjax.manifold.fit_center_subspace` it needs
    about half the iterations of the Barzilai-Borwein gradient method of
    :func:`stiefel_minimize`, with one cost-and-gradient evaluation per iteration almost always.

    Args:
        cost: scalar function of ``V`` (and ``args``) differentiable by ``jax.grad``; a hashable
            callable (a module-level function), it is a static argument.
        V0: ``(n, k)`` starting point with orthonormal columns (see :func:`random_stiefel`).
        *args: extra array arguments of ``cost``.
        gtol: Riemannian gradient tolerance (default 1e-6 in float64, 1e-3 in float32).
        memory: number of curvature pairs kept.
        max_steps: iteration budget.
        max_backtracks: backtracking steps per iteration.
        invariant: declare that the cost depends on ``V`` only through its column span
            (``cost(V Q) = cost(V)`` for orthogonal ``Q``: a Grassmann problem); the search
            direction is then used without its projection onto the tangent space (one pair of
            small matrix products less per iteration; the step's span differs at second order).
        strict: raise if unconverged (eager calls only).

    Returns:
        ``(solution, cost_value)`` as :func:`stiefel_minimize`; ``solution.settings.method`` is
        ``"stiefel-lbfgs-qf"``.
    """
    V0, gtol = _start(V0, gtol)
    if int(memory) < 1:
        raise ValueError(f"`memory` must be >= 1; got {memory}.")
    V, f, k, gn, _ = _lbfgs_core(cost, V0, tuple(args), jnp.asarray(gtol, V0.dtype), int(memory),
                                 int(max_steps), int(max_backtracks), bool(invariant))
    return _finish(V, k, gn, gtol, max_steps, "stiefel-lbfgs-qf", strict, "stiefel_lbfgs"), f

