"""``geomjax analyze ... --devices N`` against the one-device run, in one fresh process with
CPU-simulated devices (JAX fixes the device count when it starts).

Runs each analysis on ``DATA`` (an ``.npz`` of layers) without and with ``--devices N`` and
prints one JSON object: per analysis, whether the tables are equal bitwise (``exact``), the
largest relative difference of the float columns (``max_rel``) and whether labels and row order
agree (``same_rows``).

Usage: python _analyze_devices.py N_DEVICES DATA OUT ANALYSIS[:EXTRA,ARGS] ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

N_DEV = int(sys.argv[1])
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEV}"
).strip()

import pandas as pd  # noqa: E402
from _table_compare import compare  # noqa: E402  (this script's folder)

from geomjax.experiments._commands import main  # noqa: E402

if __name__ == "__main__":
    data, out = sys.argv[2], Path(sys.argv[3])
    res = {}
    for spec in sys.argv[4:]:
        analysis, _, extra = spec.partition(":")
        extra = extra.split(",") if extra else []
        tables = []
        for tag, dev in (("one", []), ("many", ["--devices", str(N_DEV)])):
            o = out / f"{analysis}-{tag}"
            code = main(["analyze", analysis, data, "--out", str(o), *extra, *dev])
            if code != 0:
                raise SystemExit(f"analyze {analysis} {tag} failed with status {code}")
            tables.append(pd.read_csv(o / f"{analysis}.csv"))
        res[analysis] = compare(tables[1], tables[0])
    print(json.dumps(res))
