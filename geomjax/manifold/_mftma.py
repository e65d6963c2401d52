"""Mean-field theoretic manifold analysis (MFTMA): capacity, radius and dimension.

Theory: Chung, Lee & Sompolinsky, "Classification and geometry of general perceptual manifolds",
PRX 8, 031003 (2018) (capacity eqs. 16-17, radius eq. 28, dimension eq. 29); centre-correlation
removal: Cohen, Chung, Lee & Sompolinsky, Nat. Commun. 11, 746 (2020); used layer by layer on
speech networks by Stephenson et al., NeurIPS 2019.

For a manifold reduced to ``D+1`` coordinates (points ``s_i`` whose last coordinate is 1), and a
Gaussian ``t ~ N(0, I_{D+1})``, the anchor point ``s~(t)`` comes from the QP

    v* = argmin_v ||v - t||^2  s.t.  s_i . v + kappa <= 0  for all i,

whose dual is the NNLS ``alpha* = argmin_{alpha >= 0} ||S alpha - (t + kappa e_{D+1})||^2``
(the last row of ``S`` is all ones, so ``kappa 1 = S^T (kappa e_{D+1})``). Then
``t - v* = S alpha*``, ``s~ = S alpha* / sum(alpha*)`` and ``||t - v*||^2 = [t.s~ + kappa]_+^2 /
||s~||^2``. The per-manifold quantities (the reference implementation's *coded* forms) are

    1/alpha_M = < [t.s~ + kappa]_+^2 / ||s~||^2 >_t                         (eq. 16-17)
    R_M^2     = < || (s~_{1:D} - <s~_{1:D}>_t) / s~_{D+1} ||^2 >_t          (eq. 28, coded)
    D_M       = D < t^_{1:D} . s^_{1:D} >_t^2                               (eq. 29, coded)

The *paper* forms (``forms="paper"``) are ``R_M^2 = < ||s~_{1:D}||^2 >_t`` (spread measured from
the manifold centre, which is the origin of the reduced coordinates) and
``D_M = < (t_{1:D} . s^_{1:D})^2 >_t``. The coded radius subtracts the mean anchor, so it is
smaller than the paper radius when anchors are biased; the coded dimension is ``D`` times the
squared *mean* cosine, whereas the paper form averages squared projections (``~ D <cos^2>``,
which is ``>= D <cos>^2``), so the paper dimension is larger.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from geomjax._checks import as_array, check_finite, check_manifolds
from geomjax._types import Solution, SolverSettings, pytree_dataclass
from geomjax.manifold._center import _mean_abs_cos, center_correlation, fit_center_subspace
from geomjax.solvers import default_rtol, lawson_hanson_lanes, nnls_gram

__all__ = ["anchor_geometry", "AnchorGeometry", "mftma", "MFTMAResult", "reduce_manifolds"]

_HI = lax.Precision.HIGHEST
_FORMS = ("coded", "paper")
# The first pass (Lawson-Hanson from the max-projection vertex): support slots, least-squares
# solves per problem, and its buffer (max(_LH_BUF_MIN, problems // _LH_BUF_DIV) problems per
# round); the second pass's buffer (_BUF problems at a time); see _solve_samples.
_LH_SLOTS = 8
_LH_ROUNDS = 16
_LH_BUF_MIN = 64
_LH_BUF_DIV = 16
_BUF = 16


@pytree_dataclass(meta=("forms",))
class AnchorGeometry:
    """Anchor-point geometry of one reduced manifold (leading axes appear under ``vmap``).

    Attributes:
        capacity: ``alpha_M`` (``inf`` if every sample is interior).
        inv_capacity: ``1/alpha_M = <F(t)>``.
        radius: ``R_M``. dimension: ``D_M`` (in ``forms``).
        anchors: ``(n_t, D+1)`` anchor points ``s~(t)``.
        interior: ``(n_t,)`` bool, samples with ``t`` already inside the margin (``s~ = s0``).
        solution: per-sample :class:`geomjax._types.Solution` of the NNLS (``value`` ``(n_t, M)``).
        forms: ``"coded"`` or ``"paper"``.
    """

    capacity: Any
    inv_capacity: Any
    radius: Any
    dimension: Any
    anchors: Any
    interior: Any
    solution: Solution
    forms: str = "coded"


def _prepare(S, G, point_mask, t, kappa):
    """Right-hand side, max-projection vertex and its optimal weight for one sample ``t``."""
    dt = S.dtype
    e = jnp.zeros(S.shape[1], dt).at[-1].set(1)
    c = jnp.matmul(S, t + kappa * e, precision=_HI)
    # Max-projection vertex over the first D coordinates (first index on ties): the last
    # coordinate of every real point is 1, so c_i = s_i[:D] . t[:D] + t_D + kappa differs from
    # the projection by a constant (equal up to round-off, which decides only exact ties).
    i0 = jnp.argmax(jnp.where(point_mask, c, -jnp.inf))
    s0 = S[i0]
    g = jnp.dot(t, s0, precision=_HI)
    v = jnp.maximum(c[i0], 0) / G[i0, i0]
    return c, i0, v, s0, g


def _anchor_from_solution(S, t, s0, g, x, kappa):
    dt = S.dtype
    w = jnp.matmul(x, S, precision=_HI)  # t - v* = S^T alpha
    mass = w[-1]  # sum(alpha): the last row of S^T is all ones
    tol = jnp.sqrt(jnp.finfo(dt).eps) * (1 + jnp.linalg.norm(t))
    interior = (g + kappa < 0) | (jnp.linalg.norm(w) <= tol)
    return jnp.where(interior, s0, w / jnp.where(interior, 1, mass)), interior


def _solve_samples(S, G, point_mask, T, kappa, solver):
    """Anchors of the samples ``T`` (``(P, n, D+1)``) of ``P`` manifolds ``S`` (``(P, M, D+1)``,
    Gram matrices ``G``), all ``P n`` problems pooled.

    Pass 1 solves every problem by Lawson-Hanson active-set steps from its max-projection vertex
    (:func:`geomjax.solvers.lawson_hanson_lanes`; exact for all but a few): the vertex's KKT test
    settles interior and single-vertex samples at once, and each later round gathers only the
    problems still working, whichever manifold they belong to. It takes no gradient steps, so it
    needs no step constant. Pass 2 gathers the problems still unconverged into a small buffer and
    iterates only those (FISTA + polish, with ``lambda_max`` of their manifold's Gram matrix),
    buffer after buffer. Every problem's arithmetic is its own (nothing depends on the other
    problems in a buffer or on their number), so results do not depend on chunking, on how
    manifolds are batched, or on the device count of a sharded sweep.
    """
    P, n, D1 = T.shape
    M = S.shape[1]
    dt = S.dtype
    c, i0, v, s0, g = jax.vmap(lambda Sp, Gp, pm, Tp: jax.vmap(
        lambda t: _prepare(Sp, Gp, pm, t, kappa))(Tp))(S, G, point_mask, T)
    B = P * n
    c = c.reshape(B, M)
    group = jnp.arange(B, dtype=jnp.int32) // n
    scale = jnp.max(jnp.where(point_mask[group], jnp.abs(c), 0), axis=1, initial=0)
    tol = (solver["atol"] + solver["rtol"] * scale).astype(dt)
    x1, ok1, _, res1 = lawson_hanson_lanes(
        G, c, i0.reshape(B), v.reshape(B), point_mask, tol, group, polish_size=_LH_SLOTS,
        max_rounds=_LH_ROUNDS, buffer=max(_LH_BUF_MIN, B // _LH_BUF_DIV))
    buf = min(B, _BUF)
    ar = jnp.arange(B)

    def one(gp, cc, xx):
        pm = point_mask[gp]
        Gp = G[gp]
        L = jnp.linalg.eigvalsh(jnp.where(pm[:, None] & pm[None, :], Gp, 0))[-1]
        return nnls_gram(Gp, cc, x0=xx, mask=pm, lipschitz=L, **solver)

    def cond(st):
        _, conv, _, _, tried = st
        return jnp.any(~conv & ~tried)

    def body(st):
        x, conv, steps, res, tried = st
        todo = ~conv & ~tried
        pos = jnp.cumsum(todo) - 1
        slot = jnp.where(todo & (pos < buf), pos, buf)
        idx = jnp.zeros(buf, ar.dtype).at[slot].set(ar, mode="drop")
        valid = jnp.zeros(buf, bool).at[slot].set(True, mode="drop")
        sol = jax.vmap(one)(group[idx], c[idx], x[idx])
        dest = jnp.where(valid, idx, B)
        x = x.at[dest].set(sol.value, mode="drop")
        conv = conv.at[dest].set(sol.converged, mode="drop")
        steps = steps.at[dest].set(sol.num_steps, mode="drop")
        res = res.at[dest].set(sol.residual, mode="drop")
        tried = tried.at[dest].set(True, mode="drop")
        return x, conv, steps, res, tried

    init = (x1, ok1, jnp.zeros(B, jnp.int32), res1, jnp.zeros(B, bool))
    x, conv, steps, res, _ = lax.while_loop(cond, body, init)
    x = x.reshape(P, n, M)
    sol = Solution(value=x, converged=conv.reshape(P, n), num_steps=steps.reshape(P, n),
                   residual=res.reshape(P, n),
                   settings=SolverSettings(rtol=solver["rtol"], atol=solver["atol"],
                                           max_steps=solver["max_steps"], method="fista+polish"))
    s_t, interior = jax.vmap(lambda Sp, Tp, a, b, xx: jax.vmap(
        lambda t, a1, b1, x1_: _anchor_from_solution(Sp, t, a1, b1, x1_, kappa))(Tp, a, b, xx))(
        S, T, s0, g, x)
    return s_t, interior, sol


def _geometry_from_anchors(s_t, t, kappa, coord_mask, dim, forms):
    """Capacity, radius and dimension from anchors ``s_t`` ``(n_t, D+1)`` and samples ``t``."""
    dt = s_t.dtype
    ts = jnp.sum(t * s_t, axis=1)
    s_sum = jnp.sum(s_t * s_t, axis=1)
    F = jnp.where(s_sum > 0, jnp.maximum(ts + kappa, 0) ** 2 / jnp.where(s_sum > 0, s_sum, 1), 0)
    inv_cap = jnp.mean(F)
    capacity = 1 / inv_cap
    cm = coord_mask[:-1]
    sD = jnp.where(cm, s_t[:, :-1], 0)
    tD = jnp.where(cm, t[:, :-1], 0)
    s_norm2 = jnp.sum(sD * sD, axis=1)
    if forms == "coded":
        ds = (sD - jnp.mean(sD, axis=0, keepdims=True)) / s_t[:, -1:]
        radius = jnp.sqrt(jnp.mean(jnp.sum(jnp.where(cm, ds, 0) ** 2, axis=1)))
        t_hat = tD / jnp.linalg.norm(tD, axis=1, keepdims=True)
        s_hat = sD / jnp.sqrt(s_norm2 + 1e-12)[:, None]
        dimension = dim * jnp.mean(jnp.sum(t_hat * s_hat, axis=1)) ** 2
    else:
        radius = jnp.sqrt(jnp.mean(s_norm2))
        s_hat = sD / jnp.sqrt(jnp.where(s_norm2 > 0, s_norm2, 1))[:, None]
        dimension = jnp.mean(jnp.sum(tD * s_hat, axis=1) ** 2)

    return capacity.astype(dt), inv_cap, radius, dimension.astype(dt)


def _draw_samples(keys, n_t, D1, dtype):
    """Gaussian samples ``(P, n_t, D1)`` for ``P`` manifolds: each manifold's key is split into
    one key per sample, so the draw does not depend on chunking, batching or the device count.
    :func:`mftma` and :func:`geomjax.distributed.mftma_sweep` both draw through this function."""
    return jax.vmap(lambda k: jax.vmap(lambda kk: jax.random.normal(kk, (D1,), dtype))(
        jax.random.split(k, n_t)))(keys)


def _anchors_core(S, t, kappa, point_mask, coord_mask, dim, forms, chunk_size, solver_items):
    """Anchor geometry of ``P`` manifolds at once: ``S`` ``(P, M, D+1)``, ``t`` ``(P, n_t, D+1)``,
    ``point_mask`` ``(P, M)``, ``coord_mask`` ``(P, D+1)``, ``dim`` ``(P,)``. Returns the
    per-manifold ``(capacity, inv_capacity, radius, dimension)``, the anchors, the interior flags
    and the per-sample solution."""
    solver = dict(solver_items)
    dt = S.dtype
    S = jnp.where(point_mask[:, :, None], S, 0).astype(dt)
    t = jnp.where(coord_mask[:, None, :], t, 0).astype(dt)
    G = jnp.matmul(S, jnp.swapaxes(S, 1, 2), precision=_HI)
    # Padded points never enter the solver (mask); give them a unit diagonal for the warm start.
    G = jnp.where(jnp.eye(G.shape[1], dtype=bool)[None] & ~point_mask[:, :, None], 1, G)

    def f(tt):
        return _solve_samples(S, G, point_mask, tt, kappa, solver)

    P, n_t, D1 = t.shape
    if chunk_size is None or chunk_size >= n_t:
        s_t, interior, sol = f(t)
    else:
        n_chunks = -(-n_t // chunk_size)
        pad = n_chunks * chunk_size - n_t
        tp = jnp.concatenate([t, jnp.zeros((P, pad, D1), dt)], axis=1).reshape(
            P, n_chunks, chunk_size, D1).swapaxes(0, 1)
        out = lax.map(f, tp)
        s_t, interior, sol = jax.tree_util.tree_map(
            lambda a: a.swapaxes(0, 1).reshape((P, n_chunks * chunk_size) + a.shape[3:])[:, :n_t],
            out)
    cap, inv_cap, rad, dim_m = jax.vmap(
        lambda a, b, cm, d: _geometry_from_anchors(a, b, kappa, cm, d, forms))(
        s_t, t, coord_mask, dim)
    return cap, inv_cap, rad, dim_m, s_t, interior, sol


@functools.partial(jax.jit, static_argnames=("forms", "chunk_size", "solver_items"))
def _anchor_geometry_core(S, t, kappa, point_mask, coord_mask, dim, forms, chunk_size,
                          solver_items):
    """:func:`_anchors_core` for one manifold (no leading axis)."""
    out = _anchors_core(S[None], t[None], kappa, point_mask[None], coord_mask[None],
                        jnp.asarray(dim)[None], forms, chunk_size, solver_items)
    return jax.tree_util.tree_map(lambda a: a[0], out)


def _solver_items(rtol, atol, max_steps, check_every, dtype):
    rtol = default_rtol(dtype) if rtol is None else float(rtol)
    return (("rtol", rtol), ("atol", float(atol)), ("max_steps", int(max_steps)),
            ("check_every", int(check_every)))


def anchor_geometry(
    points,
    t,
    kappa: float = 0.0,
    *,
    forms: str = "coded",
    point_mask=None,
    dim=None,
    chunk_size: int | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    max_steps: int = 10_000,
    check_every: int = 10,
    strict: bool = False,
) -> AnchorGeometry:
    """Capacity, radius and dimension of one reduced manifold from its anchor points.

    ``1/alpha_M = <[t.s~ + kappa]_+^2 / ||s~||^2>_t`` with the anchor points ``s~(t)`` of the
    PRX 2018 QP (§IIIa), solved exactly as an NNLS on the dual (Lawson-Hanson active-set steps
    from the max-projection vertex, :func:`geomjax.solvers.lawson_hanson_lanes`; FISTA +
    active-set polish, :func:`geomjax.solvers.nnls_gram`, for any sample left); radius and
    dimension in the reference's coded forms (eqs. 28-29 as implemented) or the paper forms
    (see the module docstring). ``vmap`` over
    manifolds (equal shapes; use ``point_mask``/``dim`` for padding).

    Args:
        points: ``(M, D+1)`` reduced manifold points, last column all ones.
        t: ``(n_t, D+1)`` Gaussian samples ``t ~ N(0, I)``.
        kappa: margin ``kappa >= 0`` (negative values are allowed and mean a soft margin).
        forms: ``"coded"`` (reference implementation) or ``"paper"``.
        point_mask: optional ``(M,)`` bool, real points (padding excluded).
        dim: reduced dimension ``D`` used in the coded ``D_M`` and the coordinate mask (the
            first ``dim`` coordinates are real); default ``D = points.shape[1] - 1``.
        chunk_size: solve samples in chunks of this size (memory); results do not depend on it.
        rtol, atol, max_steps, check_every: NNLS settings (KKT residual test).
        strict: raise :class:`geomjax._types.NotConvergedError` if any sample did not converge.

    Returns:
        :class:`AnchorGeometry`.
    """
    if forms not in _FORMS:
        raise ValueError(f"`forms` must be one of {_FORMS}; got {forms!r}.")
    P_ = jnp.asarray(as_array(points, "points"))
    T_ = jnp.asarray(as_array(t, "t"))
    if P_.ndim != 2:
        raise ValueError(f"`points` must be (M, D+1) with rows as points; got {tuple(P_.shape)}.")
    if T_.ndim != 2 or T_.shape[1] != P_.shape[1]:
        raise ValueError(
            f"`t` must be (n_t, D+1) = (n_t, {P_.shape[1]}) to match `points`; got "
            f"{tuple(T_.shape)}."
        )
    if P_.shape[0] < 1 or T_.shape[0] < 1 or P_.shape[1] < 2:
        raise ValueError(
            f"`points` needs M >= 1 rows and D+1 >= 2 columns, `t` n_t >= 1; got "
            f"{tuple(P_.shape)} and {tuple(T_.shape)}."
        )
    check_finite(P_, "points")
    check_finite(T_, "t")
    if not isinstance(P_, jax.core.Tracer):
        last = np.asarray(P_[:, -1])
        pm = np.ones(last.shape, bool) if point_mask is None else np.asarray(point_mask, bool)
        if not np.allclose(last[pm], 1.0):
            raise ValueError("`points` must have its last column all ones (the centre direction).")
    dt = jnp.result_type(P_.dtype, T_.dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    M, D1 = P_.shape
    pm = jnp.ones(M, bool) if point_mask is None else jnp.asarray(point_mask, bool)
    D = D1 - 1 if dim is None else dim
    cm = (jnp.arange(D1) < D) | (jnp.arange(D1) == D1 - 1)
    items = _solver_items(rtol, atol, max_steps, check_every, dt)
    cap, inv, rad, dm, s_t, interior, sol = _anchor_geometry_core(
        P_.astype(dt), T_.astype(dt), jnp.asarray(kappa, dt), pm, cm, jnp.asarray(D, dt), forms,
        chunk_size, items)
    res = AnchorGeometry(cap, inv, rad, dm, s_t, interior, sol, forms)
    if strict:
        if isinstance(sol.converged, jax.core.Tracer):
            raise ValueError("`strict=True` needs an eager call; check `solution.converged`.")
        sol.raise_if_unconverged("anchor_geometry")
    return res


# ----------------------------------------------------------------------------------------------
# Full pipeline


def _map(f, xs, batch):
    """``lax.map`` in batches of ``batch``; ``batch == 1`` is a plain loop (``lax.map`` with
    ``batch_size=1`` would ``vmap`` over a unit axis, and batched small matrix products are several
    times slower than unbatched ones on CPU)."""
    return lax.map(f, xs) if batch <= 1 else lax.map(f, xs, batch_size=batch)


def _to_device(X):
    """The input on the device without a copy where the runtime allows it (a suitably aligned
    NumPy array on CPU is aliased, not copied; ``jnp.asarray`` copies it, sometimes twice)."""
    if isinstance(X, jax.Array):
        return X
    try:
        return jax.device_put(X, may_alias=True)
    except TypeError:  # older jax without `may_alias`
        return jnp.asarray(X)


def _pad(mans, dtype, whole=None):
    P = len(mans)
    Ms = np.array([m.shape[0] for m in mans])
    N = mans[0].shape[1]
    Mmax = int(Ms.max())
    if whole is not None and getattr(whole, "ndim", 0) == 3:
        # A (P, M, N) array is used as it is (no stacked copy of the input).
        X = whole if whole.dtype == dtype else whole.astype(dtype)
    elif all(isinstance(m, np.ndarray) for m in mans) and (Ms == Mmax).all():
        X = np.stack(mans).astype(dtype, copy=False)
    elif (Ms == Mmax).all():
        X = jnp.stack([jnp.asarray(m, dtype) for m in mans])
    else:
        X = np.zeros((P, Mmax, N), dtype)
        for i, m in enumerate(mans):
            X[i, : m.shape[0]] = np.asarray(m, dtype)
    mask = np.arange(Mmax)[None, :] < Ms[:, None]
    return X, mask, Ms


@jax.jit
def _centres(X, mask):
    w = mask.astype(X.dtype)
    n_pts = jnp.sum(w, axis=1)
    centers = jnp.einsum("pm,pmn->pn", w, X, precision=_HI) / n_pts[:, None]
    xbar = jnp.sum(centers * n_pts[:, None], axis=0) / jnp.sum(n_pts)
    return centers, xbar


def _gram_points(Gm, w, D):
    """Reduced points ``S`` (``(M, D)``, rows) with ``S S^T = Gm`` from the eigendecomposition of
    one manifold's normalised Gram matrix (``w``: 1 for real points, 0 for padding)."""
    M = Gm.shape[0]
    lam, W = jnp.linalg.eigh((Gm + Gm.T) / 2)
    lam, W = lam[::-1][:D], W[:, ::-1][:, :D]
    # Canonical eigenvector signs (largest-magnitude entry positive), so permuting the points
    # permutes the rows of S and nothing else.
    big = jnp.take_along_axis(W, jnp.argmax(jnp.abs(W), axis=0)[None], axis=0)
    W = W * jnp.where(big < 0, -1, 1).astype(W.dtype)
    # Eigenvalues at round-off level are exact zeros (centring removes one direction); their
    # square roots (~sqrt(eps)) would add a spurious thin direction.
    lam = jnp.where(lam > 64 * M * jnp.finfo(Gm.dtype).eps * lam[0], lam, 0)
    return W * jnp.sqrt(lam)[None, :] * w[:, None]


@functools.partial(jax.jit, static_argnames=("D",))
def _points_from_grams(G, mask, D):
    """``(P, M, D+1)`` reduced points (last coordinate ones) from ``(P, M, M)`` normalised Grams."""
    def one(args):
        g, m = args
        w = m.astype(g.dtype)
        return jnp.concatenate([_gram_points(g, w, D), w[:, None]], axis=1)

    return lax.map(one, (G, mask))


@functools.partial(jax.jit, static_argnames=("reduction", "manifold_batch"))
def reduce_manifolds(X, mask, xbar, V, reduction: str = "gram", manifold_batch: int = 1):
    """Project out ``V``, centre and normalise each manifold, and reduce it to ``M`` coordinates.

    ``U_mu = (I - V V^T)(X_mu - c_mu) / ||(I - V V^T)(c_mu - xbar)||`` (the reference's
    ``(X^ns - c^ns) / ||c^ns||``: ``xbar`` cancels in the numerator). The reduced points ``S_mu``
    (rows) satisfy ``S S^T = U U^T``:

    * ``reduction="qr"``: ``S = R^T`` of the thin QR ``U^T = Q R`` (the reference's reduction);
    * ``reduction="gram"``: ``S = W diag(sqrt(lambda))`` from the eigendecomposition of the
      ``M x M`` Gram matrix, eigenvalues in descending order (about half the flops of QR and no
      projected copy of the data). ``S`` differs from the QR form by an orthogonal transform of
      the coordinates, so with isotropic Gaussian ``t`` every result has the same distribution.

    Manifolds are processed ``manifold_batch`` at a time (``lax.map``), so the working memory is
    one batch of ``(M, N)`` temporaries beside the input.

    Args:
        X: ``(P, M, N)`` manifolds (rows are points; padded rows are ignored via ``mask``).
        mask: ``(P, M)`` bool, real points.
        xbar: ``(N,)`` global mean of all points.
        V: ``(N, K)`` orthonormal centre subspace to remove (``K`` may be 0).

    Returns:
        ``(sD1, center_norm)``: ``(P, M, min(N, M) + 1)`` reduced points with a last coordinate
        of ones (padded rows zero), and ``||c^ns_mu||`` ``(P,)``.
    """
    P, M, N = X.shape
    D = min(N, M)

    def one(args):
        x, m = args
        w = m.astype(x.dtype)
        c = jnp.matmul(w, x, precision=_HI) / jnp.sum(w)
        B = (x - c) * w[:, None]
        cns = c - xbar
        if V.shape[1]:
            cns = cns - jnp.matmul(V, jnp.matmul(V.T, cns, precision=_HI), precision=_HI)
        cn = jnp.linalg.norm(cns)
        if reduction == "qr":
            if V.shape[1]:
                B = B - jnp.matmul(jnp.matmul(B, V, precision=_HI), V.T, precision=_HI)
            R = jnp.linalg.qr((B / cn).T, mode="r")  # (D, M)
            S = R.T
        else:
            Gm = jnp.matmul(B, B.T, precision=_HI)
            if V.shape[1]:
                BV = jnp.matmul(B, V, precision=_HI)
                Gm = Gm - jnp.matmul(BV, BV.T, precision=_HI)
            S = _gram_points(Gm / (cn * cn), w, D)
        return jnp.concatenate([S, w[:, None]], axis=1), cn

    return _map(one, (X, mask), manifold_batch)


def _default_manifold_batch(P: int) -> int:
    # The device-side reduction (reduce_manifolds): one manifold at a time on CPU (unbatched
    # matrix products), the whole batch at once on accelerators. The anchor stage pools all
    # manifolds' problems whatever this is.
    return 1 if jax.default_backend() == "cpu" else P


@functools.partial(
    jax.jit, static_argnames=("n_t", "forms", "chunk_size", "solver_items"))
def _anchors_all(key, sD1, mask, dims, kappa, n_t, forms, chunk_size, solver_items,
                 t_given=None):
    """Anchor geometry of all ``P`` manifolds: samples drawn with one key per manifold
    (``split(key, P)``) unless ``t_given``; all ``P n_t`` problems are pooled in one solver."""
    return _anchors_from_keys(jax.random.split(key, sD1.shape[0]), sD1, mask, dims, kappa, n_t,
                              forms, chunk_size, solver_items, t_given)


def _anchors_from_keys(keys, sD1, mask, dims, kappa, n_t, forms, chunk_size, solver_items,
                       t_given=None):
    """The anchor stage for manifolds with their own keys (``(P,)``): the one program behind
    :func:`mftma` and the sharded sweeps of :mod:`geomjax.distributed`."""
    P, M, D1 = sD1.shape
    t = _draw_samples(keys, n_t, D1, sD1.dtype) if t_given is None else t_given
    ar = jnp.arange(D1)
    cm = (ar[None, :] < dims[:, None]) | (ar[None, :] == D1 - 1)
    return _anchors_core(sD1, t, kappa, mask, cm, dims.astype(sD1.dtype), forms, chunk_size,
                         solver_items)


def _pad_t(t, dims, D1, dtype):
    """Per-manifold samples ``(n_t, D_mu + 1)`` into ``(P, n_t, D1)``: first ``D_mu`` coordinates
    in front, the centre coordinate last, zeros between."""
    P = len(dims)
    ts = [np.asarray(as_array(x, f"t[{i}]"), dtype) for i, x in enumerate(t)] if isinstance(
        t, (list, tuple)) else list(np.asarray(as_array(t, "t"), dtype))
    if len(ts) != P:
        raise ValueError(f"`t` must hold one sample array per manifold (P={P}); got {len(ts)}.")
    n_t = ts[0].shape[0] if ts and ts[0].ndim == 2 else 0
    out = np.zeros((P, n_t, D1), dtype)
    for i, (x, d) in enumerate(zip(ts, dims, strict=False)):
        if x.ndim != 2 or x.shape != (n_t, int(d) + 1) or n_t < 1:
            raise ValueError(
                f"`t[{i}]` must be (n_t, D+1) = ({n_t}, {int(d) + 1}) with n_t >= 1; got "
                f"{tuple(x.shape)}.")
        check_finite(x, f"t[{i}]")
        out[i, :, :d] = x[:, :d]
        out[i, :, -1] = x[:, -1]
    return jnp.asarray(out)


def _host_pass(backend: str, reduction: str) -> bool:
    """Data passes on the host with NumPy's BLAS (CPU only, Gram reduction): the manifolds are
    read where they lie (no device copy of the input, no padded stack) and the per-manifold
    temporaries are one ``(M, N)`` block at a time."""
    return backend == "cpu" and reduction == "gram"


def _host_centres(mans, dtype):
    """Per-manifold centres ``(P, N)`` and the global mean of all points, one read of the data."""
    centers = np.empty((len(mans), mans[0].shape[1]), dtype)
    for i, m in enumerate(mans):
        centers[i] = np.ones(m.shape[0], dtype) @ m / m.shape[0]
    Ms = np.array([m.shape[0] for m in mans], dtype)
    return centers, (Ms @ centers) / Ms.sum()


def _host_grams(mans, centers, xbar, V, Mmax, dtype):
    """Normalised Gram matrices ``U U^T`` of the projected, centred manifolds (``(P, M, M)``,
    zero-padded): ``G = B B^T - (B V)(B V)^T`` with ``B = X - c`` (the projection applied to the
    ``M x M`` Gram, not to the data), divided by ``||(I - V V^T)(c - xbar)||^2``."""
    G = np.zeros((len(mans), Mmax, Mmax), dtype)
    buf = np.empty((Mmax, mans[0].shape[1]), dtype)  # one (M, N) block, reused (no page faults)
    for i, m in enumerate(mans):
        B = np.subtract(m, centers[i], out=buf[: m.shape[0]])
        g = B @ B.T
        cns = centers[i] - xbar
        if V.shape[1]:
            BV = B @ V
            g -= BV @ BV.T
            cns = cns - V @ (V.T @ cns)
        G[i, : m.shape[0], : m.shape[0]] = g / np.dot(cns, cns)
    return G


def _prepare_analysis(key, manifolds, *, K=None, V=None, n_reps=10, max_k=None,
                      stiefel_steps=1000, reduction="gram", manifold_batch=None, dtype=None,
                      name="manifolds"):
    """Everything :func:`mftma` does before the anchor problems, shared with
    :func:`geomjax.distributed.mftma_sweep` (so both see the same reduced manifolds and keys).

    Validation, global centring and centres, centre correlation and the removed subspace (fitted
    or given), reduction to ``D+1`` coordinates. On CPU with the Gram reduction the data passes
    run on the host (:func:`_host_pass`); otherwise on the device (:func:`reduce_manifolds`).
    The two halves, :func:`_prepare_centres` and :func:`_prepare_reduced`, are also called
    apart, so that a sweep can fit the centre subspaces of all its analyses together.

    Returns:
        dict with ``sD1`` ``(P, M, D+1)``, ``mask`` ``(P, M)``, ``dims`` ``(P,)``, ``Ms``,
        ``dtype``, ``key`` (for the samples), ``keys`` (``split(key, P)``, one per manifold),
        ``rho0``, ``rho_res``, ``K``, ``center_ok``.
    """
    st = _prepare_centres(key, manifolds, V=V, reduction=reduction, dtype=dtype, name=name)
    fit = None
    if V is None:
        fit = fit_center_subspace(st["k_fa"], st["centers"], K, n_reps=n_reps, max_k=max_k,
                                  max_steps=stiefel_steps)
    return _prepare_reduced(st, fit, reduction=reduction, manifold_batch=manifold_batch)


def _prepare_centres(key, manifolds, *, V=None, reduction="gram", dtype=None,
                     name="manifolds", keep_device_copy=True):
    """First half of :func:`_prepare_analysis`: validation, dtype, centres and global mean, a
    given ``V`` checked. Returns the state :func:`_prepare_reduced` continues from (``centers``
    and ``k_fa``, the centre-subspace key, are what a fit needs). Without
    ``keep_device_copy`` the device path drops its copy of the input (made again later)."""
    host = _host_pass(jax.default_backend(), reduction)
    # The host pass reads every value for the centres: their sums stand in for the NaN/inf scan
    # (a non-finite value makes its manifold's centre non-finite; that manifold is then scanned
    # for the error message), which saves a whole read of the input.
    mans = check_manifolds(manifolds, name, min_points=2, finite=not host)
    if dtype is None:
        dtype = jnp.result_type(*[m.dtype for m in mans])
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    dtype = jnp.dtype(dtype)
    P, N = len(mans), mans[0].shape[1]
    Ms = np.array([m.shape[0] for m in mans])
    Mmax = int(Ms.max())
    mask = np.arange(Mmax)[None, :] < Ms[:, None]
    mask_j = jnp.asarray(mask)
    k_fa, k_t = jax.random.split(key)
    st = dict(host=host, P=P, N=N, Ms=Ms, Mmax=Mmax, mask=mask_j, dtype=dtype, k_fa=k_fa, k_t=k_t,
              manifolds=manifolds, name=name)
    if host:
        mans = [np.asarray(m, dtype) for m in mans]  # no copy for NumPy/CPU input of this dtype
        centers_h, xbar_h = _host_centres(mans, dtype)
        for i in np.flatnonzero(~np.isfinite(centers_h).all(axis=1)):
            check_finite(mans[i], f"{name}[{i}]")
        st.update(mans=mans, centers_h=centers_h, xbar=xbar_h, centers=jnp.asarray(centers_h))
    else:
        X = _device_stack(mans, dtype, manifolds, name)
        centers, xbar = _centres(X, mask_j)
        st.update(mans=mans, centers=centers, xbar=xbar, X=X if keep_device_copy else None)
    if V is not None:
        V = jnp.asarray(as_array(V, "V"), dtype)
        if V.ndim != 2 or V.shape[0] != N or V.shape[1] > P - 1:
            raise ValueError(f"`V` must be (N, K) = ({N}, K <= {P - 1}); got {tuple(V.shape)}.")
        check_finite(V, "V")
        if V.shape[1] and not np.allclose(np.asarray(V.T @ V), np.eye(V.shape[1]),
                                          atol=1e-4 if dtype == jnp.float32 else 1e-8):
            raise ValueError("`V` must have orthonormal columns (V^T V = I).")
    st["V"] = V
    return st


def _device_stack(mans, dtype, manifolds, name):
    """The padded ``(P, M, N)`` stack on the device (no copy for a device array of this dtype)."""
    X, _, _ = _pad(mans, dtype, None if isinstance(manifolds, (list, tuple))
                   else as_array(manifolds, name))
    return _to_device(X)


def _prepare_reduced(st, fit, *, reduction="gram", manifold_batch=None):
    """Second half of :func:`_prepare_analysis`: from the state of :func:`_prepare_centres` and
    the centre-subspace ``fit`` (a :func:`fit_center_subspace` dict; ``None`` when ``V`` was
    given), the projected, reduced manifolds and the returned dict."""
    P, N, Mmax, dtype, mask_j, centers = (st["P"], st["N"], st["Mmax"], st["dtype"], st["mask"],
                                          st["centers"])
    if fit is None:
        V = st["V"]
        rho0, Kc, Vc, center_ok = center_correlation(centers), int(V.shape[1]), V, True
    else:
        rho0, Kc, Vc, center_ok = fit["center_correlation"], fit["K"], fit["V"], fit["converged"]
    mb = _default_manifold_batch(P) if manifold_batch is None else max(1, int(manifold_batch))
    if st["host"]:
        G = _host_grams(st["mans"], st["centers_h"], st["xbar"], np.asarray(Vc, dtype), Mmax,
                        dtype)
        sD1 = _points_from_grams(jnp.asarray(G), mask_j, min(N, Mmax))
    else:
        X = st.get("X")
        if X is None:
            X = _device_stack(st["mans"], dtype, st["manifolds"], st["name"])
        sD1, _ = reduce_manifolds(X, mask_j, st["xbar"], Vc, reduction, min(mb, P))
    ct = centers - jnp.mean(centers, axis=0)
    if Kc:
        ct = ct - jnp.matmul(jnp.matmul(ct, Vc, precision=_HI), Vc.T, precision=_HI)
    k_t = st["k_t"]
    return dict(sD1=sD1, mask=mask_j, dims=jnp.asarray(np.minimum(st["Ms"], N)), Ms=st["Ms"],
                dtype=dtype, key=k_t, keys=jax.random.split(k_t, P), rho0=rho0,
                rho_res=_mean_abs_cos(ct), K=int(Kc), center_ok=bool(center_ok))


@pytree_dataclass(meta=("K", "n_t", "forms", "n_unconverged", "center_converged"))
class MFTMAResult:
    """Result of :func:`mftma` (a registered pytree; ``to_frame()`` gives a tidy table).

    Attributes:
        capacity: ``1 / mean_mu(1/alpha_mu)``.
        radius, dimension: means over manifolds of ``R_mu``, ``D_mu``.
        center_correlation: mean |cos| between globally centred centres, before removal.
        residual_center_correlation: the same after removing the ``K`` directions.
        capacity_per_manifold, radius_per_manifold, dimension_per_manifold: ``(P,)``.
        n_points: ``(P,)`` M per manifold; reduced_dim: ``(P,)`` D per manifold.
        lower_bound: ``2 / <M>`` (Cover); capacity_ratio: capacity / lower bound.
        dimension_ratio: dimension / ``<M>``.
        kappa: margin. K: removed centre directions. n_t: samples per manifold.
        forms: ``"coded"`` or ``"paper"``.
        n_unconverged: NNLS problems (of ``P * n_t``) that did not converge.
        max_steps_used, max_residual: solver summary.
        center_converged: the chosen Stiefel restart met its gradient tolerance.
    """

    capacity: Any
    radius: Any
    dimension: Any
    center_correlation: Any
    residual_center_correlation: Any
    capacity_per_manifold: Any
    radius_per_manifold: Any
    dimension_per_manifold: Any
    n_points: Any
    reduced_dim: Any
    lower_bound: Any
    capacity_ratio: Any
    dimension_ratio: Any
    kappa: Any
    max_steps_used: Any
    max_residual: Any
    K: int = 0
    n_t: int = 0
    forms: str = "coded"
    n_unconverged: int = 0
    center_converged: bool = True

    def summary(self) -> dict:
        """Scalar fields as a flat dict of Python numbers."""
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            a = np.asarray(v)
            if a.ndim == 0:
                d[f.name] = a.item()
        return d

    def to_frame(self, level: str = "manifold"):
        """Tidy pandas table: one row per manifold (``level="manifold"``) or one summary row."""
        import pandas as pd

        s = self.summary()
        if level == "summary":
            return pd.DataFrame([s])
        if level != "manifold":
            raise ValueError(f"`level` must be 'manifold' or 'summary'; got {level!r}.")
        n = np.asarray(self.capacity_per_manifold)
        df = pd.DataFrame({
            "manifold": np.arange(n.shape[0]),
            "capacity": n,
            "radius": np.asarray(self.radius_per_manifold),
            "dimension": np.asarray(self.dimension_per_manifold),
            "n_points": np.asarray(self.n_points),
            "reduced_dim": np.asarray(self.reduced_dim),
        })
        for k in ("kappa", "K", "n_t", "forms", "center_correlation"):
            df[k] = s[k]
        return df


def mftma(
    key,
    manifolds,
    kappa: float = 0.0,
    n_t: int = 200,
    *,
    K: int | None = None,
    V=None,
    n_reps: int = 10,
    max_k: int | None = None,
    forms: str = "coded",
    chunk_size: int | None = None,
    manifold_batch: int | None = None,
    reduction: str = "gram",
    rtol: float | None = None,
    atol: float = 0.0,
    max_steps: int = 10_000,
    check_every: int = 10,
    stiefel_steps: int = 1000,
    t=None,
    strict: bool = False,
    dtype=None,
) -> MFTMAResult:
    """Mean-field manifold analysis of P manifolds with centre-correlation removal.

    Pipeline (the reference ``manifold_analysis_corr`` procedure, PRX 2018 + Cohen et al. 2020):

    1. global centring ``X0_mu = X_mu - xbar`` (mean of all points); centres from the raw data;
    2. centre correlation ``rho`` (mean |cos| of the globally centred centres) and the low-rank
       shared subspace ``V`` (:func:`geomjax.manifold.fit_center_subspace`, Stiefel optimisation
       with vmapped restarts, ``K`` chosen as the reference does with ``max K <= P-1``);
    3. projection ``(I - V V^T) X0``, per-manifold centring and normalisation by the centre norm;
    4. reduction to ``D = min(M, N)`` coordinates plus a coordinate of ones;
    5. ``n_t`` Gaussian samples per manifold and exact anchor points (as
       :func:`anchor_geometry`), all ``P n_t`` problems pooled in one solver.

    Aggregates: ``alpha = 1 / mean_mu(1/alpha_mu)``, ``R = mean R_mu``, ``D = mean D_mu``.
    Manifolds of different ``M`` are padded and masked (no Python loop over manifolds).

    Args:
        key: ``jax.random.key``; split into the centre-subspace restarts and one key per
            manifold, then one per sample (results do not depend on ``chunk_size``).
        manifolds: list of ``(M_mu, N)`` arrays (rows are points) or one ``(P, M, N)`` array.
        kappa: margin. n_t: Gaussian samples per manifold.
        K: ``None`` chooses K automatically; ``0`` skips centre-correlation removal; an int fixes K.
        V: optional ``(N, K)`` orthonormal centre subspace to remove (overrides ``K``).
        n_reps: Stiefel restarts per K. max_k: cap on the K search (default reference rule,
            always ``<= P-1``).
        forms: ``"coded"`` (reference) or ``"paper"`` radius/dimension.
        chunk_size: solve samples in chunks of this size.
        reduction: ``"gram"`` (eigendecomposition of each manifold's Gram matrix, fast) or
            ``"qr"`` (the reference's QR); equal in distribution (:func:`reduce_manifolds`).
        manifold_batch: manifolds reduced at once on the device path (``lax.map`` batch size;
            default 1 on CPU, all of them on accelerators). The anchor problems of all
            manifolds are always pooled in one solver (its later rounds gather only the
            problems still working), so this does not change the anchor stage.
        rtol, atol, max_steps, check_every: anchor NNLS settings.
        stiefel_steps: Stiefel iteration budget.
        t: optional Gaussian samples instead of drawing them: a list of P arrays
            ``(n_t, D_mu + 1)`` with ``D_mu = min(M_mu, N)`` (last column the centre direction),
            or one ``(P, n_t, D + 1)`` array; ``n_t`` is then taken from it.
        strict: raise if any anchor problem did not converge.
        dtype: computation dtype (default: the input's floating dtype).

    Returns:
        :class:`MFTMAResult`.
    """
    if forms not in _FORMS:
        raise ValueError(f"`forms` must be one of {_FORMS}; got {forms!r}.")
    if reduction not in ("gram", "qr"):
        raise ValueError(f"`reduction` must be 'gram' or 'qr'; got {reduction!r}.")
    if int(n_t) < 1:
        raise ValueError(f"`n_t` must be >= 1; got {n_t}.")
    pr = _prepare_analysis(key, manifolds, K=K, V=V, n_reps=n_reps, max_k=max_k,
                  stiefel_steps=stiefel_steps, reduction=reduction,
                  manifold_batch=manifold_batch, dtype=dtype)
    sD1, mask_j, dims, Ms, dtype = pr["sD1"], pr["mask"], pr["dims"], pr["Ms"], pr["dtype"]
    items = _solver_items(rtol, atol, max_steps, check_every, dtype)
    t_pad = None
    if t is not None:
        t_pad = _pad_t(t, np.asarray(dims), sD1.shape[2], dtype)
        n_t = t_pad.shape[1]
    cap, inv, rad, dm, _, _, sol = _anchors_all(
        pr["key"], sD1, mask_j, dims, jnp.asarray(kappa, dtype), int(n_t), forms, chunk_size, items,
        t_pad)
    if strict:
        Solution(sol.value, sol.converged, sol.num_steps, sol.residual,
                 SolverSettings(items[0][1], items[1][1], items[2][1], "fista+polish")
                 ).raise_if_unconverged("mftma anchor points")
    conv = np.asarray(sol.converged)
    mbar = float(np.mean(Ms))
    capacity = 1 / jnp.mean(inv)
    radius = jnp.mean(rad)
    dimension = jnp.mean(dm)
    lb = 2.0 / mbar
    res = MFTMAResult(
        capacity=capacity, radius=radius, dimension=dimension, center_correlation=pr["rho0"],
        residual_center_correlation=pr["rho_res"], capacity_per_manifold=cap,
        radius_per_manifold=rad, dimension_per_manifold=dm, n_points=jnp.asarray(Ms),
        reduced_dim=dims, lower_bound=jnp.asarray(lb, dtype), capacity_ratio=capacity / lb,
        dimension_ratio=dimension / mbar, kappa=jnp.asarray(kappa, dtype),
        max_steps_used=jnp.max(sol.num_steps), max_residual=jnp.max(sol.residual),
        K=pr["K"], n_t=int(n_t), forms=forms, n_unconverged=int(conv.size - conv.sum()),
        center_converged=pr["center_ok"],
    )
    return res


