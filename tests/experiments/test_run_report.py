import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from geomjax.experiments import (
    Finding,
    Report,
    RunDir,
    Section,
    heatmap,
    layer_curves,
    mean_ci,
    summarize,
    timestep_curves,
)


def test_rundir_tables_stages_and_resume(tmp_path):
    run = RunDir(tmp_path / "r", {"seed": 0, "profile": "tiny"})
    df = pd.DataFrame({"layer": ["a", "b"], "capacity": [0.5, 0.25]})
    run.save_table("mftma", df)
    assert (tmp_path / "r/tables/mftma.csv").exists()
    pd.testing.assert_frame_equal(run.load_table("mftma"), df)
    assert not run.done("train")
    run.mark_done("train", {"epochs": 3})
    # reopening with the same settings resumes: stage and table are still there
    again = RunDir(tmp_path / "r", {"seed": 0, "profile": "tiny"})
    assert again.done("train") and again.stage_info("train")["epochs"] == 3
    assert again.tables() == ["mftma"]
    meta = json.loads((tmp_path / "r/settings.json").read_text())
    assert meta["settings"] == {"seed": 0, "profile": "tiny"} and "jax" in meta["versions"]
    with pytest.raises(ValueError, match="different settings"):
        RunDir(tmp_path / "r", {"seed": 1, "profile": "tiny"})


def test_mean_ci_matches_scipy_t_interval():
    x = np.array([0.3, 0.5, 0.45, 0.61, 0.52])
    m, lo, hi = mean_ci(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    np.testing.assert_allclose([m, lo, hi], [x.mean(), *ref], rtol=1e-12)
    m1, lo1, hi1 = mean_ci([0.7, np.nan])
    assert m1 == 0.7 and np.isnan(lo1) and np.isnan(hi1)


def test_summarize_groups():
    df = pd.DataFrame({"layer": ["a"] * 3 + ["b"] * 3, "v": [1.0, 2, 3, 4, 5, 6]})
    s = summarize(df, ["layer"], ["v"])
    assert list(s["layer"]) == ["a", "b"] and list(s["n"]) == [3, 3]
    np.testing.assert_allclose(s["v"], [2, 5])
    assert (s["v_lo"] < s["v"]).all() and (s["v_hi"] > s["v"]).all()


def test_report_embeds_figures_and_verdicts(tmp_path):
    run = RunDir(tmp_path / "r", {})
    df = pd.DataFrame(
        {
            "layer": ["c1", "c2", "c1", "c2"],
            "w": ["init", "init", "trained", "trained"],
            "cap": [1.0, 1.1, 1.0, 2.0],
            "cap_lo": [0.9, 1.0, 0.9, 1.8],
            "cap_hi": [1.1, 1.2, 1.1, 2.2],
        }
    )
    f1 = run.save_figure("curves", layer_curves(df, ["cap"], hue="w"))
    f2 = run.save_figure("hm", heatmap(np.eye(3), ["a", "b", "c"]))
    ts = pd.DataFrame(
        {
            "time_step": [0, 1, 2, 0, 1, 2],
            "layer": ["x"] * 3 + ["y"] * 3,
            "cap": [1, 2, 1, 1, 3, 1.0],
        }
    )
    f3 = run.save_figure("ts", timestep_curves(ts, ["cap"], boundaries=[1]))
    for f in (f1, f2, f3):
        assert f.read_bytes()[:4] == b"\x89PNG"
    rep = Report("t", {"seed": 0})
    rep.add(
        Section(
            "S",
            findings=[
                Finding("c rises", "it rose", "reproduced"),
                Finding("x", "y", "not reproduced"),
            ],
            figures=[("curves", f1)],
            tables=[("tab", df)],
        )
    )
    h, m = rep.write(run.root)
    text = h.read_text()
    assert "data:image/png;base64," in text and "not reproduced" in text
    assert rep.verdict_counts() == {"reproduced": 1, "not reproduced": 1, "not testable": 0}
    assert "| c rises | it rose | reproduced |" in m.read_text()
    with pytest.raises(ValueError, match="verdict"):
        Finding("a", "b", "maybe")


def test_project_features_keeps_the_geometry_of_the_points():
    from geomjax.experiments import project_features

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3000)).astype(np.float32) + 0.5
    ref = x.astype(np.float64) @ x.T.astype(np.float64)
    # n <= n_features < D: exact isometric embedding, every inner product kept
    y = project_features(x, 64)
    assert y.shape == (40, 64) and y.dtype == np.float32
    np.testing.assert_allclose(
        y.astype(np.float64) @ y.T, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max()
    )
    # narrow layers are zero padded
    z = project_features(x[:, :10], 64)
    np.testing.assert_array_equal(z[:, :10], x[:, :10])
    assert not z[:, 10:].any()
    # more points than features: seeded Gaussian projection (same seed, same result)
    w = project_features(x, 16, seed=3)
    assert w.shape == (40, 16)
    np.testing.assert_array_equal(w, project_features(x, 16, seed=3))


def test_phone_frames_are_spliced_like_the_library():
    from geomjax.data import splice
    from geomjax.experiments._inputs import _splice

    f = np.random.default_rng(1).standard_normal((37, 23)).astype(np.float32)
    np.testing.assert_array_equal(_splice(f, 5), np.asarray(splice(f, 5)))
    np.testing.assert_array_equal(_splice(f[:3], 5), np.asarray(splice(f[:3], 5)))
