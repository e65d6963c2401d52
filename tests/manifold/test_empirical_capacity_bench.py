"""The alpha_SIM benchmark stays runnable: smoke mode end to end (tiny sizes, not recorded)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke(capsys):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.bench_empirical_capacity import main

    rc = main(["--smoke", "--no-record"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "0 disagreements" in out
    assert "geomjax empirical_capacity" in out and "reference cvxopt SVM" in out
