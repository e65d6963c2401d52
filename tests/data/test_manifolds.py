"""Manifold data sets: balance, constraints, determinism, alignments, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from geomjax.data import LABEL_TYPES, espeak_available, sample_manifolds, synthesize_corpus

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")


@pytest.fixture(scope="module")
def tiny():
    return synthesize_corpus("tiny", seed=0)


def test_word_manifolds_balanced_and_distinct_speakers(tiny):
    ms = sample_manifolds(jax.random.key(0), tiny, "word", n_classes=4, n_examples=6)
    P, M, L = ms.audio.shape
    assert (P, M, L) == (4, 6, 32000) and ms.audio.dtype == np.float32
    t = ms.table
    assert len(t) == 24 and (t.groupby("manifold").size() == 6).all()
    assert (t.groupby("manifold")["speaker"].nunique() == 6).all()  # constraint
    assert (t["word"] == t["class"]).all() and list(ms.classes) == sorted(ms.classes)
    assert set(t["pos"]) <= {"NN", "VBD", "JJ", "RB"}
    assert np.array_equal(ms.labels, np.repeat(np.arange(4)[:, None], 6, 1))
    # audio matches the corpus window; the word sits in the middle (+/- jitter)
    r = t.iloc[7]
    want = tiny.windows([r.utt], [r.win_start + 16000], L)[0]
    np.testing.assert_array_equal(ms.audio[1, 1], want)
    mid = (t["target_start"] + t["target_end"]) / 2
    assert (np.abs(mid - L / 2) <= 0.1 * 16000 + 1).all()


def test_same_key_same_set_different_key_differs(tiny):
    a = sample_manifolds(jax.random.key(3), tiny, "word", 3, 5)
    b = sample_manifolds(jax.random.key(3), tiny, "word", 3, 5)
    c = sample_manifolds(jax.random.key(4), tiny, "word", 3, 5)
    assert np.array_equal(a.audio, b.audio) and a.table.equals(b.table)
    assert not a.table[["utt", "word_index"]].equals(c.table[["utt", "word_index"]])
    d = sample_manifolds(3, tiny, "word", 3, 5)  # an int seed works too
    assert d.audio.shape == (3, 5, 32000)


def test_speaker_manifolds_distinct_words(tiny):
    ms = sample_manifolds(jax.random.key(1), tiny, "speaker", 3, 5)
    t = ms.table
    assert (t.groupby("manifold")["word"].nunique() == 5).all()
    assert (t.groupby("manifold")["speaker"].nunique() == 1).all()
    assert (t["speaker"] == t["class"]).all()


def test_prefer_constraint_spreads_examples(tiny):
    # 5 words per speaker at most in tiny: M=12 needs repeats, spread as evenly as possible
    with pytest.raises(ValueError, match="distinct words"):
        sample_manifolds(0, tiny, "speaker", 2, 12)
    ms = sample_manifolds(0, tiny, "speaker", 2, 12, constraint="prefer_distinct_words")
    for _, g in ms.table.groupby("manifold"):
        n_words = tiny.words[(tiny.words.speaker == g.speaker.iloc[0])
                             & tiny.words.pos.isin(["NN", "VBD", "JJ", "RB"])].word.nunique()
        counts = g["word"].value_counts()
        assert g["word"].nunique() == min(12, n_words)
        assert counts.max() - counts.min() <= 1  # round robin
    assert not ms.table.duplicated(["utt", "word_index"]).any()


@pytest.mark.parametrize("lt", ["phoneme", "character", "pos", "gender", "channel"])
def test_other_label_types(tiny, lt):
    ms = sample_manifolds(jax.random.key(2), tiny, lt, 2, 3)
    col = {"phoneme": "phone", "character": "char"}.get(lt, lt)
    assert (ms.table[col].astype(str) == ms.table["class"]).all()
    L = 2000 if lt in ("phoneme", "character") else 32000
    assert ms.audio.shape == (2, 3, L)
    assert (ms.table.groupby("manifold")["speaker"].nunique() == 3).all()


def test_alignment_masks(tiny):
    ms = sample_manifolds(jax.random.key(0), tiny, "word", 3, 4, jitter=0.0)
    m = ms.target_mask(hop=160)
    al = ms.word_alignment(hop=160)
    assert m.shape == al.shape == (3, 4, 201)
    assert np.array_equal(m, al == 0)  # the target-word frames are the word's own frames
    assert m[..., 100].all()  # centre frame is inside the word
    assert (al == -1000).any() or (al != 0).any()
    p = sample_manifolds(jax.random.key(0), tiny, "phoneme", 2, 3)
    pm = p.target_mask(hop=160)
    assert pm.shape == (2, 3, 13) and pm[..., 6].all()


def test_errors_and_summary(tiny):
    with pytest.raises(ValueError, match="label_type"):
        sample_manifolds(0, tiny, "emotion", 2, 2)
    with pytest.raises(ValueError, match="no partial set"):
        sample_manifolds(0, tiny, "word", 20, 5)  # only 10 content words
    with pytest.raises(ValueError, match="distinct speakers"):
        sample_manifolds(0, tiny, "word", 2, 9)  # 8 speakers in tiny
    with pytest.raises(ValueError, match="'zebra' not in corpus"):
        sample_manifolds(0, tiny, "word", classes=["zebra", "table"], n_examples=2)
    with pytest.raises(ValueError, match="n_examples"):
        sample_manifolds(0, tiny, "word", 2, 1)
    with pytest.raises(ValueError, match="constraint"):
        sample_manifolds(0, tiny, "word", 2, 2, constraint="distinct_moods")
    with pytest.raises(TypeError, match="key"):
        sample_manifolds("seed", tiny, "word", 2, 2)
    # relaxing the constraint makes M=9 possible, and the summary says what was left out
    ms = sample_manifolds(0, tiny, "word", 2, 9, constraint=None)
    assert ms.audio.shape[:2] == (2, 9)
    s = sample_manifolds(0, tiny, "word", 2, 8).summary
    assert s["n_classes_available"] == 10 and s["skipped_rows"]["function_words"] > 0
    assert all("distinct speakers" in v for v in s["skipped_classes"].values())
    assert set(LABEL_TYPES) >= {"word", "speaker", "phoneme", "character", "pos"}


def test_features_of_a_set(tiny):
    ms = sample_manifolds(jax.random.key(0), tiny, "word", 2, 2)
    f = ms.features("log_mel")
    assert f.shape == (2, 2, 201, 23) and np.all(np.isfinite(f))
