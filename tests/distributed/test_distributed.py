"""geomjax.distributed: sharded == unsharded on simulated CPU devices, memory planning, hosts.

The multi-device checks run ``_multidevice.py`` in a subprocess (JAX's device count is fixed when
it starts, and this session has started it with one CPU device).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import geomjax.distributed as gd

HERE = Path(__file__).resolve().parent


def _run_checks(n_dev, *checks, timeout=900):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = str(HERE.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(HERE / "_multidevice.py"), str(n_dev), *checks],
                          capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def four_devices():
    return _run_checks(4, "vmap", "mftma", "empirical", "cka", "similarity", "probes", "slt")


# ------------------------------------------------------------------------------------------------
# sharded == unsharded on 4 simulated devices (one subprocess for all of them)
# ------------------------------------------------------------------------------------------------


def test_sharded_vmap_bitwise_any_device_count(four_devices):
    r = four_devices["vmap"]
    assert {k for k in r if k.startswith("vmap_")} == {"vmap_1", "vmap_2", "vmap_3", "vmap_4"}
    for name, v in r.items():
        assert v["exact"], (name, v)


def test_mftma_sweep_equals_mftma(four_devices):
    for name, v in four_devices["mftma"].items():
        assert v["exact"] or v["max_rel"] < 1e-12, (name, v)


def test_empirical_capacity_sharded_equals_single_device(four_devices):
    r = four_devices["empirical"]
    assert r["decisions"]["exact"], r  # every dichotomy's critical size, the estimate, its CI
    assert r["all_fields"]["exact"], r  # same per-dichotomy program: residuals too
    assert r["low_rank_pilot"]["exact"], r  # row-space factor and guided splits as on one device


def test_cka_matrix_sharded(four_devices):
    r = four_devices["cka"]
    for name in ("feature_deb0", "feature_deb1", "cross"):
        assert r[name]["exact"] or r[name]["max_rel"] < 1e-13, (name, r[name])
    for name in ("gram_deb0", "gram_deb1"):
        assert r[name]["max_rel"] < 1e-10, (name, r[name])


def test_rbf_cka_and_cca_family_sharded(four_devices):
    r = four_devices["similarity"]
    assert len(r) == 13, sorted(r)
    for name, v in r.items():  # row-block sums / per-device batches: round-off only
        assert v["max_rel"] < 1e-12, (name, v)


def test_similarity_matrix_sharded_errors():
    x = [np.zeros((10, 3)) + np.arange(3), np.ones((10, 2))]
    with pytest.raises(ValueError, match="measure"):
        gd.similarity_matrix_sharded(x, measure="nope")
    with pytest.raises(ValueError, match="row_block"):
        gd.cka_matrix_sharded(x, kernel="rbf", row_block=0)
    with pytest.raises(ValueError, match="kernel"):
        gd.cka_matrix_sharded(x, kernel="poly")
    with pytest.raises(TypeError, match="unexpected options"):
        gd.similarity_matrix_sharded(x, measure="svcca", sigma=1.0)


def test_probe_grid_sharded(four_devices):
    for name, v in four_devices["probes"].items():
        assert v["exact"] or v["max_rel"] < 1e-10, (name, v)


def test_slt_spectra_sharded_psum(four_devices):
    for name, v in four_devices["slt"].items():
        assert v["max_rel"] < 1e-9, (name, v)


# ------------------------------------------------------------------------------------------------
# in-process (one CPU device): padding, streaming, memory planning, errors, shards, CLI
# ------------------------------------------------------------------------------------------------


def test_sharded_vmap_one_device_streams_and_trims():
    f = lambda k, x: jax.random.uniform(k) * x  # noqa: E731
    keys = jax.random.split(jax.random.key(0), 5)
    x = jnp.arange(5.0)
    ref = jax.vmap(f)(keys, x)
    for cs in (None, 1, 2, 3):
        out = gd.sharded_vmap(f, gd.make_mesh(1), chunk_size=cs)(keys, x)
        assert out.shape == (5,)
        np.testing.assert_array_equal(out, ref)


def test_sharded_vmap_errors():
    mesh = gd.make_mesh(1)
    f = lambda a, b: a + b  # noqa: E731
    with pytest.raises(ValueError, match="disagree on the batch size"):
        gd.sharded_vmap(f, mesh)(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="no argument as batched"):
        gd.sharded_vmap(f, mesh, in_axes=None)(jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match="in_axes"):
        gd.sharded_vmap(f, mesh, in_axes=(0, 1))(jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match="chunk_size"):
        gd.sharded_vmap(f, mesh, chunk_size=0)
    with pytest.raises(TypeError, match="mesh"):
        gd.sharded_vmap(f, "cpu")


def test_make_mesh():
    m = gd.make_mesh()
    assert gd.mesh_size(m) == len(jax.local_devices())
    assert m.axis_names == ("batch",)
    assert gd.make_mesh(jax.local_devices()[:1], axis="items").axis_names == ("items",)
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        gd.make_mesh(len(jax.local_devices()) + 1)
    with pytest.raises(ValueError, match="empty"):
        gd.make_mesh([])
    with pytest.raises(TypeError, match="devices"):
        gd.make_mesh("gpu")


def test_memory_plan():
    def f(x):
        return jnp.outer(x, x).sum()

    one = (jnp.ones((1, 256)),)
    need = gd.item_bytes(f, one, (0,))
    assert need >= 256 * 8  # at least the argument itself
    assert gd.plan_chunk(f, one, (0,), n_items=100, memory_budget=10 * need) == 10
    assert gd.plan_chunk(f, one, (0,), n_items=3, memory_budget=10 * need) == 3
    with pytest.raises(gd.DoesNotFitError, match="MiB"):
        gd.plan_chunk(f, one, (0,), n_items=3, memory_budget=max(need // 2, 1))
    with pytest.raises(ValueError, match="memory_budget"):
        gd.device_memory_budget(memory_budget=-1)


def test_memory_budget_from_environment(monkeypatch):
    dev = jax.local_devices()[0]
    if dev.memory_stats() and "bytes_limit" in dev.memory_stats():
        pytest.skip("the device reports its memory; the environment fallback is unused")
    monkeypatch.setenv("GEOMJAX_DEVICE_MEMORY", "12345")
    assert gd.device_memory_budget() == 12345
    monkeypatch.setenv("GEOMJAX_DEVICE_MEMORY", "lots")
    with pytest.raises(ValueError, match="GEOMJAX_DEVICE_MEMORY"):
        gd.device_memory_budget()


def test_process_slice_covers_every_item_once():
    for n_items in (0, 1, 7, 10):
        for n_proc in (1, 2, 3):
            parts = [gd.process_slice(n_items, i, n_proc) for i in range(n_proc)]
            got = [j for s in parts for j in range(n_items)[s]]
            assert got == list(range(n_items))
    with pytest.raises(ValueError, match="process_index"):
        gd.process_slice(4, 2, 2)


def test_shards_merge(tmp_path):
    a = pd.DataFrame({"analysis": [0, 1], "capacity": [0.1, 0.2]})
    b = pd.DataFrame({"analysis": [2], "capacity": [0.3]})
    gd.write_shard(b, tmp_path, 1, 2)
    with pytest.raises(ValueError, match=r"processes \[0\]"):
        gd.merge_shards(tmp_path)
    gd.write_shard(a, tmp_path, 0, 2)
    merged = gd.merge_shards(tmp_path, tmp_path / "all.parquet")
    pd.testing.assert_frame_equal(merged, pd.concat([a, b], ignore_index=True))
    assert pd.read_parquet(tmp_path / "all.parquet").shape == (3, 2)
    gd.write_shard(a, tmp_path, 0, 3)
    with pytest.raises(ValueError, match="different process counts"):
        gd.merge_shards(tmp_path)
    with pytest.raises(FileNotFoundError):
        gd.merge_shards(tmp_path / "none")


def test_cli_device_args():
    p = gd.add_device_args(argparse.ArgumentParser())
    args = p.parse_args(["--devices", "1", "--memory-budget", "0.5"])
    mesh = gd.mesh_from_args(args)
    assert gd.mesh_size(mesh) == 1
    assert gd.memory_budget_from_args(args) == 2**29
    assert p.parse_args([]).devices is None
    with pytest.raises(SystemExit):
        p.parse_args(["--devices", "0"])


def test_initialize_validates():
    with pytest.raises(ValueError, match="process_id"):
        gd.initialize("localhost:1234", 2, 5)
    with pytest.raises(ValueError, match="host:port"):
        gd.initialize("localhost", 2, 0)


# ------------------------------------------------------------------------------------------------
# two processes with jax.distributed on localhost
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_sweep_merges_to_single_process(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import _two_process as tp
    finally:
        sys.path.pop(0)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = str(HERE.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    procs = [subprocess.Popen([sys.executable, str(HERE / "_two_process.py"), f"localhost:{port}",
                               "2", str(i), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    merged = gd.merge_shards(tmp_path)
    from geomjax.manifold import mftma

    sets = tp.analyses()
    keys = jax.random.split(jax.random.key(tp.KEY), len(sets))
    ref = tp.rows([mftma(keys[i], s, **tp.SETTINGS) for i, s in enumerate(sets)], 0)
    pd.testing.assert_frame_equal(merged, ref, check_exact=False, rtol=1e-12)


def test_mftma_sweep_one_device_table_and_errors():
    from geomjax.manifold import mftma

    rng = np.random.default_rng(0)
    sets = [rng.normal(size=(3, 4, 5)) for _ in range(2)]
    keys = jax.random.split(jax.random.key(0), 2)
    res = gd.mftma_sweep(keys, sets, n_t=6, K=0, mesh=gd.make_mesh(1))
    ref = mftma(keys[1], sets[1], n_t=6, K=0)
    np.testing.assert_array_equal(res[1].capacity_per_manifold, ref.capacity_per_manifold)
    df = gd.sweep_frame(res, [{"layer": 0}, {"layer": 1}], start=10)
    assert list(df["analysis"]) == [10, 11] and list(df["layer"]) == [0, 1]
    assert len(gd.sweep_frame(res, level="manifold")) == 6
    with pytest.raises(ValueError, match="analyses\\[1\\]"):
        gd.mftma_sweep(keys, [sets[0], np.full((3, 4, 5), np.nan)], n_t=6, K=0)
    with pytest.raises(ValueError, match="2 keys for 3 analyses"):
        gd.mftma_sweep(keys, sets + sets[:1], n_t=6, K=0)
    with pytest.raises(ValueError, match="labels"):
        gd.sweep_frame(res, [{}])
