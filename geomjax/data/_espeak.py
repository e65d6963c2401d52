"""espeak-ng through its C library (ctypes), with word and phoneme events as time alignments.

libespeak-ng (API revision 12) is driven in synchronous mode with phoneme events in IPA:
``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, PHONEME_EVENTS | PHONEME_IPA)``. The
synthesis callback receives int16 samples at the engine rate (22050 Hz) and an event list:
word events (type 1) locate each word in the text, phoneme events (type 7) carry the IPA phone
and its onset in samples. A phone ends where the next one starts; the final empty phoneme event
marks the end of speech.

The library keeps global state, so a single process-wide engine serialises every call with a lock
and sets every voice parameter before each utterance (the output is then a pure function of text,
voice and parameters).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ESPEAK_ACCENTS",
    "EspeakUnavailableError",
    "espeak_available",
    "espeak_variants",
    "espeak_synthesize",
    "espeak_phonemes",
    "Utterance",
    "synthesize_batch",
]

#: The eight English accents ("dialects") used for speakers; ``en`` is British English
#: (``espeak_SetVoiceByName`` rejects the name ``en-gb``).
ESPEAK_ACCENTS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)

# Variants that are not plausible human voices (whisper, robots, effects) are left out.
_EXCLUDED_VARIANTS = re.compile(
    r"^(whisper.*|Demonic|croak|robosoft.*|UniRobot|anikaRobot|RicishayMax.*|Mr serious|Storm|"
    r"Tweaky|fast|zac)$"
)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x1
_INIT_PHONEME_IPA = 0x2
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_EV_WORD, _EV_PHONEME = 1, 7
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE, _P_WORDGAP = 1, 2, 3, 4, 7


class EspeakUnavailableError(RuntimeError):
    """libespeak-ng could not be loaded (install the Debian packages espeak-ng, libespeak-ng1)."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Utterance:
    """One synthesised utterance at the engine rate.

    Attributes:
        audio: int16 waveform, shape ``(n_samples,)``.
        sample_rate: engine rate in Hz (22050 for espeak-ng).
        words: ``(char_start, char_length, first_phone_index)`` per word, char offsets 0-based.
        phones: ``(ipa, onset_sample, end_sample, char_start)`` per phone, in order; a phone ends
            at the next phone's onset or at the pause/end mark that follows it.
        speech_end: sample where the last phone ends.
    """

    audio: np.ndarray
    sample_rate: int
    words: list[tuple[int, int, int]]
    phones: list[tuple[str, int, int, int]]
    speech_end: int


class _Engine:
    def __init__(self):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise EspeakUnavailableError(
                f"could not load libespeak-ng ({e}); install the Debian packages espeak-ng and "
                "libespeak-ng1 (`bash scripts/setup.sh` does this)."
            ) from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                              ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
        )
        if self.sample_rate <= 0:
            raise EspeakUnavailableError("espeak_Initialize failed (espeak-ng-data missing?).")
        self.lib = lib
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._cb = _Callback(self._on_audio)  # keep a reference: the C side holds the pointer
        lib.espeak_SetSynthCallback(self._cb)

    def _on_audio(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            ev = events[i]
            if ev.type == _EV_PHONEME:
                self._events.append((ev.type, ev.text_position, ev.length, ev.sample,
                                     ev.id.string.decode("utf-8", "replace")))
            elif ev.type == _EV_WORD:
                self._events.append((ev.type, ev.text_position, ev.length, ev.sample, ""))
            i += 1
        return 0

    def set_voice(self, voice: str, rate: int, pitch: int, pitch_range: int, word_gap: int):
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"`voice`: espeak-ng does not know the voice {voice!r}.")
        for p, v in ((_P_RATE, rate), (_P_VOLUME, 100), (_P_PITCH, pitch), (_P_RANGE, pitch_range),
                     (_P_WORDGAP, word_gap)):
            self.lib.espeak_SetParameter(p, int(v), 0)

    def synth(self, text: str) -> tuple[np.ndarray, list]:
        self._chunks, self._events = [], []
        b = text.encode("utf-8")
        err = self.lib.espeak_Synth(b, len(b) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE,
                                    None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err} for text {text!r}.")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.int16, copy=False), self._events

    def phonemes(self, text: str) -> str:
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        out = []
        while ptr.value:
            # phonememode bit 1: IPA; bits 8+: separator char between phonemes (none)
            res = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, 0x02)
            if res is None:
                break
            out.append(res.decode("utf-8", "replace"))
        return " ".join(out)


@functools.lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def espeak_available() -> bool:
    """True when libespeak-ng loads and initialises."""
    try:
        _engine()
    except (EspeakUnavailableError, OSError):
        return False
    return True


def _data_dir() -> Path | None:
    for d in (os.environ.get("ESPEAK_DATA_PATH"), "/usr/lib/x86_64-linux-gnu/espeak-ng-data",
              "/usr/lib/aarch64-linux-gnu/espeak-ng-data", "/usr/share/espeak-ng-data",
              "/usr/local/share/espeak-ng-data"):
        if d and (Path(d) / "voices" / "!v").is_dir():
            return Path(d)
    return None


@functools.lru_cache(maxsize=1)
def espeak_variants() -> tuple[tuple[str, str], ...]:
    """Installed voice variants usable as human speakers, as sorted ``(name, gender)`` pairs.

    Gender comes from the variant file's ``gender`` line; variants without one are called female
    when their base pitch is at least 130 Hz, male otherwise (espeak's default voice is male).
    """
    d = _data_dir()
    if d is None:
        return ()
    out = []
    for f in sorted((d / "voices" / "!v").iterdir()):
        if not f.is_file() or " " in f.name or _EXCLUDED_VARIANTS.match(f.name):
            continue
        gender, pitch = None, None
        for line in f.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "gender":
                gender = parts[1].lower()
            elif len(parts) >= 2 and parts[0] == "pitch":
                try:
                    pitch = float(parts[1])
                except ValueError:
                    pass
        if gender not in ("male", "female"):
            gender = "female" if (pitch is not None and pitch >= 130) else "male"
        out.append((f.name, gender))
    return tuple(out)


def espeak_synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
                      pitch_range: int = 50, word_gap: int = 0) -> Utterance:
    """Synthesise ``text`` with espeak-ng and return audio plus word/phone alignments.

    Args:
        text: the text (UTF-8). Word events index into it.
        voice: espeak voice name, e.g. ``"en-us+f3"`` (accent ``+`` variant).
        rate: speaking rate in words per minute (80-450).
        pitch: base pitch 0-99 (50 = the voice's default).
        pitch_range: pitch range 0-99 (50 = default).
        word_gap: extra pause between words in units of 10 ms.

    Returns:
        An :class:`Utterance` at the engine's sample rate.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"`text` must be a non-empty string; got {text!r}.")
    eng = _engine()
    with eng.lock:
        eng.set_voice(voice, rate, pitch, pitch_range, word_gap)
        audio, events = eng.synth(text)
    words: list[tuple[int, int, int]] = []
    marks: list[tuple[str, int, int]] = []  # phones and pause marks (empty name), in order
    for typ, pos, length, sample, name in events:
        if typ == _EV_WORD:
            if length <= 0 or pos < 1:  # espeak-ng 1.51 may end with an empty word event
                continue
            words.append((pos - 1, length, sum(1 for m in marks if m[0])))
        else:
            marks.append((name, min(max(sample, 0), len(audio)), pos - 1))
    phones: list[tuple[str, int, int, int]] = []
    for i, (name, onset, cpos) in enumerate(marks):
        if name:
            end = marks[i + 1][1] if i + 1 < len(marks) else len(audio)
            phones.append((name, onset, max(end, onset), cpos))
    speech_end = phones[-1][2] if phones else 0
    return Utterance(audio, eng.sample_rate, words, phones, speech_end)


def espeak_phonemes(text: str, voice: str = "en-us") -> str:
    """espeak-ng's own IPA transcription of ``text`` (``espeak_TextToPhonemes``), stress marks
    included, words separated by spaces."""
    eng = _engine()
    with eng.lock:
        if eng.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"`voice`: espeak-ng does not know the voice {voice!r}.")
        return eng.phonemes(text)


def synthesize_batch(jobs, progress: bool = False, chunk: int = 100, desc: str = "espeak-ng"):
    """Synthesise ``jobs`` (tuples of :func:`espeak_synthesize` arguments) in order, in a fresh
    worker process.

    libespeak-ng carries state between utterances (waveform phase, pitch smoothing, ``rand``),
    so its output depends on what the process synthesised before. Running a whole batch in a
    newly started interpreter (``python -m geomjax.data._espeak --worker``, which also works from
    scripts without a ``__main__`` guard) makes the result a pure function of ``jobs``: the same
    jobs give bit-identical audio and events in any process, any number of times.
    """
    import pickle
    import subprocess
    import sys
    import tempfile

    from tqdm.auto import tqdm

    jobs = [tuple(j) for j in jobs]
    if not jobs:
        return []
    out: list[Utterance] = []
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "geomjax.data._espeak", "--worker",
                                 str(int(chunk))], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err)
        try:
            pickle.dump(jobs, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.close()
            with tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False) as bar:
                while len(out) < len(jobs):
                    try:
                        res = pickle.load(proc.stdout)  # our own worker's output
                    except EOFError:
                        break
                    out.extend(res)
                    bar.update(len(res))
        finally:
            if len(out) < len(jobs) and proc.poll() is None:
                proc.kill()  # we stopped reading: never leave the worker blocked on its pipe
            proc.stdout.close()
            rc = proc.wait()
        if rc != 0 or len(out) != len(jobs):
            err.seek(0)
            msg = err.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"the espeak-ng worker failed (exit {rc}, {len(out)} of "
                               f"{len(jobs)} utterances):\n{msg}")
    return out


def _worker_main(chunk: int) -> None:
    import pickle
    import sys

    # pickle results as geomjax.data._espeak.Utterance, not __main__.Utterance
    from geomjax.data._espeak import espeak_synthesize

    res_out = os.fdopen(os.dup(1), "wb")  # results go to the real stdout ...
    os.dup2(2, 1)  # ... anything the library prints goes to stderr
    jobs = pickle.load(sys.stdin.buffer)
    for i in range(0, len(jobs), chunk):
        pickle.dump([espeak_synthesize(*j) for j in jobs[i: i + chunk]], res_out,
                    protocol=pickle.HIGHEST_PROTOCOL)
        res_out.flush()
    res_out.close()


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        _worker_main(int(sys.argv[2]) if len(sys.argv) > 2 else 100)
