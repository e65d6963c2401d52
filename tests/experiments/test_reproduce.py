"""End-to-end: ``geomjax reproduce --profile tiny`` writes the report and tidy tables with finite
values and the expected columns; a rerun resumes; a repeated stage gives identical tables."""

import numpy as np
import pandas as pd
import pytest

from geomjax.experiments import build_report, model_learned, reproduce
from geomjax.experiments._commands import main
from geomjax.experiments._run import RunDir

EXPECTED = {
    "corpus": {"item", "value"},
    "stephenson_layers": {
        "model",
        "weights",
        "label_type",
        "layer",
        "n",
        "capacity_ratio",
        "capacity_ratio_lo",
        "capacity_ratio_hi",
        "radius",
        "dimension_ratio",
        "center_correlation",
        "d_pr",
        "d_ev",
    },
    "stephenson_layers_raw": {
        "model",
        "weights",
        "epoch",
        "label_type",
        "seed",
        "layer",
        "capacity",
        "capacity_ratio",
        "n_unconverged",
    },
    "ds2_timesteps": {"weights", "layer", "time_s", "capacity_ratio", "radius", "dimension_ratio"},
    "ds2_word_boundaries": {"boundary", "time_s"},
    "epochs": {"model", "epoch", "label_type", "layer", "capacity_ratio"},
    "simcap": {"weights", "layer", "alpha_mft", "alpha_sim", "alpha_sim_lo", "alpha_sim_hi"},
    "similarity_layers": {"model", "weights", "x", "y", "measure", "value"},
    "similarity_epochs": {"model", "epoch", "layer", "cka_to_final"},
    "probing": {"model", "weights", "label", "analysis", "subset", "n_neurons", "accuracy"},
    "probing_top_neurons": {"model", "weights", "label", "selection", "layer", "n_selected"},
    "probing_eer": {"model", "weights", "layer", "eer", "n_trials"},
    "nagamine_selectivity": {"weights", "layer", "n_clusters", "csv_cv_median"},
    "nagamine_lda": {"weights", "layer", "test_accuracy", "evr_auc"},
    "nagamine_slt": {"weights", "layer", "group", "auc_mean"},
}
# columns that may legitimately hold NaN (CI bounds from one seed, F1/MCC of summary rows)
MAY_BE_NAN = {"f1", "mcc", "alpha_sim", "alpha_sim_lo", "alpha_sim_hi"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    code = main(
        [
            "reproduce",
            "--profile",
            "tiny",
            "--out",
            str(out),
            "--seed",
            "0",
            "--no-progress",
            "--cache-dir",
            str(cache),
        ]
    )
    assert code == 0
    return out, cache


def test_report_and_tables(tiny_run):
    out, _ = tiny_run
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for title in ("Stephenson", "SVCCA and CKA", "probing", "Nagamine"):
        assert title in html and title in md
    assert "data:image/png;base64," in html
    assert "| paper's claim | this run | verdict |" in md
    run = RunDir(out)
    tables = set(run.tables())
    assert set(EXPECTED) <= tables, f"missing tables {set(EXPECTED) - tables}"
    for name, cols in EXPECTED.items():
        df = run.load_table(name)
        assert len(df) > 0, name
        assert cols <= set(df.columns), (name, cols - set(df.columns))
        assert (out / "tables" / f"{name}.csv").exists()
        num = df.select_dtypes("number")
        for c in num.columns:
            if c in MAY_BE_NAN or c.endswith("_lo") or c.endswith("_hi"):
                continue
            assert np.isfinite(num[c].to_numpy(float)).all(), f"{name}.{c} has non-finite values"
    s = run.load_table("stephenson_layers")
    assert set(s["weights"]) == {"initial", "trained"}
    assert set(s["label_type"]) == {"word", "speaker", "phoneme", "character", "pos"}
    assert set(s["model"]) == {"word_cnn_word", "word_cnn_speaker", "ds2"}
    assert (s["n"] == 2).all()  # two manifold samples (seeds) per row in the tiny profile
    assert (s["capacity_ratio_lo"] <= s["capacity_ratio"] + 1e-9).all()
    p = run.load_table("probing")
    assert {"speaker_cnn", "transformer"} == set(p["model"])
    assert {"oracle", "control", "majority", "ablation", "layer"} <= set(p["analysis"])
    assert ((p["accuracy"].dropna() >= 0) & (p["accuracy"].dropna() <= 1)).all()
    e = run.load_table("probing_eer")
    assert ((e["eer"] >= 0) & (e["eer"] <= 1)).all()
    figs = {f.stem for f in (out / "figures").glob("*.png")}
    assert {
        "stephenson_word_cnn_word_word",
        "ds2_timesteps_trained",
        "similarity_ds2",
        "probing_eer",
        "nagamine_slt",
    } <= figs


def test_stage_costs_are_recorded_and_reported(tiny_run):
    out, _ = tiny_run
    run = RunDir(out)
    for st in ("corpus", "train_word_cnn_word", "stephenson", "probing", "nagamine"):
        info = run.stage_info(st)
        assert {"seconds", "cpu_seconds", "peak_rss_mb"} <= set(info), (st, info)
        assert info["seconds"] >= 0 and info["cpu_seconds"] >= 0 and info["peak_rss_mb"] > 0
    md = (out / "report.md").read_text()
    assert "## Run cost per stage" in md and "| stage | wall_s | cpu_s | peak_rss_mb |" in md
    assert "not testable:" in md  # the verdict legend


def test_epochs_and_simcap_reuse_the_layer_analysis(tiny_run):
    """Initial and final weights are measured once (stage ``stephenson``, seed 0); the epoch sweep
    and alpha_MFT of the simulated-capacity check carry exactly those numbers."""
    out, _ = tiny_run
    run = RunDir(out)
    raw, ep, sc = (
        run.load_table("stephenson_layers_raw"),
        run.load_table("epochs"),
        run.load_table("simcap"),
    )
    for model, lt in (("word_cnn_word", "word"), ("word_cnn_word", "speaker"), ("ds2", "word")):
        e = ep[(ep["model"] == model) & (ep["label_type"] == lt)]
        assert sorted(e["epoch"].unique()) == [0, 1, 2]
        for epoch in (0, 2):
            a = raw[
                (raw["model"] == model)
                & (raw["label_type"] == lt)
                & (raw["seed"] == 0)
                & (raw["epoch"] == epoch)
            ].sort_values("layer_index")
            b = e[e["epoch"] == epoch].sort_values("layer_index")
            np.testing.assert_array_equal(a["capacity"].to_numpy(), b["capacity"].to_numpy())
    a = raw[(raw["model"] == "word_cnn_word") & (raw["label_type"] == "word") & (raw["seed"] == 0)]
    m = sc.merge(a, on=["weights", "layer"])
    assert len(m) == len(sc)
    np.testing.assert_array_equal(m["alpha_mft"].to_numpy(), m["capacity"].to_numpy())


def test_verdicts_are_honest_about_untrained_models(tiny_run):
    out, _ = tiny_run
    run = RunDir(out)
    learned = {n: model_learned(run, n) for n in ("word_cnn_word", "ds2", "phone_mlp")}
    for ok, txt in learned.values():
        assert ok in (True, False) and txt
    rep = build_report(run, "tiny")
    counts = rep.verdict_counts()
    assert sum(counts.values()) >= 10
    # claims about a model that did not learn are never reported as reproduced
    if learned["word_cnn_word"][0] is False:
        sec = next(s for s in rep.sections if "Stephenson" in s.title)
        f = next(f for f in sec.findings if f.claim.startswith("Word-manifold capacity rises"))
        assert f.verdict == "not testable"


def test_rerun_resumes_and_repeated_stage_is_identical(tiny_run):
    out, cache = tiny_run
    run = RunDir(out)
    before = {n: run.load_table(n) for n in ("stephenson_layers_raw", "nagamine_lda")}
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "tables").glob("*.parquet")}
    # rerunning the finished folder skips every stage: no table is rewritten
    reproduce(out, "tiny", 0, progress=False, cache_dir=cache, force_report=False)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "tables").glob("*.parquet")}
    # a repeated analysis stage with the same seed reproduces its table exactly
    for st in ("stephenson", "nagamine"):
        (out / "stages" / f"{st}.done").unlink()
    reproduce(out, "tiny", 0, stages=["stephenson", "nagamine"], progress=False, cache_dir=cache)
    for n, df in before.items():
        pd.testing.assert_frame_equal(run.load_table(n), df, check_exact=True)
    with pytest.raises(ValueError, match="different settings"):
        reproduce(out, "tiny", 1, progress=False, cache_dir=cache)
