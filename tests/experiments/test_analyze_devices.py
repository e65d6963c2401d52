"""``geomjax analyze {rbf_cka,cca,pwcca,svcca,probe,slt} ... --devices N`` writes the same tables
as one device (the sharded similarity matrices, probing pipeline and SLT spectra; mftma,
capacity, cka and svcca against separate processes are in tests/test_cli_devices.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _run(tmp_path, data, *analyses):
    r = subprocess.run(
        [
            sys.executable,
            str(HERE / "_analyze_devices.py"),
            "2",
            str(data),
            str(tmp_path),
            *analyses,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_similarity_measures_and_slt_on_two_devices_match_one_device(tmp_path):
    from geomjax.models import TaskData, train

    rng = np.random.default_rng(0)
    n, F = 48, 440  # the phone MLP reads 11 spliced frames x 40 log-Mel bands
    base = rng.normal(size=(n, 5))
    layers = {
        f"l{i}": (base @ rng.normal(size=(5, 8 + 4 * i)) + 0.2 * rng.normal(size=(n, 8 + 4 * i)))
        for i in range(3)
    }
    y = rng.integers(0, 3, n).astype(np.int32)
    np.savez(tmp_path / "acts.npz", **layers, labels=y)  # labels: the probes' classes
    # a phone MLP checkpoint (tiny, two steps) and frames with labels for its SLT spectra
    x = rng.normal(size=(n, F)).astype(np.float32)
    d = TaskData(x, y)
    train(
        0,
        "phone_mlp",
        d,
        d,
        epochs=1,
        ckpt_dir=tmp_path / "mlp",
        preset="tiny",
        n_classes=3,
        batch_size=16,
        max_steps_per_epoch=2,
        progress=False,
    )
    np.savez(tmp_path / "frames.npz", frames=x, labels=y)
    res = _run(
        tmp_path, tmp_path / "acts.npz", "rbf_cka", "cca", "pwcca", "svcca", "probe:--epochs,2"
    )
    res.update(
        _run(tmp_path / "slt", tmp_path / "frames.npz", f"slt:--checkpoint,{tmp_path / 'mlp'}")
    )
    for name in ("rbf_cka", "cca", "pwcca", "svcca", "probe", "slt"):
        assert res[name]["same_rows"], (name, res[name])
        # row blocks / psum / sharded factorisations: equal up to float32 round-off
        assert res[name]["max_rel"] <= 1e-4, (name, res[name])
