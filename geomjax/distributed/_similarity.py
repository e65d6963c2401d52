"""All-pairs CKA with the pair list sharded across devices.

The linear-kernel feature-space route of :func:`geomjax.similarity.cka_matrix` evaluates
``||X_i^T X_j||_F^2`` (or its debiased U-statistic) for every needed pair of centred,
unit-normalised representations. Here the pair list is split across the mesh; every device holds
the stacked representations (replicated) and evaluates its pairs with the same per-pair kernel,
so the values equal ``cka_matrix(..., method="feature")`` and agree with the Gram route to
round-off. The RBF kernel is not sharded (its ``R`` Gram matrices are built on the host side of
:func:`~geomjax.similarity.cka_matrix` with per-representation bandwidths); use
:func:`~geomjax.similarity.cka_matrix` for it.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.similarity import SimilarityMatrix
from geomjax.similarity._kernels import debiased_dot, mm
from geomjax.similarity._matrix import (
    _center_normalise,
    _normalise,
    _pairs_needed,
    _prepare,
    _stack_padded,
)
from geomjax.similarity._validate import warn_if_nan

__all__ = ["cka_matrix_sharded"]


@functools.lru_cache(maxsize=8)
def _pair_kernel(debiased: bool, n: int):
    def one(i, j, z, rn):
        a = jnp.sum(mm(z[i].T, z[j]) ** 2)
        if debiased:
            a = debiased_dot(a, rn[i], rn[j], n)
        return a

    return one


def cka_matrix_sharded(
    xs,
    ys=None,
    *,
    mesh=None,
    debiased: bool = False,
    pair_chunk: int = 8,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> SimilarityMatrix:
    """Linear CKA between all pairs of representations, pairs sharded over the mesh.

    Args:
        xs: list or dict of ``(N, D_i)`` arrays, or one ``(R, N, D)`` array (as
            :func:`geomjax.similarity.cka_matrix`).
        ys: optional second collection (same N); ``None`` compares ``xs`` with itself.
        mesh: device mesh (default: all local devices).
        debiased: unbiased HSIC estimator (needs N >= 4).
        pair_chunk: pairs evaluated at once per device (memory ``pair_chunk * D^2``).
        chunk_size: pairs per device per step (default: planned from device memory).
        memory_budget: bytes per device for the plan.

    Returns:
        :class:`~geomjax.similarity.SimilarityMatrix` equal to
        ``cka_matrix(xs, ys, debiased=debiased, method="feature")``.
    """
    if not isinstance(pair_chunk, (int, np.integer)) or pair_chunk < 1:
        raise ValueError(f"`pair_chunk` must be a positive int; got {pair_chunk!r}.")
    mesh = make_mesh() if mesh is None else mesh
    xn, yn, reps, n_x, symmetric = _prepare(xs, ys, 4 if debiased else 2)
    n = reps[0].shape[0]
    r_total = len(reps)
    z = _center_normalise(_stack_padded(reps))
    rn = jnp.sum(z * z, axis=2)
    pairs = _pairs_needed(r_total, n_x, symmetric)
    ii = jnp.asarray([p[0] for p in pairs], jnp.int32)
    jj = jnp.asarray([p[1] for p in pairs], jnp.int32)
    run = sharded_vmap(_pair_kernel(bool(debiased), int(n)), mesh, in_axes=(0, 0, None, None),
                       inner_batch=int(pair_chunk), chunk_size=chunk_size,
                       memory_budget=memory_budget)
    vals = np.asarray(run(ii, jj, z, rn), np.float64)
    full = np.full((r_total, r_total), np.nan)
    for (i, j), v in zip(pairs, vals, strict=True):
        full[i, j] = full[j, i] = v
    cka_all = _normalise(full)
    out = cka_all[:n_x, :n_x] if symmetric else cka_all[:n_x, n_x:]
    out = np.asarray(warn_if_nan(out, "CKA matrix"))
    settings = dict(kernel="linear", debiased=bool(debiased), method="feature",
                    devices=int(mesh.devices.size))
    return SimilarityMatrix(out, xn, yn, ("debiased_" if debiased else "") + "cka", settings)
