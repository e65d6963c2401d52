"""Summaries over seeds: means with Student-t 95% confidence intervals, as tidy tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["mean_ci", "summarize"]


def mean_ci(x, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t confidence interval of the mean.

    Non-finite values are dropped. With a single finite value the interval is ``(nan, nan)``:
    one sample carries no information about the spread.
    """
    a = np.asarray(x, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(a.mean())
    if a.size == 1:
        return m, float("nan"), float("nan")
    se = float(a.std(ddof=1) / np.sqrt(a.size))
    h = float(stats.t.ppf(0.5 + level / 2, a.size - 1) * se)
    return m, m - h, m + h


def summarize(
    df: pd.DataFrame, by: Sequence[str], values: Sequence[str], level: float = 0.95
) -> pd.DataFrame:
    """Per group of ``by``: ``<v>``, ``<v>_lo``, ``<v>_hi`` (mean and CI over rows) and ``n``."""
    rows = []
    for key, g in df.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=False))
        row["n"] = len(g)
        for v in values:
            m, lo, hi = mean_ci(g[v].to_numpy(), level)
            row[v], row[f"{v}_lo"], row[f"{v}_hi"] = m, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
