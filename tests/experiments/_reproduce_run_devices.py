"""The analysis stages of a trained run folder, once on one device and once over a mesh, in one
process with CPU-simulated devices (so both runs use the same code and the same activations).

Usage: python _reproduce_run_devices.py N_DEVICES TRAINED_RUN CACHE OUT_ONE OUT_MESH [STAGES]

``TRAINED_RUN`` holds the ``corpus`` and ``train`` stages of a tiny-profile run (seed 0); it is
copied to both output folders, whose analysis stages then run.
"""

from __future__ import annotations

import os
import shutil
import sys

N_DEV = int(sys.argv[1])
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEV}"
).strip()

import geomjax.distributed as gd  # noqa: E402
from geomjax.experiments._reproduce import reproduce  # noqa: E402

STAGES = ["stephenson", "timesteps", "epochs", "simcap", "similarity", "probing", "nagamine"]

if __name__ == "__main__":
    trained, cache, one, many = sys.argv[2:6]
    stages = sys.argv[6].split(",") if len(sys.argv) > 6 else STAGES
    for out, mesh in ((one, None), (many, gd.make_mesh(N_DEV))):
        shutil.copytree(trained, out)
        reproduce(out, "tiny", 0, stages=stages, progress=False, cache_dir=cache, mesh=mesh)
