"""How a table computed over a device mesh compares with the one-device table (shared by the
``_*_devices.py`` subprocess scripts, which import it from their own folder)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """``exact``: equal bitwise; ``max_rel``: largest relative difference of the float columns
    (inf when shapes, columns or the finite pattern differ); ``same_rows``: the other columns
    (labels, row order) are equal."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return dict(exact=False, max_rel=float("inf"), same_rows=False)
    num = [c for c in a.columns if a[c].dtype.kind == "f"]
    other = [c for c in a.columns if c not in num]
    same_rows = bool(a[other].equals(b[other]))
    x, y = a[num].to_numpy(np.float64), b[num].to_numpy(np.float64)
    fin = np.isfinite(x) & np.isfinite(y)
    worst = 0.0 if np.array_equal(np.isfinite(x), np.isfinite(y)) else float("inf")
    if fin.any():
        d = np.abs(x[fin] - y[fin]) / np.maximum(np.abs(y[fin]), 1e-6)
        worst = max(worst, float(d.max()))
    return dict(exact=bool(a.equals(b)), max_rel=worst, same_rows=same_rows)
