"""Empirical capacity (alpha_SIM) with the random dichotomies sharded across devices.

Each dichotomy's certified bisection is independent and keyed by ``fold_in(key, d)``, so the
dichotomy axis is split across the mesh; every device runs the single-dichotomy program of
:func:`geomjax.manifold.empirical_capacity` on its slice. The per-dichotomy critical sizes, and
therefore every field of the result, equal the single-device run.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._types import NotConvergedError, result_dtype
from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.manifold import EmpiricalCapacity
from geomjax.manifold._empirical import (
    _check_settings,
    _critical_sizes,
    _median_ci_coverage,
    _median_ci_ranks,
)

__all__ = ["empirical_capacity_sharded"]


@functools.lru_cache(maxsize=16)
def _dichotomy_kernel(static_items):
    """The batched per-dichotomy kernel, called by each device on its slice of keys."""
    return functools.partial(_critical_sizes, **dict(static_items))


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
    inner_batch: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    strict: bool = False,
    dtype=None,
) -> EmpiricalCapacity:
    """:func:`geomjax.manifold.empirical_capacity` with dichotomies sharded over a mesh.

    Args:
        key, manifolds, n_dichotomies, capacity_guess, n_max, center, confidence, block,
            max_steps, rtol, warm_start, strict, dtype: as in
            :func:`~geomjax.manifold.empirical_capacity`.
        mesh: device mesh (default: all local devices).
        inner_batch: dichotomies solved at once per device (default 1 on CPU, where a batched
            while-loop runs every problem to the slowest one's step count; all on accelerators).
        chunk_size: dichotomies per device per step (default: planned from device memory).
        memory_budget: bytes per device for the plan.

    Returns:
        :class:`~geomjax.manifold.EmpiricalCapacity`, equal to the single-device result.
    """
    mans, P, N = _check_settings(manifolds, n_dichotomies, confidence, capacity_guess, n_max, block)
    mesh = make_mesh() if mesh is None else mesh
    if inner_batch is None:
        # One at a time on CPU (each bisection's solver loops stop on their own); a vmap over the
        # device's whole slice on accelerators.
        inner_batch = 1 if jax.default_backend() == "cpu" else 2**31 - 1
    if not isinstance(inner_batch, (int, np.integer)) or inner_batch < 1:
        raise ValueError(f"`inner_batch` must be a positive int or None; got {inner_batch!r}.")
    dt = jnp.dtype(dtype) if dtype is not None else result_dtype(*mans)
    counts = np.array([m.shape[0] for m in mans])
    X = jnp.concatenate([jnp.asarray(m, dt) for m in mans], axis=0)
    manifold_index = jnp.asarray(np.repeat(np.arange(P), counts), jnp.int32)
    if center:
        X = X - jnp.mean(X, axis=0, keepdims=True)
    keys = jax.vmap(lambda d: jax.random.fold_in(key, d))(jnp.arange(n_dichotomies))
    eps = float(jnp.finfo(dt).eps)
    rtol_ = float(eps**0.5) if rtol is None else float(rtol)
    ridge = 1e4 * eps
    l_rank, u_rank = _median_ci_ranks(n_dichotomies, confidence)
    if n_max is not None:
        hi, auto = int(n_max), False
    else:
        guess = 2.0 * P if capacity_guess is None else 1.5 * P / float(capacity_guess)
        hi, auto = min(N, max(block, int(math.ceil(guess / block)) * block)), True
    while True:
        n_cols = int(math.ceil(hi / block)) * block
        static = (("n_manifolds", P), ("n_max", hi), ("n_cols", n_cols), ("block", int(block)),
                  ("max_steps", int(max_steps)), ("rtol", rtol_), ("ridge", ridge),
                  ("warm_start", bool(warm_start)), ("chunk_size", int(inner_batch)))
        run = sharded_vmap(_dichotomy_kernel(static), mesh, in_axes=(0, None, None),
                           batched_fn=True, chunk_size=chunk_size, memory_budget=memory_budget)
        out = jax.tree_util.tree_map(np.asarray, run(keys, X, manifold_index))
        n_star = out["n_star"]
        if not auto or int(np.sum(n_star <= hi)) >= u_rank or hi >= N:
            break
        hi = min(N, 2 * hi)
    return _summarise(out, hi, P, N, n_dichotomies, confidence, l_rank, u_rank, strict, max_steps)


def _summarise(out, hi, P, N, D, confidence, l_rank, u_rank, strict, max_steps):
    """The fields of :class:`EmpiricalCapacity` from per-dichotomy outcomes (as the
    single-device function computes them)."""
    n_star = out["n_star"]
    grid = np.arange(hi + 1)
    frac = (n_star[None, :] <= grid[:, None]).mean(axis=1)
    stderr = np.sqrt(frac * (1.0 - frac) / D)
    tested = out["tested_n"].ravel()
    n_tested = np.bincount(tested[tested >= 0], minlength=hi + 1)[: hi + 1]
    above = np.nonzero(frac >= 0.5)[0]
    if above.size:
        nb = int(above[0])
        pa, pb = frac[nb - 1], frac[nb]
        n_c = nb - 1 + (0.5 - pa) / (pb - pa)
    else:
        n_c = np.nan
    s = np.sort(n_star).astype(float)
    s[s > hi] = np.inf
    ci_n = np.array([s[l_rank - 1] - 1.0, s[u_rank - 1]])
    alpha = P / n_c if np.isfinite(n_c) else np.nan
    alpha_ci = np.array([P / ci_n[1] if np.isfinite(ci_n[1]) else 0.0,
                         P / ci_n[0] if ci_n[0] > 0 else np.inf])
    n_checks = int(out["n_checks"].sum())
    res = EmpiricalCapacity(
        alpha_sim=np.asarray(alpha), alpha_ci=alpha_ci, n_critical=np.asarray(n_c),
        n_critical_ci=ci_n, n=grid, fraction=frac, fraction_stderr=stderr, n_tested=n_tested,
        n_star=n_star, n_max=np.asarray(hi), n_censored=np.asarray(int(np.sum(n_star > hi))),
        n_undecided=np.asarray(int(out["n_undecided"].sum())), n_checks=np.asarray(n_checks),
        newton_steps_max=np.asarray(int(out["steps_max"].max())),
        newton_steps_mean=np.asarray(float(out["steps_sum"].sum()) / max(n_checks, 1)),
        max_residual=np.asarray(float(out["max_residual"].max())),
        ci_coverage=np.asarray(_median_ci_coverage(D, l_rank, u_rank)),
        n_dichotomies=int(D), confidence=float(confidence), n_manifolds=int(P),
        n_features=int(N),
    )
    if strict and int(res.n_undecided):
        raise NotConvergedError(
            f"empirical_capacity_sharded: {int(res.n_undecided)} of {n_checks} separability "
            f"checks were undecided within max_steps={max_steps}; raise max_steps or loosen rtol.")
    return res
