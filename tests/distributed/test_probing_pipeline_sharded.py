"""paper_pipeline_sharded == paper_pipeline (tasks x seeds over 4 simulated CPU devices).

Like test_distributed.py, the check runs in a subprocess that starts JAX with forced host devices;
it reuses ``_multidevice.py`` for that set-up and for its ``compare``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import geomjax.distributed as gd
import geomjax.probing as gp

HERE = Path(__file__).resolve().parent

_CHECK = r"""
import json, sys
sys.argv = ["_multidevice.py", "4"]
sys.path.insert(0, {here!r})
import _multidevice as md  # forces 4 host devices, float64
import dataclasses
import jax, numpy as np
import geomjax.distributed as gd
import geomjax.probing as gp

assert len(jax.devices()) == 4, jax.devices()
x, y, _, widths = gp.planted_probing_data(0, 150, (10, 10, 8), planted_per_layer=(1, 1, 2),
                                          signal=1.5, dtype=np.float64)
st = gp.fit_standardizer(x[:120])
xtr, xte = np.asarray(st(x[:120])), np.asarray(st(x[120:]))
_, idx = gp.concat_layers([xtr[:, :10], xtr[:, 10:20], xtr[:, 20:]])
kw = dict(epochs=2, batch_size=32, fractions=(0.1, 0.5))
out = {{}}
# 2 tasks x 3 seeds = 6 runs: uneven on 4 devices
ytr = np.stack([y[:120], y[:120] % 2])
yte = np.stack([y[120:], y[120:] % 2])
keys = jax.random.split(jax.random.key(3), 3)
cases = {{"tasks_seeds": (keys, ytr, yte), "one_run": (jax.random.key(1), y[:120], y[120:])}}
for name, (k, a, b) in cases.items():
    ref = gp.paper_pipeline(k, xtr, a, xte, b, idx, **kw)
    got = gd.paper_pipeline_sharded(k, xtr, a, xte, b, idx, mesh=gd.make_mesh(4), **kw)
    r = md.compare(md.fields(ref), md.fields(got))
    r["order_equal"] = bool(np.array_equal(ref.order, got.order))
    r["axes"] = [list(ref.batch_axes), list(got.batch_axes)]
    r["frames_equal"] = bool(ref.to_frame().equals(got.to_frame()))
    out[name] = r
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def sharded_runs():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = str(HERE.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _CHECK.format(here=str(HERE))],
                          capture_output=True, text=True, timeout=900, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("case", ["tasks_seeds", "one_run"])
def test_pipeline_sharded_equals_one_device(sharded_runs, case):
    r = sharded_runs[case]
    assert r["exact"] or r["max_rel"] < 1e-10, r
    assert r["order_equal"], r
    assert r["axes"][0] == r["axes"][1], r
    assert r["frames_equal"], r


@pytest.mark.slow
def test_pipeline_sharded_one_device_in_process():
    """On this process's single device: the same result as paper_pipeline."""
    x, y, _, _ = gp.planted_probing_data(1, 100, (6, 6), planted_per_layer=(1, 1), signal=2.0)
    _, idx = gp.concat_layers([x[:80, :6], x[:80, 6:]])
    kw = dict(epochs=1, batch_size=40, fractions=(0.5,))
    ref = gp.paper_pipeline(jax.random.key(0), x[:80], y[:80], x[80:], y[80:], idx, **kw)
    got = gd.paper_pipeline_sharded(jax.random.key(0), x[:80], y[:80], x[80:], y[80:], idx,
                                    mesh=gd.make_mesh(1), **kw)
    np.testing.assert_array_equal(ref.order, got.order)
    np.testing.assert_allclose(ref.minimal_scores.accuracy, got.minimal_scores.accuracy)
    np.testing.assert_allclose(ref.probe.weights, got.probe.weights, rtol=1e-5, atol=1e-6)


def test_pipeline_sharded_bad_input():
    x, y, _, _ = gp.planted_probing_data(1, 100, (6, 6), planted_per_layer=(1, 1), signal=2.0)
    _, idx = gp.concat_layers([x[:80, :6], x[:80, 6:]])
    with pytest.raises(ValueError, match="x_test"):
        gd.paper_pipeline_sharded(jax.random.key(0), x[:80], y[:80], x[80:, :5], y[80:], idx,
                                  mesh=gd.make_mesh(1))
    with pytest.raises(ValueError, match="single class"):
        gd.paper_pipeline_sharded(jax.random.key(0), x[:80], np.zeros(80, int), x[80:], y[80:],
                                  idx, mesh=gd.make_mesh(1))
