"""Whole-utterance features and frame-level training sets (phone MLP, DS2 inputs).

Utterances have different lengths; they are zero-padded to a multiple of ``bucket`` samples and
featurised in batches, so each bucket length compiles once. Because the front ends pad with zeros
(librosa's ``center=True`` convention), the first ``n_frames(n)`` frames of a padded utterance are
exactly the frames of the unpadded one.
"""

from __future__ import annotations

import numpy as np

from geomjax.data._corpus import SpeechCorpus

__all__ = ["utterance_features", "frame_dataset"]


def utterance_features(corpus: SpeechCorpus, kind: str = "log_mel", utts=None,
                       bucket: int = 16000, batch_size: int = 64, progress: bool = False,
                       **kwargs) -> list[np.ndarray]:
    """Features of whole utterances, one ``(n_frames_i, F)`` array per utterance.

    Args:
        corpus: the corpus.
        kind: "log_mel", "mfcc" or "ds2" (frame-based front ends; ``center=True``).
        utts: utterance indices (default: all).
        bucket: padding granularity in samples.
        batch_size: utterances per featurisation call.
        **kwargs: front-end options (``hop``, ``n_mels``, ...).
    """
    from geomjax.data._features import featurize, n_frames

    if kind not in ("log_mel", "mfcc", "ds2"):
        raise ValueError(f"`kind` must be 'log_mel', 'mfcc' or 'ds2'; got {kind!r}.")
    if kwargs.get("center", True) is not True:
        raise ValueError("utterance_features needs center=True (zero padding keeps frames exact).")
    if bucket < 1:
        raise ValueError(f"`bucket` must be >= 1; got {bucket}.")
    utts = np.arange(len(corpus)) if utts is None else np.asarray(utts, np.int64).reshape(-1)
    lens = corpus.utterances["n_samples"].to_numpy()[utts]
    padded = -(-lens // bucket) * bucket
    hop = int(kwargs.get("hop", 160))
    out: list[np.ndarray | None] = [None] * utts.size
    for L in np.unique(padded):
        sel = np.nonzero(padded == L)[0]
        audio = np.zeros((sel.size, int(L)), np.float32)
        for j, i in enumerate(sel):
            audio[j, : lens[i]] = corpus.utterance(int(utts[i]))
        f = featurize(audio, kind, batch_size=batch_size, progress=progress, **kwargs)
        for j, i in enumerate(sel):
            out[i] = f[j, : n_frames(int(lens[i]), hop)]
    return out  # type: ignore[return-value]


def frame_dataset(corpus: SpeechCorpus, tier: str = "phone", classes=None, n_classes: int = 40,
                  kind: str = "log_mel", context: int = 5, normalize: str | None = "utterance",
                  split: str | None = None, keep_unlabelled: bool = False,
                  progress: bool = False, **kwargs):
    """Frame-level training data: spliced features and per-frame labels.

    With the defaults this is the phone MLP's input (Nagamine et al. 2015): 23 log-Mel bands,
    25 ms / 10 ms, mean/variance normalised per utterance, spliced +/- 5 frames (253 values),
    labelled with the 40 most frequent phones.

    Args:
        corpus: the corpus.
        tier: "phone", "word" or "char" labels.
        classes: label names (index = class); default: the ``n_classes`` most frequent units of
            the tier by duration.
        kind: front end ("log_mel", "mfcc", "ds2").
        context: frames spliced on each side (0 = none).
        normalize: "utterance" (per-utterance mean/variance), "speaker" (per speaker) or None.
        split: keep only utterances of this speaker split.
        keep_unlabelled: keep frames outside every class (label -1).

    Returns:
        ``(X, y, utt, classes)``: float32 ``(n, F * (2 context + 1))``, int32 ``(n,)``, int64
        ``(n,)`` utterance index of each frame, and the class names.
    """
    if normalize not in ("utterance", "speaker", None):
        raise ValueError(f"`normalize` must be 'utterance', 'speaker' or None; got {normalize!r}.")
    u = corpus.utterances
    utts = u["utt"].to_numpy() if split is None else u.loc[u["split"] == split, "utt"].to_numpy()
    if utts.size == 0:
        raise ValueError(f"no utterances in split {split!r}.")
    if classes is None:
        if tier == "phone":
            classes = corpus.phone_inventory(n_classes)
        else:
            tab = corpus.table(tier)
            col = "word" if tier == "word" else "char"
            d = tab.assign(d=tab["end"] - tab["start"]).groupby(col)["d"].sum()
            classes = sorted(d.index, key=lambda c: (-d[c], c))[:n_classes]
    classes = list(classes)
    hop = int(kwargs.get("hop", 160))
    win = int(kwargs.get("n_fft", {"log_mel": 400, "mfcc": 512, "ds2": 320}[kind]))
    feats = utterance_features(corpus, kind, utts, progress=progress, **kwargs)
    if normalize == "speaker":
        spk = u.set_index("utt").loc[utts, "speaker"].to_numpy()
        stats = {}
        for s in np.unique(spk):
            f = np.concatenate([feats[i] for i in np.nonzero(spk == s)[0]])
            stats[s] = (f.mean(0), f.std(0) + 1e-8)
    xs, ys, us = [], [], []
    for i, utt in enumerate(utts):
        f = feats[i]
        if normalize == "utterance":
            f = (f - f.mean(0)) / (f.std(0) + 1e-8)
        elif normalize == "speaker":
            m, sd = stats[spk[i]]
            f = (f - m) / sd
        if context:  # NumPy splice (same layout as features.splice): no per-length compiles
            g = np.pad(f, ((context, context), (0, 0)), mode="edge")
            f = np.concatenate([g[k: k + f.shape[0]] for k in range(2 * context + 1)], axis=1)
        y = corpus.frame_labels(int(utt), tier, classes=classes, hop=hop, win=win)
        keep = slice(None) if keep_unlabelled else y >= 0
        xs.append(f[keep].astype(np.float32))
        ys.append(y[keep])
        us.append(np.full(len(ys[-1]), utt, np.int64))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int32), np.concatenate(us), classes
