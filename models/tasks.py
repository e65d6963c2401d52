"""Data adapters: turn a :class:`geomjax.data.SpeechCorpus` into train/valid/test
:class:`~geomjax.models.TaskData` for each model's task.

* :func:`word_task` - 2-s windows centred on content words, log-Mel image ``(F, T)`` per window,
  word labels; split by **unseen speakers** (the corpus' speaker split).
* :func:`speaker_task` - the same windows as MFCC frames ``(T, 40)``, speaker (or gender/accent/
  channel) labels; split by **unseen words** (a held-out set of word types; every speaker in both).
* :func:`phone_task` - per-utterance-normalised 23-band log-Mel frames spliced +-5 (253 dims),
  40 phone classes (the most frequent by duration); split by unseen speakers.
* :func:`ctc_task` - whole utterances as DS2 spectrograms with character labels; unseen speakers.
* :func:`reconstruction_task` - whole utterances as log-Mel frames for Mockingjay pretraining.

Feature computation uses the JAX front ends of :mod:`geomjax.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from geomjax.models.ctc import encode_text
from geomjax.models.train import TaskData

__all__ = [
    "TaskSplits",
    "word_task",
    "speaker_task",
    "phone_task",
    "ctc_task",
    "reconstruction_task",
]


@dataclass
class TaskSplits:
    """Train/valid/test splits of one task.

    Attributes:
        train, valid, test: :class:`TaskData` (``meta`` holds each sample's table row).
        classes: label names by class index (characters for CTC; empty for reconstruction).
        info: how the split was made.
    """

    train: TaskData
    valid: TaskData
    test: TaskData
    classes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _check_corpus(corpus):
    for attr in ("utterances", "words", "phones", "word_segments", "frame_labels"):
        if not hasattr(corpus, attr):
            raise TypeError(f"`corpus` must be a geomjax.data.SpeechCorpus; it has no `{attr}`.")


def _standardise(x, axes):
    mu = x.mean(axis=axes, keepdims=True)
    sd = x.std(axis=axes, keepdims=True)
    return ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def _utterance_split(corpus, seed: int = 0) -> np.ndarray:
    """Per-utterance split by speaker: the corpus' own ``split`` column when it has train, valid
    and test speakers; otherwise (e.g. the tiny corpus) speakers are shuffled with ``seed`` and
    assigned 70 / 15 / 15 % (at least one speaker each) to train / valid / test."""
    u = corpus.utterances
    if {"train", "valid", "test"} <= set(u["split"]):
        return u["split"].to_numpy()
    spk = np.array(sorted(u["speaker"].astype(str).unique()))
    if len(spk) < 3:
        raise ValueError(f"the corpus has {len(spk)} speaker(s); unseen-speaker splits need >= 3.")
    np.random.default_rng(seed).shuffle(spk)
    n_te = max(1, int(round(0.15 * len(spk))))
    n_va = max(1, int(round(0.15 * len(spk))))
    lab = {s: "test" for s in spk[:n_te]} | {s: "valid" for s in spk[n_te : n_te + n_va]}
    return u["speaker"].astype(str).map(lambda s: lab.get(s, "train")).to_numpy()


def _split_rows(tab: pd.DataFrame, by: np.ndarray, x, y, lengths=None):
    out = {}
    for s in ("train", "valid", "test"):
        idx = np.nonzero(by == s)[0]
        if idx.size == 0:
            raise ValueError(f"the corpus has no '{s}' rows for this task; use a larger corpus.")
        out[s] = TaskData(
            x[idx],
            y[idx] if y is not None else None,
            None if lengths is None else lengths[idx],
            None,
            tab.iloc[idx].reset_index(drop=True),
        )
    return out


def _word_windows(corpus, seed, duration):
    audio, tab = corpus.word_segments(seed=seed, duration=duration)
    if len(tab) == 0:
        raise ValueError("the corpus has no content-word tokens.")
    return audio, tab


def word_task(
    corpus,
    *,
    seed: int = 0,
    duration: float = 2.0,
    n_mels: int = 40,
    feature: str = "log_mel",
    progress: bool = False,
) -> TaskSplits:
    """Word recognition on unseen speakers (word CNN input).

    Args:
        corpus: a :class:`geomjax.data.SpeechCorpus`.
        seed: centre-jitter seed of the word windows (and the speaker split seed when the corpus
            has no train/valid/test speaker split of its own).
        duration: window length in seconds.
        n_mels: log-Mel bands (``feature="log_mel"``); for ``"cochleagram"`` the paper's 256 x 256.
        feature: ``"log_mel"`` or ``"cochleagram"``.
        progress: progress bars.

    Returns:
        :class:`TaskSplits` with inputs ``(N, F, T)`` standardised per window and word labels.
    """
    from geomjax.data import featurize

    _check_corpus(corpus)
    audio, tab = _word_windows(corpus, seed, duration)
    if feature == "log_mel":
        f = featurize(audio, "log_mel", n_mels=n_mels, progress=progress)
    elif feature == "cochleagram":
        f = featurize(audio, "cochleagram", progress=progress)
    else:
        raise ValueError(f"`feature` must be 'log_mel' or 'cochleagram'; got {feature!r}.")
    x = _standardise(np.swapaxes(f, 1, 2), (1, 2))  # (N, F, T)
    classes = sorted(tab["word"].unique())
    y = tab["word"].map({w: i for i, w in enumerate(classes)}).to_numpy(np.int32)
    by = _utterance_split(corpus, seed)[tab["utt"].to_numpy()]
    sp = _split_rows(tab, by, x, y)
    return TaskSplits(
        **sp,
        classes=classes,
        info={"task": "word", "split_by": "speaker", "feature": feature, "seed": seed},
    )


def speaker_task(
    corpus,
    *,
    label: str = "speaker",
    seed: int = 0,
    duration: float = 2.0,
    heldout_words: float = 0.25,
    n_mfcc: int = 40,
    progress: bool = False,
) -> TaskSplits:
    """Speaker (or gender/accent/channel) recognition on unseen words (speaker CNN input).

    The content-word types are shuffled with ``seed``; ``heldout_words`` of them form the test
    words, split in half between ``valid`` and ``test``; the rest are the training words.

    Args:
        corpus: a :class:`geomjax.data.SpeechCorpus`.
        label: ``"speaker"``, ``"gender"``, ``"accent"`` or ``"channel"``.
        seed: word hold-out and window-jitter seed.
        duration: window length in seconds.
        heldout_words: fraction of word types held out.
        n_mfcc: MFCC coefficients.
        progress: progress bars.

    Returns:
        :class:`TaskSplits` with inputs ``(N, T, n_mfcc)`` (standardised per window and
        coefficient), full-length ``lengths``, and integer labels.
    """
    from geomjax.data import featurize

    _check_corpus(corpus)
    if label not in ("speaker", "gender", "accent", "channel"):
        raise ValueError(
            f"`label` must be 'speaker', 'gender', 'accent' or 'channel'; got {label!r}."
        )
    if not 0 < heldout_words < 1:
        raise ValueError(f"`heldout_words` must be in (0, 1); got {heldout_words}.")
    audio, tab = _word_windows(corpus, seed, duration)
    f = featurize(audio, "mfcc", n_mfcc=n_mfcc, progress=progress)
    x = _standardise(f, (1,))
    types = np.array(sorted(tab["word"].unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(types)
    n_out = max(2, int(round(heldout_words * len(types))))
    valid_w, test_w = set(types[: n_out // 2]), set(types[n_out // 2 : n_out])
    by = np.where(
        tab["word"].isin(valid_w), "valid", np.where(tab["word"].isin(test_w), "test", "train")
    )
    classes = sorted(tab[label].astype(str).unique())
    y = tab[label].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int32)
    lengths = np.full(len(tab), x.shape[1], np.int32)
    sp = _split_rows(tab, by, x, y, lengths)
    return TaskSplits(
        **sp,
        classes=classes,
        info={
            "task": label,
            "split_by": "word",
            "heldout_words": sorted(valid_w | test_w),
            "seed": seed,
        },
    )


def _utterance_features(corpus, kind, bucket_s: float = 1.0, progress: bool = False, **kw):
    """Per-utterance features ``[(T_i, F), ...]``, computed in length buckets (few compilations)."""
    from geomjax.data import featurize, n_frames

    n = corpus.utterances["n_samples"].to_numpy()
    step = int(bucket_s * corpus.sample_rate)
    padded = ((n + step - 1) // step) * step
    out: list = [None] * len(n)
    for P in np.unique(padded):
        ids = np.nonzero(padded == P)[0]
        a = np.zeros((len(ids), int(P)), np.float32)
        for j, u in enumerate(ids):
            a[j, : n[u]] = corpus.utterance(int(u))
        f = featurize(a, kind, progress=progress, **kw)
        for j, u in enumerate(ids):
            hop = kw.get("hop", 160)
            out[u] = f[j, : n_frames(int(n[u]), hop=hop)]
    return out


def phone_task(
    corpus,
    *,
    n_phones: int = 40,
    context: int = 5,
    n_mels: int = 23,
    frame_step: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> TaskSplits:
    """Frame-wise phone classification on unseen speakers (phone MLP input).

    Args:
        corpus: a :class:`geomjax.data.SpeechCorpus`.
        n_phones: classes: the most frequent phones by duration; other frames are dropped.
        context: splice +-``context`` frames (5 -> 11 frames x 23 bands = 253 dims).
        n_mels: log-Mel bands.
        frame_step: keep every ``frame_step``-th frame (memory).
        seed: speaker split seed when the corpus has no speaker split of its own.
        progress: progress bars.

    Returns:
        :class:`TaskSplits` with inputs ``(N_frames, n_mels (2 context + 1))`` and phone labels;
        ``meta`` holds ``utt``, ``frame`` and the label columns.
    """
    _check_corpus(corpus)
    classes = corpus.phone_inventory(n_phones)
    feats = _utterance_features(corpus, "log_mel", n_mels=n_mels, progress=progress)
    xs, ys, rows = [], [], []
    utts = corpus.utterances
    for u, f in enumerate(feats):
        f = _standardise(f, (0,))  # per-utterance mean/variance normalisation
        lab = corpus.frame_labels(u, "phone", classes=classes)
        T = min(len(lab), len(f))
        keep = np.nonzero(lab[:T] >= 0)[0][::frame_step]
        if keep.size == 0:
            continue
        xs.append(_splice(f[:T], context)[keep])
        ys.append(lab[keep])
        rows.append(pd.DataFrame({"utt": u, "frame": keep}))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys).astype(np.int32)
    tab = pd.concat(rows, ignore_index=True)
    tab = tab.merge(
        utts[["utt", "speaker", "gender", "accent", "channel", "split"]], on="utt", how="left"
    )
    by = _utterance_split(corpus, seed)[tab["utt"].to_numpy()]
    sp = _split_rows(tab, by, x, y)
    return TaskSplits(
        **sp,
        classes=list(classes),
        info={"task": "phone", "split_by": "speaker", "context": context, "n_mels": n_mels},
    )


def _splice(f, context):
    """``(T, F) -> (T, F (2 context + 1))``, edges repeated (as ``geomjax.data.splice``, in NumPy
    so that utterances of every length share one code path without recompilation)."""
    T = f.shape[0]
    g = np.pad(f, ((context, context), (0, 0)), mode="edge")
    return np.concatenate([g[k : k + T] for k in range(2 * context + 1)], axis=1)


def _pad(feats, idx):
    T = max(len(feats[i]) for i in idx)
    F = feats[idx[0]].shape[1]
    x = np.zeros((len(idx), T, F), np.float32)
    L = np.zeros(len(idx), np.int32)
    for j, i in enumerate(idx):
        x[j, : len(feats[i])] = feats[i]
        L[j] = len(feats[i])
    return x, L


def ctc_task(
    corpus, *, n_bins: int | None = None, seed: int = 0, progress: bool = False
) -> TaskSplits:
    """Character recognition of whole utterances on unseen speakers (DS2 input).

    Args:
        corpus: a :class:`geomjax.data.SpeechCorpus`.
        n_bins: keep the lowest ``n_bins`` of the 161 spectrogram bins (81 = 0-4 kHz, the reduced
            DS2 setting); None keeps all.
        seed: speaker split seed when the corpus has no speaker split of its own.
        progress: progress bars.

    Returns:
        :class:`TaskSplits` with padded ``(N, T, bins)`` spectrograms (per-utterance normalised),
        ``lengths``, ``(N, S)`` character labels and ``label_lengths``; ``classes`` is the alphabet.
    """
    from geomjax.models.ctc import ALPHABET

    _check_corpus(corpus)
    feats = _utterance_features(corpus, "ds2", progress=progress)
    feats = [_standardise(f[:, :n_bins] if n_bins else f, (0, 1)) for f in feats]
    utts = corpus.utterances
    labels, ll = encode_text(utts["text"].tolist())
    out = {}
    by = _utterance_split(corpus, seed)
    for s in ("train", "valid", "test"):
        idx = np.nonzero(by == s)[0]
        if idx.size == 0:
            raise ValueError(f"the corpus has no '{s}' utterances; use a larger corpus.")
        x, L = _pad(feats, idx)
        out[s] = TaskData(x, labels[idx], L, ll[idx], utts.iloc[idx].reset_index(drop=True))
    return TaskSplits(
        **out, classes=list(ALPHABET), info={"task": "ctc", "split_by": "speaker", "n_bins": n_bins}
    )


def reconstruction_task(
    corpus, *, n_mels: int = 40, seed: int = 0, progress: bool = False
) -> TaskSplits:
    """Whole utterances as per-utterance-normalised log-Mel frames (Transformer pretraining).

    Returns:
        :class:`TaskSplits` with padded ``(N, T, n_mels)`` inputs and ``lengths``; no labels.
    """
    _check_corpus(corpus)
    feats = _utterance_features(corpus, "log_mel", n_mels=n_mels, progress=progress)
    feats = [_standardise(f, (0,)) for f in feats]
    utts = corpus.utterances
    out = {}
    by = _utterance_split(corpus, seed)
    for s in ("train", "valid", "test"):
        idx = np.nonzero(by == s)[0]
        if idx.size == 0:
            raise ValueError(f"the corpus has no '{s}' utterances; use a larger corpus.")
        x, L = _pad(feats, idx)
        out[s] = TaskData(x, None, L, None, utts.iloc[idx].reset_index(drop=True))
    return TaskSplits(
        **out, info={"task": "reconstruction", "split_by": "speaker", "n_mels": n_mels}
    )
