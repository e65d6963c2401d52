"""Elastic-net logistic-regression probes, many at once.

The probe of Chowdhury, Durrani & Ali (CSL 2023, Eq. 2; Dalvi et al., AAAI 2019) is a softmax
classifier ``p(c | z) = softmax(z W + b)_c`` trained on the objective

    L(W, b) = (1/n) sum_i -log p(y_i | z_i) + lam1 ||W||_1 + lam2 R(W),

with ``R(W) = ||W||_F^2`` (squared L2, the paper's Eq. 2 and the default here) or
``R(W) = ||W||_F`` (unsquared, what NeuroX's ``l2_penalty`` computes; use ``l2="unsquared"`` to
reproduce published NeuroX numbers). The bias is not penalised.

Two training modes:

* ``mode="adam"`` -- the papers' protocol: Adam (lr 1e-3), 20 epochs, minibatches of 128 drawn
  from a seeded shuffle (``shuffle=False`` gives NeuroX's sequential slices), the penalty added to
  every minibatch's mean cross-entropy. The whole epoch/batch loop is one ``lax.scan``.
* ``mode="converged"`` -- FISTA (Beck & Teboulle 2009) with backtracking and adaptive restart
  (O'Donoghue & Candes 2015) on the same objective, the L1 (and unsquared L2) terms handled by
  their proximal operator; stops when the KKT residual below falls under ``atol + rtol * g0``.

Every fit reports the KKT residual of the returned probe in the infinity norm: the smallest
subgradient of ``L``, i.e. per weight ``|g + lam1 sign(w)|`` if ``w != 0`` and
``max(|g| - lam1, 0)`` if ``w = 0`` (``g`` the gradient of the smooth part, which includes the
unsquared L2 term where ``W != 0``), and ``|dL/db|`` for the bias. ``g0`` is the largest
cross-entropy gradient at the zero probe. A probe is ``converged`` when the residual meets the
tolerance; 20-epoch Adam usually does not, and says so.

Feature masks ``(D,)`` restrict a probe to a subset of neurons without copying the data: the probe
uses ``W * mask``, so masked weights get no gradient and stay exactly zero.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from geomjax._checks import as_array, check_labels, check_rank
from geomjax._types import Solution, SolverSettings, pytree_dataclass
from geomjax.probing._host import check_finite_fast, compute_dtype

__all__ = [
    "Probe",
    "probe_objective",
    "probe_kkt_residual",
    "fit_probe",
    "fit_probes",
    "predict",
    "probe_logits",
]

_HI = jax.lax.Precision.HIGHEST


@pytree_dataclass
class Probe:
    """A linear softmax probe: ``weights`` ``(..., D, C)``, ``bias`` ``(..., C)``."""

    weights: jax.Array
    bias: jax.Array


def _masked(w, mask):
    return w if mask is None else w * mask[:, None].astype(w.dtype)


def probe_logits(probe: Probe, x, feature_mask=None):
    """``x (N, D) -> (N, C)`` logits ``x (W * mask) + b``."""
    w = _masked(probe.weights, feature_mask)
    return jnp.matmul(x, w, precision=_HI) + probe.bias


def _masked_t(wt, mask):
    return wt if mask is None else wt * mask[None, :].astype(wt.dtype)


def _logits_t(x, wt, b):
    # weights kept as (C, D) inside the training loops: the (N, D) x (C, D)^T product and its
    # gradient run about twice as fast on CPU as with (D, C)
    return jnp.einsum("nd,cd->nc", x, wt, precision=_HI) + b


def _ce(logits, y, weight=None):
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    losses = lse - picked
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def _l2(w, l2):
    s = jnp.sum(w * w)
    if l2 == "squared":
        return s
    # ||W||_F with the subgradient 0 at W = 0 (the plain sqrt has an infinite derivative there).
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def probe_objective(probe: Probe, x, y, lam1=0.0, lam2=0.0, *, l2: str = "squared",
                    feature_mask=None, sample_weight=None):
    """The probe objective ``mean CE + lam1 ||W||_1 + lam2 R(W)`` (see the module docstring).

    Args:
        probe: weights ``(D, C)`` and bias ``(C,)``.
        x: ``(N, D)`` features; ``y``: ``(N,)`` int labels.
        lam1, lam2: L1 and L2 strengths; ``l2``: ``"squared"`` or ``"unsquared"``.
        feature_mask: optional ``(D,)`` mask; the probe uses ``W * mask``.
        sample_weight: optional ``(N,)`` weights of a weighted mean cross-entropy.
    """
    w = _masked(probe.weights, feature_mask)
    logits = jnp.matmul(x, w, precision=_HI) + probe.bias
    return _ce(logits, y, sample_weight) + lam1 * jnp.abs(w).sum() + lam2 * _l2(w, l2)


def _smooth_grad(params, x, y, lam2, l2, mask, transposed=False):
    """Gradient of the smooth part (CE + squared L2, or CE alone for the unsquared form)."""

    def f(p):
        if transposed:
            w = _masked_t(p.weights, mask)
            val = _ce(_logits_t(x, w, p.bias), y)
        else:
            w = _masked(p.weights, mask)
            val = _ce(jnp.matmul(x, w, precision=_HI) + p.bias, y)
        if l2 == "squared":
            val = val + lam2 * jnp.sum(w * w)
        return val

    return jax.value_and_grad(f)(params)


_GRAD_BLOCK = 1 << 20  # elements of x per row block of _ce_grad_t (4 MB in float32)


def _ce_grad_t(wt, b, x, y):
    """Gradient of the mean cross-entropy with respect to ``(W^T (C, D), b)``, in one pass over
    the rows of ``x``: row blocks of ~4 MB, each read once for its logits and again, from cache,
    for its share of ``G^T X`` (autodiff of the full-batch loss reads ``x`` twice from memory).
    ``dCE/dz = softmax(z) - onehot(y)``, averaged over the ``n`` rows."""
    n, d = x.shape
    c = wt.shape[0]
    rows = int(min(n, max(8, _GRAD_BLOCK // max(d, 1))))

    def block(xb, yb):
        z = _logits_t(xb, wt, b)
        gz = jax.nn.softmax(z, axis=-1) - jax.nn.one_hot(yb, c, dtype=z.dtype)
        return jnp.einsum("nc,nd->cd", gz, xb, precision=_HI), gz.sum(0)

    n_full = n // rows

    def body(i, acc):
        xb = jax.lax.dynamic_slice_in_dim(x, i * rows, rows, 0)
        yb = jax.lax.dynamic_slice_in_dim(y, i * rows, rows, 0)
        gw, gb = block(xb, yb)
        return acc[0] + gw, acc[1] + gb

    if n_full == 1:
        gw, gb = block(x[:rows], y[:rows])
    else:
        zero = (jnp.zeros((c, d), wt.dtype), jnp.zeros((c,), wt.dtype))
        gw, gb = jax.lax.fori_loop(0, n_full, body, zero)
    if n % rows:
        tw, tb = block(x[n_full * rows :], y[n_full * rows :])
        gw, gb = gw + tw, gb + tb
    return gw / n, gb / n


def probe_kkt_residual(probe: Probe, x, y, lam1=0.0, lam2=0.0, *, l2: str = "squared",
                       feature_mask=None):
    """Infinity norm of the minimum-norm subgradient of the objective (0 at the optimum)."""
    # computed with the weights as (C, D), the layout whose products run fastest on CPU (see
    # _logits_t); the residual is a max over all entries, so the layout does not change it
    w = _masked_t(probe.weights.T, feature_mask)
    gw, gb = _ce_grad_t(w, probe.bias, x, y)
    if l2 == "squared":
        gw = gw + 2.0 * lam2 * w
    if l2 == "unsquared":
        nrm = jnp.sqrt(jnp.sum(w * w))
        gw = gw + jnp.where(nrm > 0, lam2 * w / jnp.where(nrm > 0, nrm, 1.0), 0.0)
        # at W = 0 the subdifferential of lam2 ||W|| is the ball of radius lam2 (Frobenius); the
        # elementwise residual below ignores that slack, which only matters at the zero probe.
    rw = jnp.where(w != 0, jnp.abs(gw + lam1 * jnp.sign(w)), jnp.maximum(jnp.abs(gw) - lam1, 0.0))
    if feature_mask is not None:
        rw = rw * feature_mask[None, :].astype(rw.dtype)
    return jnp.maximum(jnp.max(rw), jnp.max(jnp.abs(gb)))


def _init(key, d, c, dtype, init):
    if init == "zeros":
        return Probe(jnp.zeros((d, c), dtype), jnp.zeros((c,), dtype))
    # torch.nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias.
    kw, kb = jax.random.split(key)
    bound = 1.0 / np.sqrt(d)
    return Probe(
        jax.random.uniform(kw, (d, c), dtype, -bound, bound),
        jax.random.uniform(kb, (c,), dtype, -bound, bound),
    )


def _adam_loop(k_shuf, n, params, batch_loss, lr, *, epochs, batch_size, shuffle, dtype):
    """The papers' protocol: Adam over ``epochs`` passes of (seeded, shuffled) minibatches.

    ``batch_loss(params, idx, valid)`` gathers its own minibatch rows ``idx`` (``valid`` is 0 on
    the padding of the last, partial batch), so several probes can share one gather.
    """
    nb = -(-n // batch_size)
    npad = nb * batch_size
    opt = optax.adam(lr)
    state = opt.init(params)
    valid = (jnp.arange(npad) < n).astype(dtype).reshape(nb, batch_size)

    def step(carry, inp):
        p, s = carry
        ib, vb = inp
        # the loss value is not used: grad alone spares the penalty sums of the forward pass
        g = jax.grad(batch_loss)(p, ib, vb)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), None

    def epoch(carry, e):
        if shuffle:
            perm = jax.random.permutation(jax.random.fold_in(k_shuf, e), n)
        else:
            perm = jnp.arange(n)
        # padding index n sorts last; each minibatch's rows are then read in increasing order
        # (same minibatch sets, so the same mean loss up to the summation order)
        idx = jnp.concatenate([perm, jnp.full((npad - n,), n, perm.dtype)]).reshape(nb, batch_size)
        idx = jnp.sort(idx, axis=1)
        idx = jnp.where(idx < n, idx, 0)
        carry, _ = jax.lax.scan(step, carry, (idx, valid))
        return carry, None

    (params, _), _ = jax.lax.scan(epoch, (params, state), jnp.arange(epochs))
    return params, jnp.asarray(epochs * nb, jnp.int32)


def _fit_adam(key, x, y, mask, lam1, lam2, lr, *, n_classes, epochs, batch_size, l2, shuffle,
              init):
    n, d = x.shape
    k_init, k_shuf = jax.random.split(key)
    p0 = _init(k_init, d, n_classes, x.dtype, init)
    params = Probe(p0.weights.T, p0.bias)  # (C, D) layout inside the loop

    def batch_loss(p, ib, vb):
        wt = _masked_t(p.weights, mask)
        return _ce(_logits_t(x[ib], wt, p.bias), y[ib], vb) + lam1 * jnp.abs(wt).sum() + (
            lam2 * _l2(wt, l2))

    params, steps = _adam_loop(k_shuf, n, params, batch_loss, lr, epochs=epochs,
                               batch_size=batch_size, shuffle=shuffle, dtype=x.dtype)
    return Probe(_masked_t(params.weights, mask).T, params.bias), steps


def _prox(p: Probe, t, lam1, lam2, l2, mask):
    w = jnp.sign(p.weights) * jnp.maximum(jnp.abs(p.weights) - t * lam1, 0.0)
    if l2 == "unsquared":  # prox of lam1|.|_1 + lam2||.||_F = group shrink after soft threshold
        nrm = jnp.sqrt(jnp.sum(w * w))
        w = w * jnp.maximum(1.0 - t * lam2 / jnp.where(nrm > 0, nrm, 1.0), 0.0)
    return Probe(_masked_t(w, mask), p.bias)


def _fit_fista(key, x, y, mask, lam1, lam2, *, n_classes, l2, init, rtol, atol, max_steps,
               check_every):
    n, d = x.shape
    dt = x.dtype
    x0 = _init(key, d, n_classes, dt, init)
    x0 = Probe(_masked_t(x0.weights.T, mask), x0.bias)  # (C, D) layout inside the loop
    tree = jax.tree_util
    ce0 = _smooth_grad(Probe(jnp.zeros_like(x0.weights), jnp.zeros_like(x0.bias)), x, y, 0.0,
                       "squared", mask, True)[1]
    g0 = jnp.maximum(jnp.max(jnp.abs(ce0.weights)), jnp.max(jnp.abs(ce0.bias)))
    tol = atol + rtol * g0

    def grad(p):
        return _smooth_grad(p, x, y, lam2, l2, mask, True)

    def dot(a, b):
        return sum(jnp.vdot(u, v)
                   for u, v in zip(tree.tree_leaves(a), tree.tree_leaves(b), strict=True))

    def sub(a, b):
        return tree.tree_map(jnp.subtract, a, b)

    def residual(p):
        return probe_kkt_residual(Probe(p.weights.T, p.bias), x, y, lam1, lam2, l2=l2,
                                  feature_mask=mask)

    # Lipschitz estimate to start the backtracking: 1/2 lambda_max(X^T X / n) + 1/2 (bias)
    # (+ 2 lam2), by a few power iterations (the softmax Hessian is bounded by 1/2).
    v = jnp.ones((d,), dt) / np.sqrt(d)

    def power(v, _):
        u = jnp.matmul(jnp.matmul(x, v, precision=_HI), x, precision=_HI) / n
        return u / jnp.maximum(jnp.linalg.norm(u), 1e-30), jnp.linalg.norm(u)

    _, lams = jax.lax.scan(power, v, None, length=20)
    big_l = 0.5 * (lams[-1] + 1.0) + (2.0 * lam2 if l2 == "squared" else 0.0)
    big_l = jnp.maximum(big_l, 1e-6).astype(dt)

    def fista_step(_, c):
        xk, xprev, tk, lk = c
        tnext = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * tk * tk))
        yk = tree.tree_map(lambda a, b: a + ((tk - 1.0) / tnext) * (a - b), xk, xprev)
        fy, gy = grad(yk)
        eps = 10 * jnp.finfo(dt).eps * (1.0 + jnp.abs(fy))

        def try_step(lk):
            step = 1.0 / lk
            xn = _prox(tree.tree_map(lambda a, g: a - step * g, yk, gy), step, lam1, lam2, l2,
                       mask)
            diff = sub(xn, yk)
            ok = grad(xn)[0] <= fy + dot(gy, diff) + 0.5 * lk * dot(diff, diff) + eps
            return xn, ok

        def bt_cond(c):
            return (~c[2]) & (c[3] < 40)

        def bt_body(c):
            lk2 = c[0] * 2.0
            xn, ok = try_step(lk2)
            return lk2, xn, ok, c[3] + 1

        l_try = lk * 0.7  # let the step grow again after a backtrack
        xn, ok = try_step(l_try)
        l_new, xn, ok, _ = jax.lax.while_loop(bt_cond, bt_body, (l_try, xn, ok, 0))
        # gradient-based adaptive restart: momentum that points uphill is dropped
        restart = dot(sub(yk, xn), sub(xn, xk)) > 0
        return xn, xk, jnp.where(restart, 1.0, tnext).astype(dt), l_new

    def cond(s):
        return (~s["done"]) & (s["k"] < max_steps)

    def body(s):
        # check_every FISTA steps, then one residual evaluation (no lax.cond: under vmap it would
        # evaluate both branches every step)
        c = jax.lax.fori_loop(0, check_every, fista_step, (s["x"], s["xprev"], s["t"], s["L"]))
        res = residual(c[0])
        return dict(x=c[0], xprev=c[1], t=c[2], L=c[3], k=s["k"] + check_every, res=res,
                    done=res <= tol)

    s0 = dict(x=x0, xprev=x0, t=jnp.asarray(1.0, dt), L=big_l, k=jnp.asarray(0, jnp.int32),
              res=jnp.asarray(jnp.inf, dt), done=jnp.asarray(False))
    s = jax.lax.while_loop(cond, body, s0)
    return Probe(s["x"].weights.T, s["x"].bias), s["k"], s["res"], s["done"], tol


def _fit_one_impl(key, x, y, mask, lam1, lam2, lr, *, n_classes, mode, l2, epochs, batch_size,
             shuffle, init, rtol, atol, max_steps, check_every):
    dt = x.dtype
    lam1 = jnp.asarray(lam1, dt)
    lam2 = jnp.asarray(lam2, dt)
    if mode == "adam":
        p, steps = _fit_adam(key, x, y, mask, lam1, lam2, jnp.asarray(lr, dt), n_classes=n_classes,
                             epochs=epochs, batch_size=batch_size, l2=l2, shuffle=shuffle,
                             init=init)
        res = probe_kkt_residual(p, x, y, lam1, lam2, l2=l2, feature_mask=mask)
        ce0 = _smooth_grad(Probe(jnp.zeros_like(p.weights), jnp.zeros_like(p.bias)), x, y, 0.0,
                           "squared", mask)[1]
        g0 = jnp.maximum(jnp.max(jnp.abs(ce0.weights)), jnp.max(jnp.abs(ce0.bias)))
        conv = res <= atol + rtol * g0
    else:
        p, steps, res, conv, _ = _fit_fista(key, x, y, mask, lam1, lam2, n_classes=n_classes,
                                            l2=l2, init=init, rtol=rtol, atol=atol,
                                            max_steps=max_steps, check_every=check_every)
    return p, conv, steps, res


_STATIC = ("n_classes", "mode", "l2", "epochs", "batch_size", "shuffle", "init", "rtol", "atol",
           "max_steps", "check_every")
_fit_one = jax.jit(_fit_one_impl, static_argnames=_STATIC)

_BATCHED_RANK = {"x": 3, "y": 2, "feature_mask": 2, "lam1": 1, "lam2": 1}


def fit_probes(
    key,
    x,
    y,
    *,
    n_classes: int | None = None,
    feature_mask=None,
    lam1=1e-5,
    lam2=1e-5,
    mode: str = "adam",
    l2: str = "squared",
    epochs: int = 20,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    shuffle: bool = True,
    init: str | None = None,
    rtol: float = 1e-4,
    atol: float = 0.0,
    max_steps: int = 5000,
    check_every: int = 10,
    strict: bool = False,
) -> Solution:
    """Train one or many elastic-net probes in a single compiled call.

    Any of ``key``, ``x``, ``y``, ``feature_mask``, ``lam1``, ``lam2`` may carry a leading batch
    axis of size ``B``; the others are shared and the batch is one ``jax.vmap``. Typical batches:
    layers (``x`` ``(L, N, H)``, with ``feature_mask`` ``(L, H)`` for padded widths), label sets
    (``y`` ``(B, N)``: task, control task, other tasks), neuron masks (``feature_mask``
    ``(B, D)``: minimal-set search, ablation retrains), lambda grids (``lam1``/``lam2`` ``(B,)``)
    and seeds (``key`` ``(B,)``). Probes that share ``x`` and ``key`` also share the shuffled
    minibatches, so the batch costs one gather per step and one wide matmul.

    Args:
        key: ``jax.random.key`` (shuffling and, for ``init="torch"``, the initialisation).
        x: ``(N, D)`` or ``(B, N, D)`` features (standardise them first: the ranking is on
            ``|W|`` and the converged solver's speed depends on the scale).
        y: ``(N,)`` or ``(B, N)`` integer labels ``0..C-1``.
        n_classes: ``C``; inferred as ``max(y) + 1`` when omitted.
        feature_mask: ``(D,)`` or ``(B, D)`` bool/0-1 mask of the neurons a probe may use.
        lam1, lam2: L1 / L2 strengths (scalars or ``(B,)``).
        mode: ``"adam"`` (papers' protocol) or ``"converged"`` (FISTA to tolerance).
        l2: ``"squared"`` (default) or ``"unsquared"`` (NeuroX's ``||W||_F``).
        epochs, batch_size, learning_rate, shuffle: Adam protocol (defaults: the papers').
        init: ``"zeros"`` or ``"torch"`` (``U(+-1/sqrt(D))``); default zeros for the squared
            form, torch for the unsquared one (as NeuroX, whose penalty is not differentiable at 0).
        rtol, atol: tolerance on the KKT residual, ``atol + rtol * g0``.
        max_steps: FISTA iteration budget; check_every: FISTA residual check period.
        strict: raise :class:`NotConvergedError` if a probe did not converge (converged mode).

    Returns:
        :class:`~geomjax._types.Solution` whose ``value`` is a :class:`Probe` (leading axis ``B``
        when batched), with ``converged``, ``num_steps`` and the KKT ``residual``.

    Raises:
        ValueError/TypeError: bad shapes, NaN/inf features, labels out of range, fewer than 2
            classes, mismatched sample counts, negative lambdas, unknown options.
    """
    if mode not in ("adam", "converged"):
        raise ValueError(f"`mode` must be 'adam' or 'converged'; got {mode!r}.")
    if l2 not in ("squared", "unsquared"):
        raise ValueError(f"`l2` must be 'squared' or 'unsquared'; got {l2!r}.")
    if init is None:
        init = "zeros" if l2 == "squared" else "torch"
    if init not in ("zeros", "torch"):
        raise ValueError(f"`init` must be 'zeros' or 'torch'; got {init!r}.")
    if batch_size < 1 or epochs < 1 or max_steps < 1:
        raise ValueError("`batch_size`, `epochs` and `max_steps` must be positive.")

    x = as_array(x, "x")
    check_rank(x, (2, 3), "x", "(N, D) or (B, N, D)")
    check_finite_fast(x, "x")
    n, d = x.shape[-2:]
    if n < 2 or d < 1:
        raise ValueError(f"`x` needs at least 2 samples and 1 feature; got shape {tuple(x.shape)}.")
    y = np.asarray(as_array(y, "y"))
    if y.ndim not in (1, 2):
        raise ValueError(f"`y` must be (N,) or (B, N) integer labels; got shape {y.shape}.")
    for row in y.reshape(-1, y.shape[-1]):
        check_labels(row, n, "y", n_classes)
    if n_classes is None:
        n_classes = int(y.max()) + 1
    for row in y.reshape(-1, y.shape[-1]):
        if np.unique(row).size < 2:
            raise ValueError("`y` has a single class; a probe needs at least 2 classes.")
    if n_classes < 2:
        raise ValueError(f"`n_classes` must be >= 2; got {n_classes}.")
    dt = compute_dtype(x)
    args = {
        "x": jnp.asarray(x, dt),
        "y": jnp.asarray(y, jnp.int32),
        "feature_mask": None if feature_mask is None else as_array(feature_mask, "feature_mask"),
        "lam1": np.asarray(lam1, dtype=float),
        "lam2": np.asarray(lam2, dtype=float),
    }
    for nm in ("lam1", "lam2"):
        if np.any(args[nm] < 0) or not np.all(np.isfinite(args[nm])):
            raise ValueError(f"`{nm}` must be finite and >= 0; got {args[nm]}.")
        if args[nm].ndim > 1:
            raise ValueError(f"`{nm}` must be a scalar or (B,); got shape {args[nm].shape}.")
    fm = args["feature_mask"]
    if fm is not None:
        if fm.ndim not in (1, 2) or fm.shape[-1] != d:
            raise ValueError(
                f"`feature_mask` must be (D,) or (B, D) with D={d}; got shape {tuple(fm.shape)}."
            )
        args["feature_mask"] = jnp.asarray(fm).astype(dt)

    key = jnp.asarray(key)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    key_batched = key.ndim == (1 if typed else 2)
    sizes = {nm: v.shape[0] for nm, v in args.items()
             if v is not None and np.ndim(v) == _BATCHED_RANK[nm]}
    if key_batched:
        sizes["key"] = jnp.asarray(key).shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batched arguments disagree on the batch size: {sizes}.")
    static = dict(n_classes=int(n_classes), mode=mode, l2=l2, epochs=int(epochs),
                  batch_size=int(min(batch_size, n)), shuffle=bool(shuffle), init=init,
                  rtol=float(rtol), atol=float(atol), max_steps=int(max_steps),
                  check_every=int(check_every))
    settings = SolverSettings(rtol=float(rtol), atol=float(atol),
                              max_steps=int(max_steps if mode == "converged" else epochs),
                              method="fista" if mode == "converged" else "adam")
    lr = jnp.asarray(learning_rate, dt)
    if not sizes:
        p, conv, steps, res = _fit_one(key, args["x"], args["y"], args["feature_mask"],
                                       args["lam1"], args["lam2"], lr, **static)
    else:
        p, conv, steps, res = _fit_batched(key, args["x"], args["y"], args["feature_mask"],
                                           args["lam1"], args["lam2"], lr,
                                           key_batched=bool(key_batched), **static)
    sol = Solution(value=p, converged=conv, num_steps=steps, residual=res, settings=settings)
    if strict:
        sol.raise_if_unconverged("fit_probes")
    return sol


@partial(jax.jit, static_argnames=("key_batched",) + _STATIC)
def _fit_batched(key, x, y, mask, lam1, lam2, lr, *, key_batched, **static):
    axes = (
        0 if key_batched else None,
        0 if x.ndim == 3 else None,
        0 if y.ndim == 2 else None,
        None if mask is None else (0 if mask.ndim == 2 else None),
        0 if np.ndim(lam1) == 1 else None,
        0 if np.ndim(lam2) == 1 else None,
        None,
    )
    fn = partial(_fit_one_impl, **static)
    return jax.vmap(fn, in_axes=axes)(key, x, y, mask, lam1, lam2, lr)


def fit_probe(key, x, y, **kwargs) -> Solution:
    """Train a single probe (``fit_probes`` without batch axes); see :func:`fit_probes`."""
    return fit_probes(key, x, y, **kwargs)


@jax.jit
def predict(probe: Probe, x, feature_mask=None):
    """Predicted classes ``argmax(x (W * mask) + b)``, ``(N,)`` (vmap for batches)."""
    return jnp.argmax(probe_logits(probe, x, feature_mask), axis=-1)
