"""Model inputs for the reproduction: training splits of every task and the per-model
front end applied to manifold windows, so analysis inputs match what the models were trained on.

Front ends (all on 16 kHz audio, standardised per clip):

* ``word_cnn`` -- 40-band log-Mel image ``(F, T)``, standardised over the whole window;
* ``speaker_cnn`` -- 40 MFCC frames ``(T, 40)``, each coefficient standardised over time;
* ``ds2`` -- ``log1p |STFT|`` frames ``(T, bins)`` (lowest ``bins`` of 161), standardised;
* ``transformer`` -- 40-band log-Mel frames ``(T, 40)``, each band standardised over time;
* ``phone_mlp`` -- 23-band log-Mel standardised per utterance, spliced +-5 frames (253 dims).

Splits: word, phone, CTC and reconstruction tasks hold out speakers (the corpus' ``split``
column; a corpus without held-out speakers, such as the tiny one, gets a seeded speaker split);
speaker tasks hold out word types, so every speaker is seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Splits", "model_inputs", "task_splits", "ensure_splits"]

_FRONT = {
    "word_cnn": ("log_mel", {"n_mels": 40}),
    "speaker_cnn": ("mfcc", {"n_mfcc": 40}),
    "ds2": ("ds2", {}),
    "transformer": ("log_mel", {"n_mels": 40}),
}


def _splice(f: np.ndarray, context: int) -> np.ndarray:
    """:func:`geomjax.data.splice` of one utterance ``(T, F)`` in NumPy: the same values (edge
    frames repeat), without one compiled program per utterance length."""
    T = f.shape[0]
    g = np.pad(f, [(context, context), (0, 0)], mode="edge")
    return np.concatenate([g[k : k + T] for k in range(2 * context + 1)], axis=1)


def _standardise(x, axes):
    mu = x.mean(axis=axes, keepdims=True)
    sd = x.std(axis=axes, keepdims=True)
    return ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def model_inputs(model: str, audio, *, ds2_bins: int | None = 81, progress: bool = False):
    """The model's input for equal-length clips ``(n, n_samples)``.

    Returns:
        ``(inputs, lengths)``: ``(n, F, T)`` for the word CNN, ``(n, T, F)`` with full
        ``lengths`` for the sequence models.
    """
    from geomjax.data import featurize

    if model not in _FRONT:
        raise ValueError(f"no clip front end for model {model!r}; choose one of {sorted(_FRONT)}.")
    kind, kw = _FRONT[model]
    f = np.asarray(featurize(np.asarray(audio, np.float32), kind, progress=progress, **kw))
    if model == "word_cnn":
        return _standardise(np.swapaxes(f, 1, 2), (1, 2)), None
    if model == "ds2":
        if ds2_bins:
            f = f[..., :ds2_bins]
        x = _standardise(f, (1, 2))
    else:
        x = _standardise(f, (1,))
    return x, np.full(len(x), x.shape[1], np.int32)


def ensure_splits(corpus, seed: int = 0, fractions=(0.25, 0.125)):
    """The corpus itself when it holds train/valid/test speakers; else a copy whose ``split``
    columns come from a seeded speaker split (``fractions`` = test, valid shares)."""
    import dataclasses

    have = set(corpus.utterances["split"].unique())
    if {"train", "valid", "test"} <= have:
        return corpus
    spk = np.array(sorted(corpus.utterances["speaker"].unique()))
    if spk.size < 3:
        raise ValueError(f"the corpus has {spk.size} speakers; a speaker split needs at least 3.")
    rng = np.random.default_rng(seed)
    rng.shuffle(spk)
    n_te = max(1, int(round(fractions[0] * spk.size)))
    n_va = max(1, int(round(fractions[1] * spk.size)))
    split = {s: "test" for s in spk[:n_te]}
    split.update({s: "valid" for s in spk[n_te : n_te + n_va]})
    split.update({s: "train" for s in spk[n_te + n_va :]})
    tabs = {}
    for name in ("utterances", "words", "phones", "chars"):
        t = getattr(corpus, name)
        if "speaker" in t and "split" in t:
            t = t.assign(split=t["speaker"].map(split))
        tabs[name] = t
    return dataclasses.replace(corpus, **tabs)


@dataclass
class Splits:
    """Train/valid/test :class:`geomjax.models.TaskData` of one task, with class names."""

    train: object
    valid: object
    test: object
    classes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _task_data(x, y, lengths, tab, idx, label_lengths=None):
    from geomjax.models import TaskData

    g = lambda a: None if a is None else a[idx]  # noqa: E731
    return TaskData(
        x[idx], g(y), g(lengths), g(label_lengths), tab.iloc[idx].reset_index(drop=True)
    )


def _split(x, y, lengths, tab, by, label_lengths=None):
    out = {}
    for s in ("train", "valid", "test"):
        idx = np.nonzero(by == s)[0]
        if idx.size == 0:
            raise ValueError(f"the corpus has no '{s}' rows for this task; use a larger corpus.")
        out[s] = _task_data(x, y, lengths, tab, idx, label_lengths)
    return out


def _word_split(tab, seed, heldout=0.3):
    types = np.array(sorted(tab["word"].unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(types)
    n_out = max(2, int(round(heldout * len(types))))
    valid_w, test_w = set(types[: n_out // 2]), set(types[n_out // 2 : n_out])
    return np.where(
        tab["word"].isin(valid_w), "valid", np.where(tab["word"].isin(test_w), "test", "train")
    )


def _utterance_features(corpus, kind, progress=False, **kw):
    """Per-utterance features in 1-s length buckets (few compilations)."""
    from geomjax.data import featurize, n_frames

    n = corpus.utterances["n_samples"].to_numpy()
    step = corpus.sample_rate
    padded = ((n + step - 1) // step) * step
    out = [None] * len(n)
    for P in np.unique(padded):
        ids = np.nonzero(padded == P)[0]
        a = np.zeros((len(ids), int(P)), np.float32)
        for j, u in enumerate(ids):
            a[j, : n[u]] = corpus.utterance(int(u))
        f = np.asarray(featurize(a, kind, progress=progress, **kw))
        for j, u in enumerate(ids):
            out[u] = f[j, : n_frames(int(n[u]))]
    return out


def _pad(feats, idx):
    T = max(len(feats[i]) for i in idx)
    x = np.zeros((len(idx), T, feats[idx[0]].shape[1]), np.float32)
    L = np.zeros(len(idx), np.int32)
    for j, i in enumerate(idx):
        x[j, : len(feats[i])] = feats[i]
        L[j] = len(feats[i])
    return x, L


def task_splits(
    corpus,
    task: str,
    *,
    seed: int = 0,
    ds2_bins: int | None = 81,
    max_utterances: int | None = None,
    progress: bool = False,
) -> Splits:
    """Training data of one task.

    Args:
        corpus: a :class:`geomjax.data.SpeechCorpus` (see :func:`ensure_splits`).
        task: ``word`` (log-Mel windows, word labels; word CNN), ``speaker_windows`` (the same
            windows, speaker labels; word CNN trained on speakers), ``speaker`` (MFCC windows,
            speaker labels; speaker CNN), ``phone`` (spliced frames, 40 phones; phone MLP),
            ``ctc`` (utterance spectrograms and transcripts; DS2) or ``reconstruction``
            (utterance log-Mel frames; Transformer).
        seed: window jitter and word hold-out seed.
        ds2_bins: spectrogram bins kept for DS2.
        max_utterances: cap on utterances per split for the utterance tasks (memory).
    """
    corpus = ensure_splits(corpus, seed)
    if task in ("word", "speaker_windows", "speaker"):
        audio, tab = corpus.word_segments(seed=seed, duration=2.0)
        model = "speaker_cnn" if task == "speaker" else "word_cnn"
        x, lengths = model_inputs(model, audio, progress=progress)
        col = "word" if task == "word" else "speaker"
        classes = sorted(tab[col].astype(str).unique())
        y = tab[col].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int32)
        by = tab["split"].to_numpy() if task == "word" else _word_split(tab, seed)
        sp = _split(x, y, lengths, tab.reset_index(drop=True), by)
        return Splits(
            **sp,
            classes=classes,
            info={"task": task, "split_by": "speaker" if task == "word" else "word"},
        )
    utts = corpus.utterances
    if task == "phone":
        classes = corpus.phone_inventory(40)
        feats = _utterance_features(corpus, "log_mel", progress=progress, n_mels=23)
        xs, ys, rows = [], [], []
        for u, f in enumerate(feats):
            f = _standardise(f, (0,))
            lab = corpus.frame_labels(u, "phone", classes=classes)
            T = min(len(lab), len(f))
            keep = np.nonzero(lab[:T] >= 0)[0]
            if keep.size == 0:
                continue
            xs.append(_splice(f[:T], 5)[keep])
            ys.append(lab[keep])
            rows.append(pd.DataFrame({"utt": u, "frame": keep}))
        x = np.concatenate(xs).astype(np.float32)
        y = np.concatenate(ys).astype(np.int32)
        tab = pd.concat(rows, ignore_index=True).merge(
            utts[["utt", "speaker", "gender", "accent", "channel", "split"]], on="utt", how="left"
        )
        sp = _split(x, y, None, tab, tab["split"].to_numpy())
        return Splits(**sp, classes=list(classes), info={"task": "phone", "split_by": "speaker"})
    if task in ("ctc", "reconstruction"):
        from geomjax.models import encode_text

        if task == "ctc":
            feats = _utterance_features(corpus, "ds2", progress=progress)
            feats = [_standardise(f[:, :ds2_bins] if ds2_bins else f, (0, 1)) for f in feats]
            labels, ll = encode_text(utts["text"].tolist())
        else:
            feats = _utterance_features(corpus, "log_mel", progress=progress, n_mels=40)
            feats = [_standardise(f, (0,)) for f in feats]
            labels = ll = None
        out = {}
        rng = np.random.default_rng(seed)
        for s in ("train", "valid", "test"):
            idx = np.nonzero(utts["split"].to_numpy() == s)[0]
            if idx.size == 0:
                raise ValueError(f"the corpus has no '{s}' utterances; use a larger corpus.")
            if max_utterances and idx.size > max_utterances:
                idx = np.sort(rng.choice(idx, max_utterances, replace=False))
            x, L = _pad(feats, idx)
            from geomjax.models import TaskData

            out[s] = TaskData(
                x,
                None if labels is None else labels[idx],
                L,
                None if ll is None else ll[idx],
                utts.iloc[idx].reset_index(drop=True),
            )
        return Splits(**out, info={"task": task, "split_by": "speaker"})
    raise ValueError(
        f"unknown task {task!r}; choose one of word, speaker_windows, speaker, phone, ctc, "
        "reconstruction."
    )
