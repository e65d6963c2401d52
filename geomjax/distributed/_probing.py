"""Probe grids and the papers' whole pipeline sharded across devices.

:func:`geomjax.probing.fit_probes` trains a batch of probes as one ``vmap`` of the single-probe
trainer; here the same trainer is mapped over the batch axis split across a mesh.
:func:`paper_pipeline_sharded` does the same for :func:`geomjax.probing.paper_pipeline`: its runs
(tasks x seeds) are the batch axis, each run the whole protocol on one device.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_labels, check_rank
from geomjax._types import Solution, SolverSettings
from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.probing._ablation import PAPER_FRACTIONS
from geomjax.probing._features import LayerIndex
from geomjax.probing._host import check_finite_fast, compute_dtype
from geomjax.probing._pipeline import PipelineResult, _one_run, _result, _validated
from geomjax.probing._probe import _fit_one_impl

__all__ = ["fit_probes_sharded", "paper_pipeline_sharded"]

_RANK = {"key": None, "x": 3, "y": 2, "feature_mask": 2, "lam1": 1, "lam2": 1}


@functools.lru_cache(maxsize=16)
def _probe_kernel(static_items, has_mask):
    static = dict(static_items)

    def one(key, x, y, mask, lam1, lam2, lr):
        return _fit_one_impl(key, x, y, mask if has_mask else None, lam1, lam2, lr, **static)

    return one


def fit_probes_sharded(
    key,
    x,
    y,
    *,
    mesh=None,
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
    inner_batch: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    strict: bool = False,
) -> Solution:
    """:func:`geomjax.probing.fit_probes` with its batch axis sharded over a mesh.

    At least one of ``key`` (``(B,)`` keys), ``x`` (``(B, N, D)``), ``y`` (``(B, N)``),
    ``feature_mask`` (``(B, D)``), ``lam1``/``lam2`` (``(B,)``) carries the batch axis; the
    others are shared (replicated on every device).

    Args:
        key, x, y, n_classes, feature_mask, lam1, lam2, mode, l2, epochs, batch_size,
            learning_rate, shuffle, init, rtol, atol, max_steps, check_every, strict: as in
            :func:`~geomjax.probing.fit_probes`.
        mesh: device mesh (default: all local devices).
        inner_batch: probes trained at once per device (default: ``vmap`` over the device's
            slice, as ``fit_probes``; ``1`` trains one at a time).
        chunk_size: probes per device per step (default: planned from device memory).
        memory_budget: bytes per device for the plan.

    Returns:
        :class:`~geomjax._types.Solution` with a batched :class:`~geomjax.probing.Probe`, as
        ``fit_probes`` returns for the same batch.
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
    y = np.asarray(as_array(y, "y"))
    if y.ndim not in (1, 2):
        raise ValueError(f"`y` must be (N,) or (B, N) integer labels; got shape {y.shape}.")
    for row in y.reshape(-1, y.shape[-1]):
        check_labels(row, n, "y", n_classes)
        if np.unique(row).size < 2:
            raise ValueError("`y` has a single class; a probe needs at least 2 classes.")
    if n_classes is None:
        n_classes = int(y.max()) + 1
    dt = compute_dtype(x)
    lam = {nm: np.asarray(v, dtype=float) for nm, v in (("lam1", lam1), ("lam2", lam2))}
    for nm, v in lam.items():
        if np.any(v < 0) or not np.all(np.isfinite(v)) or v.ndim > 1:
            raise ValueError(f"`{nm}` must be finite, >= 0 and a scalar or (B,); got {v}.")
    fm = None
    if feature_mask is not None:
        fm = as_array(feature_mask, "feature_mask")
        if fm.ndim not in (1, 2) or fm.shape[-1] != d:
            raise ValueError(
                f"`feature_mask` must be (D,) or (B, D) with D={d}; got shape {tuple(fm.shape)}.")
        fm = jnp.asarray(fm).astype(dt)
    key = jnp.asarray(key)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    key_b = key.ndim == (1 if typed else 2)
    args = [key, jnp.asarray(x, dt), jnp.asarray(y, jnp.int32),
            fm if fm is not None else jnp.zeros((), dt),
            jnp.asarray(lam["lam1"]), jnp.asarray(lam["lam2"]), jnp.asarray(learning_rate, dt)]
    batched = [key_b, x.ndim == 3, y.ndim == 2, fm is not None and fm.ndim == 2,
               lam["lam1"].ndim == 1, lam["lam2"].ndim == 1, False]
    if not any(batched):
        raise ValueError("no argument carries a batch axis; use geomjax.probing.fit_probes for a "
                         "single probe.")
    static = (("n_classes", int(n_classes)), ("mode", mode), ("l2", l2), ("epochs", int(epochs)),
              ("batch_size", int(min(batch_size, n))), ("shuffle", bool(shuffle)),
              ("init", init), ("rtol", float(rtol)), ("atol", float(atol)),
              ("max_steps", int(max_steps)), ("check_every", int(check_every)))
    mesh = make_mesh() if mesh is None else mesh
    run = sharded_vmap(_probe_kernel(static, fm is not None), mesh,
                       in_axes=tuple(0 if b else None for b in batched), inner_batch=inner_batch,
                       chunk_size=chunk_size, memory_budget=memory_budget)
    p, conv, steps, res = run(*args)
    settings = SolverSettings(rtol=float(rtol), atol=float(atol),
                              max_steps=int(max_steps if mode == "converged" else epochs),
                              method="fista" if mode == "converged" else "adam")
    sol = Solution(value=p, converged=conv, num_steps=steps, residual=res, settings=settings)
    if strict:
        sol.raise_if_unconverged("fit_probes_sharded")
    return sol


@functools.lru_cache(maxsize=16)
def _pipeline_kernel(static_items):
    # one callable per settings, so that sharded_vmap reuses its compiled program
    return functools.partial(_one_run, **dict(static_items))


def paper_pipeline_sharded(
    key,
    x_train,
    y_train,
    x_test,
    y_test,
    index: LayerIndex,
    *,
    mesh=None,
    n_classes: int | None = None,
    lam1: float = 1e-5,
    lam2: float = 1e-5,
    l2: str = "squared",
    stride: int = 1000,
    ablation_fraction: float = 0.2,
    fractions=PAPER_FRACTIONS,
    delta: float = 0.01,
    epochs: int = 20,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    shuffle: bool = True,
    init: str | None = None,
    inner_batch: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> PipelineResult:
    """:func:`geomjax.probing.paper_pipeline` with its runs (tasks x seeds) sharded over a mesh.

    The ``T`` label sets and ``S`` keys make ``T * S`` runs; each device runs the whole protocol
    (ALL, control and layer-wise probes, ordering, ablations, minimal-set retraining, layer
    counts) for its share of them, the features replicated on every device. A run depends only
    on its key and labels, so the result is the one-device result for the same key, whatever the
    device count (up to the last bits of batched matrix products).

    Args:
        key, x_train, y_train, x_test, y_test, index, n_classes, lam1, lam2, l2, stride,
            ablation_fraction, fractions, delta, epochs, batch_size, learning_rate, shuffle,
            init: as in :func:`~geomjax.probing.paper_pipeline` (``key`` ``(S,)`` for seeds,
            labels ``(T, N)`` for tasks).
        mesh: device mesh (default: all local devices).
        inner_batch: runs trained at once per device (default: ``vmap`` over the device's share;
            ``1``: one run at a time, the least memory).
        chunk_size: runs per device per step (default: planned from device memory).
        memory_budget: bytes per device for the plan.

    Returns:
        :class:`~geomjax.probing.PipelineResult` with the batch axes of ``paper_pipeline``.
    """
    v = _validated(key, x_train, y_train, x_test, y_test, index, n_classes=n_classes, l2=l2,
                   init=init, epochs=epochs, batch_size=batch_size, shuffle=shuffle)
    dt = v["dt"]
    x_tr = jnp.asarray(v["x_train"], dt)
    x_te = jnp.asarray(v["x_test"], dt)
    key, batch_key, batch_y = v["key"], v["batch_key"], v["batch_y"]
    d = x_tr.shape[1]
    counts = tuple(max(int(round(float(f) * d)), 1) for f in fractions)
    y_tr = np.asarray(v["y_train"], np.int32).reshape(-1, x_tr.shape[0])  # (T, N)
    y_te = np.asarray(v["y_test"], np.int32).reshape(-1, x_te.shape[0])
    keys = key if batch_key else key[None]  # (S,)
    n_t, n_s = y_tr.shape[0], keys.shape[0]
    # runs in (task, seed) order: run t * S + s has task t's labels and seed s's key
    run_keys = jnp.concatenate([keys] * n_t)
    run_ytr = jnp.asarray(np.repeat(y_tr, n_s, axis=0))
    run_yte = jnp.asarray(np.repeat(y_te, n_s, axis=0))
    static = (("n_classes", v["n_classes"]), ("widths", tuple(int(w) for w in index.widths)),
              ("stride", int(stride)), ("ablation_fraction", float(ablation_fraction)),
              ("counts", counts), ("delta", float(delta)), ("probe_items", v["probe_items"]))
    mesh = make_mesh() if mesh is None else mesh
    run = sharded_vmap(_pipeline_kernel(static), mesh,
                       in_axes=(0, None, 0, None, 0, None, None, None, None),
                       inner_batch=inner_batch, chunk_size=chunk_size,
                       memory_budget=memory_budget)
    out = run(run_keys, x_tr, run_ytr, x_te, run_yte, jnp.asarray(index.layer_of_neuron),
              jnp.asarray(lam1, dt), jnp.asarray(lam2, dt), jnp.asarray(learning_rate, dt))
    # (T * S, ...) -> (T, S, ...) -> drop the axes the inputs did not have

    def unflatten(a):
        a = a.reshape((n_t, n_s) + a.shape[1:])
        if not batch_key:
            a = a[:, 0]
        if not batch_y:
            a = a[0]
        return a

    out = jax.tree_util.tree_map(unflatten, out)
    res = _result(out, out["s_min"], out["chosen"], out["reached"], out["min_layers"],
                  out["top_layers"], counts=counts, fractions=tuple(float(f) for f in fractions),
                  widths=tuple(int(w) for w in index.widths), stride=int(stride),
                  ablation_fraction=float(ablation_fraction))
    axes = ("task",) * batch_y + ("seed",) * batch_key
    return dataclasses.replace(res, batch_axes=axes)
