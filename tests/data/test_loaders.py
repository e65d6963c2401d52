"""Real-corpus loader on offline fixtures: hub-schema Parquet and a folder with metadata."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
from datasets import Audio, Dataset, Features, Sequence, Value

from geomjax.data import load_corpus, read_timit_alignment, sample_manifolds


def _wav_bytes(y, sr, fmt="WAV"):
    b = io.BytesIO()
    sf.write(b, y, sr, format=fmt)
    return b.getvalue()


@pytest.fixture
def signals():
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (22050, 16000, 12000)]


@pytest.fixture
def parquet_fixture(tmp_path, signals):
    stereo = np.stack([signals[2], signals[2]], axis=1)
    audio = [
        {"bytes": _wav_bytes(signals[0], 22050), "path": "a.wav"},
        {"bytes": _wav_bytes(signals[1], 16000), "path": "b.wav"},
        {"bytes": _wav_bytes(stereo, 8000, "FLAC"), "path": "c.flac"},
    ]
    detail = {"start": [0, 8000], "stop": [8000, 15000], "utterance": ["hello", "world"]}
    empty = {"start": [], "stop": [], "utterance": []}
    ds = Dataset.from_dict({
        "audio": audio, "text": ["HELLO WORLD", "GOOD DAY", "YES"],
        "speaker_id": [11, 12, 11], "gender": ["M", "F", "M"],
        "word_detail": [empty, detail, empty],
        "phonetic_detail": [empty, {"start": [0, 3000], "stop": [3000, 8000],
                                     "utterance": ["hh", "ah"]}, empty],
    })
    det = {"start": Sequence(Value("int64")), "stop": Sequence(Value("int64")),
           "utterance": Sequence(Value("string"))}
    ds = ds.cast(Features({"audio": Audio(decode=False), "text": Value("string"),
                           "speaker_id": Value("int64"), "gender": Value("string"),
                           "word_detail": det, "phonetic_detail": det}))
    path = tmp_path / "train.parquet"
    ds.to_parquet(str(path))
    return path


def test_parquet_hub_schema(parquet_fixture, signals, tmp_path):
    c = load_corpus(parquet_fixture, split="test", hf_cache_dir=tmp_path / "hf", progress=False)
    u = c.utterances
    assert len(c) == 3 and list(u["text"]) == ["HELLO WORLD", "GOOD DAY", "YES"]
    assert list(u["speaker"]) == ["11", "12", "11"]
    assert list(u["gender"]) == ["male", "female", "male"]
    assert (u["split"] == "test").all()
    ref0 = soxr.resample(signals[0], 22050, 16000, quality="HQ")
    assert u["n_samples"][0] == ref0.size == 16000
    np.testing.assert_allclose(c.utterance(0), ref0, atol=1e-4)  # WAV float32 round trip
    np.testing.assert_allclose(c.utterance(1), signals[1], atol=1e-4)
    assert u["n_samples"][2] == 24000  # 8 kHz stereo FLAC -> 16 kHz mono
    w = c.words
    assert list(w["word"]) == ["hello", "world"] and (w["utt"] == 1).all()
    assert list(w["start"]) == [0, 8000] and list(w["end"]) == [8000, 15000]
    assert list(c.phones["phone"]) == ["hh", "ah"] and (c.phones["word_index"] == 0).all()
    assert "".join(c.chars["char"]) == "helloworld"
    assert set(c.speakers["speaker"]) == {"11", "12"}


def test_folder_with_metadata_and_timit_alignments(tmp_path, signals):
    root = tmp_path / "corpus"
    root.mkdir()
    sf.write(root / "s1.wav", signals[0], 22050)
    sf.write(root / "s2.wav", signals[1], 16000)
    (root / "s2.wrd").write_text("0 7000 she\n7000 15500 has\n")
    (root / "s2.phn").write_text("0 2000 sh\n2000 7000 iy\n7000 9000 hh\n9000 15500 ae\n")
    pd.DataFrame({"file_name": ["s1.wav", "s2.wav"], "text": ["one", "she has"],
                  "speaker": ["FCJF0", "MDAB0"], "dialect_region": ["dr1", "dr2"]}
                 ).to_csv(root / "metadata.csv", index=False)
    c = load_corpus(root, progress=False)
    assert len(c) == 2 and list(c.utterances["accent"]) == ["dr1", "dr2"]
    assert list(c.words["word"]) == ["she", "has"]
    assert list(c.phones["word_index"]) == [0, 0, 1, 1]
    assert read_timit_alignment(root / "s2.wrd") == [(0, 7000, "she"), (7000, 15500, "has")]
    ms = sample_manifolds(0, c, "character", 2, 2, constraint=None, classes=["h", "s"])
    assert ms.audio.shape == (2, 2, 2000) and (ms.table["utt"] == 1).all()
    with pytest.raises(ValueError, match="distinct speakers"):
        sample_manifolds(0, c, "word", 2, 2)


def test_corrupt_and_empty_audio(tmp_path, signals):
    root = tmp_path / "bad"
    root.mkdir()
    sf.write(root / "good.wav", signals[1], 16000)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    pd.DataFrame({"file_name": ["good.wav", "corrupt.wav", "empty.wav"],
                  "text": ["a", "b", "c"]}).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="corrupt.wav"):
        load_corpus(root, progress=False)
    c = load_corpus(root, on_error="skip", progress=False)
    assert len(c) == 1 and c.utterances["text"][0] == "a"
    assert len(c.info["skipped"]) == 2
    assert any("corrupt.wav" in s for s in c.info["skipped"])
    assert any("empty" in s for s in c.info["skipped"])


def test_loader_bad_arguments(tmp_path, parquet_fixture):
    with pytest.raises(ValueError, match="on_error"):
        load_corpus(parquet_fixture, on_error="ignore")
    with pytest.raises(ValueError, match="audio_column"):
        load_corpus(parquet_fixture, audio_column="wave", hf_cache_dir=tmp_path / "hf",
                    progress=False)
    root = tmp_path / "allbad"
    root.mkdir()
    (root / "x.wav").write_bytes(b"junk")
    pd.DataFrame({"file_name": ["x.wav"]}).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="no utterance could be decoded"):
        load_corpus(root, on_error="skip", progress=False)
    (root / "y.wrd").write_text("12 oops\n")
    with pytest.raises(ValueError, match="start end label"):
        read_timit_alignment(root / "y.wrd")
