"""The default training corpus ("small"): size, balance and the manifold sets it supports."""

from __future__ import annotations

import numpy as np
import pytest

from geomjax.data import (
    ESPEAK_ACCENTS,
    available_channels,
    espeak_available,
    sample_manifolds,
    synthesize_corpus,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthesize_corpus("small", seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def test_small_corpus_size_and_balance(small):
    content = small.words[small.words.pos.isin(["NN", "VBD", "JJ", "RB"])]
    assert len(small.info["skipped"]) <= 0.01 * len(small)
    assert len(content) >= 6000  # 2-s word segments for training
    per_word = content.groupby("word")
    assert per_word.ngroups == 48
    assert per_word.size().min() >= 100 and per_word["speaker"].nunique().min() >= 50
    assert small.utterances["speaker"].nunique() == 200
    assert set(small.utterances["accent"]) == set(ESPEAK_ACCENTS)
    assert set(small.utterances["gender"]) == {"male", "female"}
    chans = {c.split("-")[0] if c.startswith("noise") else c for c in small.utterances.channel}
    assert chans == set(available_channels())
    inv = small.phone_inventory(40)
    d = small.phones.assign(d=small.phones.end - small.phones.start)
    assert d[d.phone.isin(inv)].d.sum() / d.d.sum() > 0.9


def test_small_supports_50_by_50_sets(small):
    for lt, P in (("word", 40), ("phoneme", 40)):
        ms = sample_manifolds(0, small, lt, P, 50)
        assert ms.audio.shape[:2] == (P, 50)
        assert (ms.table.groupby("manifold")["speaker"].nunique() == 50).all()
    ms = sample_manifolds(0, small, "speaker", 50, 50, constraint="prefer_distinct_words",
                          content_only=False)
    assert (ms.table.groupby("manifold")["word"].nunique() >= 30).all()
    assert np.all(np.isfinite(ms.audio))
