"""SLT spectra with the frames sharded across devices and the Gram matrices reduced with psum.

:func:`geomjax.jacobian.slt_spectra` streams a data set batch by batch into per-node Gram
matrices ``G[g, m] = sum_{i in g} A(x_i)[m]^T A(x_i)[m]``. The sum over frames is split here:
each device scans its share of the frames in batches of ``batch_size`` and the partial Grams are
summed with ``lax.psum`` across the mesh. The spectra then follow exactly as in ``slt_spectra``.
Sums run in another order than the single-device stream, so values agree to round-off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from geomjax._checks import as_array, check_finite
from geomjax._types import result_dtype
from geomjax.distributed._mesh import _axis, make_mesh
from geomjax.jacobian import SLTSpectra, default_rcond
from geomjax.jacobian._auc import _auc_kernel
from geomjax.jacobian._spectra import (
    _HI,
    _gram_spectrum,
    _group_weights,
    _producer_setup,
)

__all__ = ["slt_spectra_sharded"]

_CACHE: dict = {}


def _grams_fn(produce, mesh, axis, n_groups, widths, F, acc, batch_size):
    key = (produce, mesh, axis, n_groups, tuple(widths), F, str(acc), batch_size)
    if key in _CACHE:
        return _CACHE[key]

    def local(x, w, params):
        nb = x.shape[0] // batch_size
        xb = x.reshape(nb, batch_size, x.shape[1])
        wb = w.reshape(nb, batch_size, w.shape[1])

        def body(grams, xw):
            xi, wi = xw
            As = produce(params, xi)
            new = []
            for A, G in zip(As, grams, strict=True):
                A = A.astype(acc)
                for g in range(n_groups):
                    Aw = A * wi[:, g].astype(acc)[None, :, None]
                    G = G.at[g].add(jnp.einsum("hbf,hbk->hfk", Aw, A, precision=_HI))
                new.append(G)
            return tuple(new), None

        g0 = tuple(jnp.zeros((n_groups, h, F, F), acc) for h in widths)
        grams, _ = lax.scan(body, g0, (xb, wb))
        return lax.psum(grams, axis)

    fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(axis), P()),
                               out_specs=P(), check_vma=False))
    _CACHE[key] = fn
    return fn


def slt_spectra_sharded(
    params: Any,
    x,
    *,
    mesh=None,
    fn: Callable | None = None,
    layers=None,
    groups=None,
    group_names: Sequence[str] | None = None,
    batch_size: int = 1024,
    n_sigma: int | None = None,
    abscissa: str = "index",
    accum_dtype=None,
    rcond: float | None = None,
    keep_gram: bool = False,
) -> SLTSpectra:
    """:func:`geomjax.jacobian.slt_spectra` with frames sharded over a mesh (psum of Grams).

    Args:
        params, fn, layers, groups, group_names, n_sigma, abscissa, accum_dtype, rcond,
            keep_gram: as in :func:`~geomjax.jacobian.slt_spectra` (per-node spectra; the
            per-input spectra, ``inputs=True``, are not sharded).
        x: ``(N, F)`` inputs (an array: the frames are split across devices).
        mesh: device mesh (default: all local devices).
        batch_size: frames per scanned batch on each device (sets the per-device memory).

    Returns:
        :class:`~geomjax.jacobian.SLTSpectra`, equal to the single-device result to round-off.
    """
    if abscissa not in ("index", "unit"):
        raise ValueError(f"`abscissa` must be 'index' or 'unit'; got {abscissa!r}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be positive; got {batch_size}.")
    xa = as_array(x, "x")
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise ValueError(f"`x` must be (N, F) with N >= 1 samples as rows; got shape "
                         f"{tuple(xa.shape)}.")
    check_finite(xa, "x")
    N = xa.shape[0]
    w, names = _group_weights(groups, N, group_names)
    dt = result_dtype(xa)
    acc = jnp.dtype(accum_dtype) if accum_dtype is not None else jnp.dtype(dt)
    produce, params, lnames, widths, F = _producer_setup(params, fn, layers, dt)
    if fn is None:
        if xa.shape[1] != F:
            raise ValueError(f"`x` has {xa.shape[1]} features but the network expects F={F}.")
    else:
        F = xa.shape[1]
        shapes = jax.eval_shape(lambda p, xx: produce(p, xx), params,
                                jax.ShapeDtypeStruct((1, F), dt))
        widths = [s.shape[0] for s in shapes]
    mesh = make_mesh() if mesh is None else mesh
    axis = _axis(mesh, None)
    n_dev = int(mesh.shape[axis])
    G = len(names)
    per_dev = math.ceil(N / n_dev)
    bs = min(batch_size, per_dev)
    total = math.ceil(per_dev / bs) * bs * n_dev
    xp = np.zeros((total, F), np.dtype(dt))
    xp[:N] = np.asarray(xa, np.dtype(dt))
    wp = np.zeros((total, G), np.dtype(dt))
    wp[:N] = w
    shard = NamedSharding(mesh, P(axis))
    run = _grams_fn(produce, mesh, axis, G, widths, F, acc, bs)
    grams = run(jax.device_put(jnp.asarray(xp), shard), jax.device_put(jnp.asarray(wp), shard),
                params)
    counts = w.sum(0).astype(np.int64)
    if n_sigma is None:
        ns = np.minimum(counts, F)
    else:
        if not 2 <= int(n_sigma) <= F:
            raise ValueError(f"`n_sigma` must be between 2 and F={F}; got {n_sigma}.")
        ns = np.full(G, int(n_sigma))
    rc = default_rcond(acc) if rcond is None else float(rcond)
    sigma, auc = [], []
    for Gm in grams:
        s = _gram_spectrum(Gm, rc)
        a = []
        for g in range(G):
            n_g = int(min(ns[g], F))
            a.append(jnp.full(s.shape[1], jnp.nan, s.dtype) if n_g < 2
                     else _auc_kernel(s[g], n_g, abscissa))
        sigma.append(np.asarray(s))
        auc.append(np.asarray(jnp.stack(a)))
    return SLTSpectra(
        sigma=sigma, auc=auc, n_sigma=ns, counts=counts, sigma_inputs=None, auc_inputs=None,
        gram=[np.asarray(g) for g in grams] if keep_gram else None, layer_names=lnames,
        group_names=tuple(names), abscissa=abscissa,
    )
