"""The speech corpus type and the seeded espeak-ng corpus synthesiser.

A :class:`SpeechCorpus` holds every utterance's 16 kHz float32 audio (one flat array plus offsets)
and tidy pandas tables: utterances (text, speaker, gender, accent, channel, split), words (word,
POS, sample span), phones (IPA phone, sample span, word index) and characters (letter, span).
Label columns (speaker, gender, accent, channel, split) are repeated on every table so that any
tier can be grouped by any label without joins.

:func:`synthesize_corpus` builds one from a seed: speakers are (accent, voice variant, pitch,
range, rate, word gap) tuples, sentences come from POS templates, the audio comes from espeak-ng
with its word/phoneme events as alignments, and each utterance passes through a channel condition.
The same seed gives bit-identical audio and tables. With ``cache_dir`` the corpus is stored on
disk with a manifest (sizes and SHA-256 of every file) and rebuilt when a file is missing or
does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soxr
from tqdm.auto import tqdm

from geomjax.data import _channels as ch
from geomjax.data._espeak import ESPEAK_ACCENTS, espeak_variants, synthesize_batch
from geomjax.data._text import SentenceMaker

__all__ = [
    "SpeechCorpus",
    "synthesize_corpus",
    "CORPUS_SIZES",
    "CORPUS_VERSION",
    "LABEL_COLUMNS",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CORPUS_VERSION = "2"
LABEL_COLUMNS = ("speaker", "gender", "accent", "channel", "split")

#: Corpus sizes: speakers, sentences per speaker, content-word vocabulary.
CORPUS_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_speakers": 8, "sentences_per_speaker": 3, "n_content_words": 10},
    "small": {"n_speakers": 200, "sentences_per_speaker": 10, "n_content_words": 48},
    "medium": {"n_speakers": 500, "sentences_per_speaker": 12, "n_content_words": 200},
}

#: Default channel mix (probabilities); noise conditions draw pink/babble and an SNR uniformly.
DEFAULT_CHANNEL_MIX = {"clean": 0.4, "telephone": 0.1, "gsm": 0.08, "amr-nb": 0.07,
                       "reverb": 0.15, "noise": 0.2}


def default_cache_dir() -> Path:
    """``$GEOMJAX_CACHE_DIR`` or ``~/.cache/geomjax``."""
    return Path(os.environ.get("GEOMJAX_CACHE_DIR", Path.home() / ".cache" / "geomjax"))


def _rng_from_key(key) -> np.random.Generator:
    """A NumPy Generator derived from a JAX PRNG key (typed or raw) or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"`key` as an int seed must be >= 0; got {key}.")
        return np.random.default_rng(int(key))
    import jax

    try:
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        data = np.asarray(key)
    except (AttributeError, TypeError) as e:
        raise TypeError(f"`key` must be a jax.random.key / PRNGKey or an int; got "
                        f"{type(key).__name__}.") from e
    if not np.issubdtype(data.dtype, np.integer):
        raise TypeError(f"`key` must be a jax.random.key / PRNGKey or an int; got dtype "
                        f"{data.dtype}.")
    return np.random.default_rng(data.astype(np.uint64).ravel().tolist())


@dataclass
class SpeechCorpus:
    """Utterances with aligned labels.

    Attributes:
        audio: float32, all utterances concatenated, shape ``(total_samples,)`` at 16 kHz.
        utterances: one row per utterance: ``utt`` (0..n-1), ``offset``, ``n_samples``, ``text``,
            ``speaker``, ``gender``, ``accent``, ``voice``, ``channel``, ``snr_db``, ``split``,
            ``source``.
        words: one row per word token: ``utt``, ``word_index``, ``word``, ``pos`` (Penn tag or
            empty where unknown), ``start``/``end`` (samples from the utterance start) and the
            label columns.
        phones: one row per phone: ``utt``, ``phone_index``, ``word_index`` (-1 outside words),
            ``phone`` (IPA for espeak, corpus symbols otherwise), ``start``/``end``, labels.
        chars: one row per letter of each word: ``utt``, ``word_index``, ``char``, ``start``,
            ``end`` (the word's span divided evenly over its letters), labels.
        speakers: one row per speaker with its voice settings and labels.
        info: how the corpus was made (size, seed, version, settings, skipped items).
        sample_rate: 16000.
    """

    audio: np.ndarray
    utterances: pd.DataFrame
    words: pd.DataFrame
    phones: pd.DataFrame
    chars: pd.DataFrame
    speakers: pd.DataFrame
    info: dict = field(default_factory=dict)
    sample_rate: int = SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.utterances)

    def __repr__(self) -> str:
        dur = float(self.utterances["n_samples"].sum()) / self.sample_rate
        return (f"SpeechCorpus({len(self)} utterances, {dur:.1f} s, {len(self.words)} words, "
                f"{len(self.phones)} phones, {self.utterances['speaker'].nunique()} speakers, "
                f"source={self.info.get('source', '?')!r})")

    @property
    def duration_s(self) -> float:
        return float(self.utterances["n_samples"].sum()) / self.sample_rate

    def utterance(self, i: int) -> np.ndarray:
        """Audio of utterance ``i``, float32 ``(n_samples,)``."""
        if not 0 <= int(i) < len(self):
            raise IndexError(f"`i`={i} is out of range for a corpus of {len(self)} utterances.")
        row = self.utterances.iloc[int(i)]
        return np.asarray(self.audio[int(row.offset): int(row.offset) + int(row.n_samples)])

    def table(self, tier: str) -> pd.DataFrame:
        """The table of ``tier``: "utterance", "word", "phone" or "char"."""
        tabs = {"utterance": self.utterances, "word": self.words, "phone": self.phones,
                "char": self.chars}
        if tier not in tabs:
            raise ValueError(f"`tier` must be one of {sorted(tabs)}; got {tier!r}.")
        return tabs[tier]

    def windows(self, utt, centre, n_samples: int) -> np.ndarray:
        """Fixed-length windows of ``n_samples`` centred on sample ``centre`` of utterance ``utt``.

        Args:
            utt: int array ``(n,)`` of utterance indices.
            centre: int array ``(n,)`` of centre samples (relative to each utterance start).
            n_samples: window length; parts outside the utterance are zeros.

        Returns:
            float32 ``(n, n_samples)``.
        """
        utt = np.asarray(utt, np.int64).reshape(-1)
        centre = np.asarray(centre, np.int64).reshape(-1)
        if utt.shape != centre.shape:
            raise ValueError(f"`utt` and `centre` must have the same length; got {utt.shape} "
                             f"and {centre.shape}.")
        if n_samples < 1:
            raise ValueError(f"`n_samples` must be >= 1; got {n_samples}.")
        off = self.utterances["offset"].to_numpy(np.int64)[utt]
        nn = self.utterances["n_samples"].to_numpy(np.int64)[utt]
        start = centre - n_samples // 2
        lo, hi = np.maximum(start, 0), np.minimum(start + n_samples, nn)
        out = np.zeros((utt.size, n_samples), np.float32)
        for i in range(utt.size):  # each window is one contiguous slice: copy, no gather
            if hi[i] > lo[i]:
                out[i, lo[i] - start[i]: hi[i] - start[i]] = self.audio[off[i] + lo[i]:
                                                                        off[i] + hi[i]]
        return out

    def word_segments(self, seed=0, duration: float = 2.0, jitter: float = 0.1,
                      content_only: bool = True, rows=None) -> tuple[np.ndarray, pd.DataFrame]:
        """2-s (``duration``) windows centred on word tokens (the word-CNN / speaker-CNN input).

        Args:
            seed: an int seed or a ``jax.random.key`` for the centre jitter (uniform in +/-
                ``jitter`` seconds).
            duration: window length in seconds.
            jitter: maximum centre shift in seconds.
            content_only: keep nouns, verbs, adjectives and adverbs only (and unknown-POS words
                of real corpora).
            rows: optional index labels of ``self.words`` to use instead.

        Returns:
            ``(audio, table)``: float32 ``(n, duration * 16000)`` and the word rows with
            ``win_start`` (window start in utterance samples) and ``target_start``/
            ``target_end`` (the word's span inside the window).
        """
        w = self.words if rows is None else self.words.loc[rows]
        if content_only and rows is None:
            w = w[w["pos"].isin(["NN", "VBD", "JJ", "RB", ""])]
        n = int(round(duration * self.sample_rate))
        rng = _rng_from_key(seed)
        shift = np.round(rng.uniform(-jitter, jitter, len(w)) * self.sample_rate).astype(np.int64)
        centre = ((w["start"].to_numpy() + w["end"].to_numpy()) // 2).astype(np.int64) + shift
        audio = self.windows(w["utt"].to_numpy(), centre, n)
        tab = w.copy()
        tab["win_start"] = centre - n // 2
        tab["target_start"] = tab["start"] - tab["win_start"]
        tab["target_end"] = tab["end"] - tab["win_start"]
        return audio, tab.reset_index(drop=True)

    def phone_inventory(self, n: int = 40) -> list[str]:
        """The ``n`` most frequent phones by total duration (ties broken by name)."""
        d = (self.phones.assign(dur=self.phones["end"] - self.phones["start"])
             .groupby("phone")["dur"].sum().reset_index())
        d = d.sort_values(["dur", "phone"], ascending=[False, True])
        return d["phone"].head(n).tolist()

    def frame_labels(self, utt: int, tier: str = "phone", classes=None, hop: int = 160,
                     win: int = 400, center: bool = True) -> np.ndarray:
        """Per-frame class index of one utterance (-1 where no unit of ``classes`` covers it).

        Frame ``t`` covers samples around ``t * hop`` (``center=True``, librosa's convention) or
        ``t * hop + win / 2`` (``center=False``); it takes the label of the unit spanning that
        sample. The number of frames matches the feature functions with the same hop/win/center.

        Args:
            utt: utterance index.
            tier: "phone", "word" or "char".
            classes: list of labels (index = class id); default: every label of the tier,
                sorted.
            hop, win, center: framing, as in the feature functions.
        """
        tab = self.table(tier)
        col = {"phone": "phone", "word": "word", "char": "char"}.get(tier)
        if col is None:
            raise ValueError(f"`tier` must be 'phone', 'word' or 'char'; got {tier!r}.")
        if classes is None:
            classes = sorted(tab[col].unique())
        lookup = {c: i for i, c in enumerate(classes)}
        n = int(self.utterances.iloc[int(utt)]["n_samples"])
        n_frames = 1 + n // hop if center else max(0, 1 + (n - win) // hop)
        pos = np.arange(n_frames) * hop + (0 if center else win // 2)
        out = np.full(n_frames, -1, np.int32)
        rows = tab[tab["utt"] == utt]
        for lab, s, e in zip(rows[col], rows["start"], rows["end"]):
            k = lookup.get(lab)
            if k is not None:
                out[(pos >= s) & (pos < e)] = k
        return out


# ----------------------------------------------------------------------------- synthesis


def _speaker_table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    variants = espeak_variants()
    if not variants:
        raise RuntimeError("no espeak-ng voice variants found (is espeak-ng-data installed?).")
    by_gender = {g: [v for v, gg in variants if gg == g] for g in ("female", "male")}
    rows = []
    for i in range(n):
        gender = ("female", "male")[int(rng.integers(2))]
        pool = by_gender[gender] or by_gender["male" if gender == "female" else "female"]
        variant = pool[int(rng.integers(len(pool)))]
        accent = ESPEAK_ACCENTS[int(rng.integers(len(ESPEAK_ACCENTS)))]
        u = rng.random()
        rows.append({
            "speaker": f"spk{i:04d}",
            "gender": gender,
            "accent": accent,
            "variant": variant,
            "voice": f"{accent}+{variant}",
            "pitch": int(rng.integers(30, 71)),
            "pitch_range": int(rng.integers(25, 81)),
            "rate": int(rng.integers(140, 211)),
            "word_gap": int(rng.integers(0, 3)),
            "split": "train" if u < 0.8 else ("valid" if u < 0.9 else "test"),
            "source": "espeak-ng",
        })
    return pd.DataFrame(rows)


def _to16k(x: np.ndarray, sr: int) -> np.ndarray:
    y = x.astype(np.float32) / 32768.0
    if sr == SAMPLE_RATE:
        return y
    return soxr.resample(y, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)


def _channel_plan(rng: np.random.Generator, n: int, channels) -> tuple[list[str], list[str]]:
    avail = ch.available_channels()
    if channels in (None, "mixed"):
        mix = {k: v for k, v in DEFAULT_CHANNEL_MIX.items() if k in avail}
    elif channels == "clean":
        mix = {"clean": 1.0}
    elif isinstance(channels, dict):
        mix = dict(channels)
    else:
        mix = {c: 1.0 for c in channels}
    bad = [c for c in mix if c not in ch.CHANNELS]
    if bad:
        raise ValueError(f"`channels` has unknown condition(s) {bad}; known: {list(ch.CHANNELS)}.")
    missing = [c for c in mix if c not in avail]
    if missing:
        raise ValueError(f"`channels`: this machine cannot make {missing} (sox lacks the codec); "
                         f"available: {list(avail)}.")
    names = list(mix)
    p = np.asarray([mix[k] for k in names], np.float64)
    if p.sum() <= 0 or (p < 0).any():
        raise ValueError(f"`channels` weights must be non-negative with a positive sum; got {mix}.")
    pick = rng.choice(len(names), size=n, p=p / p.sum())
    kinds = [names[i] for i in pick]
    noise = [("pink" if rng.random() < 0.5 else "babble", int(rng.choice(ch.SNRS_DB)))
             for _ in range(n)]
    labels, details = [], []
    for k, (nk, snr) in zip(kinds, noise):
        if k == "noise":
            labels.append(f"noise-{nk}-{snr}dB")
            details.append(f"{nk}:{snr}")
        else:
            labels.append(k)
            details.append("")
    return labels, details


def _apply_channels(clean: list[np.ndarray], labels: list[str], seed: int,
                    progress: bool) -> tuple[list[np.ndarray], list[float]]:
    out: list[np.ndarray] = [None] * len(clean)  # type: ignore[list-item]
    snr = [float("nan")] * len(clean)
    for codec in ("gsm", "amr-nb"):
        idx = [i for i, c in enumerate(labels) if c == codec]
        for i, y in zip(idx, ch.codec_roundtrip([clean[i] for i in idx], codec)):
            out[i] = y
    n = len(clean)
    for i in tqdm(range(n), desc="channels", disable=not progress, leave=False):
        c = labels[i]
        if out[i] is not None:
            continue
        rng = np.random.default_rng([seed, 7, i])  # per utterance: independent of order/size
        if c == "clean":
            out[i] = clean[i]
        elif c == "telephone":
            out[i] = ch.telephone(clean[i])
        elif c == "reverb":
            out[i], _ = ch.reverb(clean[i], rng)
        elif c.startswith("noise-"):
            _, kind, level = c.split("-")
            snr[i] = float(level[:-2])
            if kind == "pink":
                nz = ch.pink_noise(rng, clean[i].size)
            else:  # babble: four other utterances of the corpus, each at a random offset
                others = rng.choice(np.delete(np.arange(n), i), size=min(4, n - 1), replace=False)
                nz = np.zeros(clean[i].size, np.float64)
                for o in others:
                    src = np.resize(clean[o], clean[i].size)
                    nz += np.roll(src, int(rng.integers(max(1, src.size))))
            out[i] = ch.add_noise(clean[i], nz, snr[i])
        else:
            raise AssertionError(c)
    return out, snr


def _config(size: str, seed: int, channels) -> dict:
    if size not in CORPUS_SIZES:
        raise ValueError(f"`size` must be one of {list(CORPUS_SIZES)}; got {size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative int; got {seed!r}.")
    chan = channels if isinstance(channels, (str, type(None))) else (
        dict(channels) if isinstance(channels, dict) else list(channels))
    return {"generator": "espeak-ng", "version": CORPUS_VERSION, "size": size, "seed": int(seed),
            **CORPUS_SIZES[size], "channels": chan if chan is not None else "mixed",
            "accents": list(ESPEAK_ACCENTS), "variants": [v for v, _ in espeak_variants()],
            "available_channels": list(ch.available_channels())}


def _build(cfg: dict, progress: bool) -> SpeechCorpus:
    t0 = time.perf_counter()
    ss = np.random.SeedSequence(cfg["seed"])
    r_spk, r_text, r_chan = (np.random.default_rng(s) for s in ss.spawn(3))
    spk = _speaker_table(r_spk, cfg["n_speakers"])
    maker = SentenceMaker(r_text, cfg["n_content_words"])
    jobs = [(s, *maker.sentence()) for s in range(len(spk))
            for _ in range(cfg["sentences_per_speaker"])]
    clean, utt_rows, word_rows, phone_rows, char_rows = [], [], [], [], []
    skipped: list[str] = []
    utts_es = synthesize_batch(
        [(" ".join(w), spk.voice[s], int(spk.rate[s]), int(spk.pitch[s]),
          int(spk.pitch_range[s]), int(spk.word_gap[s])) for s, w, _ in jobs],
        progress=progress)
    for (s, words, tags), u in zip(jobs, utts_es):
        sp = spk.iloc[s]
        text = " ".join(words)
        if len(u.words) != len(words) or not u.phones:
            skipped.append(f"{sp.speaker}: {text!r} gave {len(u.words)} word events")
            continue
        scale = SAMPLE_RATE / u.sample_rate
        y = _to16k(u.audio, u.sample_rate)
        k = len(utt_rows)

        def at(v, n=y.size, scale=scale):
            return min(int(round(v * scale)), n)

        bounds = [w[2] for w in u.words] + [len(u.phones)]
        for wi, word in enumerate(words):
            ph = u.phones[bounds[wi]: bounds[wi + 1]]
            if not ph:
                continue
            ws, we = at(ph[0][1]), at(ph[-1][2])
            word_rows.append((k, wi, word, tags[wi], ws, we))
            for j, c in enumerate(word):
                cs = ws + (we - ws) * j // len(word)
                ce = ws + (we - ws) * (j + 1) // len(word)
                char_rows.append((k, wi, c, cs, ce))
            for p in ph:
                phone_rows.append((k, wi, p[0], at(p[1]), at(p[2])))
        utt_rows.append({"utt": k, "n_samples": y.size, "text": text, "speaker": sp.speaker,
                         "gender": sp.gender, "accent": sp.accent, "voice": sp.voice,
                         "split": sp.split, "source": "espeak-ng"})
        clean.append(y)
    labels, _ = _channel_plan(r_chan, len(clean), cfg["channels"])
    audio_list, snr = _apply_channels(clean, labels, cfg["seed"], progress)
    utts = pd.DataFrame(utt_rows)
    utts["channel"] = labels
    utts["snr_db"] = snr
    sizes = np.asarray([a.size for a in audio_list], np.int64)
    utts["offset"] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    audio = np.concatenate(audio_list).astype(np.float32) if audio_list else np.zeros(0, np.float32)
    words = pd.DataFrame(word_rows, columns=["utt", "word_index", "word", "pos", "start", "end"])
    phones = pd.DataFrame(phone_rows, columns=["utt", "word_index", "phone", "start", "end"])
    phones.insert(1, "phone_index", phones.groupby("utt").cumcount())
    chars = pd.DataFrame(char_rows, columns=["utt", "word_index", "char", "start", "end"])
    info = {**cfg, "source": "espeak-ng", "skipped": skipped,
            "synthesis_s": round(time.perf_counter() - t0, 3)}
    return _finish(audio, utts, words, phones, chars, spk, info)


def _finish(audio, utts, words, phones, chars, spk, info) -> SpeechCorpus:
    """Fix column order/dtypes and copy the label columns onto every tier."""
    utts = utts[["utt", "offset", "n_samples", "text", "speaker", "gender", "accent", "voice",
                 "channel", "snr_db", "split", "source"]].reset_index(drop=True)
    for c in ("utt", "offset", "n_samples"):
        utts[c] = utts[c].astype(np.int64)
    labels = utts[["utt", *LABEL_COLUMNS]]
    out = []
    for t in (words, phones, chars):
        t = t.copy()
        for c in ("utt", "start", "end", "word_index"):
            t[c] = t[c].astype(np.int64)
        out.append(t.merge(labels, on="utt", how="left").reset_index(drop=True))
    return SpeechCorpus(audio, utts, *out, spk.reset_index(drop=True), info)


# ----------------------------------------------------------------------------- cache

_FILES = ("audio.npy", "utterances.parquet", "words.parquet", "phones.parquet", "chars.parquet",
          "speakers.parquet")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _cache_key(cfg: dict) -> str:
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg['generator']}-{cfg['size']}-seed{cfg['seed']}-{digest}"


def save_corpus(corpus: SpeechCorpus, path) -> Path:
    """Write ``corpus`` to directory ``path`` atomically (temporary directory, then rename),
    with ``manifest.json`` listing each file's size and SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    try:
        np.save(tmp / "audio.npy", np.ascontiguousarray(corpus.audio, np.float32))
        for name, tab in (("utterances", corpus.utterances), ("words", corpus.words),
                          ("phones", corpus.phones), ("chars", corpus.chars),
                          ("speakers", corpus.speakers)):
            tab.to_parquet(tmp / f"{name}.parquet", index=False)
        files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)}
                 for f in _FILES}
        manifest = {"format": 1, "info": corpus.info, "sample_rate": corpus.sample_rate,
                    "files": files, "counts": {"utterances": len(corpus.utterances),
                                               "words": len(corpus.words),
                                               "phones": len(corpus.phones)}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_corpus_dir(path, verify: bool = True) -> SpeechCorpus:
    """Read a corpus written by :func:`save_corpus`; raises ``FileNotFoundError``/``ValueError``
    when the manifest or a file is missing or does not match it."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"no manifest.json in {path}.")
    manifest = json.loads(mpath.read_text())
    for f, meta in manifest["files"].items():
        p = path / f
        if not p.is_file():
            raise FileNotFoundError(f"corpus file {p} listed in the manifest is missing.")
        if p.stat().st_size != meta["bytes"] or (verify and _sha256(p) != meta["sha256"]):
            raise ValueError(f"corpus file {p} does not match its manifest (size or SHA-256).")
    audio = np.load(path / "audio.npy", mmap_mode="r")
    tabs = {n: pd.read_parquet(path / f"{n}.parquet")
            for n in ("utterances", "words", "phones", "chars", "speakers")}
    for t in ("words", "chars"):
        tabs[t] = tabs[t].fillna({"pos": ""}) if "pos" in tabs[t] else tabs[t]
    return SpeechCorpus(audio, tabs["utterances"], tabs["words"], tabs["phones"], tabs["chars"],
                        tabs["speakers"], manifest["info"], int(manifest["sample_rate"]))


def synthesize_corpus(size: str = "small", seed: int = 0, cache_dir=None, channels="mixed",
                      progress: bool | None = None) -> SpeechCorpus:
    """Synthesise (or load from cache) the seeded multi-speaker espeak-ng corpus.

    Args:
        size: "tiny" (8 speakers x 3 sentences, 10 content words; for tests), "small" (200
            speakers x 10 sentences, 48 content words: about 13k word tokens, default training)
            or "medium" (500 x 12, 200 content words).
        seed: corpus seed; the same seed gives bit-identical audio and tables.
        cache_dir: directory for the on-disk cache (see :func:`default_cache_dir`); ``None``
            builds in memory only. A cached corpus is reused when its manifest matches and
            rebuilt when a file is missing or corrupt.
        channels: "mixed" (default mix: clean 40 %, telephone, GSM, AMR-NB, reverb, noise),
            "clean", a list of conditions (equal weights) or a dict of weights. Conditions:
            clean, telephone, gsm, amr-nb, reverb, noise.
        progress: show progress bars (default: for sizes other than tiny).

    Returns:
        A :class:`SpeechCorpus`.
    """
    cfg = _config(size, seed, channels)
    progress = size != "tiny" if progress is None else progress
    return _cached(cfg, _build, cache_dir, progress)


def _cached(cfg: dict, build, cache_dir, progress: bool) -> SpeechCorpus:
    """``build(cfg, progress)``, stored under ``cache_dir`` keyed by ``cfg`` (or not at all)."""
    if cache_dir is None:
        return build(cfg, progress)
    path = Path(cache_dir) / _cache_key(cfg)
    if (path / "manifest.json").exists():
        try:
            return load_corpus_dir(path)
        except (FileNotFoundError, ValueError, OSError) as e:
            log.warning("rebuilding cached corpus %s: %s", path, e)
    corpus = build(cfg, progress)
    save_corpus(corpus, path)
    return load_corpus_dir(path, verify=False)
