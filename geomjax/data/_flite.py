"""A held-out voice domain synthesised with flite (when the ``flite`` program is installed).

flite's voices (kal16, awb, rms, slt) are built differently from espeak-ng's formant voices, so a
model trained on the espeak-ng corpus can be tested on unseen voices. The corpus has the same
tables as :func:`synthesize_corpus`; the sentences, POS labels and channel conditions come from
the same generators.

Alignments come from ``flite -psdur`` (each phone with its end time; ``pau`` is silence).
Word boundaries are found by splitting the sentence's phone sequence with each word's own phone
count (one flite run per voice over the comma-separated vocabulary); an utterance whose
counts do not add up is skipped and
listed in ``info["skipped"]``. Phones are ARPAbet, mapped to IPA (General American) so that they
share the espeak corpus's symbols.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from geomjax.data._corpus import (
    CORPUS_SIZES,
    CORPUS_VERSION,
    SAMPLE_RATE,
    SpeechCorpus,
    _apply_channels,
    _cached,
    _channel_plan,
    _finish,
    _to16k,
)
from geomjax.data._text import SentenceMaker

__all__ = ["flite_available", "flite_voices", "synthesize_flite_corpus", "ARPABET_TO_IPA"]

#: voice -> (gender, accent label shared with the espeak corpus)
_VOICES = {"kal16": ("male", "en-us"), "awb": ("male", "en-gb-scotland"),
           "rms": ("male", "en-us"), "slt": ("female", "en-us")}

ARPABET_TO_IPA = {
    "aa": "ɑː", "ae": "æ", "ah": "ʌ", "ao": "ɔː", "aw": "aʊ", "ax": "ə", "ay": "aɪ", "b": "b",
    "ch": "tʃ", "d": "d", "dh": "ð", "eh": "ɛ", "er": "ɚ", "ey": "eɪ", "f": "f", "g": "ɡ",
    "hh": "h", "ih": "ɪ", "iy": "i", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n",
    "ng": "ŋ", "ow": "oʊ", "oy": "ɔɪ", "p": "p", "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t",
    "th": "θ", "uh": "ʊ", "uw": "uː", "v": "v", "w": "w", "y": "j", "z": "z", "zh": "ʒ",
}


@functools.lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """The flite voices of :data:`_VOICES` this machine has (empty without flite)."""
    exe = shutil.which("flite")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=20).stdout
    except (subprocess.SubprocessError, OSError):
        return ()
    have = set(out.replace(":", " ").split())
    return tuple(v for v in _VOICES if v in have)


def flite_available() -> bool:
    """True when the ``flite`` program and at least one of its 16 kHz voices are installed."""
    return bool(flite_voices())


def _run(text: str, voice: str, stretch: float, f0: float, wav: Path):
    cmd = ["flite", "-voice", voice, "-t", text, "-psdur", "-o", str(wav),
           "--setf", f"duration_stretch={stretch:.3f}", "--setf", f"int_f0_target_mean={f0:.1f}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    phones = []
    for tok in out.split():
        name, _, end = tok.rpartition(":")
        phones.append((name, float(end)))
    return phones


def _phone_counts(words, voice: str, tmp: Path) -> dict[str, int]:
    """Phones per word for ``voice``: one flite run over the comma-separated word list (a pause
    follows each comma); words are run one by one if the pauses do not line up."""
    words = sorted(set(words))
    groups, cur = [], 0
    for name, _ in _run(", ".join(words) + ".", voice, 1.0, 100.0, tmp / "lex.wav"):
        if name == "pau":
            if cur:
                groups.append(cur)
            cur = 0
        else:
            cur += 1
    if cur:
        groups.append(cur)
    if len(groups) == len(words):
        return dict(zip(words, groups))
    return {w: sum(1 for p, _ in _run(w, voice, 1.0, 100.0, tmp / "w.wav") if p != "pau")
            for w in words}


def _speakers(rng: np.random.Generator, n: int, voices) -> pd.DataFrame:
    rows = []
    for i in range(n):
        v = voices[int(rng.integers(len(voices)))]
        gender, accent = _VOICES[v]
        f0 = float(rng.uniform(85, 130) if gender == "male" else rng.uniform(160, 220))
        u = rng.random()
        rows.append({"speaker": f"flite{i:04d}", "gender": gender, "accent": accent,
                     "variant": v, "voice": f"flite-{v}", "pitch": round(f0, 1),
                     "pitch_range": 0, "rate": round(float(rng.uniform(0.85, 1.2)), 3),
                     "word_gap": 0, "split": "train" if u < 0.8 else ("valid" if u < 0.9 else
                                                                      "test"),
                     "source": "flite"})
    return pd.DataFrame(rows)


def _build(cfg: dict, progress: bool) -> SpeechCorpus:
    t0 = time.perf_counter()
    ss = np.random.SeedSequence([cfg["seed"], 1])
    r_spk, r_text, r_chan = (np.random.default_rng(s) for s in ss.spawn(3))
    spk = _speakers(r_spk, cfg["n_speakers"], cfg["voices"])
    maker = SentenceMaker(r_text, cfg["n_content_words"])
    jobs = [(s, *maker.sentence()) for s in range(len(spk))
            for _ in range(cfg["sentences_per_speaker"])]
    clean, utt_rows, word_rows, phone_rows, char_rows, skipped = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        vocab = sorted({w for _, ws, _ in jobs for w in ws})
        lex = {v: _phone_counts(vocab, v, tmp) for v in sorted(set(spk["variant"]))}
        for s, words, tags in tqdm(jobs, desc="flite", disable=not progress, leave=False):
            sp = spk.iloc[s]
            text = " ".join(words)
            phones = _run(text, sp.variant, sp.rate, sp.pitch, tmp / "u.wav")
            y16, sr = sf.read(tmp / "u.wav", dtype="int16")
            y = _to16k(y16, sr)
            # phone spans from end times; pau is silence between words
            spans, prev = [], 0.0
            for name, end in phones:
                if name != "pau":
                    spans.append((name, prev, end))
                prev = end
            counts = [lex[sp.variant][w] for w in words]
            if sum(counts) != len(spans) or min(counts) == 0:
                skipped.append(f"{sp.speaker}: {text!r}: {len(spans)} phones, word counts "
                               f"{counts}")
                continue
            k = len(utt_rows)

            def at(t, n=y.size):
                return min(int(round(t * SAMPLE_RATE)), n)

            pos = 0
            for wi, (word, tag, c) in enumerate(zip(words, tags, counts)):
                ph = spans[pos: pos + c]
                pos += c
                ws, we = at(ph[0][1]), at(ph[-1][2])
                word_rows.append((k, wi, word, tag, ws, we))
                for j, ch_ in enumerate(word):
                    char_rows.append((k, wi, ch_, ws + (we - ws) * j // len(word),
                                      ws + (we - ws) * (j + 1) // len(word)))
                for name, a, b in ph:
                    phone_rows.append((k, wi, ARPABET_TO_IPA.get(name, name), at(a), at(b)))
            utt_rows.append({"utt": k, "n_samples": y.size, "text": text,
                             "speaker": sp.speaker, "gender": sp.gender, "accent": sp.accent,
                             "voice": sp.voice, "split": sp.split, "source": "flite"})
            clean.append(y)
    labels, _ = _channel_plan(r_chan, len(clean), cfg["channels"])
    audio_list, snr = _apply_channels(clean, labels, cfg["seed"] + 1_000_003, progress)
    utts = pd.DataFrame(utt_rows)
    utts["channel"], utts["snr_db"] = labels, snr
    sizes = np.asarray([a.size for a in audio_list], np.int64)
    utts["offset"] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    audio = np.concatenate(audio_list).astype(np.float32)
    words_t = pd.DataFrame(word_rows, columns=["utt", "word_index", "word", "pos", "start", "end"])
    phones_t = pd.DataFrame(phone_rows, columns=["utt", "word_index", "phone", "start", "end"])
    phones_t.insert(1, "phone_index", phones_t.groupby("utt").cumcount())
    chars_t = pd.DataFrame(char_rows, columns=["utt", "word_index", "char", "start", "end"])
    info = {**cfg, "source": "flite", "skipped": skipped,
            "synthesis_s": round(time.perf_counter() - t0, 3)}
    return _finish(audio, utts, words_t, phones_t, chars_t, spk, info)


def synthesize_flite_corpus(size: str = "tiny", seed: int = 0, cache_dir=None,
                            channels="mixed", voices=None,
                            progress: bool | None = None) -> SpeechCorpus:
    """Synthesise the held-out flite voice corpus (same sizes, sentences and tables as
    :func:`synthesize_corpus`; about 0.1 s per utterance, one flite process each).

    Args:
        size, seed, cache_dir, channels, progress: as for :func:`synthesize_corpus`.
        voices: flite voices to draw speakers from (default: all of kal16, awb, rms, slt that
            are installed).

    Raises:
        RuntimeError: flite is not installed (Debian package ``flite``).
    """
    have = flite_voices()
    if not have:
        raise RuntimeError("flite is not installed (Debian package `flite`); the held-out flite "
                           "voice domain is unavailable.")
    voices = list(have if voices is None else voices)
    bad = [v for v in voices if v not in have]
    if bad or not voices:
        raise ValueError(f"`voices` must be a non-empty subset of {list(have)}; got {voices}.")
    if size not in CORPUS_SIZES:
        raise ValueError(f"`size` must be one of {list(CORPUS_SIZES)}; got {size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative int; got {seed!r}.")
    from geomjax.data._channels import available_channels

    chan = channels if isinstance(channels, (str, type(None))) else (
        dict(channels) if isinstance(channels, dict) else list(channels))
    cfg = {"generator": "flite", "version": CORPUS_VERSION, "size": size, "seed": int(seed),
           **CORPUS_SIZES[size], "channels": chan if chan is not None else "mixed",
           "voices": voices, "available_channels": list(available_channels())}
    progress = size != "tiny" if progress is None else progress
    return _cached(cfg, _build, cache_dir, progress)
