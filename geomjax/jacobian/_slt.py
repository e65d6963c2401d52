"""Per-sample Jacobians: the sample-dependent linear transform (SLT) of every node of a layer.

For a network with input ``x in R^F`` and a layer ``h(x) in R^H`` the SLT of data point ``x_i`` is
the Jacobian ``A(x_i) = dh/dx (x_i) in R^{H x F}`` (Nagamine & Mesgarani 2017, eq. 1); row ``m`` is
the SLT of node ``m``. Two routes are provided:

* :func:`per_sample_jacobian` -- any differentiable ``fn(params, x)``: ``vmap`` of ``jacfwd`` or
  ``jacrev`` (picked by shape), mapped over chunks of samples to bound memory.
* :func:`relu_mlp_slt` -- the exact fast path for ReLU MLPs with a linear output (eqs. 2-4): the
  products of row-masked weight matrices ``A^l = M^l W^l A^{l-1}`` with ``M^l = diag(1[z^l > 0])``,
  together with the offsets ``c^l = M^l (W^l c^{l-1} + b^l)`` of the piecewise-affine map
  ``h^l(x) = A^l(x) x + c^l(x)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import as_array, check_finite
from .._types import result_dtype

__all__ = [
    "per_sample_jacobian",
    "relu_mlp_slt",
    "relu_mlp_output_slt",
    "relu_mlp_apply",
    "mlp_layers",
    "select_layer",
    "init_relu_mlp",
]

_HI = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------
# MLP parameter conventions
# ----------------------------------------------------------------------------------------------


def mlp_layers(params) -> list[tuple[jax.Array, jax.Array]]:
    """Normalise MLP parameters to a list of ``(kernel, bias)`` pairs, input layer first.

    Kernels use the Flax ``Dense`` layout ``(in, out)``, so a layer computes ``z = h @ kernel +
    bias`` and the paper's (column-vector) weight matrix is ``W^l = kernel.T``. Accepted forms:

    * a sequence of ``(kernel, bias)`` pairs;
    * a sequence of mappings with ``"kernel"`` and ``"bias"`` entries;
    * a Flax variables/params mapping (optionally under ``"params"``) whose values are such
      mappings, taken in insertion order (the order Flax creates the submodules in).

    The last pair is the linear output layer; all earlier ones are ReLU hidden layers. Fold
    batch normalisation into the preceding kernel/bias first (eval mode) when the net has it.

    Raises:
        TypeError/ValueError: when ``params`` has none of these forms or shapes do not chain.
    """
    if isinstance(params, Mapping):
        if "params" in params and isinstance(params["params"], Mapping):
            params = params["params"]
        params = [params[k] for k in params]
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)) or len(params) == 0:
        raise TypeError(
            "`params` must be a non-empty list of (kernel, bias) pairs or {'kernel', 'bias'} "
            f"mappings (Flax Dense layout, kernel (in, out)); got {type(params).__name__}."
        )
    layers = []
    for i, p in enumerate(params):
        if isinstance(p, Mapping):
            if "kernel" not in p or "bias" not in p:
                raise ValueError(
                    f"`params[{i}]` must have 'kernel' and 'bias' entries; got keys {list(p)}."
                )
            k, b = p["kernel"], p["bias"]
        elif isinstance(p, Sequence) and len(p) == 2:
            k, b = p
        else:
            raise TypeError(f"`params[{i}]` must be a (kernel, bias) pair; got {type(p).__name__}.")
        k = jnp.asarray(k)
        b = jnp.asarray(b)
        if k.ndim != 2 or b.ndim != 1 or b.shape[0] != k.shape[1]:
            raise ValueError(
                f"`params[{i}]` must be kernel (in, out) and bias (out,); got kernel "
                f"{tuple(k.shape)} and bias {tuple(b.shape)}."
            )
        if layers and layers[-1][0].shape[1] != k.shape[0]:
            raise ValueError(
                f"`params[{i}]` kernel has {k.shape[0]} inputs but layer {i - 1} has "
                f"{layers[-1][0].shape[1]} outputs; consecutive layers must chain."
            )
        layers.append((k, b))
    return layers


def init_relu_mlp(key, sizes: Sequence[int], dtype=jnp.float32, bias_scale: float = 0.1):
    """Random ReLU-MLP parameters ``[(kernel, bias), ...]`` with He-scaled kernels.

    Args:
        key: a ``jax.random.key``.
        sizes: layer widths ``(F, H_1, ..., H_L, K)``; the last layer is the linear output.
        dtype: parameter dtype.
        bias_scale: standard deviation of the (Gaussian) biases.
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"`sizes` needs at least two positive widths (F, ..., K); got {sizes}.")
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    out = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        k = jax.random.normal(keys[2 * i], (a, b), dtype) * jnp.sqrt(2.0 / a).astype(dtype)
        c = jax.random.normal(keys[2 * i + 1], (b,), dtype) * jnp.asarray(bias_scale, dtype)
        out.append((k, c))
    return out


def relu_mlp_apply(params, x):
    """Forward pass of a ReLU MLP with a linear output layer.

    Args:
        params: see :func:`mlp_layers`.
        x: ``(F,)`` or ``(B, F)`` inputs.

    Returns:
        ``(logits, acts)``: the output logits and the list of post-ReLU hidden activations
        ``[h^1, ..., h^L]`` (``jax.nn.relu``, derivative 0 at 0 as in eq. 3).
    """
    layers = mlp_layers(params)
    h = x
    acts = []
    for k, b in layers[:-1]:
        h = jax.nn.relu(jnp.matmul(h, k, precision=_HI) + b)
        acts.append(h)
    k, b = layers[-1]
    return jnp.matmul(h, k, precision=_HI) + b, acts


# ----------------------------------------------------------------------------------------------
# Layer selection for arbitrary callables
# ----------------------------------------------------------------------------------------------


def _pick(out, layer):
    if layer is None:
        return out
    if callable(layer):
        return layer(out)
    if isinstance(layer, tuple):
        for key in layer:
            out = out[key]
        return out
    return out[layer]


def select_layer(fn: Callable, layer) -> Callable:
    """Turn an apply function with several outputs into ``fn(params, x) -> one layer``.

    Args:
        fn: ``fn(params, x)``, e.g. a Flax ``model.apply``, whose output is an array, a tuple/list
            or a dict of layer activations (possibly nested, e.g. ``(logits, [h1, h2, ...])``).
        layer: ``None`` (the output is already an array), an index or key (``out[layer]``), a tuple
            path of indices/keys (``(1, 2)`` is ``out[1][2]``), or a callable ``out -> array``.

    Returns:
        ``g(params, x) = pick(fn(params, x))``.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable fn(params, x); got {type(fn).__name__}.")

    def g(params, x):
        return _pick(fn(params, x), layer)

    return g


# ----------------------------------------------------------------------------------------------
# Generic per-sample Jacobians
# ----------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnums=(0, 1, 4, 5))
def _jacobian_kernel(fn, layer, params, x, method, chunk_size):
    jac = jax.jacfwd if method == "jacfwd" else jax.jacrev
    per_sample = jac(lambda xi: _pick(fn(params, xi), layer))
    return jax.lax.map(per_sample, x, batch_size=chunk_size)


def _output_shape(fn, params, x0):
    out = jax.eval_shape(lambda p, xi: fn(p, xi), params, x0)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            "the selected layer of `fn` must be a single array; got a "
            f"{type(out).__name__}. Pass `layer=` to pick one output (index, key, path or "
            "callable)."
        )
    return out.shape


def per_sample_jacobian(
    fn: Callable,
    params: Any,
    x,
    *,
    layer=None,
    method: str = "auto",
    chunk_size: int | None = 256,
) -> jax.Array:
    """The SLT ``A(x_i) = d fn(params, x_i) / d x_i`` of every sample (eq. 1).

    Args:
        fn: ``fn(params, x_i)`` for a single sample ``x_i`` of shape ``(F,)`` (or any input shape),
            returning the layer's activations ``(H,)`` -- or a tuple/dict of layers, with ``layer``
            selecting one (see :func:`select_layer`). Flax ``model.apply`` works unchanged when the
            model accepts an unbatched input.
        params: the parameters passed through to ``fn`` (not differentiated).
        x: ``(N, F)`` samples (rows are samples).
        layer: optional layer selector applied to ``fn``'s output.
        method: ``"jacfwd"`` (F tangent passes; best when ``F <= H``), ``"jacrev"`` (H cotangent
            passes; best when ``H < F``, e.g. logits) or ``"auto"`` (the cheaper by shape).
        chunk_size: samples per vmapped chunk (``lax.map`` over chunks bounds the intermediates);
            ``None`` vmaps all samples at once.

    Returns:
        ``(N, H, F)`` (in general ``(N, *out_shape, *in_shape)``) per-sample Jacobians in the
        dtype of ``x``. Row ``m`` of sample ``i`` is the SLT of node ``m`` at ``x_i``. The compiled
        program is cached on ``(fn, layer, method, chunk_size)`` and the shapes: pass the same
        function object (not a fresh lambda) to avoid recompiling.

    Raises:
        ValueError/TypeError: on a non-callable ``fn``, an unknown ``method``, ``x`` without a
            sample axis, NaN/inf in ``x`` or a non-array layer output.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable fn(params, x); got {type(fn).__name__}.")
    if method not in ("auto", "jacfwd", "jacrev"):
        raise ValueError(f"`method` must be 'auto', 'jacfwd' or 'jacrev'; got {method!r}.")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"`chunk_size` must be a positive integer or None; got {chunk_size}.")
    x = as_array(x, "x")
    if x.ndim < 2:
        raise ValueError(
            f"`x` must be (N, F) with samples as rows; got shape {tuple(x.shape)}. "
            "Use x[None] for a single sample."
        )
    if x.shape[0] == 0:
        raise ValueError("`x` has no samples (N=0).")
    check_finite(x, "x")
    x = jnp.asarray(x, result_dtype(x))
    try:
        hash(layer)
    except TypeError:
        raise TypeError(
            f"`layer` must be hashable (None, index, key, tuple path or callable); got {layer!r}."
        ) from None
    out_shape = _output_shape(select_layer(fn, layer), params, x[0])
    if method == "auto":
        n_out = int(np.prod(out_shape)) if out_shape else 1
        n_in = int(np.prod(x.shape[1:]))
        method = "jacrev" if n_out < n_in else "jacfwd"
    chunk = None if chunk_size is None else min(int(chunk_size), x.shape[0])
    return _jacobian_kernel(fn, layer, params, x, method, chunk)


# ----------------------------------------------------------------------------------------------
# Exact fast path for ReLU MLPs (eqs. 2-4)
# ----------------------------------------------------------------------------------------------


def _relu_slt_hbf(layers, x, with_offsets: bool, sample_mask=None):
    """Masked-weight products in the (H, B, F) layout: each layer is one (H x K)(K x B*F) GEMM.

    Returns lists (per hidden layer then output) of A^l with shape (H_l, B, F), and optionally
    the offsets c^l with shape (B, H_l). A 0/1 ``sample_mask`` (B,) is folded into the ReLU masks,
    which zeroes the SLTs of masked samples in every layer without an extra pass over A.
    """
    B, F = x.shape
    dt = x.dtype
    As, cs = [], []
    h = x
    A = None
    c = None
    n = len(layers)
    for i, (k, b) in enumerate(layers):
        k = k.astype(dt)
        b = b.astype(dt)
        z = jnp.matmul(h, k, precision=_HI) + b  # (B, H)
        if A is None:  # A^0 = I, so W^1 A^0 = W^1, shared by every sample
            WA = jnp.broadcast_to(k.T[:, None, :], (k.shape[1], B, F))
            Wc = jnp.zeros((B, k.shape[1]), dt) if with_offsets else None
        else:
            H_prev = A.shape[0]
            WA = jnp.matmul(k.T, A.reshape(H_prev, B * F), precision=_HI).reshape(-1, B, F)
            Wc = jnp.matmul(c, k, precision=_HI) if with_offsets else None
        if i < n - 1:
            mask = (z > 0).astype(dt)  # eq. 3: h > 0 <=> z > 0 for ReLU
            if sample_mask is not None:
                mask = mask * sample_mask[:, None]
            A = WA * mask.T[:, :, None]
            if with_offsets:
                c = mask * (Wc + b)
            h = z * mask
        else:  # linear output layer, unmasked
            A = WA if (sample_mask is None or n > 1) else WA * sample_mask[None, :, None]
            if with_offsets:
                c = Wc + b
        As.append(A)
        if with_offsets:
            cs.append(c)
    return As, cs


def _relu_slt_compact(layers, x, caps, with_offsets: bool):
    """Masked-weight products restricted to the active units, per sample ((B, H, F) layout).

    ``A^{l-1}`` is zero on the rows of inactive units of layer ``l-1`` and ``M^l`` zeroes the rows
    of inactive units of layer ``l``, so ``A^l = M^l W^l A^{l-1}`` only needs the block of ``W^l``
    between the active units of both layers. Each sample's units are ordered active-first (a stable
    sort of its ReLU mask) and the first ``caps[l]`` kept: ``P^l = W^l[act_l, act_{l-1}] P^{l-1}``
    is one batched ``(C_l x C_{l-1})(C_{l-1} x F)`` product, about ``(C/H)^2`` of the dense flops.
    Kept slots beyond a sample's active count are zeroed through the mask, so the result is exact
    for any ``caps[l] >= max_i #active_l(x_i)``; ``caps[l] = H_l`` is always valid. The full
    ``(B, H_l, F)`` SLT is a row gather of ``P^l`` (inactive units read an appended zero row).
    Needs at least one hidden layer.
    """
    B, F = x.shape
    dt = x.dtype
    As, cs = [], []
    h = x
    P = idx_prev = c = None
    n = len(layers)
    for i, (k, b) in enumerate(layers):
        k = k.astype(dt)
        b = b.astype(dt)
        z = jnp.matmul(h, k, precision=_HI) + b  # (B, H)
        kT = k.T  # W^l, (H_l, H_{l-1})
        if i == n - 1:  # linear output layer: W^out restricted to the active units of layer L
            Wo = jnp.transpose(jnp.take(kT, idx_prev, axis=1), (1, 0, 2))  # (B, K, C_L)
            As.append(jnp.einsum("bkc,bcf->bkf", Wo, P, precision=_HI))
            if with_offsets:
                cs.append(jnp.matmul(c, k, precision=_HI) + b)
            break
        m = z > 0  # eq. 3: h > 0 <=> z > 0 for ReLU
        C = caps[i]
        idx = jnp.argsort(~m, axis=1, stable=True)[:, :C]  # active units first, (B, C)
        keep = jnp.take_along_axis(m, idx, axis=1).astype(dt)  # 0 on slots past the active count
        rows = kT[idx] * keep[:, :, None]  # M^l W^l on the kept rows, (B, C, H_{l-1})
        if P is None:  # A^1 = M^1 W^1: no product
            P = rows
        else:
            Wc = jnp.take_along_axis(rows, idx_prev[:, None, :], axis=2)  # (B, C_l, C_{l-1})
            P = jnp.einsum("bij,bjf->bif", Wc, P, precision=_HI)
        pos = jnp.where(m, jnp.cumsum(m, axis=1) - 1, C)  # slot of each unit; inactive -> zero row
        P_ext = jnp.concatenate([P, jnp.zeros((B, 1, P.shape[2]), dt)], axis=1)
        As.append(jnp.take_along_axis(P_ext, pos[:, :, None], axis=1))
        mf = m.astype(dt)
        if with_offsets:
            c = mf * (b if c is None else jnp.matmul(c, k, precision=_HI) + b)
            cs.append(c)
        h = z * mf
        idx_prev = idx
    return As, cs


@partial(jax.jit, static_argnames=("layers", "offsets", "caps"))
def _relu_slt_kernel(params, x, layers, offsets, caps=None):
    if caps is None:
        As, cs = _relu_slt_hbf(params, x, offsets)
        A_out = tuple(jnp.transpose(As[i], (1, 0, 2)) for i in layers)
    else:
        As, cs = _relu_slt_compact(params, x, caps, offsets)
        A_out = tuple(As[i] for i in layers)
    c_out = tuple(cs[i] for i in layers) if offsets else None
    return A_out, c_out


@jax.jit
def _active_counts(layers, x):
    """Largest number of active ReLU units over the samples, per hidden layer."""
    h = x
    out = []
    for k, b in layers[:-1]:
        z = jnp.matmul(h, k.astype(x.dtype), precision=_HI) + b.astype(x.dtype)
        out.append(jnp.max(jnp.sum(z > 0, axis=1)))
        h = jnp.maximum(z, 0)
    return jnp.stack(out)


def _active_caps(layers, x, quantum: int = 16):
    """Static capacities for :func:`_relu_slt_compact`: the batch's largest active count per hidden
    layer rounded up to a multiple of ``quantum`` (few distinct compilations), at most ``H_l``.

    A traced ``x`` (inside ``jit``/``vmap``) has no concrete counts: every unit is kept then.
    """
    widths = [k.shape[1] for k, _ in layers[:-1]]
    if isinstance(x, jax.core.Tracer) or any(
        isinstance(a, jax.core.Tracer) for kb in layers for a in kb
    ):
        return tuple(widths)
    counts = np.asarray(_active_counts(layers, x))
    return tuple(
        min(w, max(quantum, -(-int(c) // quantum) * quantum))
        for w, c in zip(widths, counts, strict=True)
    )


def _check_mlp_input(layers, x, name="x"):
    x = as_array(x, name)
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must be (N, F) with samples as rows; got shape {tuple(x.shape)}."
        )
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` has no samples (N=0).")
    F = layers[0][0].shape[0]
    if x.shape[1] != F:
        raise ValueError(
            f"`{name}` has {x.shape[1]} features but the first kernel expects F={F} inputs."
        )
    check_finite(x, name)
    return jnp.asarray(x, result_dtype(x))


def _layer_indices(layers, which, n_layers):
    if which is None:
        return tuple(range(n_layers))
    if isinstance(which, (int, np.integer)):
        which = (which,)
    out = []
    for w in which:
        w = int(w)
        if not -n_layers <= w < n_layers:
            raise ValueError(
                f"`layers` entry {w} is out of range for a net with {n_layers} layers "
                f"(hidden 0..{n_layers - 2}, output {n_layers - 1} or -1)."
            )
        out.append(w % n_layers)
    return tuple(out)


def relu_mlp_slt(params, x, *, layers=None, offsets: bool = False):
    """Exact SLTs of a ReLU MLP from products of row-masked weights (eqs. 2-4).

    With ``W^l = kernel_l.T`` and ``M^l = diag(1[z^l > 0])`` (eq. 3; the derivative of ReLU at 0 is
    taken as 0, like ``jax.nn.relu``):

    ``A^1 = M^1 W^1``, ``A^l = M^l W^l A^{l-1}``, ``A^out = W^out A^L`` (eq. 2), and with biases
    ``c^l = M^l (W^l c^{l-1} + b^l)``, so ``h^l(x) = A^l(x) x + c^l(x)`` exactly; with zero biases
    ``y = A^out(x) x`` (eq. 4). Only the active units enter each product: per sample, layer ``l``
    costs one ``(C_l x C_{l-1})(C_{l-1} x F)`` matmul, where ``C_l`` is the largest number of
    active units of layer ``l`` over the batch (rounded up to a multiple of 16, so the compiled
    program is reused across batches); with half the units off that is about a quarter of the
    dense product's flops. The counts come from one extra forward pass on the host side; inside
    ``jit``/``vmap`` (traced ``x``) they are unknown and every unit is kept (``C_l = H_l``).

    Args:
        params: ReLU-MLP parameters (see :func:`mlp_layers`).
        x: ``(N, F)`` inputs.
        layers: which layers to return: indices into ``[hidden_1, ..., hidden_L, output]``
            (``-1`` is the output); ``None`` returns all.
        offsets: also return the offsets ``c^l``.

    Returns:
        A list of ``(N, H_l, F)`` SLT tensors (one per requested layer); with ``offsets=True`` a
        pair ``(slts, cs)`` where ``cs`` is the list of ``(N, H_l)`` offsets.
    """
    lay = mlp_layers(params)
    x = _check_mlp_input(lay, x)
    idx = _layer_indices(lay, layers, len(lay))
    caps = _active_caps(lay, x) if len(lay) > 1 else None
    A, c = _relu_slt_kernel(lay, x, idx, bool(offsets), caps)
    return (list(A), list(c)) if offsets else list(A)


@jax.jit
def _relu_output_slt_kernel(layers, x):
    dt = x.dtype
    h = x
    masks = []
    for k, b in layers[:-1]:
        z = jnp.matmul(h, k.astype(dt), precision=_HI) + b.astype(dt)
        m = (z > 0).astype(dt)
        masks.append(m)
        h = z * m
    k_out = layers[-1][0].astype(dt)
    # R = W^out M^L, then R <- (R W^l) M^{l-1}, finally R W^1: cost K * sum H^2 per sample.
    R = k_out.T[None, :, :] * masks[-1][:, None, :]
    for i in range(len(layers) - 2, 0, -1):
        R = jnp.einsum("bkh,jh->bkj", R, layers[i][0].astype(dt), precision=_HI)
        R = R * masks[i - 1][:, None, :]
    return jnp.einsum("bkh,fh->bkf", R, layers[0][0].astype(dt), precision=_HI)


def relu_mlp_output_slt(params, x) -> jax.Array:
    """Output-layer SLTs ``A^out(x_i)`` of a ReLU MLP by the reverse masked product.

    ``R = W^out M^L``, then ``R <- (R W^l) M^{l-1}`` down to ``R W^1`` (eq. 2 read right to left):
    ``K * sum_l H_l H_{l-1}`` multiply-adds per sample, far cheaper than the forward product when
    only the ``K`` logits are needed. Equals ``relu_mlp_slt(params, x, layers=-1)[0]``.

    Args:
        params: ReLU-MLP parameters (see :func:`mlp_layers`); needs at least one hidden layer.
        x: ``(N, F)`` inputs.

    Returns:
        ``(N, K, F)`` output SLTs.
    """
    lay = mlp_layers(params)
    if len(lay) < 2:
        raise ValueError("`params` needs at least one hidden layer for the reverse product.")
    x = _check_mlp_input(lay, x)
    return _relu_output_slt_kernel(lay, x)
