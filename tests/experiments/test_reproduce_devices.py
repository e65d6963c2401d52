"""``geomjax reproduce --devices N``: the analysis stages run their batched work over a device
mesh and write the same tables as one device.

JAX fixes the device count when it starts, so the comparisons run in subprocesses with
``--xla_force_host_platform_device_count``. The fast test runs the stages' analysis helpers
(pooled MFTMA sweeps, alpha_SIM, CKA / SVCCA matrices, SLT spectra) on small synthetic data with
and without a 4-device mesh; the slow one trains the tiny profile once and runs every analysis
stage on 1 and on 4 devices.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).parent


def test_stage_analyses_on_four_devices_match_one_device():
    r = subprocess.run(
        [sys.executable, str(HERE / "_reproduce_devices.py"), "4"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4
    for name in ("mftma", "timesteps", "simcap", "similarity", "slt"):
        assert res[name]["same_rows"], (name, res[name])  # labels and row order
    # alpha_SIM: each dichotomy is independent of the others -> bitwise
    assert res["simcap"]["exact"], res["simcap"]
    # pooled MFTMA sweep: same per-manifold programs and keys; the float32 aggregates may
    # differ in the last bit
    assert res["mftma"]["max_rel"] <= 1e-6, res["mftma"]
    assert res["timesteps"]["max_rel"] <= 1e-6, res["timesteps"]
    # pair-sharded CKA (feature route) vs the Gram route, SVCCA, psum of SLT Grams: round-off
    assert res["similarity"]["max_rel"] <= 1e-4, res["similarity"]
    assert res["slt"]["max_rel"] <= 1e-4, res["slt"]


def test_reproduce_parser_takes_device_options():
    from geomjax.cli import build_parser

    a = build_parser().parse_args(["reproduce", "--devices", "4", "--memory-budget", "2"])
    assert a.devices == 4 and a.memory_budget == 2.0
    assert build_parser().parse_args(["reproduce", "--devices", "all"]).devices == "all"
    assert build_parser().parse_args(["reproduce"]).devices is None  # one device, as before
    assert not hasattr(a, "coordinator")  # one run folder: no multi-host split of the job
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "--devices", "0"])


ANALYSIS_STAGES = "stephenson,timesteps,epochs,simcap,similarity,nagamine"
# float columns compared to round-off; labels, counts and row order must match exactly
RTOL = 1e-4


def _cli(args, env=None):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "geomjax.cli",
            "reproduce",
            "--profile",
            "tiny",
            "--no-progress",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.slow
def test_tiny_run_on_four_devices_matches_one_device(tmp_path):
    """Both runs are made in processes with 4 simulated devices: XLA's CPU code for the models'
    forward passes differs in the last bits between processes with different device counts,
    and the tiny profile's MFTMA (P = M = 4, barely trained nets) amplifies such
    input differences far beyond round-off; here the activations are the same bits and only the
    analyses differ (mesh or not)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    cache, one = tmp_path / "cache", tmp_path / "one"
    _cli(["--out", str(one), "--cache-dir", str(cache), "--stages", "corpus,train"], env)
    four = tmp_path / "four"
    shutil.copytree(one, four)  # the same trained models: only the analyses are compared
    _cli(["--out", str(one), "--cache-dir", str(cache), "--stages", ANALYSIS_STAGES], env)
    _cli(
        [
            "--out",
            str(four),
            "--cache-dir",
            str(cache),
            "--stages",
            ANALYSIS_STAGES,
            "--devices",
            "4",
        ],
        env,
    )
    names = sorted(p.stem for p in (one / "tables").glob("*.parquet"))
    assert {
        "stephenson_layers_raw",
        "ds2_timesteps_raw",
        "epochs",
        "simcap",
        "similarity_layers",
        "similarity_epochs",
        "nagamine_slt",
    } <= set(names)
    for name in names:
        a = pd.read_parquet(one / "tables" / f"{name}.parquet")
        b = pd.read_parquet(four / "tables" / f"{name}.parquet")
        assert list(a.columns) == list(b.columns) and len(a) == len(b), name
        num = [c for c in a.columns if a[c].dtype.kind == "f"]
        other = [c for c in a.columns if c not in num]
        pd.testing.assert_frame_equal(a[other], b[other], obj=name)
        np.testing.assert_allclose(
            b[num].to_numpy(float),
            a[num].to_numpy(float),
            rtol=RTOL,
            atol=1e-6,
            equal_nan=True,
            err_msg=name,
        )
