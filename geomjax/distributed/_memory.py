"""Memory planning: how many items of a batched analysis one device can hold at once.

The cost of one item is measured by compiling the single-item program and reading XLA's memory
analysis (arguments + outputs + temporaries); the budget is the device's free memory where the
backend reports it (``Device.memory_stats()``, GPUs and TPUs), else ``GEOMJAX_DEVICE_MEMORY``
(bytes) or 4 GiB. A sweep whose batch does not fit is streamed in chunks of the planned size; a
single item that does not fit raises :class:`DoesNotFitError` naming the sizes.
"""

from __future__ import annotations

import os

import jax
import numpy as np

DEFAULT_BUDGET = 4 * 2**30
SAFETY = 0.5  # leave room for XLA's workspace, fragmentation and the caller's arrays


class DoesNotFitError(MemoryError):
    """A single problem needs more device memory than the budget allows."""


def device_memory_budget(device=None, memory_budget: int | None = None) -> int:
    """Bytes one device may use for a chunk of work.

    Args:
        device: a ``jax.Device`` (default: the first local device).
        memory_budget: explicit budget in bytes (wins over everything else).

    Returns:
        ``memory_budget`` if given; else ``SAFETY`` times the free memory reported by
        ``device.memory_stats()`` (``bytes_limit - bytes_in_use``); else ``GEOMJAX_DEVICE_MEMORY``
        or 4 GiB (CPU backends report no limit).
    """
    if memory_budget is not None:
        if not isinstance(memory_budget, (int, np.integer)) or memory_budget <= 0:
            raise ValueError(f"`memory_budget` must be a positive int (bytes); got "
                             f"{memory_budget!r}.")
        return int(memory_budget)
    device = device if device is not None else jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        stats = None
    if stats and "bytes_limit" in stats:
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return max(int(SAFETY * free), 1)
    env = os.environ.get("GEOMJAX_DEVICE_MEMORY")
    if env:
        try:
            v = int(float(env))
        except ValueError:
            raise ValueError(f"GEOMJAX_DEVICE_MEMORY must be a number of bytes; got {env!r}.") \
                from None
        if v <= 0:
            raise ValueError(f"GEOMJAX_DEVICE_MEMORY must be positive; got {env!r}.")
        return v
    return DEFAULT_BUDGET


def _nbytes(tree) -> int:
    return int(sum(np.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
                   for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "dtype")
                   and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)))


_ITEM_BYTES: dict = {}


def _signature(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(getattr(x, "dtype", type(x))))
                          for x in leaves)


def item_bytes(fn, one_item_args, in_axes) -> int:
    """Device bytes one item of ``vmap(fn)`` needs: XLA's memory analysis of the compiled
    single-item program (arguments, outputs and temporaries), else the argument and output
    sizes from ``jax.eval_shape``. Cached per ``(fn, argument shapes and dtypes)``."""
    try:
        ck = (fn, tuple(in_axes), _signature(one_item_args))
        hash(ck)
    except TypeError:
        ck = None
    if ck is not None and ck in _ITEM_BYTES:
        return _ITEM_BYTES[ck]
    need = _item_bytes(fn, one_item_args, in_axes)
    if ck is not None:
        _ITEM_BYTES[ck] = need
    return need


def _item_bytes(fn, one_item_args, in_axes) -> int:

    def single(*a):
        sq = [jax.tree_util.tree_map(lambda x: x[0], x) if ax == 0 else x
              for x, ax in zip(a, in_axes, strict=True)]
        return fn(*sq)

    try:
        ma = jax.jit(single).lower(*one_item_args).compile().memory_analysis()
        total = (ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes)
        if total > 0:
            return int(total)
    except Exception:  # memory analysis is optional per backend
        pass
    out = jax.eval_shape(single, *one_item_args)
    return max(_nbytes(one_item_args) + _nbytes(out), 1)


def plan_chunk(fn, one_item_args, in_axes, *, n_items: int, memory_budget: int | None = None,
               device=None) -> int:
    """Items per device per step: ``min(n_items, budget // item_bytes)``.

    Args:
        fn: the single-instance kernel.
        one_item_args: the arguments with a batch of one (leading axis 1) on batched ones.
        in_axes: ``0`` or ``None`` per argument.
        n_items: items this device would get without streaming.
        memory_budget: bytes (see :func:`device_memory_budget`).
        device: the device whose memory is planned for.

    Returns:
        The chunk size (>= 1).

    Raises:
        DoesNotFitError: one item alone exceeds the budget.
    """
    budget = device_memory_budget(device, memory_budget)
    need = item_bytes(fn, one_item_args, in_axes)
    fit = budget // need
    if fit < 1:
        raise DoesNotFitError(
            f"one problem needs about {need / 2**20:.1f} MiB of device memory but the budget is "
            f"{budget / 2**20:.1f} MiB; reduce the problem (fewer points, samples or features, a "
            "smaller solver chunk_size), raise `memory_budget`/GEOMJAX_DEVICE_MEMORY, or use a "
            "device with more memory.")
    return int(min(max(n_items, 1), fit))
