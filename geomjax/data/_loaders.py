"""Real speech corpora through Hugging Face ``datasets`` (hub ids, local Parquet, local folders).

Every source becomes a ``datasets`` table whose audio column holds ``{"bytes", "path"}`` (the hub
schema with ``Audio(decode=False)``), and then goes through one path: the audio is decoded with
``soundfile`` (``datasets`` 5.x would need torchcodec), mixed to mono, resampled to 16 kHz with
soxr, and the labels and alignments are read into a :class:`SpeechCorpus`:

* hub ids (``"openslr/librispeech_asr"`` with a config and split) and local Parquet files or
  directories of them are read with ``datasets.load_dataset``;
* a local folder with ``metadata.csv`` (a ``file_name`` column plus any label columns) is turned
  into the same table; TIMIT-style ``.wrd`` / ``.phn`` files next to an audio file give its word
  and phone alignments.

Word/phone alignments are also read from hub-schema columns ``word_detail`` / ``phonetic_detail``
(``{"start": [...], "stop": [...], "utterance": [...]}`` in samples, as the TIMIT dataset has).
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
from tqdm.auto import tqdm

from geomjax.data._corpus import SAMPLE_RATE, SpeechCorpus, _finish

__all__ = ["load_corpus", "read_timit_alignment"]

log = logging.getLogger(__name__)

_TEXT = ("text", "sentence", "transcription", "transcript", "normalized_text")
_SPEAKER = ("speaker_id", "speaker", "client_id", "spk_id", "spk")
_GENDER = ("gender", "sex")
_ACCENT = ("accent", "accents", "dialect", "dialect_region", "locale")
_AUDIO_EXT = (".wav", ".flac", ".ogg", ".WAV", ".FLAC")


def read_timit_alignment(path) -> list[tuple[int, int, str]]:
    """Read a TIMIT ``.wrd``/``.phn`` file: lines ``start end label`` (samples at 16 kHz)."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise ValueError(f"{path}:{i + 1}: expected 'start end label', got {line!r}.")
        try:
            s, e = int(parts[0]), int(parts[1])
        except ValueError as err:
            raise ValueError(f"{path}:{i + 1}: start/end must be integers, got {line!r}.") from err
        out.append((s, e, " ".join(parts[2:])))
    return out


def _pick(cols, names, override):
    if override is not None:
        if override not in cols:
            raise ValueError(
                f"column {override!r} is not in the data set (columns: {sorted(cols)})."
            )
        return override
    return next((c for c in names if c in cols), None)


def _folder_dataset(root: Path):
    import datasets

    meta = root / "metadata.csv"
    df = pd.read_csv(meta, dtype=str, keep_default_na=False)
    if "file_name" not in df:
        raise ValueError(f"{meta} needs a 'file_name' column naming each audio file.")
    audio, wrd, phn = [], [], []
    for f in df["file_name"]:
        p = (root / f).resolve()
        audio.append({"bytes": None, "path": str(p)})
        w, ph = p.with_suffix(".wrd"), p.with_suffix(".phn")
        wrd.append(_detail(read_timit_alignment(w)) if w.is_file() else None)
        phn.append(_detail(read_timit_alignment(ph)) if ph.is_file() else None)
    df = df.drop(columns=["file_name"])
    data = {"audio": audio, **{c: df[c].tolist() for c in df.columns}}
    if any(x is not None for x in wrd):
        data["word_detail"] = wrd
    if any(x is not None for x in phn):
        data["phonetic_detail"] = phn
    return datasets.Dataset.from_dict(data)


def _detail(rows):
    return {"start": [r[0] for r in rows], "stop": [r[1] for r in rows],
            "utterance": [r[2] for r in rows]}


def _open(path, config, split, data_files, streaming, hf_cache_dir):
    import datasets

    p = Path(str(path))
    if p.is_dir() and (p / "metadata.csv").is_file():
        return _folder_dataset(p), str(p)
    if p.exists():
        files = [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob("*.parquet"))
        if not files:
            raise ValueError(f"`path` {p} holds no .parquet files and no metadata.csv.")
        ds = datasets.load_dataset("parquet", data_files=files, split="train",
                                   streaming=streaming, cache_dir=hf_cache_dir)
        return ds, str(p)
    ds = datasets.load_dataset(str(path), config, split=split, data_files=data_files,
                               streaming=streaming, cache_dir=hf_cache_dir)
    return ds, str(path)


def _decode(a) -> tuple[np.ndarray, int]:
    if isinstance(a, dict):
        src = io.BytesIO(a["bytes"]) if a.get("bytes") else a.get("path")
    else:
        src = a
    if src is None:
        raise ValueError("the audio entry has neither bytes nor a path")
    y, sr = sf.read(src, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if y.size == 0:
        raise ValueError("the audio is empty (0 samples)")
    if not np.all(np.isfinite(y)):
        raise ValueError("the audio contains NaN/inf samples")
    if sr != SAMPLE_RATE:
        y = soxr.resample(y, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return y, int(sr)


def load_corpus(path, config: str | None = None, split: str = "train", *,
                data_files=None, streaming: bool = False, max_utterances: int | None = None,
                audio_column: str = "audio", text_column: str | None = None,
                speaker_column: str | None = None, on_error: str = "raise",
                hf_cache_dir=None, progress: bool = True) -> SpeechCorpus:
    """Load a real speech corpus as a :class:`SpeechCorpus` (16 kHz float32 audio).

    Args:
        path: a hub id (e.g. ``"openslr/librispeech_asr"``), a local ``.parquet`` file, a
            directory of Parquet files, or a folder with ``metadata.csv`` and audio files.
        config, split, data_files, streaming: passed to ``datasets.load_dataset`` for hub ids
            (local sources are read whole; ``split`` is then recorded as the utterances' split).
        max_utterances: stop after this many decoded utterances.
        audio_column: the column holding ``{"bytes", "path"}`` audio entries.
        text_column, speaker_column: override the auto-detected columns.
        on_error: "raise" (default) stops at the first corrupt/empty audio file with a
            ``ValueError`` naming it; "skip" leaves it out and lists it in
            ``corpus.info["skipped"]``.
        hf_cache_dir: ``datasets`` cache directory.
        progress: show a progress bar.

    Returns:
        A :class:`SpeechCorpus`; ``words``/``phones``/``chars`` are filled where the source has
        alignments (empty otherwise). Labels absent from the source are empty strings.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip'; got {on_error!r}.")
    if max_utterances is not None and max_utterances < 1:
        raise ValueError(f"`max_utterances` must be >= 1; got {max_utterances}.")
    ds, source = _open(path, config, split, data_files, streaming, hf_cache_dir)
    names = ds.column_names
    if names is None:  # a streaming data set may not know its columns before the first row
        names = list(next(iter(ds)).keys())
    cols = set(names)
    if audio_column not in cols:
        raise ValueError(f"`audio_column` {audio_column!r} is not in the data set "
                         f"(columns: {sorted(cols)}).")
    try:
        import datasets

        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    except (ValueError, TypeError):  # already raw bytes/paths
        pass
    tcol = _pick(cols, _TEXT, text_column)
    scol = _pick(cols, _SPEAKER, speaker_column)
    gcol, acol = _pick(cols, _GENDER, None), _pick(cols, _ACCENT, None)

    audio_list, utt_rows, word_rows, phone_rows, char_rows, skipped = [], [], [], [], [], []
    total = None if streaming else len(ds)
    if max_utterances is not None and total is not None:
        total = min(total, max_utterances)
    bar = tqdm(total=total, desc="decode", disable=not progress, leave=False)
    for i, ex in enumerate(ds):
        if max_utterances is not None and len(utt_rows) >= max_utterances:
            break
        a = ex[audio_column]
        name = (a.get("path") if isinstance(a, dict) else None) or f"row {i}"
        try:
            y, sr = _decode(a)
        except (RuntimeError, ValueError, sf.LibsndfileError, OSError) as e:
            msg = f"{name}: {e}"
            if on_error == "raise":
                raise ValueError(f"load_corpus: cannot decode audio {msg}. Pass on_error='skip' "
                                 "to leave such files out (they are listed in info['skipped']).") \
                    from e
            skipped.append(msg)
            bar.update(1)
            continue
        k = len(utt_rows)
        scale = SAMPLE_RATE / sr

        def at(v, n=y.size, scale=scale):
            return int(min(max(round(v * scale), 0), n))

        for wi, (s, e, w) in enumerate(_triples(ex.get("word_detail"))):
            ws, we = at(s), at(e)
            if we <= ws:
                continue
            word_rows.append((k, wi, w, "", ws, we))
            for j, c in enumerate(w):
                char_rows.append((k, wi, c, ws + (we - ws) * j // len(w),
                                  ws + (we - ws) * (j + 1) // len(w)))
        wspans = [(r[1], r[4], r[5]) for r in word_rows if r[0] == k]
        for s, e, ph in _triples(ex.get("phonetic_detail")):
            ps, pe = at(s), at(e)
            if pe <= ps:
                continue
            mid = (ps + pe) // 2
            wi = next((w for w, a0, b0 in wspans if a0 <= mid < b0), -1)
            phone_rows.append((k, wi, ph, ps, pe))
        utt_rows.append({
            "utt": k, "n_samples": y.size, "text": str(ex.get(tcol, "")) if tcol else "",
            "speaker": str(ex.get(scol, "")) if scol else "",
            "gender": _norm_gender(ex.get(gcol)) if gcol else "",
            "accent": str(ex.get(acol, "")) if acol else "", "voice": "", "channel": "",
            "snr_db": math.nan, "split": split, "source": source,
        })
        audio_list.append(y)
        bar.update(1)
    bar.close()
    if not utt_rows:
        raise ValueError(f"load_corpus({source!r}): no utterance could be decoded"
                         + (f"; skipped: {skipped[:5]}" if skipped else " (the data set is empty)")
                         + ".")
    if skipped:
        log.warning("load_corpus(%s): skipped %d undecodable file(s)", source, len(skipped))
    utts = pd.DataFrame(utt_rows)
    sizes = utts["n_samples"].to_numpy(np.int64)
    utts["offset"] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    audio = np.concatenate(audio_list).astype(np.float32)
    words = pd.DataFrame(word_rows, columns=["utt", "word_index", "word", "pos", "start", "end"])
    phones = pd.DataFrame(phone_rows, columns=["utt", "word_index", "phone", "start", "end"])
    phones.insert(1, "phone_index", phones.groupby("utt").cumcount().astype(np.int64))
    chars = pd.DataFrame(char_rows, columns=["utt", "word_index", "char", "start", "end"])
    spk = (utts.groupby("speaker", sort=True)
           .agg(gender=("gender", "first"), accent=("accent", "first"),
                n_utterances=("utt", "size")).reset_index())
    info = {"source": source, "config": config, "split": split, "skipped": skipped,
            "n_decoded": len(utt_rows), "text_column": tcol, "speaker_column": scol}
    return _finish(audio, utts, words, phones, chars, spk, info)


def _triples(detail):
    if not detail:
        return []
    if isinstance(detail, dict):
        return list(zip(detail.get("start", []), detail.get("stop", []),
                        detail.get("utterance", [])))
    return [tuple(d) for d in detail]


def _norm_gender(g) -> str:
    s = str(g).strip().lower() if g is not None else ""
    return {"m": "male", "f": "female", "male": "male", "female": "female"}.get(s, s)
