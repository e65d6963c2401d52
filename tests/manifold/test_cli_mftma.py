"""The `geomjax mftma` command and the MFTMA benchmark's smoke mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from geomjax.cli import SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def test_mftma_command_writes_tables_settings_and_figure(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["mftma", "--P", "4", "--M", "6", "--N", "20", "--dim", "3", "--n-t", "16",
               "--K", "0", "--out", str(out)])
    assert rc == 0
    for name in ("summary.csv", "summary.parquet", "manifolds.csv", "manifolds.parquet",
                 "settings.json", "figure.png"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary["n_unconverged"][0] == 0 and summary["K"][0] == 0
    manifolds = pd.read_csv(out / "manifolds.csv")
    assert len(manifolds) == 4 and np.isfinite(manifolds["capacity"]).all()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["settings"]["P"] == 4 and settings["versions"]["jax"]
    assert "results:" in capsys.readouterr().out


def test_mftma_command_reports_bad_input(tmp_path, capsys):
    rc = main(["mftma", "--input", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((3, 4, 5), np.nan))
    assert main(["mftma", "--input", str(bad), "--K", "0", "--out", str(tmp_path / "r")]) == 2
    assert "NaN/inf" in capsys.readouterr().err


def test_registry_has_the_subcommands():
    assert {"reproduce", "mftma"} <= set(SUBCOMMANDS)


def test_benchmark_smoke_runs():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_mftma", "--smoke",
                           "--no-record"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "anchor step vs exact NNLS" in proc.stdout


def test_centre_benchmark_smoke_runs():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_mftma", "--centres", "--smoke",
                           "--no-record"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "residual corr geomjax" in proc.stdout
