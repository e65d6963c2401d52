"""Device meshes and the generic sharded vmap.

A single-instance kernel ``fn(*item_args)`` is mapped over a leading batch axis that is split
across the devices of a one-axis :class:`jax.sharding.Mesh` with :func:`jax.shard_map`. Each
device maps ``fn`` over its local slice (``vmap``, or ``lax.map`` in batches), so every item runs
the same program as in an unsharded map and results do not depend on the device count. Uneven
batches are padded with copies of the last item and trimmed; batches larger than the memory
plan allows are streamed in chunks (see :mod:`geomjax.distributed._memory`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from geomjax.distributed._memory import plan_chunk

DEFAULT_AXIS = "batch"


def make_mesh(devices: None | int | Sequence[Any] = None, axis: str = DEFAULT_AXIS) -> Mesh:
    """A one-axis device mesh over which batch axes are sharded.

    Args:
        devices: ``None`` for every local device of the default backend, an int ``n`` for the
            first ``n`` local devices, or an explicit list of devices.
        axis: the mesh axis name.

    Returns:
        :class:`jax.sharding.Mesh` with one axis named ``axis``.

    Raises:
        ValueError: ``devices`` asks for more devices than exist, or for none.
        TypeError: ``devices`` is of another type.
    """
    if not isinstance(axis, str) or not axis:
        raise TypeError(f"`axis` must be a non-empty string; got {axis!r}.")
    local = jax.local_devices()
    if devices is None:
        devs = list(local)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if not 1 <= n <= len(local):
            raise ValueError(
                f"`devices` asks for {n} devices but {len(local)} local "
                f"{local[0].platform} device(s) exist; on CPU set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts.")
        devs = list(local[:n])
    elif isinstance(devices, Sequence):
        devs = list(devices)
        if not devs:
            raise ValueError("`devices` is an empty list; give at least one device.")
        if not all(isinstance(d, jax.Device) for d in devs):
            raise TypeError("`devices` must hold jax.Device objects (e.g. from jax.devices()).")
    else:
        raise TypeError(
            f"`devices` must be None, an int or a list of devices; got {type(devices).__name__}.")
    return Mesh(np.array(devs), (axis,))


def mesh_size(mesh: Mesh, axis: str | None = None) -> int:
    """Number of devices along ``axis`` (default: the mesh's only axis)."""
    axis = _axis(mesh, axis)
    return int(mesh.shape[axis])


def _axis(mesh: Mesh, axis: str | None) -> str:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh (see make_mesh); got "
                        f"{type(mesh).__name__}.")
    if axis is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"the mesh has axes {mesh.axis_names}; name the batch axis with `axis`.")
        return mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(f"`axis` {axis!r} is not a mesh axis {mesh.axis_names}.")
    return axis


def _normalise_in_axes(in_axes, n_args):
    if in_axes is None or isinstance(in_axes, int):
        ax = (in_axes,) * n_args
    else:
        ax = tuple(in_axes)
        if len(ax) != n_args:
            raise ValueError(f"`in_axes` has {len(ax)} entries for {n_args} arguments.")
    for a in ax:
        if a not in (0, None):
            raise ValueError(f"`in_axes` entries must be 0 (batched) or None (shared); got {a!r}.")
    if all(a is None for a in ax):
        raise ValueError("`in_axes` marks no argument as batched; at least one needs axis 0.")
    return ax


def _batch_size(args, axes):
    sizes = set()
    for a, ax in zip(args, axes, strict=True):
        if ax == 0:
            for leaf in jax.tree_util.tree_leaves(a):
                if np.ndim(leaf) == 0:
                    raise ValueError("a batched argument has a scalar leaf; batched leaves need a "
                                     "leading batch axis.")
                sizes.add(int(np.shape(leaf)[0]))
    if len(sizes) != 1:
        raise ValueError(f"batched arguments disagree on the batch size: {sorted(sizes)}.")
    b = sizes.pop()
    if b < 1:
        raise ValueError("the batch is empty (size 0).")
    return b


def _pad_to(tree, n):
    """Pad every leaf's axis 0 to ``n`` rows by repeating the last row (a valid problem, so
    iterative solvers on the padding behave as on real data)."""

    def pad(x):
        m = x.shape[0]
        if m == n:
            return x
        reps = jnp.repeat(x[-1:], n - m, axis=0)
        return jnp.concatenate([x, reps], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def _slice(tree, start, stop):
    return jax.tree_util.tree_map(lambda x: x[start:stop], tree)


@functools.lru_cache(maxsize=64)
def _compiled(fn, mesh, axis, axes, inner_batch, batched_fn=False):
    def local(*args):
        if batched_fn:
            return fn(*args)
        if inner_batch is None:
            return jax.vmap(fn, in_axes=axes)(*args)
        batched = [a for a, ax in zip(args, axes, strict=True) if ax == 0]
        shared = [a for a, ax in zip(args, axes, strict=True) if ax is None]

        def one(b):
            it_b, it_s = iter(b), iter(shared)
            full = [next(it_b) if ax == 0 else next(it_s) for ax in axes]
            return fn(*full)

        return lax.map(one, batched, batch_size=None if inner_batch == 1 else inner_batch)

    in_specs = tuple(P(axis) if ax == 0 else P() for ax in axes)
    sm = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=P(axis), check_vma=False)
    return jax.jit(sm)


def _axes_key(in_axes):
    if in_axes is None or isinstance(in_axes, (int, np.integer)):
        return in_axes
    return tuple(in_axes)


@functools.lru_cache(maxsize=64)
def _single_item(fn, in_axes):
    """The single-item form of a batched kernel ``fn`` (for the memory plan), one per kernel."""

    def plan_fn(*items):
        axes_ = _normalise_in_axes(in_axes, len(items))
        full = [jax.tree_util.tree_map(lambda x: x[None], a) if ax == 0 else a
                for a, ax in zip(items, axes_, strict=True)]
        return jax.tree_util.tree_map(lambda x: x[0], fn(*full))

    return plan_fn


def sharded_vmap(
    fn: Callable,
    mesh: Mesh | None = None,
    *,
    in_axes: int | None | Sequence[int | None] = 0,
    axis: str | None = None,
    inner_batch: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    batched_fn: bool = False,
) -> Callable:
    """``jax.vmap(fn)`` with the batch axis sharded across a mesh, padded, and streamed.

    ``sharded_vmap(fn, mesh)(*args)`` equals ``jax.vmap(fn, in_axes)(*args)`` for the same inputs
    (per-item keys included: pass a ``(B,)`` array of keys split from one key, so the result does
    not depend on the device count). Bitwise equality holds when ``fn``'s program does not depend
    on the batch size; batched matrix products may differ in the last bits from the unbatched
    ones (``inner_batch=1`` runs every item unbatched, as ``lax.map`` does).

    Args:
        fn: single-instance function of array pytrees returning an array pytree. Options that
            change shapes or branches must be bound first (``functools.partial``); pass the same
            callable object to reuse the compiled program.
        mesh: a mesh from :func:`make_mesh` (default: all local devices).
        in_axes: per positional argument, ``0`` (leading batch axis) or ``None`` (shared by all
            items, replicated on every device).
        axis: the mesh axis to shard over (default: the mesh's only axis).
        inner_batch: per device, ``None`` maps with ``vmap`` over the whole local slice; an int
            maps with ``lax.map`` in batches of this many items (``1``: one at a time, so each
            item's ``while_loop`` stops on its own -- the CPU-friendly choice).
        chunk_size: items per device per step; default: as many as the memory plan allows
            (:func:`geomjax.distributed.plan_chunk`), at most the whole batch.
        memory_budget: bytes per device for the plan (default: free device memory where the
            backend reports it, else ``GEOMJAX_DEVICE_MEMORY`` or 4 GiB).
        batched_fn: ``fn`` already maps over a leading batch axis (a batched kernel such as a
            ``lax.map``-based one); each device then calls it on its whole local slice, which
            runs exactly the program the unsharded call runs on a batch (``inner_batch`` is
            ignored).

    Returns:
        A function of the same positional arguments whose outputs carry a leading axis ``B``.

    Raises:
        ValueError: bad ``in_axes``, mismatched batch sizes, or (at call time) a single item
            that does not fit in the memory budget.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable; got {type(fn).__name__}.")
    if mesh is None:
        mesh = make_mesh()
    ax_name = _axis(mesh, axis)
    n_dev = int(mesh.shape[ax_name])
    if inner_batch is not None and (not isinstance(inner_batch, (int, np.integer))
                                    or inner_batch < 1):
        raise ValueError(f"`inner_batch` must be a positive int or None; got {inner_batch!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")

    # The memory plan is cached per planned function: a batched kernel gets one single-item
    # wrapper per (kernel, in_axes), so repeated calls reuse its plan instead of recompiling it.
    plan_fn = _single_item(fn, _axes_key(in_axes)) if batched_fn else fn

    def wrapped(*args):
        axes = _normalise_in_axes(in_axes, len(args))
        args = tuple(jax.tree_util.tree_map(jnp.asarray, a) for a in args)
        B = _batch_size(args, axes)
        per_dev = math.ceil(B / n_dev)
        if chunk_size is not None:
            c = min(int(chunk_size), per_dev)
        else:
            one = tuple(_slice(a, 0, 1) if ax == 0 else a for a, ax in zip(args, axes, strict=True))
            c = plan_chunk(plan_fn, one, axes, n_items=per_dev, memory_budget=memory_budget,
                           device=mesh.devices.flat[0])
        # Every step has the same shape (the last one padded): one compilation per sweep.
        step = c * n_dev
        n_steps = math.ceil(B / step)
        run = _compiled(fn, mesh, ax_name, axes, None if inner_batch is None else int(inner_batch),
                        bool(batched_fn))
        shard_b = NamedSharding(mesh, P(ax_name))
        shard_r = NamedSharding(mesh, P())
        shared = [jax.device_put(a, shard_r) if ax is None else None
                  for a, ax in zip(args, axes, strict=True)]
        outs = []
        for s in range(n_steps):
            lo, hi = s * step, min((s + 1) * step, B)
            call = []
            for a, ax, sh in zip(args, axes, shared, strict=True):
                if ax is None:
                    call.append(sh)
                else:
                    part = _pad_to(_slice(a, lo, hi), step)
                    call.append(jax.device_put(part, shard_b))
            outs.append(run(*call))
        if len(outs) == 1:
            out = outs[0]
        else:
            out = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)
        return jax.tree_util.tree_map(lambda x: x[:B], out)

    wrapped.mesh = mesh
    return wrapped


def shard_batch(fn: Callable, mesh: Mesh | None = None, **kwargs) -> Callable:
    """Alias of :func:`sharded_vmap` (same arguments)."""
    return sharded_vmap(fn, mesh, **kwargs)
