"""Channel and noise conditions applied to 16 kHz float32 waveforms.

* ``clean``: unchanged.
* ``telephone``: 300-3400 Hz band (4th-order Butterworth, zero phase), 8 kHz, mu-law (G.711) and
  back to 16 kHz.
* ``gsm`` / ``amr-nb``: the telephone band, then the GSM 06.10 or AMR-NB (4.75 kbit/s) codec
  round trip through ``sox`` (when sox has the format; see :func:`available_channels`).
* ``reverb``: convolution with a seeded synthetic room impulse response (exponentially decaying
  noise, RT60 0.2-0.8 s, direct path first), level-matched to the input.
* ``noise``: pink or babble noise added at a set SNR (0/5/10/20 dB); babble is the sum of other
  utterances of the same corpus.

Every effect is a deterministic function of its inputs and a NumPy ``Generator``. Codecs run once
over all utterances of a condition concatenated (one sox process), then split back.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import scipy.signal as ss
import soxr

__all__ = [
    "CHANNELS",
    "SNRS_DB",
    "available_channels",
    "telephone_band",
    "mu_law",
    "codec_roundtrip",
    "reverb",
    "add_noise",
    "pink_noise",
]

SR = 16000
CHANNELS = ("clean", "telephone", "gsm", "amr-nb", "reverb", "noise")
SNRS_DB = (0, 5, 10, 20)
_SOX_FORMAT = {"gsm": ("gsm", []), "amr-nb": ("amr-nb", ["-C", "0"])}
# Decoder output lag in 8 kHz samples (measured by cross-correlation on speech with sox 14.4.2 /
# opencore-amr: AMR-NB's 5 ms look-ahead); removed so that alignments stay valid.
_CODEC_DELAY_8K = {"gsm": 0, "amr-nb": 40}


@functools.cache
def _sox_supports(fmt: str) -> bool:
    sox = shutil.which("sox")
    if sox is None:
        return False
    probe = np.zeros(1600, np.int16).tobytes()
    args = _SOX_FORMAT[fmt][1]
    try:
        enc = subprocess.run(
            [sox, "-D", "-q", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", "-",
             *args, "-t", _SOX_FORMAT[fmt][0], "-"],
            input=probe, capture_output=True, check=True, timeout=20).stdout
        subprocess.run([sox, "-D", "-q", "-t", _SOX_FORMAT[fmt][0], "-", "-t", "raw", "-e",
                        "signed", "-b", "16", "-"], input=enc, capture_output=True, check=True,
                       timeout=20)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def available_channels() -> tuple[str, ...]:
    """The channel conditions this machine can produce (codecs need sox with gsm/amr-nb)."""
    return tuple(c for c in CHANNELS if c not in _SOX_FORMAT or _sox_supports(c))


@functools.cache
def _band_sos():
    return ss.butter(4, [300.0, 3400.0], btype="bandpass", fs=SR, output="sos")


def telephone_band(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz band-pass at 16 kHz (zero phase, so alignments do not shift)."""
    if x.size < 64:
        return np.zeros_like(x)
    return ss.sosfiltfilt(_band_sos(), x).astype(np.float32)


def mu_law(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """G.711 mu-law companding to 8 bits and back (input in [-1, 1])."""
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1) / 2 * mu) / mu * 2 - 1  # 256 levels
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu).astype(np.float32)


def _to8k(x):
    return soxr.resample(x.astype(np.float32), SR, 8000, quality="HQ").astype(np.float32)


def _to16k(x, n):
    y = soxr.resample(x.astype(np.float32), 8000, SR, quality="HQ").astype(np.float32)
    out = np.zeros(n, np.float32)
    out[: min(n, y.size)] = y[:n]
    return out


def telephone(x: np.ndarray) -> np.ndarray:
    """Telephone band, 8 kHz, mu-law, back to 16 kHz."""
    return _to16k(mu_law(_to8k(telephone_band(x))), x.size)


def codec_roundtrip(signals: list[np.ndarray], codec: str) -> list[np.ndarray]:
    """Telephone band + ``codec`` ("gsm" or "amr-nb") round trip via one sox call for all inputs.

    Utterances are concatenated at 8 kHz with 0.1 s of silence between them so codec frames never
    straddle two utterances' speech; the codec's look-ahead delay is removed and each output
    keeps its input length, so alignments stay valid.
    """
    if codec not in _SOX_FORMAT:
        raise ValueError(f"`codec` must be one of {sorted(_SOX_FORMAT)}; got {codec!r}.")
    if not signals:
        return []
    if not _sox_supports(codec):
        raise RuntimeError(f"sox on this machine cannot write {codec}; install libsox-fmt-all.")
    gap = np.zeros(800, np.float32)
    parts, spans, pos = [], [], 0
    for x in signals:
        y = _to8k(telephone_band(x))
        parts += [y, gap]
        spans.append((pos, y.size))
        pos += y.size + gap.size
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()
    fmt, args = _SOX_FORMAT[codec]
    sox = shutil.which("sox")
    enc = subprocess.run([sox, "-D", "-q", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16",
                          "-c", "1", "-", *args, "-t", fmt, "-"], input=pcm, capture_output=True,
                         check=True).stdout
    dec = subprocess.run([sox, "-D", "-q", "-t", fmt, "-", "-t", "raw", "-e", "signed", "-b", "16",
                          "-"], input=enc, capture_output=True, check=True).stdout
    y = np.frombuffer(dec, "<i2").astype(np.float32) / 32768.0
    d = _CODEC_DELAY_8K[codec]
    y = np.concatenate([y, np.zeros(max(0, pos + d - y.size), np.float32)])
    return [_to16k(y[s + d: s + d + n], x.size) for (s, n), x in zip(spans, signals, strict=True)]


def room_impulse(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Synthetic RIR: unit direct path, then exponentially decaying Gaussian noise (-60 dB at
    ``rt60``) starting after a 2-8 ms pre-delay."""
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    pre = int(rng.uniform(0.002, 0.008) * SR)
    h = np.zeros(n + pre)
    h[0] = 1.0
    h[pre:] += 0.3 * tail
    return h


def reverb(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Convolve with a seeded RIR (RT60 ~ U(0.2, 0.8) s); returns (signal, rt60)."""
    rt60 = float(rng.uniform(0.2, 0.8))
    h = room_impulse(rng, rt60)
    y = ss.fftconvolve(x.astype(np.float64), h)[: x.size]
    rx, ry = np.sqrt(np.mean(x.astype(np.float64) ** 2)), np.sqrt(np.mean(y**2))
    if ry > 0:
        y *= rx / ry
    return y.astype(np.float32), rt60


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f noise by spectral shaping of white noise, unit RMS."""
    if n == 0:
        return np.zeros(0, np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x + g * noise`` with ``g`` set so that the speech-to-noise power ratio is ``snr_db``."""
    noise = np.resize(noise, x.size).astype(np.float64)
    px, pn = np.mean(x.astype(np.float64) ** 2), np.mean(noise**2)
    if px == 0 or pn == 0:
        return x.astype(np.float32)
    g = np.sqrt(px / (pn * 10 ** (snr_db / 10)))
    return (x + g * noise).astype(np.float32)
