"""Reduced-model accuracy on the synthetic ``small`` corpus (slow: minutes of CPU training)."""

from __future__ import annotations

import pytest

from geomjax import models as M


@pytest.mark.slow
def test_speaker_cnn_reaches_target_on_unseen_words(tmp_path):
    data = pytest.importorskip("geomjax.data")
    if not data.espeak_available():
        pytest.skip("espeak-ng is not installed")
    corpus = data.synthesize_corpus("small", seed=0, cache_dir=data.default_cache_dir())
    sp = M.speaker_task(corpus)
    assert sp.n_classes >= 100
    res = M.train(
        0,
        "speaker_cnn",
        sp.train,
        sp.valid,
        epochs=8,
        ckpt_dir=tmp_path,
        preset="cpu",
        n_classes=sp.n_classes,
        batch_size=32,
        learning_rate=1e-3,
        progress=False,
        time_budget_s=30 * 60,
    )
    best = int(res.metrics["val_accuracy"].iloc[1:].idxmax())
    ck = M.load_checkpoint(tmp_path, int(res.metrics.loc[best, "epoch"]))
    assert M.evaluate(ck.model, ck.variables, sp.test)["accuracy"] >= 0.60


def _bench_target(name, channels, tmp_path):
    """Train ``name`` with the recipe of ``benchmarks.bench_models`` and score the best
    validation epoch on the test split."""
    data = pytest.importorskip("geomjax.data")
    if not data.espeak_available():
        pytest.skip("espeak-ng is not installed")
    from benchmarks.bench_models import TARGETS, _task_splits

    spec = TARGETS[name]
    corpus = data.synthesize_corpus(
        "small", seed=0, cache_dir=data.default_cache_dir(), channels=channels
    )
    sp = _task_splits(spec["task"], corpus)
    kw = dict(spec["train"])
    res = M.train(
        0,
        name,
        sp.train,
        sp.valid,
        ckpt_dir=tmp_path,
        preset="cpu",
        n_classes=None if name == "ds2" else sp.n_classes,
        progress=False,
        time_budget_s=30 * 60,
        **kw,
    )
    col = f"val_{spec['metric']}"
    v = res.metrics[col].iloc[1:]
    best = int(res.metrics.loc[v.idxmax() if spec["higher"] else v.idxmin(), "epoch"])
    ck = M.load_checkpoint(tmp_path, best)
    return M.evaluate(ck.model, ck.variables, sp.test, bucket=kw.get("length_bucket"))


@pytest.mark.slow
def test_phone_mlp_reaches_target_on_unseen_speakers(tmp_path):
    assert _bench_target("phone_mlp", "clean", tmp_path)["accuracy"] >= 0.85


@pytest.mark.slow
def test_word_cnn_reaches_target_on_unseen_speakers(tmp_path):
    assert _bench_target("word_cnn", "mixed", tmp_path)["accuracy"] >= 0.60


@pytest.mark.slow
def test_ds2_reaches_target_on_unseen_speakers(tmp_path):
    assert _bench_target("ds2", "mixed", tmp_path)["cer"] < 0.40
