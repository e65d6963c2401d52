"""``geomjax reproduce --devices N``: the analysis stages run their batched work over a device
mesh and write the same tables as one device.

JAX fixes the device count when it starts, so the comparisons run in subprocesses with
``--xla_force_host_platform_device_count``. The fast test runs the stages' analysis helpers
(pooled MFTMA sweeps, alpha_SIM, CKA / SVCCA matrices, SLT spectra) on small synthetic data with
and without a 4-device mesh; the slow one trains the tiny profile once and runs every analysis
stage (probing included) on 1 and on 4 devices.
"""

import json
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


# float columns compared to round-off (the CI bounds of the summaries, mean -+ t sd over two
# seeds, are differences of nearly equal numbers: hence the absolute term); labels, counts and
# row order must match exactly
RTOL, ATOL = 1e-4, 1e-5


@pytest.mark.slow
def test_tiny_run_on_four_devices_matches_one_device(tmp_path):
    """The tiny profile is trained once; its analysis stages then run on one device and over 4
    simulated devices in one process (same code, same activations: XLA's CPU code for the
    models' forward passes may differ in the last bits between processes with different device
    counts, and the tiny profile's MFTMA, P = M = 4 on barely trained nets, amplifies input
    differences far beyond round-off)."""
    trained, cache = tmp_path / "trained", tmp_path / "cache"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "geomjax.cli",
            "reproduce",
            "--profile",
            "tiny",
            "--no-progress",
            "--out",
            str(trained),
            "--cache-dir",
            str(cache),
            "--stages",
            "corpus,train",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one, four = tmp_path / "one", tmp_path / "four"
    r = subprocess.run(
        [
            sys.executable,
            str(HERE / "_reproduce_run_devices.py"),
            "4",
            str(trained),
            str(cache),
            str(one),
            str(four),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    names = sorted(p.stem for p in (one / "tables").glob("*.parquet"))
    assert {
        "stephenson_layers_raw",
        "ds2_timesteps_raw",
        "epochs",
        "simcap",
        "similarity_layers",
        "similarity_epochs",
        "probing",
        "probing_top_neurons",
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
            atol=ATOL,
            equal_nan=True,
            err_msg=name,
        )
