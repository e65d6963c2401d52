"""Corpus adapters on the tiny synthetic corpus: shapes, labels and speaker/word disjointness."""

from __future__ import annotations

import numpy as np
import pytest

from geomjax import models as M


@pytest.fixture(scope="module")
def corpus():
    data = pytest.importorskip("geomjax.data")
    try:
        if not data.espeak_available():
            pytest.skip("espeak-ng is not installed")
    except AttributeError:
        pytest.skip("geomjax.data has no corpus synthesiser")
    return data.synthesize_corpus("tiny", seed=0, progress=False)


def _speakers(d):
    return set(d.meta["speaker"])


def test_word_and_speaker_tasks(corpus):
    from geomjax.models import tasks

    w = tasks.word_task(corpus)
    assert w.train.inputs.shape[1:] == (40, 201) and w.train.inputs.dtype == np.float32
    assert w.n_classes == len(set(corpus.words["word"]) & set(w.classes))
    assert _speakers(w.train).isdisjoint(_speakers(w.test) | _speakers(w.valid))  # unseen speakers
    assert np.array_equal(np.asarray(w.classes)[w.test.labels], w.test.meta["word"].to_numpy())

    s = tasks.speaker_task(corpus, heldout_words=0.4)
    assert s.train.inputs.shape[1:] == (201, 40)
    assert set(s.train.meta["word"]).isdisjoint(
        set(s.test.meta["word"]) | set(s.valid.meta["word"])
    )
    assert s.n_classes == corpus.utterances["speaker"].nunique()
    assert np.array_equal(
        np.asarray(s.classes)[s.test.labels], s.test.meta["speaker"].astype(str).to_numpy()
    )
    with pytest.raises(ValueError, match="label"):
        tasks.speaker_task(corpus, label="age")


def test_phone_ctc_reconstruction_tasks(corpus):
    from geomjax.models import tasks

    p = tasks.phone_task(corpus)
    assert p.train.inputs.shape[1] == 253 and p.n_classes == 40
    assert p.train.labels.min() >= 0 and p.train.labels.max() < 40
    assert _speakers(p.train).isdisjoint(_speakers(p.test))
    c = tasks.ctc_task(corpus, n_bins=81)
    x, L = c.train.inputs, c.train.lengths
    assert x.shape[2] == 81 and L.max() == x.shape[1]
    assert np.all(x[np.arange(x.shape[1])[None, :] >= L[:, None]] == 0)
    texts = M.decode_labels(c.test.labels, c.test.label_lengths)
    assert texts == [t.upper() for t in c.test.meta["text"]]
    r = tasks.reconstruction_task(corpus)
    assert r.train.labels is None and r.train.inputs.shape[2] == 40
    with pytest.raises(TypeError, match="corpus"):
        tasks.word_task(object())
