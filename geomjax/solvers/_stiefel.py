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
from jax import lax

from geomjax._types import Solution, SolverSettings

__all__ = ["stiefel_minimize", "random_stiefel"]

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
    V0 = jnp.asarray(V0)
    if V0.ndim != 2 or V0.shape[1] > V0.shape[0]:
        raise ValueError(f"`V0` must be (n, k) with k <= n; got shape {tuple(V0.shape)}.")
    if not jnp.issubdtype(V0.dtype, jnp.floating):
        V0 = V0.astype(jnp.result_type(float))
    dt = V0.dtype
    f64 = jnp.finfo(dt).bits >= 64
    gtol = (1e-6 if f64 else 1e-3) if gtol is None else gtol
    ftol = 0.0 if ftol is None else ftol
    V, f, k, gn = _stiefel_core(cost, V0, tuple(args), jnp.asarray(gtol, dt),
                                jnp.asarray(ftol, dt), int(max_steps), int(max_backtracks))
    sol = Solution(
        value=V, converged=gn <= gtol, num_steps=k, residual=gn,
        settings=SolverSettings(rtol=0.0, atol=float(gtol), max_steps=int(max_steps),
                                method="stiefel-rgd-bb-polar"),
    )
    if strict:
        if isinstance(gn, jax.core.Tracer):
            raise ValueError("`strict=True` needs an eager call; check `converged` under jit/vmap.")
        sol.raise_if_unconverged("stiefel_minimize")
    return sol, f
