"""The scaling benchmark runs end to end at tiny sizes (keeps it from rotting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two fresh processes compiling every sharded program: minutes on 2 cores
def test_bench_scaling_smoke():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_scaling", "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| devices |") and len(rows) == 3, out.stdout
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["1", "2"]
    assert "disagrees" not in out.stdout
