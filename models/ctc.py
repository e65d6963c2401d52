"""CTC utilities for Deep Speech 2: the 29-character alphabet, loss, greedy decoding, CER/WER."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "ALPHABET",
    "BLANK",
    "encode_text",
    "decode_labels",
    "ctc_loss",
    "greedy_decode",
    "edit_distance",
    "cer",
    "wer",
]

#: deepspeech.pytorch labels: blank ``_`` (index 0), apostrophe, A-Z, space.
ALPHABET = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "
BLANK = 0
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def encode_text(texts: Sequence[str], max_len: int | None = None, alphabet: str = ALPHABET):
    """Upper-case transcripts to padded label arrays.

    Characters outside the alphabet are dropped (deepspeech.pytorch does the same).

    Args:
        texts: transcripts.
        max_len: pad width (default: the longest transcript).
        alphabet: label set with the blank at index 0.

    Returns:
        ``(labels, label_lengths)``: int32 ``(N, max_len)`` (padding 0) and int32 ``(N,)``.
    """
    if isinstance(texts, str):
        raise TypeError("`texts` must be a sequence of strings, not a single string.")
    index = {c: i for i, c in enumerate(alphabet)}
    seqs = [[index[c] for c in str(t).upper() if c in index and index[c] != BLANK] for t in texts]
    n = max((len(s) for s in seqs), default=0) if max_len is None else max_len
    if any(len(s) > n for s in seqs):
        raise ValueError(f"a transcript has more than `max_len`={n} characters.")
    out = np.zeros((len(seqs), max(n, 1)), np.int32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, np.array([len(s) for s in seqs], np.int32)


def decode_labels(labels, label_lengths, alphabet: str = ALPHABET) -> list[str]:
    """Inverse of :func:`encode_text`."""
    labels, label_lengths = np.asarray(labels), np.asarray(label_lengths)
    pairs = zip(labels, label_lengths, strict=True)
    return ["".join(alphabet[k] for k in row[:n]) for row, n in pairs]


def ctc_loss(logits, logit_lengths, labels, label_lengths, zero_infinity: bool = True):
    """Per-utterance CTC negative log-likelihood (blank 0) via :func:`optax.ctc_loss`.

    Args:
        logits: ``(B, T, K)`` unnormalised scores.
        logit_lengths: ``(B,)`` valid frames.
        labels: ``(B, S)`` int labels in ``1..K-1``.
        label_lengths: ``(B,)`` valid labels.
        zero_infinity: replace impossible alignments (label longer than the frames allow) by 0,
            as PyTorch's ``zero_infinity=True``.

    Returns:
        ``(B,)`` losses.
    """
    logits = jnp.asarray(logits)
    T, S = logits.shape[1], labels.shape[1]
    lp = (jnp.arange(T)[None, :] >= jnp.asarray(logit_lengths)[:, None]).astype(logits.dtype)
    yp = (jnp.arange(S)[None, :] >= jnp.asarray(label_lengths)[:, None]).astype(logits.dtype)
    loss = optax.ctc_loss(logits, lp, jnp.asarray(labels), yp, blank_id=BLANK)
    if zero_infinity:
        # optax's log_epsilon floor makes impossible alignments huge but finite.
        need = jnp.asarray(label_lengths) + _repeats(
            jnp.asarray(labels), jnp.asarray(label_lengths)
        )
        ok = need <= jnp.asarray(logit_lengths)
        loss = jnp.where(ok & jnp.isfinite(loss), loss, 0.0)
    return loss


def _repeats(labels, label_lengths):
    """Number of adjacent equal labels (each needs a blank between them)."""
    S = labels.shape[1]
    same = (labels[:, 1:] == labels[:, :-1]) & (jnp.arange(1, S)[None, :] < label_lengths[:, None])
    return same.sum(axis=1)


def greedy_decode(logits, lengths, alphabet: str = ALPHABET) -> list[str]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks."""
    best = np.asarray(jnp.argmax(jnp.asarray(logits), axis=-1))
    lengths = np.asarray(lengths)
    out = []
    for row, n in zip(best, lengths, strict=False):
        row = row[: int(n)]
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append("".join(alphabet[k] for k in row[keep] if k != BLANK))
    return out


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences (characters or words)."""
    ref, hyp = list(ref), list(hyp)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Character error rate: total character edits / total reference characters."""
    if len(refs) != len(hyps):
        raise ValueError(
            f"`refs` ({len(refs)}) and `hyps` ({len(hyps)}) must have the same length."
        )
    n = sum(len(r) for r in refs)
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=False)) / max(n, 1)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate: total word edits / total reference words."""
    if len(refs) != len(hyps):
        raise ValueError(
            f"`refs` ({len(refs)}) and `hyps` ({len(hyps)}) must have the same length."
        )
    n = sum(len(r.split()) for r in refs)
    edits = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True))
    return edits / max(n, 1)
