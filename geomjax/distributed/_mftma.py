"""MFTMA sweeps sharded over devices: many analyses (layers x time steps x manifold types x seeds)
in one call.

Per analysis, the cheap, shape-dependent preparation (global centring, centre-correlation
subspace, reduction to ``D+1`` coordinates) runs as in :func:`geomjax.manifold.mftma`, except
that on accelerators the centre subspaces of all analyses are fitted together
(:func:`geomjax.manifold.fit_center_subspaces`: one vmapped solver run per rank block instead of
one per analysis; the same fits to round-off); the anchor
problems -- ``P * n_t`` NNLS solves per analysis, nearly all of the work -- are pooled over every
(analysis, manifold) pair of equal reduced shape and sharded across the mesh. Each manifold keeps
the key :func:`~geomjax.manifold.mftma` gives it, so ``mftma_sweep(key, sets)[i]`` equals
``mftma(jax.random.split(key, len(sets))[i], sets[i])`` whatever the device count.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._types import Solution, SolverSettings
from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.manifold import MFTMAResult, fit_center_subspaces
from geomjax.manifold._center import _restarts_batched
from geomjax.manifold._mftma import (
    _anchors_from_keys,
    _prepare_analysis,
    _prepare_centres,
    _prepare_reduced,
    _solver_items,
)

__all__ = ["mftma_sweep", "sweep_keys", "sweep_frame"]


def sweep_keys(key, n: int):
    """One key per analysis: ``jax.random.split(key, n)``, or ``key`` itself if it is ``(n,)``."""
    k = jnp.asarray(key)
    typed = jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key)
    if (typed and k.ndim == 1) or (not typed and k.ndim == 2):
        if k.shape[0] != n:
            raise ValueError(f"`key` holds {k.shape[0]} keys for {n} analyses.")
        return k
    return jax.random.split(key, n)


@functools.lru_cache(maxsize=32)
def _anchor_kernel(n_t, forms, chunk_size, solver_items, inner_batch):
    """Batched anchor kernel over a device's slice of manifolds: the program ``mftma`` runs on
    its manifolds (the same sample draw and pooled solver, whose per-problem arithmetic does not
    depend on the batch), so a sweep equals ``mftma`` bitwise whatever the device count.
    ``inner_batch`` (an int) runs the slice in ``lax.map`` batches of that many manifolds."""

    def run(keys, S, pm, d, kappa):
        cap, inv, rad, dm, _, _, sol = _anchors_from_keys(keys, S, pm, d, kappa, n_t, forms,
                                                          chunk_size, solver_items)
        return cap, inv, rad, dm, sol.converged, sol.num_steps, sol.residual

    if inner_batch is None:
        return run

    def mapped(keys, S, pm, d, kappa):
        B = keys.shape[0]
        nb = -(-B // inner_batch)
        pad = nb * inner_batch - B

        def split(a):
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
            return a.reshape((nb, inner_batch) + a.shape[1:])

        out = jax.lax.map(lambda a: run(*a, kappa), tuple(split(a) for a in (keys, S, pm, d)))
        return tuple(o.reshape((nb * inner_batch,) + o.shape[2:])[:B] for o in out)

    return mapped


def mftma_sweep(
    key,
    analyses: Sequence,
    kappa: float = 0.0,
    n_t: int = 200,
    *,
    mesh=None,
    K: int | None = None,
    n_reps: int = 10,
    max_k: int | None = None,
    forms: str = "coded",
    chunk_size: int | None = None,
    reduction: str = "gram",
    rtol: float | None = None,
    atol: float = 0.0,
    max_steps: int = 10_000,
    check_every: int = 10,
    stiefel_steps: int = 1000,
    inner_batch: int | None = None,
    sweep_chunk: int | None = None,
    memory_budget: int | None = None,
    strict: bool = False,
    dtype=None,
    center_batched: bool | None = None,
) -> list[MFTMAResult]:
    """:func:`geomjax.manifold.mftma` over many manifold sets, anchor problems sharded.

    Args:
        key: one ``jax.random.key`` (split into one key per analysis) or a ``(B,)`` array of keys.
        analyses: ``B`` manifold sets, each as :func:`~geomjax.manifold.mftma` takes them (a list
            of ``(M_mu, N)`` arrays or a ``(P, M, N)`` array); sets may differ in P, M and N.
        kappa, n_t, K, n_reps, max_k, forms, chunk_size, reduction, rtol, atol, max_steps,
            check_every, stiefel_steps, strict, dtype: as in :func:`~geomjax.manifold.mftma`.
        mesh: device mesh (:func:`geomjax.distributed.make_mesh`; default all local devices).
        inner_batch: manifolds solved at once per device (``lax.map`` batch size); default
            the device's whole slice at once (the anchor problems of all its manifolds are
            pooled in one solver; results do not depend on this setting).
        sweep_chunk: manifolds per device per step (default: planned from device memory).
        memory_budget: bytes per device for the plan.
        center_batched: fit the centre subspaces of all analyses together
            (:func:`geomjax.manifold.fit_center_subspaces`); default on accelerators only.

    Returns:
        One :class:`~geomjax.manifold.MFTMAResult` per analysis, in order.

    Raises:
        ValueError: bad settings or manifolds (naming ``analyses[i]``);
        DoesNotFitError: one manifold's anchor problem exceeds the memory budget.
    """
    if forms not in ("coded", "paper"):
        raise ValueError(f"`forms` must be one of ('coded', 'paper'); got {forms!r}.")
    if reduction not in ("gram", "qr"):
        raise ValueError(f"`reduction` must be 'gram' or 'qr'; got {reduction!r}.")
    if int(n_t) < 1:
        raise ValueError(f"`n_t` must be >= 1; got {n_t}.")
    if isinstance(analyses, (np.ndarray, jax.Array)) and np.ndim(analyses) == 4:
        analyses = list(analyses)
    if not isinstance(analyses, Sequence) or len(analyses) == 0:
        raise ValueError("`analyses` must be a non-empty list of manifold sets.")
    mesh = make_mesh() if mesh is None else mesh
    B = len(analyses)
    keys = sweep_keys(key, B)
    batched = _restarts_batched() if center_batched is None else bool(center_batched)
    if batched:
        # Centres of every analysis first (the device path drops its copy of the input until
        # the reduction), then all centre subspaces in one batched fit, then the reductions.
        sts = [_prepare_centres(keys[i], a, reduction=reduction, dtype=dtype,
                                name=f"analyses[{i}]", keep_device_copy=False)
               for i, a in enumerate(analyses)]
        fits = fit_center_subspaces([st["k_fa"] for st in sts], [st["centers"] for st in sts],
                                    K, n_reps=n_reps, max_k=max_k, max_steps=stiefel_steps,
                                    batched=True)
        preps = [_prepare_reduced(st, fit, reduction=reduction)
                 for st, fit in zip(sts, fits, strict=True)]
        del sts
    else:  # one analysis after the other (CPU: faster, and one analysis's temporaries at a time)
        preps = [_prepare_analysis(keys[i], a, K=K, n_reps=n_reps, max_k=max_k,
                                   stiefel_steps=stiefel_steps, reduction=reduction, dtype=dtype,
                                   name=f"analyses[{i}]")
                 for i, a in enumerate(analyses)]
    # Pool manifolds of equal reduced shape and dtype: one compiled program per group.
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(preps):
        groups.setdefault((tuple(p["sD1"].shape[1:]), str(p["dtype"])), []).append(i)
    per = [None] * B
    for (_, dts), idx in groups.items():
        dt = jnp.dtype(dts)
        items = _solver_items(rtol, atol, max_steps, check_every, dt)
        kern = _anchor_kernel(int(n_t), forms, chunk_size, items,
                              None if inner_batch is None else max(1, int(inner_batch)))
        def cat(name, idx=idx):
            return jnp.concatenate([preps[i][name] for i in idx])

        run = sharded_vmap(kern, mesh, in_axes=(0, 0, 0, 0, None), batched_fn=True,
                           chunk_size=sweep_chunk, memory_budget=memory_budget)
        out = run(cat("keys"), cat("sD1"), cat("mask"), cat("dims"), jnp.asarray(kappa, dt))
        start = 0
        for i in idx:
            p_i = preps[i]["sD1"].shape[0]
            per[i] = [o[start:start + p_i] for o in out]
            start += p_i
    results = []
    for i, p in enumerate(preps):
        cap, inv, rad, dm, conv, steps, res = per[i]
        dt = p["dtype"]
        if strict:
            items = dict(_solver_items(rtol, atol, max_steps, check_every, dt))
            Solution(None, jnp.asarray(conv), jnp.asarray(steps), jnp.asarray(res),
                     SolverSettings(items["rtol"], items["atol"], items["max_steps"],
                                    "fista+polish")).raise_if_unconverged(
                f"mftma_sweep anchor points (analysis {i})")
        conv = np.asarray(conv)
        Ms = p["Ms"]
        mbar = float(np.mean(Ms))
        capacity = 1 / jnp.mean(inv)
        radius = jnp.mean(rad)
        dimension = jnp.mean(dm)
        lb = 2.0 / mbar
        results.append(MFTMAResult(
            capacity=capacity, radius=radius, dimension=dimension, center_correlation=p["rho0"],
            residual_center_correlation=p["rho_res"], capacity_per_manifold=cap,
            radius_per_manifold=rad, dimension_per_manifold=dm, n_points=jnp.asarray(Ms),
            reduced_dim=p["dims"], lower_bound=jnp.asarray(lb, dt), capacity_ratio=capacity / lb,
            dimension_ratio=dimension / mbar, kappa=jnp.asarray(kappa, dt),
            max_steps_used=jnp.max(jnp.asarray(steps)), max_residual=jnp.max(jnp.asarray(res)),
            K=p["K"], n_t=int(n_t), forms=forms, n_unconverged=int(conv.size - conv.sum()),
            center_converged=p["center_ok"],
        ))
    return results


def sweep_frame(results: Sequence[MFTMAResult], labels=None, *, start: int = 0,
                level: str = "summary"):
    """One tidy table for a sweep: the results' ``to_frame(level)`` rows with an ``analysis``
    index column (offset by ``start``, e.g. a process's :func:`process_slice` start) and optional
    label columns.

    Args:
        results: the list :func:`mftma_sweep` returns.
        labels: optional list (one per result) of dicts of label columns, e.g.
            ``{"layer": 3, "time_step": 10, "manifold_type": "word", "seed": 0}``.
        start: index of the first result in the whole sweep.
        level: ``"summary"`` (one row per analysis) or ``"manifold"`` (one row per manifold).

    Returns:
        pandas DataFrame.
    """
    import pandas as pd

    if labels is not None and len(labels) != len(results):
        raise ValueError(f"`labels` has {len(labels)} entries for {len(results)} results.")
    frames = []
    for i, r in enumerate(results):
        df = r.to_frame(level)
        df.insert(0, "analysis", start + i)
        for k, v in (labels[i] if labels is not None else {}).items():
            df[k] = v
        frames.append(df)
    if not frames:
        raise ValueError("`results` is empty.")
    return pd.concat(frames, ignore_index=True)
