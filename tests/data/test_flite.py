"""The held-out flite voice domain (skipped where flite is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from geomjax.data import flite_available, sample_manifolds, synthesize_flite_corpus
from geomjax.data._flite import ARPABET_TO_IPA

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite not installed")


@pytest.fixture(scope="module")
def fl():
    return synthesize_flite_corpus("tiny", seed=0, channels="clean")


def test_flite_corpus_tables_and_alignments(fl):
    u, w = fl.utterances, fl.words
    assert len(fl) >= 20 and (u["source"] == "flite").all()
    assert set(u["voice"]) <= {"flite-kal16", "flite-awb", "flite-rms", "flite-slt"}
    for utt, g in w.groupby("utt"):
        assert " ".join(g.sort_values("word_index")["word"]) == u.loc[utt, "text"]
    n = u.set_index("utt")["n_samples"]
    assert (w["end"].to_numpy() <= n.loc[w["utt"]].to_numpy()).all()
    assert (w["start"] < w["end"]).all()
    p = fl.phones.merge(w, on=["utt", "word_index"], suffixes=("", "_w"))
    assert ((p["start"] >= p["start_w"]) & (p["end"] <= p["end_w"])).all()
    assert set(fl.phones["phone"]) <= set(ARPABET_TO_IPA.values())
    for utt in u["utt"][:5]:  # speech inside the words, silence after the last one
        a = fl.utterance(utt)
        ws = w[w.utt == utt]
        assert np.sqrt(np.mean(a[ws.start.min(): ws.end.max()] ** 2)) > 0.01
        assert np.sqrt(np.mean(a[ws.end.max() + 1600:] ** 2)) < 0.01


def test_flite_manifolds_held_out(fl):
    ms = sample_manifolds(0, fl, "word", 2, 3)
    assert ms.audio.shape == (2, 3, 32000)
    assert fl.utterances.loc[ms.table["utt"], "source"].eq("flite").all()
    assert ms.table["speaker"].str.startswith("flite").all()


def test_flite_bad_arguments():
    with pytest.raises(ValueError, match="voices"):
        synthesize_flite_corpus("tiny", voices=["hal9000"])
    with pytest.raises(ValueError, match="size"):
        synthesize_flite_corpus("enormous")


@pytest.mark.slow
def test_flite_deterministic(fl):
    again = synthesize_flite_corpus("tiny", seed=0, channels="clean")
    assert np.array_equal(fl.audio, again.audio) and fl.words.equals(again.words)
