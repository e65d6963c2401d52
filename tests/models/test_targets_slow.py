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
