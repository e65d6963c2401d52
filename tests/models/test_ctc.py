"""CTC loss against brute-force path enumeration; greedy decoding; CER/WER; text encoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from geomjax import models as M


def _collapse(path):
    out, prev = [], None
    for k in path:
        if k != prev and k != 0:
            out.append(k)
        prev = k
    return tuple(out)


def _brute_ctc(logits, T, label):
    lp = log_softmax(logits[:T], axis=-1)
    K = logits.shape[-1]
    terms = [
        lp[np.arange(T), list(p)].sum()
        for p in itertools.product(range(K), repeat=T)
        if _collapse(p) == tuple(label)
    ]
    return -logsumexp(terms) if terms else np.inf


def test_ctc_matches_brute_force(rng):
    B, T, K = 6, 5, 3
    logits = rng.normal(size=(B, T, K)) * 2
    Ts = np.array([5, 4, 5, 3, 5, 2])
    labels = np.array([[1, 2, 0], [1, 1, 0], [2, 0, 0], [1, 2, 1], [2, 2, 2], [1, 0, 0]])
    lls = np.array([2, 2, 1, 3, 3, 1])
    got = np.asarray(M.ctc_loss(logits, Ts, labels, lls, zero_infinity=False))
    for b in range(B):
        ref = _brute_ctc(logits[b], Ts[b], labels[b, : lls[b]])
        if np.isfinite(ref):
            np.testing.assert_allclose(got[b], ref, rtol=1e-6)
    # "222" needs 5 frames (blanks between repeats): feasible at T=5; "121" in 3 frames too
    z = np.asarray(M.ctc_loss(logits, np.array([5, 4, 5, 2, 5, 2]), labels, lls))
    assert z[3] == 0.0  # 3 labels in 2 frames: impossible -> zeroed like zero_infinity
    assert np.all(np.isfinite(z))


def test_greedy_decode_and_error_rates():
    a = M.ALPHABET
    idx = {c: i for i, c in enumerate(a)}
    path = [idx[c] for c in "HH_E_LL_LO_  W"] + [0, 0, 0]
    logits = np.full((1, len(path), len(a)), -5.0)
    logits[0, np.arange(len(path)), path] = 5.0
    assert M.greedy_decode(logits, [14]) == ["HELLO W"]
    assert M.greedy_decode(logits, [4]) == ["HE"]
    assert M.cer(["ABCD"], ["ABXD"]) == 0.25
    assert M.cer(["AB", "CD"], ["AB", ""]) == 0.5
    assert M.wer(["THE CAT SAT"], ["THE BAT SAT DOWN"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        M.cer(["A"], [])


def test_encode_decode_roundtrip():
    texts = ["the cat's hat", "A", "no-digits 42"]
    lab, ll = M.encode_text(texts)
    assert lab.shape == (3, 13) and ll.tolist() == [13, 1, 9]
    assert M.decode_labels(lab, ll) == ["THE CAT'S HAT", "A", "NODIGITS "]
    assert lab.min() >= 0 and lab[0, :13].min() >= 1  # never the blank
    with pytest.raises(TypeError):
        M.encode_text("abc")
