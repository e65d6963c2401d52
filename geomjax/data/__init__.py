"""Data: the synthesised speech corpus, real-corpus loaders, speech features, manifold data sets.

Public API (everything here is importable as ``geomjax.data.<name>``)::

    corpus = synthesize_corpus(size="small", seed=0, cache_dir=None, channels="mixed")
        # size: "tiny" (tests, ~1 s) | "small" (default training, ~14k word tokens) | "medium"
        # cache_dir: a directory (e.g. default_cache_dir()) to store/reuse it with a manifest
    corpus.audio            float32 (total_samples,) at 16 kHz; corpus.utterance(i) -> (n,)
    corpus.utterances       DataFrame: utt, offset, n_samples, text, speaker, gender, accent,
                            voice, channel, snr_db, split (train/valid/test by speaker), source
    corpus.words            DataFrame: utt, word_index, word, pos (Penn tag), start, end (samples
                            within the utterance) + speaker, gender, accent, channel, split
    corpus.phones           DataFrame: utt, phone_index, word_index, phone (IPA), start, end
                            + labels
    corpus.chars            DataFrame: utt, word_index, char, start, end + labels
    corpus.speakers         DataFrame: speaker, gender, accent, variant, voice, pitch, rate, ...
    corpus.word_segments(seed=0, duration=2.0, jitter=0.1) -> (audio (n, 32000), table)
    corpus.windows(utt, centre, n_samples)                 -> (n, n_samples) zero-padded windows
    corpus.frame_labels(utt, tier="phone", classes=corpus.phone_inventory(40), hop=160)
                                                           -> int32 (n_frames,), -1 = no class

    # features: (..., n_samples) float -> (..., n_frames, F), JAX, jit, differentiable
    log_mel(audio)              23 bands, 25 ms / 10 ms; splice(log_mel(audio), 5) -> 253 dims
    mfcc(audio)                 40 coefficients (n_fft 512, 25 ms window, 10 ms hop)
    ds2_spectrogram(audio)      161 bins, 20 ms Hamming, log1p(|STFT|)
    cochleagram(audio)          ERB filterbank envelopes, (256 frames, 256 channels) for 2 s
    featurize(audio, kind, batch_size=512)  many clips in batches -> NumPy

    utterance_features(corpus, "ds2")   -> list of (n_frames_i, F), one per utterance
    X, y, utt, classes = frame_dataset(corpus)  # phone MLP: (n, 253) spliced log-Mel, 40 phones

    # manifold data sets: P classes x M examples with constraints
    ms = sample_manifolds(key, corpus, "word", n_classes=50, n_examples=50)
        # label types: word, speaker, pos, gender, accent, channel, phoneme, character;
        # constraint="default": distinct speakers per class (distinct words per speaker)
    ms.audio (P, M, n_samples); ms.table (one row per example); ms.summary (what was left out)
    ms.target_mask(hop=160) -> bool (P, M, T); ms.word_alignment(hop=160) -> int (P, M, T)
    ms.features("log_mel") -> (P, M, T, F)

    # real corpora (Hugging Face hub ids, local Parquet, or a folder with metadata.csv)
    corpus = load_corpus("openslr/librispeech_asr", config="clean", split="validation")
    corpus = load_corpus("/path/to/parquet_or_folder")

    # held-out voice domain (when the Debian package flite is installed)
    corpus = synthesize_flite_corpus(size="tiny", seed=0)

    # also: synthetic_manifolds / ball_manifolds (Gaussian-cloud MFTMA benchmarks),
    # espeak_synthesize, espeak_phonemes, flite_available, save_corpus, load_corpus_dir

Submodules are imported on first use, so ``import geomjax.data`` stays cheap.
"""

from __future__ import annotations

import importlib

from geomjax.data._manifold_synth import ball_manifolds, synthetic_manifolds

_LAZY = {
    # corpus
    "SpeechCorpus": "_corpus",
    "synthesize_corpus": "_corpus",
    "save_corpus": "_corpus",
    "load_corpus_dir": "_corpus",
    "default_cache_dir": "_corpus",
    "CORPUS_SIZES": "_corpus",
    "LABEL_COLUMNS": "_corpus",
    # engines
    "espeak_synthesize": "_espeak",
    "espeak_phonemes": "_espeak",
    "espeak_available": "_espeak",
    "espeak_variants": "_espeak",
    "ESPEAK_ACCENTS": "_espeak",
    "flite_available": "_flite",
    "synthesize_flite_corpus": "_flite",
    # channels
    "available_channels": "_channels",
    # features
    "log_mel": "_features",
    "mfcc": "_features",
    "ds2_spectrogram": "_features",
    "cochleagram": "_features",
    "splice": "_features",
    "stft_magnitude": "_features",
    "featurize": "_features",
    "n_frames": "_features",
    "erb_filters": "_features",
    # frame-level sets
    "utterance_features": "_framesets",
    "frame_dataset": "_framesets",
    # manifold data sets
    "ManifoldSet": "_manifolds",
    "sample_manifolds": "_manifolds",
    "LABEL_TYPES": "_manifolds",
    # real corpora
    "load_corpus": "_loaders",
    "read_timit_alignment": "_loaders",
}

__all__ = ["synthetic_manifolds", "ball_manifolds", *_LAZY]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'geomjax.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"geomjax.data.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
