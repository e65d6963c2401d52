"""The analysis helpers of ``geomjax reproduce`` with and without a device mesh, in a fresh
process with CPU-simulated devices (JAX fixes the device count when it starts).

Prints one JSON object: per table, whether the mesh run equals the one-device run bitwise
(``exact``), the largest relative difference of its float columns (``max_rel``) and whether
labels and row order agree (``same_rows``).

Usage: python _reproduce_devices.py N_DEVICES
"""

from __future__ import annotations

import json
import os
import sys

N_DEV = int(sys.argv[1])
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEV}"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _table_compare import compare  # noqa: E402  (this script's folder)

import geomjax.distributed as gd  # noqa: E402
from geomjax.experiments import _reproduce as rp  # noqa: E402
from geomjax.experiments._geometry import simulated_capacity  # noqa: E402


def manifold_sets(rng, n, P=4, M=6, N=16):
    return [
        (rng.normal(size=(P, 1, N)) + 0.4 * rng.normal(size=(P, M, N))).astype(np.float32)
        for _ in range(n)
    ]


def mftma_rows(mesh, full):
    rng = np.random.default_rng(0)
    sets = manifold_sets(rng, 5)
    pool = rp.MftmaPool(20, mesh, full=full, max_bytes=3 * sets[0].nbytes)  # two flushes
    for i, X in enumerate(sets):
        pool.add([({"layer": f"l{i}", "layer_index": i}, jax.random.key(100 + i), X)])
        if i == 1:  # rows measured before (as `epochs` reuses `stephenson`) keep their place
            pool.add_rows([{"layer": "done", "layer_index": -1}])
    return pd.DataFrame(pool.rows())


def simcap_rows(mesh):
    rng = np.random.default_rng(1)
    rows = []
    for i, X in enumerate(manifold_sets(rng, 2, P=6, M=4, N=12)):
        r = simulated_capacity(jax.random.key(7 + i), X, 8, 1.0, mesh, None)
        rows.append({"layer": i, **r})
    return pd.DataFrame(rows)


def similarity_rows(mesh):
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 6))
    reps = {
        f"l{i}": (base @ rng.normal(size=(6, 10 + 3 * i))).astype(np.float32)
        + 0.1 * rng.normal(size=(40, 10 + 3 * i)).astype(np.float32)
        for i in range(4)
    }
    # wider than its 40 samples: the mesh path embeds it exactly in 40 dimensions first
    reps["wide"] = (base @ rng.normal(size=(6, 64))).astype(np.float32) + 0.1 * rng.normal(
        size=(40, 64)
    ).astype(np.float32)
    final = {k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32) for k, v in reps.items()}
    ck = rp.cka_table(reps, None, mesh).to_frame()
    sv = rp.svcca_table(reps, mesh).to_frame()
    ep = rp.cka_table(
        {f"{k}@0": v for k, v in reps.items()}, {f"{k}@final": v for k, v in final.items()}, mesh
    ).to_frame()
    return pd.concat([ck, sv, ep], ignore_index=True)


def slt_rows(mesh):
    rng = np.random.default_rng(3)
    dims = [10, 8, 8, 3]
    mlp = [
        (
            rng.normal(size=(a, b)).astype(np.float32) / np.sqrt(a),
            0.1 * rng.normal(size=b).astype(np.float32),
        )
        for a, b in zip(dims[:-1], dims[1:], strict=True)
    ]
    x = rng.normal(size=(37, 10)).astype(np.float32)
    groups = {"all": np.ones(37, bool), "cor": rng.random(37) < 0.6}
    groups["inc"] = ~groups["cor"]
    spec = rp.slt_table(mlp, x, [0, 1], groups, mesh)
    n_sig = int(min(spec.n_sigma))
    aucs = spec.auc_at(n_sig)
    rows = []
    for li in range(2):
        for gi, g in enumerate(spec.group_names):
            a = np.asarray(aucs[li][gi])
            rows.append(
                {
                    "layer": li,
                    "group": g,
                    "n_sigma": n_sig,
                    "auc_mean": float(np.nanmean(a)),
                    "auc_median": float(np.nanmedian(a)),
                }
            )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    mesh = gd.make_mesh(N_DEV)
    checks = {
        "mftma": lambda m: mftma_rows(m, True),
        "timesteps": lambda m: mftma_rows(m, False),
        "simcap": simcap_rows,
        "similarity": similarity_rows,
        "slt": slt_rows,
    }
    wanted = sys.argv[2:] or list(checks)
    out = {"devices": len(jax.devices())}
    for name in wanted:
        out[name] = compare(checks[name](mesh), checks[name](None))
    print(json.dumps(out))
