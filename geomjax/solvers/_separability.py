"""Linear separability with a bias, decided with a certificate either way.

Points ``x_j`` (rows of ``points``) with labels ``y_j = +-1`` are *strictly* separable by a
hyperplane with bias iff some ``(w, b)`` has ``y_j (w . x_j + b) > 0`` for every ``j``. With the
label-signed, bias-augmented points ``z_j = y_j (x_j, s)`` (``s > 0`` a scale for the bias
coordinate) this reads ``Z w' > 0``, and Gordan's theorem gives the alternative:

    separable  <=>  there is w' with z_j . w' > 0 for all j
    not        <=>  0 is in conv{z_j}: some lambda >= 0, sum lambda = 1, sum_j lambda_j z_j = 0.

The solver minimises the squared hinge loss with no regulariser,

    f(w') = 1/2 sum_j max(0, 1 - z_j . w')^2,

which is a convex piecewise quadratic. Its infimum is 0, attained, iff the points are separable
(any w' with all margins >= 1), and at a minimiser the slacks ``xi_j = max(0, 1 - z_j . w')``
satisfy ``grad f = -Z^T xi = 0``, so ``lambda = xi / sum(xi)`` is exactly Gordan's convex
combination at 0. Both verdicts therefore come from one problem:

* **separable** only when the current ``w'`` gives every point a positive margin larger than the
  floating-point error bound of its dot product (every sign is checked);
* **not separable** when the convex weights ``lambda`` reach
  ``||sum_j lambda_j z_j|| <= tol * max_j ||z_j||``. For any unit ``w'``,
  ``min_j z_j . w' <= (sum_j lambda_j z_j) . w'``, so this certifies that no hyperplane separates
  the points with a normalised margin above ``tol`` (exact non-separability when the residual is
  at round-off level, which Newton's method reaches once its active set is right);
* **undecided** otherwise, after ``max_steps``: flagged, never guessed.

Minimisation is the generalised (semismooth) Newton method for the L2-loss SVM (Keerthi &
DeCoste, JMLR 2005, "A modified finite Newton method for fast solution of large scale linear
SVMs"): the Hessian ``Z_A^T Z_A`` over the active set ``A = {xi > 0}`` (a small ridge keeps it
invertible), and an exact line search over the piecewise-quadratic restriction (safeguarded
Newton on its piecewise-linear derivative: exact once on the right piece, usually at the first
try). The method terminates finitely in exact arithmetic; in practice it takes 5-20 steps, each
an ``(n+1) x K x (n+1)`` product, so it vectorises well over dichotomies. Unbatched, the
Hessian is built from the gathered active rows only, or updated by the rows whose activity
changed, whichever touches fewer rows (a few hundred of thousands late in the iteration).

This is the separability check of the empirical manifold capacity alpha_SIM (Chung, Lee &
Sompolinsky, PRX 2018; Stephenson et al., NeurIPS 2019, simulated capacity), where the reference
solves a hard-margin SVM QP per dichotomy; hard-margin feasibility and the verdict here coincide.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from geomjax._types import Solution, SolverSettings, pytree_dataclass, result_dtype

__all__ = ["SeparabilityCertificate", "separability"]

_HI = lax.Precision.HIGHEST


@pytree_dataclass
class SeparabilityCertificate:
    """What :func:`separability` proved about one labelled point set.

    Attributes:
        separable: bool, a hyperplane was found and every point's sign was checked.
        decided: bool, ``separable`` or a Gordan certificate within tolerance was found; when
            False the problem is undecided (counted as not separable by callers, and flagged).
        w: ``(n,)`` normal of the last hyperplane iterate (the separating one when separable).
        b: scalar bias; the decision function is ``x . w + b``.
        margin: ``min_j y_j (x_j . w + b) / ||(w, b/s)||`` over valid points, positive iff
            separable (``s`` is the bias scale used internally).
        weights: ``(K,)`` convex weights ``lambda`` (zero on masked points), the Gordan
            certificate when not separable.
        gordan_residual: ``||sum_j lambda_j z_j|| / max_j ||z_j||``, an upper bound on the
            normalised margin any hyperplane can reach.
        scale: the bias-coordinate scale ``s`` (RMS norm of the valid points); the solver works
            with ``(w, b / s)`` and the points ``y_j (x_j, s)``.
    """

    separable: jax.Array
    decided: jax.Array
    w: jax.Array
    b: jax.Array
    margin: jax.Array
    weights: jax.Array
    gordan_residual: jax.Array
    scale: jax.Array


def _exact_line_search(m, q, valid, max_iter: int = 60):
    """Minimiser ``t >= 0`` of ``phi(t) = 1/2 sum_j max(0, 1 - m_j - t q_j)^2``.

    ``phi'(t) = -sum_j q_j max(0, 1 - m_j - t q_j)`` is non-decreasing and piecewise linear, so
    Newton's method on it lands on the root as soon as it stands on the root's linear piece
    (usually at once: the semismooth Newton step ``t = 1`` is exact when the active set does not
    change). Each iterate is safeguarded by the bracket ``[lo, hi]`` with ``phi'(lo) < 0 <=
    phi'(hi)`` (bisection, or growth by 4 while no right end is known), and ``phi'`` is evaluated
    exactly (``O(K)``, no running sums). It stops when ``|phi'|`` is at the round-off level of
    its terms or the bracket has shrunk to round-off. ``q`` must be a descent direction
    (``phi'(0) < 0``).
    """
    dt = m.dtype
    eps = jnp.finfo(dt).eps
    r = jnp.where(valid, 1.0 - m, 0.0)
    q = jnp.where(valid, q, 0.0)

    def derivs(t):
        s = jnp.maximum(r - t * q, 0.0)
        act = (s > 0).astype(dt)
        d1 = -jnp.sum(q * s)
        d2 = jnp.sum(act * q * q)
        # Round-off scale of the sum: a |phi'| below it is a root.
        tol = 8.0 * eps * jnp.sum(jnp.abs(q) * (s + jnp.abs(t * q) * act))
        return d1, d2, tol

    def cond(st):
        t, lo, hi, d1, d2, tol, k, done = st
        return (~done) & (k < max_iter)

    def body(st):
        t, lo, hi, d1, d2, tol, k, done = st
        lo = jnp.where(d1 < 0, t, lo)
        hi = jnp.where(d1 < 0, hi, t)
        newton = t - d1 / jnp.where(d2 > 0, d2, 1.0)
        ok = (d2 > 0) & (newton > lo) & (newton < hi) & jnp.isfinite(newton)
        fallback = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 4.0 * jnp.maximum(t, lo))
        t_new = jnp.where(ok, newton, fallback)
        d1n, d2n, toln = derivs(t_new)
        done = (jnp.abs(d1n) <= toln) | (hi - lo <= 4.0 * eps * jnp.abs(hi))
        return t_new, lo, hi, d1n, d2n, toln, k + 1, done

    t0 = jnp.ones((), dt)
    d1, d2, tol = derivs(t0)
    zero = jnp.zeros((), dt)
    st = (t0, zero, jnp.full((), jnp.inf, dt), d1, d2, tol, jnp.int32(0), jnp.abs(d1) <= tol)
    t, lo, hi, d1, d2, tol, k, done = lax.while_loop(cond, body, st)
    # If the budget ran out, the best bracketed point with phi' <= 0 is still a descent step.
    t = jnp.where(done, t, jnp.where(d1 <= 0, t, lo))
    return jnp.where(jnp.isfinite(t) & (t >= 0), t, 0.0)


@partial(jax.jit, static_argnames=("max_steps", "rtol", "ridge", "n_update"))
def _separability_impl(points, labels, mask, w0, *, max_steps, rtol, ridge, n_update=0,
                       point_gram=None):
    """Core solver. ``n_update > 0`` (unbatched callers) builds the active-set Hessian by the
    cheapest of: a rank update by the changed points (buffers of ``n_update`` rows and up to
    ``K / 2``), the gathered active rows (buffers of ``K / 16`` to ``K / 2``), or the full
    product, chosen by ``lax.switch``; under ``vmap`` every branch would run, so batched callers
    keep it 0 (full product).

    ``point_gram = (T, u)``, the label-free moments ``sum_j x_j x_j^T`` and ``sum_j x_j`` of the
    valid points (which a caller checking many labellings or warm starts of the same points
    computes once), gives the Hessian of the all-active set, so a first step from ``w0 = 0``
    (or one with few inactive points) updates it instead of forming it from all ``K`` rows."""
    dt = points.dtype
    eps = jnp.finfo(dt).eps
    K, n = points.shape
    mask = mask.astype(bool)
    validf = mask.astype(dt)
    sq = jnp.sum(points * points, axis=1) * validf
    n_valid = jnp.maximum(jnp.sum(validf), 1.0)
    s = jnp.sqrt(jnp.sum(sq) / n_valid)
    s = jnp.where(s > 0, s, jnp.ones((), dt))
    y = jnp.where(labels > 0, 1.0, -1.0).astype(dt) * validf
    Z = jnp.concatenate([points, jnp.full((K, 1), s, dt)], axis=1) * y[:, None]
    znorm = jnp.sqrt(sq + s * s) * validf
    zmax = jnp.max(znorm)
    # Round-off bound of a length-(n+1) dot product: a margin above it has a certain sign.
    err_scale = 4.0 * (n + 2) * eps * znorm

    def assess(w):
        m = jnp.matmul(Z, w, precision=_HI)
        wn = jnp.linalg.norm(w)
        sep = jnp.all(jnp.where(mask, m > err_scale * wn, True)) & (wn > 0)
        xi = jnp.where(mask, jnp.maximum(1.0 - m, 0.0), 0.0)
        g = -jnp.matmul(xi, Z, precision=_HI)
        sxi = jnp.sum(xi)
        res = jnp.linalg.norm(g) / jnp.where(sxi > 0, sxi * zmax, 1.0)
        res = jnp.where(sxi > 0, res, jnp.inf)
        nonsep = (~sep) & (res <= rtol)
        return m, xi, g, sep, nonsep, res

    eye = jnp.eye(n + 1, dtype=dt)

    def hessian_full(a, H_prev, a_prev):
        return jnp.matmul(Z.T, Z * a[:, None], precision=_HI)

    def hessian_compact(size):
        # Z_A^T Z_A from the (at most ``size``) active rows gathered first: the cost follows
        # the active-set size instead of K (late Newton steps keep a few hundred of 2500).
        def f(a, H_prev, a_prev):
            idx = jnp.nonzero(a > 0, size=size, fill_value=0)[0]
            ok = (jnp.arange(size) < jnp.sum(a > 0)).astype(dt)
            rows = Z[idx] * ok[:, None]
            return jnp.matmul(rows.T, rows, precision=_HI)
        return f

    def hessian_update(size):
        # Later Newton steps change the active set by a few points only: add/remove their
        # outer products to the previous Hessian instead of recomputing it.
        def f(a, H_prev, a_prev):
            changed = a != a_prev
            idx = jnp.nonzero(changed, size=size, fill_value=0)[0]
            ok = jnp.arange(size) < jnp.sum(changed)
            rows = Z[idx] * ok[:, None].astype(dt)
            sgn = (a[idx] - a_prev[idx]).astype(dt)
            return H_prev + jnp.matmul(rows.T, rows * sgn[:, None], precision=_HI)
        return f

    # Branch sizes (rows touched); the cheapest applicable branch runs (unbatched callers only).
    tiers = sorted({min(K, max(8, (K + t - 1) // t)) for t in (16, 8, 4, 2)})
    if n_update:
        branches = [hessian_update(n_update)]
        limits_upd = [n_update]
        for t in tiers:
            if t > n_update:
                branches.append(hessian_update(t))
                limits_upd.append(t)
        for t in tiers:
            branches.append(hessian_compact(t))
        branches.append(hessian_full)
        sizes_upd = jnp.asarray(limits_upd, jnp.int32)
        sizes_cmp = jnp.asarray(tiers, jnp.int32)

    def hessian(a, H_prev, a_prev):
        if not n_update:
            return hessian_full(a, H_prev, a_prev)
        n_changed = jnp.sum(a != a_prev).astype(jnp.int32)
        n_active = jnp.sum(a > 0).astype(jnp.int32)
        big = jnp.int32(2**30)
        cost_upd = jnp.where(n_changed <= sizes_upd, sizes_upd, big)
        cost_cmp = jnp.where(n_active <= sizes_cmp, sizes_cmp, big)
        costs = jnp.concatenate([cost_upd, cost_cmp, jnp.full((1,), K, jnp.int32)])
        return lax.switch(jnp.argmin(costs), branches, a, H_prev, a_prev)

    def cond(state):
        return (~state["done"]) & (state["k"] < max_steps)

    def body(state):
        w, m, g, xi = state["w"], state["m"], state["g"], state["xi"]
        a = (xi > 0).astype(dt)
        H0 = hessian(a, state["H"], state["a"])
        scale = jnp.trace(H0) / (n + 1)
        H = H0 + (ridge * jnp.where(scale > 0, scale, 1.0) + jnp.finfo(dt).tiny) * eye
        # LU rather than Cholesky: XLA's CPU Cholesky slows down sharply past 128 unknowns.
        d = -jnp.linalg.solve(H, g)
        # Fall back to steepest descent if round-off spoilt the Newton direction.
        d = jnp.where(jnp.all(jnp.isfinite(d)) & (jnp.dot(g, d) < 0), d, -g)
        q = jnp.matmul(Z, d, precision=_HI)
        t = _exact_line_search(m, q, mask)
        # Ray test: a point of the ray w + t d may separate before the loss minimiser along it
        # does. Every margin is positive on the open interval (t_lo, t_hi); if it is not empty,
        # its midpoint is tried (and, as every iterate, fully checked by ``assess``).
        t_lo = jnp.max(jnp.where(mask & (q > 0), -m / jnp.where(q > 0, q, 1.0), 0.0))
        t_hi = jnp.min(jnp.where(mask & (q < 0), -m / jnp.where(q < 0, q, 1.0), jnp.inf))
        stuck = jnp.any(mask & (q == 0) & (m <= 0))
        t_lo = jnp.maximum(t_lo, 0.0)
        t_ray = jnp.where(jnp.isfinite(t_hi), 0.5 * (t_lo + t_hi), 2.0 * t_lo + t)
        try_ray = (~stuck) & (t_lo < t_hi) & jnp.isfinite(t_ray)
        w_ray = w + t_ray * d
        # Margins are linear along the ray; twice the round-off bound leaves room for the
        # error of that prediction (``assess`` recomputes them).
        m_ray = m + t_ray * q
        ray_sep = try_ray & jnp.all(
            jnp.where(mask, m_ray > 2.0 * err_scale * jnp.linalg.norm(w_ray), True))
        w_new = jnp.where(ray_sep, w_ray, w + t * d)
        m, xi, g, sep, nonsep, res = assess(w_new)
        return dict(w=w_new, m=m, g=g, xi=xi, k=state["k"] + 1, done=sep | nonsep, H=H0, a=a)

    w_init = jnp.concatenate([w0[:n], w0[n:] / s]).astype(dt)
    m, xi, g, sep, nonsep, res = assess(w_init)
    if point_gram is not None and n_update:
        T, u = point_gram
        su = s * u.astype(dt)
        H_init = jnp.concatenate([
            jnp.concatenate([T.astype(dt), su[:, None]], axis=1),
            jnp.concatenate([su, (n_valid * s * s)[None]])[None, :]], axis=0)
        a_init = validf
    else:
        H_init, a_init = jnp.zeros((n + 1, n + 1), dt), jnp.zeros((K,), dt)
    init = dict(w=w_init, m=m, g=g, xi=xi, k=jnp.int32(0), done=sep | nonsep,
                H=H_init, a=a_init)
    state = lax.while_loop(cond, body, init)
    w_fin, steps = state["w"], state["k"]
    m, xi, g, sep, nonsep, res = assess(w_fin)
    sxi = jnp.sum(xi)
    lam = jnp.where(sxi > 0, xi / jnp.where(sxi > 0, sxi, 1.0), 0.0)
    wn = jnp.linalg.norm(w_fin)
    margin = jnp.where(wn > 0, jnp.min(jnp.where(mask, m, jnp.inf)) / wn, jnp.zeros((), dt))
    cert = SeparabilityCertificate(
        separable=sep,
        decided=sep | nonsep,
        w=w_fin[:n],
        b=w_fin[n] * s,
        margin=margin,
        weights=lam,
        gordan_residual=jnp.where(sep, jnp.zeros((), dt), res),
        scale=s,
    )
    return cert, steps, jnp.where(sep, jnp.zeros((), dt), res)


def separability(
    points,
    labels,
    mask=None,
    *,
    w0=None,
    rtol: float | None = None,
    max_steps: int = 100,
    ridge: float | None = None,
) -> Solution:
    """Decide whether labelled points are strictly separable by a hyperplane with bias.

    Single-instance kernel (jit-compiled); batch with ``jax.vmap`` over leading axes of
    ``points``/``labels``/``mask``/``w0`` (e.g. over dichotomies or projection sizes).

    Args:
        points: ``(K, n)`` float array, rows are points.
        labels: ``(K,)`` labels; ``> 0`` is class +1, anything else class -1.
        mask: optional ``(K,)`` bool, False rows are padding and ignored.
        w0: optional ``(n + 1,)`` warm start ``(w, b)``, e.g. a previous certificate's
            ``concatenate([w, [b]])``; default zeros.
        rtol: Gordan-certificate tolerance on ``||sum lambda_j z_j|| / max ||z_j||``; default
            ``sqrt(eps)`` of the dtype (1.5e-8 in float64, 3.5e-4 in float32).
        max_steps: Newton step budget; problems not decided within it are flagged undecided.
        ridge: relative ridge on the active-set Hessian; default ``1e4 * eps``.

    Returns:
        :class:`~geomjax._types.Solution` with ``value`` a :class:`SeparabilityCertificate`,
        ``converged`` = decided, ``num_steps`` Newton steps, and ``residual`` the Gordan residual
        (0 when a separating hyperplane was verified).

    Raises:
        ValueError: ``points`` not 2-D, or ``labels``/``mask`` lengths differing from ``K``.
    """
    points = jnp.asarray(points)
    if points.ndim != 2:
        raise ValueError(
            f"`points` must be (K, n) with rows as points; got shape {tuple(points.shape)}."
        )
    dt = result_dtype(points)
    points = points.astype(dt)
    K, n = points.shape
    labels = jnp.asarray(labels)
    if labels.shape != (K,):
        raise ValueError(
            f"`labels` must have shape ({K},) to match `points`; got {tuple(labels.shape)}."
        )
    mask = jnp.ones((K,), bool) if mask is None else jnp.asarray(mask).astype(bool)
    if mask.shape != (K,):
        raise ValueError(
            f"`mask` must have shape ({K},) to match `points`; got {tuple(mask.shape)}."
        )
    if w0 is None:
        w0 = jnp.zeros((n + 1,), dt)
    else:
        w0 = jnp.asarray(w0, dt)
        if w0.shape != (n + 1,):
            raise ValueError(
                f"`w0` must have shape ({n + 1},) (n features + bias); got {tuple(w0.shape)}."
            )
    eps = float(jnp.finfo(dt).eps)
    rtol = float(eps**0.5) if rtol is None else float(rtol)
    ridge = 1e4 * eps if ridge is None else float(ridge)
    if max_steps < 1:
        raise ValueError(f"`max_steps` must be >= 1; got {max_steps}.")
    cert, steps, res = _separability_impl(
        points, labels, mask, w0, max_steps=int(max_steps), rtol=rtol, ridge=ridge
    )
    return Solution(
        value=cert,
        converged=cert.decided,
        num_steps=steps,
        residual=res,
        settings=SolverSettings(
            rtol=rtol, atol=0.0, max_steps=int(max_steps), method="newton-l2svm"
        ),
    )
