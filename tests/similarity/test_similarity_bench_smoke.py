"""The similarity benchmark runs end to end at tiny sizes (keeps it from rotting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_similarity_smoke():
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_similarity", "--smoke", "--no-record",
         "--sections", "pair,allpairs,streaming"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "linear CKA" in text and "SVCCA-99 %" in text and "PWCCA" in text
    assert "disagrees" not in text
    assert "minibatch CKA" in text
