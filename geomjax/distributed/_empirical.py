"""Empirical capacity (alpha_SIM) with the random dichotomies sharded across devices.

Each dichotomy's certified bisection is independent and keyed by ``fold_in(key, d)``, so the
dichotomy axis is split across the mesh; every device runs the single-dichotomy program of
:func:`geomjax.manifold.empirical_capacity` on its slice. Everything else -- centring, the
row-space factor of low-rank data, the pilot dichotomies that place the guided splits, the
summaries -- is the single-device code itself (:func:`geomjax.manifold._empirical._estimate`
with a sharded runner), so every field of the result equals the single-device run.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.manifold import EmpiricalCapacity
from geomjax.manifold._empirical import _check_settings, _critical_sizes, _estimate

__all__ = ["empirical_capacity_sharded"]


@functools.lru_cache(maxsize=32)
def _dichotomy_kernel(static_items, guided: bool):
    """The batched per-dichotomy kernel, called by each device on its slice of keys."""
    static = dict(static_items)
    if guided:
        def run(keys, data, manifold_index, prior):
            return _critical_sizes(keys, data, manifold_index, prior=prior, **static)
    else:
        def run(keys, data, manifold_index):
            return _critical_sizes(keys, data, manifold_index, **static)
    return run


def empirical_capacity_sharded(
    key,
    manifolds,
    n_dichotomies: int = 64,
    *,
    mesh=None,
    capacity_guess: float | None = None,
    n_max: int | None = None,
    center: bool = True,
    confidence: float = 0.95,
    block: int = 16,
    max_steps: int = 100,
    rtol: float | None = None,
    warm_start: bool = True,
    low_rank: bool | None = None,
    inner_batch: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    strict: bool = False,
    dtype=None,
) -> EmpiricalCapacity:
    """:func:`geomjax.manifold.empirical_capacity` with dichotomies sharded over a mesh.

    Args:
        key, manifolds, n_dichotomies, capacity_guess, n_max, center, confidence, block,
            max_steps, rtol, warm_start, low_rank, strict, dtype: as in
            :func:`~geomjax.manifold.empirical_capacity`.
        mesh: device mesh (default: all local devices).
        inner_batch: dichotomies solved at once per device (default 1 on CPU, where a batched
            while-loop runs every problem to the slowest one's step count; all on accelerators).
            It plays the role of ``chunk_size`` of the single-device function.
        chunk_size: dichotomies per device per step (default: planned from device memory).
        memory_budget: bytes per device for the plan.

    Returns:
        :class:`~geomjax.manifold.EmpiricalCapacity`, equal to the single-device result with
        ``chunk_size=inner_batch``.
    """
    mans, P, N = _check_settings(manifolds, n_dichotomies, confidence, capacity_guess, n_max, block)
    mesh = make_mesh() if mesh is None else mesh
    if inner_batch is None:
        # One at a time on CPU (each bisection's solver loops stop on their own); a vmap over the
        # device's whole slice on accelerators.
        inner_batch = 1 if jax.default_backend() == "cpu" else int(n_dichotomies)
    if not isinstance(inner_batch, (int, np.integer)) or inner_batch < 1:
        raise ValueError(f"`inner_batch` must be a positive int or None; got {inner_batch!r}.")

    def run(static, keys, data, manifold_index, prior):
        guided = prior is not None
        fn = sharded_vmap(_dichotomy_kernel(tuple(sorted(static.items())), guided), mesh,
                          in_axes=(0, None, None) + ((None,) if guided else ()),
                          batched_fn=True, chunk_size=chunk_size, memory_budget=memory_budget)
        args = (keys, data, manifold_index) + ((prior,) if guided else ())
        return fn(*args)

    return _estimate(key, mans, P, N, n_dichotomies, capacity_guess=capacity_guess, n_max=n_max,
                     center=center, confidence=confidence, block=block, max_steps=max_steps,
                     rtol=rtol, chunk_size=int(inner_batch), warm_start=warm_start,
                     low_rank=low_rank, strict=strict, dtype=dtype, run=run,
                     name="empirical_capacity_sharded")
