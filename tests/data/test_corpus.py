"""The synthesised espeak-ng corpus: determinism, alignments, labels, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomjax.data import (
    ESPEAK_ACCENTS,
    espeak_available,
    espeak_phonemes,
    load_corpus_dir,
    synthesize_corpus,
)
from geomjax.data._text import CONTENT_WORDS, FUNCTION_WORDS, TEMPLATES

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")


@pytest.fixture(scope="module")
def tiny():
    return synthesize_corpus("tiny", seed=0)


def test_same_seed_bit_identical(tiny):
    again = synthesize_corpus("tiny", seed=0)
    assert np.array_equal(tiny.audio, again.audio)
    for name in ("utterances", "words", "phones", "chars", "speakers"):
        assert getattr(tiny, name).equals(getattr(again, name)), name
    other = synthesize_corpus("tiny", seed=1, channels="clean")
    assert not tiny.utterances["text"].equals(other.utterances["text"])


def test_tables_consistent(tiny):
    u, w = tiny.utterances, tiny.words
    assert len(tiny) >= 20 and tiny.audio.dtype == np.float32
    assert np.all(np.isfinite(tiny.audio))
    assert (u["offset"].diff().dropna() == u["n_samples"].iloc[:-1].to_numpy()).all()
    assert int(u["offset"].iloc[-1] + u["n_samples"].iloc[-1]) == tiny.audio.size
    assert set(u["accent"]) <= set(ESPEAK_ACCENTS)
    assert set(u["gender"]) <= {"male", "female"}
    assert u["speaker"].nunique() == 8
    assert set(u["split"]) <= {"train", "valid", "test"}
    for col in ("speaker", "gender", "accent", "channel", "split"):
        assert col in w and col in tiny.phones and col in tiny.chars
    # words reproduce the text, POS tags follow a template
    tags = {t: set(v) for t, v in {**CONTENT_WORDS, **FUNCTION_WORDS}.items()}
    for utt, g in w.groupby("utt"):
        assert " ".join(g.sort_values("word_index")["word"]) == u.loc[utt, "text"]
        assert tuple(g.sort_values("word_index")["pos"]) in TEMPLATES
        for word, pos in zip(g["word"], g["pos"]):
            assert word in tags[pos]
    # chars spell the words
    for (utt, wi), g in tiny.chars.groupby(["utt", "word_index"]):
        row = w[(w.utt == utt) & (w.word_index == wi)].iloc[0]
        assert "".join(g["char"]) == row["word"]
        assert g["start"].min() == row["start"] and g["end"].max() == row["end"]


def test_alignments_inside_audio_and_ordered(tiny):
    n = tiny.utterances.set_index("utt")["n_samples"]
    for tab in (tiny.words, tiny.phones, tiny.chars):
        assert (tab["start"] >= 0).all() and (tab["start"] < tab["end"]).all()
        assert (tab["end"].to_numpy() <= n.loc[tab["utt"]].to_numpy()).all()
    for _, g in tiny.words.groupby("utt"):
        g = g.sort_values("word_index")
        assert (g["start"].to_numpy()[1:] >= g["end"].to_numpy()[:-1]).all()
    p = tiny.phones.merge(tiny.words, on=["utt", "word_index"], suffixes=("", "_w"))
    assert len(p) == len(tiny.phones)
    assert ((p["start"] >= p["start_w"]) & (p["end"] <= p["end_w"])).all()
    # the words carry speech energy: RMS inside word spans well above the silence outside
    clean = tiny.utterances[tiny.utterances.channel == "clean"]
    assert len(clean) > 0
    for utt in clean["utt"]:
        a = tiny.utterance(utt)
        ws = tiny.words[tiny.words.utt == utt]
        inside = np.zeros(a.size, bool)
        for s, e in zip(ws["start"], ws["end"]):
            inside[s:e] = True
        assert np.sqrt(np.mean(a[inside] ** 2)) > 0.02
        tail = a[int(ws["end"].max()) + 800:]  # 50 ms after the last word: end-of-speech silence
        assert tail.size > 0 and np.sqrt(np.mean(tail**2)) < 1e-3


def test_phones_match_espeak_transcription(tiny):
    strip = str.maketrans("", "", "ˈˌ -")
    for _, row in tiny.utterances.iterrows():
        ph = tiny.phones[tiny.phones.utt == row.utt].sort_values("phone_index")
        events = "".join(ph["phone"])
        ref = espeak_phonemes(row.text, row.voice.split("+")[0]).translate(strip)
        assert events.translate(strip) == ref, (row.text, row.voice)


def test_word_segments_and_frame_labels(tiny):
    audio, tab = tiny.word_segments(seed=3, duration=2.0, jitter=0.1)
    assert audio.shape == (len(tab), 32000)
    assert set(tab["pos"]) <= {"NN", "VBD", "JJ", "RB"}
    mid = (tab["target_start"] + tab["target_end"]) / 2
    assert (np.abs(mid - 16000) <= 0.1 * 16000 + 1).all()
    # the window holds the utterance samples around the word
    r = tab.iloc[0]
    u = tiny.utterance(r.utt)
    lo = max(0, r.win_start)
    a0 = lo - r.win_start
    np.testing.assert_array_equal(audio[0, a0: a0 + 100], u[lo: lo + 100])
    inv = tiny.phone_inventory(10)
    lab = tiny.frame_labels(0, "phone", classes=inv)
    assert lab.shape == (1 + int(tiny.utterances.n_samples[0]) // 160,)
    assert lab.max() < 10 and (lab >= 0).any() and (lab == -1).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        synthesize_corpus("huge")
    with pytest.raises(TypeError, match="seed"):
        synthesize_corpus("tiny", seed=-1)
    with pytest.raises(ValueError, match="channels"):
        synthesize_corpus("tiny", channels=["clean", "underwater"])


def test_cache_manifest_and_regeneration(tmp_path, tiny):
    c1 = synthesize_corpus("tiny", seed=0, cache_dir=tmp_path)
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    man = json.loads((d / "manifest.json").read_text())
    assert set(man["files"]) >= {"audio.npy", "words.parquet", "phones.parquet"}
    assert man["info"]["seed"] == 0 and man["counts"]["words"] == len(tiny.words)
    assert np.array_equal(np.asarray(c1.audio), tiny.audio)
    assert c1.words.equals(tiny.words)
    (d / "words.parquet").unlink()  # missing -> rebuilt
    c2 = synthesize_corpus("tiny", seed=0, cache_dir=tmp_path)
    assert c2.words.equals(tiny.words)
    with open(d / "audio.npy", "r+b") as f:  # corrupt -> rebuilt
        f.seek(200)
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="manifest"):
        load_corpus_dir(d)
    c3 = synthesize_corpus("tiny", seed=0, cache_dir=tmp_path)
    assert np.array_equal(np.asarray(c3.audio), tiny.audio)


def test_bit_identical_in_a_fresh_process(tiny):
    import hashlib
    import subprocess
    import sys

    code = ("import hashlib; from geomjax.data import synthesize_corpus; "
            "c = synthesize_corpus('tiny', seed=0); "
            "print(hashlib.sha256(c.audio.tobytes()).hexdigest(), "
            "hashlib.sha256(c.phones.to_csv().encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == [hashlib.sha256(tiny.audio.tobytes()).hexdigest(),
                   hashlib.sha256(tiny.phones.to_csv().encode()).hexdigest()]


def test_windows_property(tiny):
    from hypothesis import given
    from hypothesis import strategies as st

    n_utt = len(tiny)

    @given(st.integers(0, n_utt - 1), st.integers(-40000, 90000), st.sampled_from([1, 400, 32000]))
    def check(utt, centre, n):
        w = tiny.windows([utt], [centre], n)[0]
        u = tiny.utterance(utt)
        k = centre - n // 2 + np.arange(n)  # the definition, sample by sample
        ok = (k >= 0) & (k < u.size)
        ref = np.where(ok, u[np.clip(k, 0, u.size - 1)], 0.0).astype(np.float32)
        np.testing.assert_array_equal(w, ref)

    check()
