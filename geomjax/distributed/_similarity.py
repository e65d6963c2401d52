"""All-pairs CKA with the pair list sharded across devices.

The linear-kernel feature-space route of :func:`geomjax.similarity.cka_matrix` evaluates
``||X_i^T X_j||_F^2`` (or its debiased U-statistic) for every needed pair of centred,
unit-normalised representations. Here the pair list is split across the mesh; every device holds
the stacked representations (replicated) and evaluates its pairs with the same per-pair kernel,
so the values equal ``cka_matrix(..., method="feature")`` and agree with the Gram route to
round-off.

The RBF kernel (``kernel="rbf"``) cannot be split by pairs without every device building every
``N x N`` Gram, so it is split by **rows** instead: the per-representation bandwidths (median
pairwise distance) are computed with the representations sharded; then two passes over row
blocks of all ``R`` Grams at once, sharded over the mesh, give the row sums needed for centring
and the partial inner products ``<C_r[b, :], C_s[b, :]>`` of the centred (or U-centred) Grams,
which are summed over blocks. No device ever holds an ``N x N`` matrix beyond one block of rows
per representation, so ``N`` is bounded by time, not memory; the values equal
``cka_matrix(..., kernel="rbf")`` to round-off.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from geomjax.distributed._mesh import make_mesh, sharded_vmap
from geomjax.similarity import SimilarityMatrix
from geomjax.similarity._kernels import center, debiased_dot, median_sq_distance, mm
from geomjax.similarity._matrix import (
    _center_normalise,
    _normalise,
    _pairs_needed,
    _prepare,
    _stack_padded,
)
from geomjax.similarity._validate import check_choice, warn_if_nan

__all__ = ["cka_matrix_sharded", "similarity_matrix_sharded"]


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
    kernel: str = "linear",
    debiased: bool = False,
    sigma=None,
    bandwidth_factor: float = 0.5,
    median_include_diagonal: bool = True,
    pair_chunk: int = 8,
    row_block: int = 256,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> SimilarityMatrix:
    """CKA between all pairs of representations, sharded over the mesh.

    The linear kernel shards the pair list; the RBF kernel shards row blocks of the Grams (see
    the module docstring).

    Args:
        xs: list or dict of ``(N, D_i)`` arrays, or one ``(R, N, D)`` array (as
            :func:`geomjax.similarity.cka_matrix`).
        ys: optional second collection (same N); ``None`` compares ``xs`` with itself.
        mesh: device mesh (default: all local devices).
        kernel: ``"linear"`` or ``"rbf"``.
        debiased: unbiased HSIC estimator (needs N >= 4).
        sigma, bandwidth_factor, median_include_diagonal: RBF bandwidth, as in
            :func:`geomjax.similarity.cka_matrix` (``sigma=None``: ``bandwidth_factor`` times
            the square root of each representation's median squared distance).
        pair_chunk: linear kernel: pairs evaluated at once per device (memory
            ``pair_chunk * D^2``).
        row_block: RBF kernel: Gram rows per block (memory ``R * row_block * N`` per device).
        chunk_size: items (pairs or row blocks) per device per step (default: planned from
            device memory).
        memory_budget: bytes per device for the plan.

    Returns:
        :class:`~geomjax.similarity.SimilarityMatrix` equal to
        ``cka_matrix(xs, ys, debiased=debiased, method="feature")`` (linear) or to
        ``cka_matrix(xs, ys, kernel="rbf", ...)`` to round-off.
    """
    check_choice(kernel, "kernel", ("linear", "rbf"))
    if not isinstance(pair_chunk, (int, np.integer)) or pair_chunk < 1:
        raise ValueError(f"`pair_chunk` must be a positive int; got {pair_chunk!r}.")
    mesh = make_mesh() if mesh is None else mesh
    if kernel == "rbf":
        return _rbf_cka_matrix_sharded(
            xs, ys, mesh=mesh, debiased=bool(debiased), sigma=sigma,
            bandwidth_factor=bandwidth_factor,
            median_include_diagonal=bool(median_include_diagonal), row_block=row_block,
            chunk_size=chunk_size, memory_budget=memory_budget)
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


# ---------------------------------------------------------------- RBF kernel, rows sharded


@functools.lru_cache(maxsize=8)
def _median_kernel(include_diagonal: bool):
    def one(x):
        return median_sq_distance(x, include_diagonal=include_diagonal)

    return one


def _rbf_block(b, xc, d2, sig2, block: int):
    """Rows ``[b*block, (b+1)*block)`` of every representation's RBF Gram: ``(R, block, N)``,
    with the diagonal exactly 1 and the padding rows (global index >= N) flagged."""
    n = xc.shape[1]
    rows = b * block + jnp.arange(block)
    valid = rows < n
    safe = jnp.where(valid, rows, 0)

    def one(x, d, s2):
        g = mm(x[safe], x.T)
        sq = jnp.maximum(d[safe][:, None] + d[None, :] - 2 * g, 0)
        sq = jnp.where(safe[:, None] == jnp.arange(n)[None, :], 0, sq)
        return jnp.exp(-sq / (2 * s2))

    return jax.vmap(one)(xc, d2, sig2), rows, valid


@functools.lru_cache(maxsize=8)
def _rbf_pass(block: int, debiased: bool, second: bool):
    def row_stats(b, xc, d2, sig2):
        k, rows, valid = _rbf_block(b, xc, d2, sig2, block)
        if debiased:
            k = jnp.where(rows[None, :, None] == jnp.arange(k.shape[2])[None, None, :], 0, k)
            return jnp.sum(k, axis=2)
        return jnp.mean(k, axis=2)

    def products(b, xc, d2, sig2, r):
        k, rows, valid = _rbf_block(b, xc, d2, sig2, block)
        n = k.shape[2]
        safe = jnp.where(valid, rows, 0)
        rb = r[:, safe]  # (R, block)
        if debiased:
            diag = rows[:, None] == jnp.arange(n)[None, :]
            s = jnp.sum(r, axis=1)
            c = (jnp.where(diag[None], 0, k) - rb[:, :, None] / (n - 2)
                 - r[:, None, :] / (n - 2) + (s / ((n - 1) * (n - 2)))[:, None, None])
            c = jnp.where(diag[None], 0, c)
        else:
            g = jnp.mean(r, axis=1)
            c = k - rb[:, :, None] - r[:, None, :] + g[:, None, None]
        c = jnp.where(valid[None, :, None], c, 0)
        f = c.reshape(c.shape[0], -1)
        return mm(f, f.T)

    return products if second else row_stats


def _rbf_cka_matrix_sharded(xs, ys, *, mesh, debiased, sigma, bandwidth_factor,
                            median_include_diagonal, row_block, chunk_size, memory_budget):
    from geomjax.similarity._cka import _check_rbf_size, _rbf_sigmas

    if not isinstance(row_block, (int, np.integer)) or row_block < 1:
        raise ValueError(f"`row_block` must be a positive int; got {row_block!r}.")
    if not float(bandwidth_factor) > 0:
        raise ValueError(f"`bandwidth_factor` must be > 0; got {bandwidth_factor!r}.")
    xn, yn, reps, n_x, symmetric = _prepare(xs, ys, 4 if debiased else 2)
    n = reps[0].shape[0]
    _check_rbf_size(n)
    sx, _ = _rbf_sigmas(sigma)
    z = _stack_padded(reps)  # zero columns change no distance
    r_total = z.shape[0]
    plan = dict(chunk_size=chunk_size, memory_budget=memory_budget)
    if sx is None:
        med = sharded_vmap(_median_kernel(median_include_diagonal), mesh, inner_batch=1,
                           **plan)(z)
        sig = bandwidth_factor * jnp.sqrt(med)
    else:
        sig = jnp.full((r_total,), sx, z.dtype)
    sig2 = (sig * sig).astype(z.dtype)
    xc = jax.vmap(center)(z)
    d2 = jnp.sum(xc * xc, axis=2)
    block = int(min(row_block, n))
    blocks = jnp.arange(-(-n // block), dtype=jnp.int32)
    stats = sharded_vmap(_rbf_pass(block, debiased, False), mesh,
                         in_axes=(0, None, None, None), inner_batch=1, **plan)
    r = stats(blocks, xc, d2, sig2)  # (n_blocks, R, block)
    r = jnp.moveaxis(r, 0, 1).reshape(r_total, -1)[:, :n]
    prods = sharded_vmap(_rbf_pass(block, debiased, True), mesh,
                         in_axes=(0, None, None, None, None), inner_batch=1, **plan)
    parts = np.asarray(prods(blocks, xc, d2, sig2, r), np.float64)
    full = parts.sum(axis=0)
    cka_all = _normalise(full)
    out = cka_all[:n_x, :n_x] if symmetric else cka_all[:n_x, n_x:]
    out = np.asarray(warn_if_nan(out, "CKA matrix"))
    settings = dict(kernel="rbf", debiased=bool(debiased), bandwidth_factor=bandwidth_factor,
                    sigma=sigma, row_block=block, devices=int(mesh.devices.size))
    return SimilarityMatrix(out, xn, yn, ("debiased_" if debiased else "") + "rbf_cka", settings)


# ---------------------------------------------------------------- CCA family and dispatch


@functools.lru_cache(maxsize=16)
def _bases_kernel(epsilon: float, threshold: float, use_threshold: bool, method: str):
    from geomjax.similarity._matrix import _bases

    def batch(z, rtols):
        return _bases(z, rtols, epsilon, threshold, use_threshold, method)

    return batch


@functools.lru_cache(maxsize=16)
def _pairs_kernel(chunk: int, pw: bool):
    from geomjax.similarity._matrix import _pair_cca

    def batch(ii, jj, uf, ff, fs, vt, kept):
        return _pair_cca(uf, ff, fs, vt, kept, ii, jj, chunk, pw)

    return batch


def similarity_matrix_sharded(
    xs,
    ys=None,
    *,
    measure: str = "cka",
    mesh=None,
    epsilon: float = 0.0,
    threshold: float = 0.99,
    pair_chunk: int = 4,
    cca_factorization: str = "auto",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    **cka_kw,
) -> SimilarityMatrix:
    """:func:`geomjax.similarity.similarity_matrix` sharded over a mesh.

    CKA measures go to :func:`cka_matrix_sharded`. For the CCA family (``"cca"``,
    ``"cca_sq"``, ``"svcca"``, ``"pwcca"``) the per-representation factorisations are sharded
    over representations and the canonical correlations over the pair list; each device runs
    the same batched kernels as the single-device call, so values equal it to round-off.
    Widths are matched by zero-padding (exact for every measure).

    Args:
        xs, ys, measure, epsilon, threshold, pair_chunk, cca_factorization: as in
            :func:`~geomjax.similarity.similarity_matrix`.
        mesh: device mesh (default: all local devices).
        chunk_size, memory_budget: as in :func:`~geomjax.distributed.sharded_vmap`.
        **cka_kw: passed to :func:`cka_matrix_sharded` for the CKA measures.

    Returns:
        :class:`~geomjax.similarity.SimilarityMatrix`.
    """
    from geomjax.similarity._matrix import MEASURES, cca_family_matrix

    check_choice(measure, "measure", MEASURES)
    mesh = make_mesh() if mesh is None else mesh
    plan = dict(chunk_size=chunk_size, memory_budget=memory_budget)
    if measure in ("cka", "debiased_cka", "rbf_cka"):
        return cka_matrix_sharded(xs, ys, mesh=mesh, kernel="rbf" if measure == "rbf_cka"
                                  else "linear", debiased=measure == "debiased_cka",
                                  **plan, **cka_kw)
    if cka_kw:
        raise TypeError(f"unexpected options for measure={measure!r}: {sorted(cka_kw)}.")

    def bases_fn(z, rtols, epsilon, threshold, use_threshold, method):
        run = sharded_vmap(_bases_kernel(epsilon, threshold, use_threshold, method), mesh,
                           batched_fn=True, **plan)
        return run(z, rtols)

    def pairs_fn(ii, jj, uf, ff, fs, vt, kept, chunk, pw):
        run = sharded_vmap(_pairs_kernel(chunk, pw), mesh,
                           in_axes=(0, 0, None, None, None, None, None), batched_fn=True, **plan)
        return run(ii, jj, uf, ff, fs, vt, kept)

    return cca_family_matrix(xs, ys, measure=measure, epsilon=epsilon, threshold=threshold,
                             pair_chunk=pair_chunk, cca_factorization=cca_factorization,
                             bases_fn=bases_fn, pairs_fn=pairs_fn,
                             extra_settings=dict(devices=int(mesh.devices.size)))
