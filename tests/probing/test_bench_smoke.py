import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_runs_and_agrees():
    env = dict(os.environ, JAX_ENABLE_X64="0")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_probing", "--smoke", "--no-record"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Agreement: ok" in out.stdout
    assert "| test acc ALL |" in out.stdout
