"""`geomjax mftma --devices N` shards the anchor problems and reproduces the one-device result."""

import os
import subprocess
import sys

import pandas as pd


def _run(args, out, env):
    cmd = [sys.executable, "-m", "geomjax.cli", "mftma", "--P", "4", "--M", "6", "--N", "30",
           "--n-t", "20", "--out", str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return pd.read_csv(out / "manifolds.csv")


def test_mftma_devices_option_matches_single_device(tmp_path):
    # simulated CPU devices must be requested before JAX starts, hence the subprocesses
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    one = _run([], tmp_path / "one", env)
    two = _run(["--devices", "2"], tmp_path / "two", env)
    pd.testing.assert_frame_equal(one, two, check_exact=False, rtol=1e-12, atol=1e-12)


def test_bad_devices_value_is_a_clear_error(tmp_path):
    cmd = [sys.executable, "-m", "geomjax.cli", "mftma", "--devices", "zero", "--out",
           str(tmp_path / "x")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "devices" in r.stderr
