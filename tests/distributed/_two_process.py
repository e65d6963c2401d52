"""One process of a multi-process MFTMA sweep on localhost (run by the slow test).

Usage: python _two_process.py COORDINATOR NUM_PROCESSES PROCESS_ID OUT_FOLDER

Every process starts ``jax.distributed``, takes its share of the analyses, runs it on its two
simulated local devices and writes its rows as one Parquet shard.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=2").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import geomjax.distributed as gd  # noqa: E402


def analyses():
    rng = np.random.default_rng(7)
    return [rng.normal(size=(3, 5, 8)) for _ in range(5)]


SETTINGS = dict(n_t=12, n_reps=2, stiefel_steps=30)
KEY = 11


def rows(results, start):
    cols = ["analysis", "capacity", "radius", "dimension", "center_correlation", "K"]
    return gd.sweep_frame(results, start=start)[cols]


if __name__ == "__main__":
    coord, n_proc, pid, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    idx, count = gd.initialize(coord, n_proc, pid, timeout_s=120)
    assert (idx, count) == (pid, n_proc), (idx, count)
    sets = analyses()
    share = gd.process_slice(len(sets))
    keys = jax.random.split(jax.random.key(KEY), len(sets))[share]
    res = gd.mftma_sweep(keys, sets[share], mesh=gd.make_mesh(), **SETTINGS)
    gd.write_shard(rows(res, share.start), out)
    jax.distributed.shutdown()
