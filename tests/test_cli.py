"""Command-line errors a user can make get one clear line on stderr and a non-zero exit."""

import json

import numpy as np
import pytest

from geomjax.experiments._commands import ANALYSES, load_arrays, main


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_analysis(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 5), np.float32))
    code, _, err = _run(capsys, ["analyze", "entropy", str(tmp_path / "x.npy")])
    assert code != 0
    assert "unknown analysis 'entropy'" in err and "mftma" in err
    assert "Traceback" not in err


def test_unknown_model(tmp_path, capsys):
    code, _, err = _run(
        capsys, ["train", "resnet", "--out", str(tmp_path / "m"), "--corpus", "tiny"]
    )
    assert code != 0
    assert "unknown model 'resnet'" in err and "word_cnn" in err


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = _run(
        capsys,
        ["extract", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "a.npz")],
    )
    assert code != 0 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(
        capsys,
        ["extract", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "a.npz")],
    )
    assert code != 0 and "no checkpoints" in err


def test_unreadable_arrays(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    code, _, err = _run(capsys, ["analyze", "mftma", str(bad)])
    assert code != 0 and "cannot read arrays from" in err and "bad.npz" in err
    code, _, err = _run(capsys, ["analyze", "cka", str(tmp_path / "missing.npy")])
    assert code != 0 and "does not exist" in err
    odd = tmp_path / "x.txt"
    odd.write_text("1 2 3")
    code, _, err = _run(capsys, ["analyze", "cka", str(odd)])
    assert code != 0 and "unsupported array file" in err


def test_object_arrays_are_refused(tmp_path, capsys):
    # pickled object arrays are never loaded
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = _run(capsys, ["analyze", "dimension", str(tmp_path / "obj.npy")])
    assert code != 0 and "cannot read arrays" in err


def test_report_needs_a_run_folder(tmp_path, capsys):
    code, _, err = _run(capsys, ["report", str(tmp_path)])
    assert code != 0 and "not a run folder" in err


def test_argparse_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--profile", "huge"])
    assert e.value.code != 0
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_analyze_dimension_and_cka_on_user_arrays(tmp_path, capsys):
    rng = np.random.default_rng(0)
    low = rng.normal(size=(60, 2)) @ rng.normal(size=(2, 12))  # rank 2
    full = rng.normal(size=(60, 12))
    np.savez(
        tmp_path / "acts.npz",
        low=low.astype(np.float32),
        full=full.astype(np.float32),
        labels=np.repeat(np.arange(3), 20),
    )
    code, out, _ = _run(
        capsys, ["analyze", "dimension", str(tmp_path / "acts.npz"), "--out", str(tmp_path / "res")]
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    d = {r["layer"]: r for r in rows}
    assert d["low"]["d_pr"] <= 2.0 + 1e-6 and d["full"]["d_pr"] > 6
    assert (tmp_path / "res/dimension.csv").exists()
    code, out, _ = _run(
        capsys, ["analyze", "cka", str(tmp_path / "acts.npz"), "--out", str(tmp_path / "res")]
    )
    assert code == 0
    import pandas as pd

    t = pd.read_parquet(tmp_path / "res/cka.parquet")
    assert set(t.columns) >= {"x", "y", "value"}
    diag = t[t["x"] == t["y"]]["value"].to_numpy()
    np.testing.assert_allclose(diag, 1.0, atol=1e-5)


def test_parquet_input_with_label_column(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"f0": [0.0, 1.0], "f1": [2.0, 3.0], "label": ["a", "b"]})
    df.to_parquet(tmp_path / "x.parquet")
    arrs = load_arrays(tmp_path / "x.parquet")
    assert arrs["features"].shape == (2, 2) and list(arrs["labels"]) == ["a", "b"]


def test_analyses_listed():
    assert {
        "mftma",
        "capacity",
        "dimension",
        "cka",
        "rbf_cka",
        "svcca",
        "cca",
        "pwcca",
        "probe",
        "slt",
    } == set(ANALYSES)
