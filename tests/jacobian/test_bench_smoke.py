"""The Jacobian benchmark runs end to end at smoke size (it checks agreement before timing)."""

from __future__ import annotations

import numpy as np


def test_bench_jacobian_smoke():
    from benchmarks import bench_jacobian

    rows, spec = bench_jacobian.main(["--smoke", "--no-record"])
    assert rows[0]["method"].startswith("geomjax") and len(rows) >= 4
    assert all(r["max_rel_err"] < 1e-4 for r in rows)
    assert spec[0]["AUC check max rel diff"] < 5e-3 and np.isfinite(spec[0]["wall_s"])
