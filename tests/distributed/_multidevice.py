"""Sharded == unsharded checks on CPU-simulated devices, run in a fresh process.

JAX fixes the device count when it starts, and the test session has already started it, so the
tests run this script in a subprocess with ``--xla_force_host_platform_device_count``. It prints
one JSON object: for each check, whether the sharded results equal the single-device ones
bitwise (``exact``) and the largest relative difference (``max_rel``).

Usage: python _multidevice.py N_DEVICES CHECK [CHECK ...]
"""

from __future__ import annotations

import json
import os
import sys

N_DEV = int(sys.argv[1])
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={N_DEV}").strip()
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import dataclasses  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import geomjax.distributed as gd  # noqa: E402


def compare(a_tree, b_tree):
    la = jax.tree_util.tree_leaves(a_tree)
    lb = jax.tree_util.tree_leaves(b_tree)
    assert len(la) == len(lb), (len(la), len(lb))
    exact, worst = True, 0.0
    for a, b in zip(la, lb, strict=True):
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return dict(exact=False, max_rel=float("inf"), why=f"shape {a.shape} vs {b.shape}")
        if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            exact = False
        if a.dtype.kind in "fc" and a.size:
            fin = np.isfinite(a) & np.isfinite(b)
            if not np.array_equal(np.isfinite(a), np.isfinite(b)):
                worst = float("inf")
            elif fin.any():
                d = np.abs(a[fin] - b[fin]) / np.maximum(np.abs(b[fin]), 1e-300)
                worst = max(worst, float(np.max(np.where(np.abs(b[fin]) > 1e-12, d, 0))))
        elif not np.array_equal(a, b):
            worst = float("inf")
    return dict(exact=bool(exact), max_rel=worst)


def fields(obj):
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if not isinstance(getattr(obj, f.name), str)}


def check_vmap():
    def f(k, x, w):
        return jnp.tanh(jax.random.normal(k, x.shape) * x).sum() + jnp.dot(w, x), x * 2

    keys = jax.random.split(jax.random.key(0), 7)  # 7: uneven on 2, 3 and 4 devices
    x = jnp.linspace(-1, 1, 21).reshape(7, 3)
    w = jnp.arange(3.0)
    ref = jax.vmap(f, in_axes=(0, 0, None))(keys, x, w)
    out = {}
    for n in sorted({1, 2, 3, N_DEV} & set(range(1, N_DEV + 1))):
        mesh = gd.make_mesh(n)
        out[f"vmap_{n}"] = compare(gd.sharded_vmap(f, mesh, in_axes=(0, 0, None))(keys, x, w), ref)
        out[f"stream_{n}"] = compare(
            gd.sharded_vmap(f, mesh, in_axes=(0, 0, None), chunk_size=1, inner_batch=1)(
                keys, x, w), ref)
        out[f"budget_{n}"] = compare(
            gd.sharded_vmap(f, mesh, in_axes=(0, 0, None), memory_budget=2_000)(keys, x, w), ref)
    try:
        gd.sharded_vmap(f, gd.make_mesh(N_DEV), in_axes=(0, 0, None), memory_budget=8)(keys, x, w)
        out["too_big_raises"] = dict(exact=False, max_rel=float("inf"))
    except gd.DoesNotFitError:
        out["too_big_raises"] = dict(exact=True, max_rel=0.0)
    return out


def check_mftma():
    from geomjax.manifold import mftma

    rng = np.random.default_rng(0)
    # Three analyses of 3 manifolds (9 manifolds: uneven over 2 and 4 devices) and one with
    # manifolds of different sizes (another reduced shape: its own group).
    sets = [rng.normal(size=(3, 6, 10)) for _ in range(3)]
    sets.append([rng.normal(size=(m, 8)) for m in (4, 6, 5)])
    kw = dict(n_t=16, n_reps=2, stiefel_steps=40)
    keys = jax.random.split(jax.random.key(3), len(sets))
    refs = [mftma(keys[i], s, **kw) for i, s in enumerate(sets)]
    got = gd.mftma_sweep(jax.random.key(3), sets, mesh=gd.make_mesh(N_DEV), **kw)
    return {"sweep": compare([fields(r) for r in refs], [fields(g) for g in got])}


def check_empirical():
    from geomjax.manifold import empirical_capacity

    rng = np.random.default_rng(1)
    mans = rng.normal(size=(6, 4, 12))
    ref = empirical_capacity(jax.random.key(5), mans, 7, n_max=12, block=4, max_steps=60)
    got = gd.empirical_capacity_sharded(jax.random.key(5), mans, 7, n_max=12, block=4,
                                        max_steps=60, mesh=gd.make_mesh(N_DEV))
    dec = ("n_star", "n_tested", "n_checks", "n_undecided", "alpha_sim", "alpha_ci", "fraction",
           "n_critical", "n_max")
    out = {"decisions": compare([getattr(ref, f) for f in dec], [getattr(got, f) for f in dec]),
           "all_fields": compare(fields(ref), fields(got))}
    # low-rank data (rank 8 in 40 dimensions: projections drawn from the row-space factor) and
    # 20 dichotomies (8 pilot bisections place the guided splits of the other 12)
    low = (rng.normal(size=(24, 8)) @ rng.normal(size=(8, 40))).reshape(6, 4, 40)
    ref = empirical_capacity(jax.random.key(6), low, 20, n_max=16, block=4, max_steps=60)
    got = gd.empirical_capacity_sharded(jax.random.key(6), low, 20, n_max=16, block=4,
                                        max_steps=60, mesh=gd.make_mesh(N_DEV))
    out["low_rank_pilot"] = compare(fields(ref), fields(got))
    return out


def check_cka():
    from geomjax.similarity import cka_matrix

    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(30, d)) for d in (5, 7, 4, 6, 5)]
    ys = [rng.normal(size=(30, d)) for d in (3, 4)]
    out = {}
    for deb in (False, True):
        got = gd.cka_matrix_sharded(xs, mesh=gd.make_mesh(N_DEV), debiased=deb, pair_chunk=2)
        ref_f = cka_matrix(xs, debiased=deb, method="feature", pair_chunk=2)
        ref_g = cka_matrix(xs, debiased=deb, method="gram")
        out[f"feature_deb{int(deb)}"] = compare(got.values, ref_f.values)
        out[f"gram_deb{int(deb)}"] = compare(got.values, ref_g.values)
    got = gd.cka_matrix_sharded(xs, ys, mesh=gd.make_mesh(N_DEV), pair_chunk=2)
    out["cross"] = compare(got.values, cka_matrix(xs, ys, method="feature", pair_chunk=2).values)
    return out


def check_similarity():
    from geomjax.similarity import cka_matrix, similarity_matrix

    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(37, d)) * s for d, s in ((5, 1.0), (8, 3.0), (3, 0.2))]
    ys = [rng.normal(size=(37, 4))]
    out = {}
    for deb in (False, True):
        for inc in (True, False):  # 37 rows in blocks of 10: uneven blocks, padding rows
            got = gd.cka_matrix_sharded(xs, mesh=gd.make_mesh(N_DEV), kernel="rbf", debiased=deb,
                                        median_include_diagonal=inc, row_block=10)
            ref = cka_matrix(xs, kernel="rbf", debiased=deb, median_include_diagonal=inc)
            out[f"rbf_deb{int(deb)}_diag{int(inc)}"] = compare(got.values, ref.values)
    got = gd.cka_matrix_sharded(xs, ys, mesh=gd.make_mesh(N_DEV), kernel="rbf", sigma=2.0,
                                row_block=8)
    out["rbf_cross_sigma"] = compare(got.values, cka_matrix(xs, ys, kernel="rbf",
                                                            sigma=2.0).values)
    for m in ("cca", "cca_sq", "svcca", "pwcca"):
        got = gd.similarity_matrix_sharded(xs, measure=m, mesh=gd.make_mesh(N_DEV))
        out[m] = compare(got.values, similarity_matrix(xs, measure=m).values)
        got = gd.similarity_matrix_sharded(xs, ys, measure=m, mesh=gd.make_mesh(N_DEV))
        out[m + "_cross"] = compare(got.values, similarity_matrix(xs, ys, measure=m).values)
    return out


def check_probes():
    from geomjax.probing import fit_probes

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 40, 6))  # 3 layers
    y = (x[0, :, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    lam1 = np.array([0.0, 1e-3, 1e-2, 3e-2, 1e-1])  # 5 lambdas: uneven on 2 and 4 devices
    kw = dict(epochs=3, batch_size=16, learning_rate=1e-2)
    out = {}
    ref = fit_probes(jax.random.key(1), x[0], y, lam1=lam1, **kw)
    got = gd.fit_probes_sharded(jax.random.key(1), x[0], y, lam1=lam1,
                                mesh=gd.make_mesh(N_DEV), **kw)
    out["lambda_grid"] = compare((ref.value, ref.converged, ref.residual),
                                 (got.value, got.converged, got.residual))
    ks = jax.random.split(jax.random.key(2), 3)
    ref = fit_probes(ks, x, y, mode="converged", max_steps=200, lam1=1e-3)
    got = gd.fit_probes_sharded(ks, x, y, mode="converged", max_steps=200, lam1=1e-3,
                                mesh=gd.make_mesh(N_DEV))
    out["layers_seeds"] = compare((ref.value, ref.converged, ref.residual, ref.num_steps),
                                  (got.value, got.converged, got.residual, got.num_steps))
    return out


def check_slt():
    from geomjax.jacobian import init_relu_mlp, slt_spectra

    params = init_relu_mlp(jax.random.key(0), (5, 7, 6, 3), dtype=jnp.float64)
    x = np.random.default_rng(4).normal(size=(37, 5))
    labels = np.arange(37) % 3
    out = {}
    for g in (None, labels):
        ref = slt_spectra(params, x, groups=g, batch_size=8, keep_gram=True)
        got = gd.slt_spectra_sharded(params, x, groups=g, batch_size=4, keep_gram=True,
                                     mesh=gd.make_mesh(N_DEV))
        out["groups" if g is not None else "all"] = compare(
            (ref.gram, ref.sigma, ref.auc, ref.counts), (got.gram, got.sigma, got.auc, got.counts))

    def fn(p, xi):
        h = jnp.tanh(xi @ p[0][0] + p[0][1])
        return h @ p[1][0]

    ref = slt_spectra(params, x, fn=fn, batch_size=8, keep_gram=True)
    got = gd.slt_spectra_sharded(params, x, fn=fn, batch_size=8, keep_gram=True,
                                 mesh=gd.make_mesh(N_DEV))
    out["fn"] = compare((ref.gram, ref.sigma, ref.auc), (got.gram, got.sigma, got.auc))
    return out


CHECKS = {"vmap": check_vmap, "mftma": check_mftma, "empirical": check_empirical,
          "cka": check_cka, "similarity": check_similarity,
          "probes": check_probes, "slt": check_slt}

if __name__ == "__main__":
    assert len(jax.devices()) == N_DEV, jax.devices()
    res = {name: CHECKS[name]() for name in sys.argv[2:]}
    print("RESULT " + json.dumps(res))
