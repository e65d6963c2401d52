"""Probe grids (layers x label sets x neuron masks x lambdas x seeds) sharded across devices.

:func:`geomjax.probing.fit_probes` trains a batch of probes as one ``vmap`` of the single-probe
trainer; here the same trainer is mapped over the batch axis split across a mesh.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_finite, check_labels, check_rank
from geomjax._types import Solution, SolverSettings, result_dtype
from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.probing._probe import _fit_one_impl

__all__ = ["fit_probes_sharded"]

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
    check_finite(x, "x")
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
    dt = result_dtype(x)
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
