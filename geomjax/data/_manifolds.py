"""Manifold data sets: P classes x M examples of a label type, sampled with constraints.

A manifold is the set of network responses to the M examples of one class (a word, a speaker,
a phoneme, ...). The examples are fixed-length audio windows cut from a :class:`SpeechCorpus`:
2-s windows centred on a word for word-level labels, short windows centred on a phone or letter
for phone/character labels. Constraints make the manifolds measure the intended variability:
by default every example of a word (or phone, character, POS tag, gender, accent) comes from a
different speaker, and every example of a speaker from a different word.

Sampling never returns a partial set silently: when fewer than P classes can supply M examples
under the constraint, :func:`sample_manifolds` raises a ``ValueError`` whose message (and
``summary``) says which classes fell short and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from geomjax.data._corpus import SpeechCorpus, _rng_from_key

__all__ = ["LABEL_TYPES", "ManifoldSet", "sample_manifolds"]

CONTENT_POS = ("NN", "VBD", "JJ", "RB", "")

#: label type -> (tier whose rows are the examples, column holding the class, default constraint,
#: default window in seconds)
LABEL_TYPES: dict[str, tuple[str, str, str | None, float]] = {
    "word": ("word", "word", "distinct_speakers", 2.0),
    "speaker": ("word", "speaker", "distinct_words", 2.0),
    "pos": ("word", "pos", "distinct_speakers", 2.0),
    "gender": ("word", "gender", "distinct_speakers", 2.0),
    "accent": ("word", "accent", "distinct_speakers", 2.0),
    "channel": ("word", "channel", "distinct_speakers", 2.0),
    "phoneme": ("phone", "phone", "distinct_speakers", 0.125),
    "character": ("char", "char", "distinct_speakers", 0.125),
}
_CONSTRAINT_KEY = {"distinct_speakers": "speaker", "distinct_words": "word",
                   "distinct_utterances": "utt", None: None}
# soft versions: any class with M examples qualifies; examples are spread over as many
# different speakers/words/utterances as the class has (round robin)
_PREFER = {f"prefer_{k}": v for k, v in _CONSTRAINT_KEY.items() if k}


@dataclass
class ManifoldSet:
    """P x M audio windows with their labels and alignments.

    Attributes:
        audio: float32 ``(P, M, n_samples)``.
        classes: the P class names (index = manifold index).
        label_type: what the classes are ("word", "speaker", ...).
        table: one row per example (``P * M`` rows, manifold-major): ``manifold``, ``example``,
            ``class``, the source row's columns (``utt``, ``speaker``, ``word``, ...),
            ``win_start`` (window start in utterance samples) and ``target_start`` /
            ``target_end`` (the unit's span inside the window; may extend past the window).
        summary: settings, counts, and the classes left out with the reason.
        corpus: the corpus the windows came from (for frame alignments).
        sample_rate: 16000.
    """

    audio: np.ndarray
    classes: list[str]
    label_type: str
    table: pd.DataFrame
    summary: dict = field(default_factory=dict)
    corpus: SpeechCorpus | None = field(default=None, repr=False)
    sample_rate: int = 16000

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.audio.shape)  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray:
        """int32 ``(P, M)`` manifold index of every example."""
        P, M = self.audio.shape[:2]
        return np.repeat(np.arange(P, dtype=np.int32)[:, None], M, axis=1)

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """``(P * M, n_samples)`` audio and ``(P * M,)`` labels (manifold-major)."""
        P, M, L = self.audio.shape
        return self.audio.reshape(P * M, L), self.labels.reshape(-1)

    def _frame_pos(self, hop: int, win: int, center: bool) -> np.ndarray:
        from geomjax.data._features import n_frames

        T = n_frames(self.audio.shape[-1], hop, win, center)
        return np.arange(T) * hop + (0 if center else win // 2)

    def target_mask(self, hop: int = 160, win: int = 400, center: bool = True) -> np.ndarray:
        """bool ``(P, M, n_frames)``: frames whose position lies inside the target unit (the
        frame count matches the feature functions with the same hop/win/center)."""
        pos = self._frame_pos(hop, win, center)
        s = self.table["target_start"].to_numpy()[:, None]
        e = self.table["target_end"].to_numpy()[:, None]
        P, M = self.audio.shape[:2]
        return ((pos[None] >= s) & (pos[None] < e)).reshape(P, M, -1)

    def word_alignment(self, hop: int = 160, win: int = 400, center: bool = True) -> np.ndarray:
        """int32 ``(P, M, n_frames)``: per frame, the position of the word under it relative to
        the example's word (0 = the example's own word, -1 the word before, +1 the next, ...),
        or ``-1000`` where no word is spoken (pauses, outside the utterance).

        For phone/character examples the example's word is the word containing the unit.
        """
        if self.corpus is None:
            raise ValueError("this ManifoldSet has no corpus attached; alignment is unavailable.")
        pos = self._frame_pos(hop, win, center)
        P, M = self.audio.shape[:2]
        out = np.full((P * M, pos.size), -1000, np.int32)
        words = self.corpus.words
        by_utt = {u: g for u, g in words.groupby("utt")}
        for i, row in enumerate(self.table.itertuples(index=False)):
            g = by_utt.get(row.utt)
            if g is None:
                continue
            abs_pos = pos + row.win_start
            for wi, s, e in zip(g["word_index"], g["start"], g["end"]):
                out[i, (abs_pos >= s) & (abs_pos < e)] = wi - row.word_index
        return out.reshape(P, M, -1)

    def features(self, kind: str = "log_mel", batch_size: int = 256, **kwargs) -> np.ndarray:
        """Front-end features of every example, ``(P, M, n_frames, F)``."""
        from geomjax.data._features import featurize

        P, M, L = self.audio.shape
        f = featurize(self.audio.reshape(P * M, L), kind, batch_size=batch_size, **kwargs)
        return f.reshape(P, M, *f.shape[1:])


def sample_manifolds(key, corpus: SpeechCorpus, label_type: str = "word", n_classes: int = 50,
                     n_examples: int = 50, *, constraint: str | None = "default",
                     window: float | None = None, jitter: float | None = None,
                     classes=None, content_only: bool = True,
                     split: str | None = None) -> ManifoldSet:
    """Sample P = ``n_classes`` manifolds of M = ``n_examples`` examples each.

    Args:
        key: a ``jax.random.key`` (or an int seed); the same key gives the same set.
        corpus: the :class:`SpeechCorpus` to cut windows from.
        label_type: one of :data:`LABEL_TYPES`: "word", "speaker", "pos", "gender", "accent",
            "channel" (word tokens as examples), "phoneme" (phones) or "character" (letters).
        n_classes: P >= 2.
        n_examples: M >= 2.
        constraint: "distinct_speakers" (every example of a class from a different speaker),
            "distinct_words" (different words), "distinct_utterances", ``None``, or "default"
            (distinct words for speakers, distinct speakers otherwise). The soft forms
            "prefer_distinct_speakers" / "prefer_distinct_words" / "prefer_distinct_utterances"
            accept any class with M examples and spread the examples over as many different
            speakers / words / utterances as the class has (e.g. speaker manifolds with M larger
            than the vocabulary).
        window: window length in seconds (default 2.0 for word-level types, 0.125 s for
            phonemes and characters).
        jitter: maximum random shift of the window centre in seconds (default 0.1 for
            word-level types, 0 otherwise).
        classes: explicit class names to use (then exactly these, in this order; P = len).
        content_only: for word-level types use only content words (NN/VBD/JJ/RB; real-corpus
            words without POS count as content words).
        split: keep only examples of this speaker split ("train", "valid", "test").

    Returns:
        A :class:`ManifoldSet`.

    Raises:
        ValueError: unknown label type or constraint, P < 2, M < 2, or fewer than P classes
            with M examples under the constraint (the message lists the shortfalls).
    """
    if label_type not in LABEL_TYPES:
        raise ValueError(f"`label_type` must be one of {sorted(LABEL_TYPES)}; got {label_type!r}.")
    if not isinstance(corpus, SpeechCorpus):
        raise TypeError(f"`corpus` must be a SpeechCorpus; got {type(corpus).__name__}.")
    tier, col, default_constraint, default_window = LABEL_TYPES[label_type]
    if constraint == "default":
        constraint = default_constraint
    if constraint not in _CONSTRAINT_KEY and constraint not in _PREFER:
        raise ValueError(f"`constraint` must be one of {list(_CONSTRAINT_KEY) + list(_PREFER)} "
                         f"or 'default'; got {constraint!r}.")
    explicit = classes is not None
    if explicit:
        classes = [str(c) for c in classes]
        n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"`n_classes` (P) must be >= 2; got {n_classes}.")
    if n_examples < 2:
        raise ValueError(f"`n_examples` (M) must be >= 2; got {n_examples}.")
    window = default_window if window is None else float(window)
    jitter = (0.1 if tier == "word" else 0.0) if jitter is None else float(jitter)
    if window <= 0 or jitter < 0:
        raise ValueError(f"`window` must be > 0 and `jitter` >= 0; got {window}, {jitter}.")
    rng = _rng_from_key(key)

    units = corpus.table(tier)
    units = units.assign(_row=np.arange(len(units)))
    skipped_rows = {}
    if tier == "word" and content_only:
        keep = units["pos"].isin(CONTENT_POS)
        skipped_rows["function_words"] = int((~keep).sum())
        units = units[keep]
    if tier != "word":  # attach the containing word for constraints and alignments
        w = corpus.words[["utt", "word_index", "word"]]
        units = units.merge(w, on=["utt", "word_index"], how="left")
        units["word"] = units["word"].fillna("")
    if split is not None:
        units = units[units["split"] == split]
    if len(units) == 0:
        raise ValueError(f"the corpus has no {tier} units for label type {label_type!r}"
                         + (f" in split {split!r}" if split else "") + ".")
    units = units[units[col].astype(str) != ""] if label_type == "pos" else units
    ckey = _CONSTRAINT_KEY.get(constraint)
    spread = _PREFER.get(constraint)
    counts = (units.groupby(col)[ckey].nunique() if ckey else units.groupby(col).size())
    counts.index = counts.index.astype(str)
    short = {c: int(k) for c, k in counts.items() if k < n_examples}
    eligible = sorted(c for c, k in counts.items() if k >= n_examples)
    what = f"distinct {ckey}s" if ckey else "examples"
    summary = {"label_type": label_type, "constraint": constraint, "P": n_classes, "M": n_examples,
               "window_s": window, "jitter_s": jitter, "n_units": int(len(units)),
               "n_classes_available": int(len(counts)), "n_classes_eligible": len(eligible),
               "skipped_classes": {c: f"only {k} {what} < M={n_examples}"
                                   for c, k in sorted(short.items())},
               "skipped_rows": skipped_rows}
    if explicit:
        missing = [c for c in classes if c not in counts.index]
        lacking = [c for c in classes if c in short]
        if missing or lacking:
            raise ValueError(
                f"sample_manifolds({label_type!r}): requested classes cannot supply "
                f"M={n_examples} examples under constraint {constraint!r}: "
                + ", ".join([f"{c!r} not in corpus" for c in missing]
                            + [f"{c!r} has only {short[c]} {what}" for c in lacking])
                + ". Lower n_examples, relax `constraint`, or use a larger corpus."
            )
        chosen = classes
    else:
        if len(eligible) < n_classes:
            best = ", ".join(f"{c}: {k}" for c, k in counts.sort_values(ascending=False)
                             .head(5).items())
            raise ValueError(
                f"sample_manifolds({label_type!r}): only {len(eligible)} of {len(counts)} classes "
                f"have M={n_examples} {what} (constraint {constraint!r}) but P={n_classes} were "
                f"asked for (largest: {best}). Lower n_classes/n_examples, relax `constraint`, "
                "or use a larger corpus; no partial set is returned."
            )
        pick = rng.choice(len(eligible), size=n_classes, replace=False)
        chosen = sorted(eligible[i] for i in pick)

    rows = []
    key_col = units[col].astype(str)
    for p, cls in enumerate(chosen):
        g = units[key_col == cls]
        if ckey:  # one random unit per constraint key, then M random keys
            one = g.iloc[rng.permutation(len(g))].drop_duplicates(ckey).sort_values(ckey)
            sel = one.iloc[np.sort(rng.choice(len(one), size=n_examples, replace=False))]
        elif spread:  # round robin: the r-th pick of every key before any (r+1)-th
            sh = g.iloc[rng.permutation(len(g))]
            rank = sh.groupby(spread).cumcount().to_numpy()
            sel = sh.iloc[np.argsort(rank, kind="stable")[:n_examples]]
            sel = sel.sort_values([spread, "utt"], kind="stable")
        else:
            sel = g.iloc[np.sort(rng.choice(len(g), size=n_examples, replace=False))]
        sel = sel.assign(manifold=p, example=np.arange(n_examples), **{"class": cls})
        rows.append(sel)
    tab = pd.concat(rows, ignore_index=True)
    n = int(round(window * corpus.sample_rate))
    shift = np.round(rng.uniform(-jitter, jitter, len(tab)) * corpus.sample_rate).astype(np.int64)
    centre = ((tab["start"].to_numpy() + tab["end"].to_numpy()) // 2).astype(np.int64) + shift
    audio = corpus.windows(tab["utt"].to_numpy(), centre, n)
    tab["win_start"] = centre - n // 2
    tab["target_start"] = tab["start"] - tab["win_start"]
    tab["target_end"] = tab["end"] - tab["win_start"]
    front = ["manifold", "example", "class"]
    tab = tab[front + [c for c in tab.columns if c not in front and c != "_row"]]
    return ManifoldSet(audio.reshape(n_classes, n_examples, n), list(chosen), label_type, tab,
                       summary, corpus, corpus.sample_rate)
