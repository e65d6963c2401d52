"""Speech front ends in JAX: log-Mel, MFCC, the Deep Speech 2 spectrogram and a cochleagram.

All functions take waveforms of shape ``(..., n_samples)`` (16 kHz floats in [-1, 1]), follow the
input dtype, are jit-compiled per shape, stay differentiable with respect to the waveform, and
return time-major features ``(..., n_frames, n_features)``. Framing follows librosa's conventions
(``center=True`` pads ``n_fft // 2`` zeros on both sides; ``n_frames = 1 + n_samples // hop``), and
the filterbanks come from librosa (``librosa.filters.mel``), so the outputs agree with librosa
within floating-point error (the tests check this).

* :func:`log_mel` -- 23 Mel bands, 25 ms Hann window, 10 ms hop, ``log(S + offset)``;
  :func:`splice` stacks +/-5 frames (23 x 11 = 253 inputs of the phone MLP).
* :func:`mfcc` -- 40 cepstra of a 40-band log-Mel power spectrum (librosa ``mfcc`` with
  ``n_fft=512, win_length=400, hop_length=160``, dB scale with an 80 dB floor, orthonormal DCT-II).
* :func:`ds2_spectrogram` -- ``log1p(|STFT|)`` with a 20 ms Hamming window, 10 ms hop, 161 bins,
  optionally normalised per utterance (deepspeech.pytorch).
* :func:`cochleagram` -- ERB-spaced half-cosine filters applied in the FFT domain, Hilbert
  envelopes, power-law compression (0.3) and band-limited resampling of the envelopes to a fixed
  number of frames (the word CNN's input, after Kell et al. 2018 / pycochleagram).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._types import result_dtype

__all__ = [
    "stft_magnitude",
    "log_mel",
    "mfcc",
    "ds2_spectrogram",
    "cochleagram",
    "splice",
    "n_frames",
    "featurize",
    "erb_filters",
]

SR = 16000
_HI = jax.lax.Precision.HIGHEST


def _check_audio(audio, name="audio"):
    if isinstance(audio, (list, tuple)):
        audio = np.asarray(audio)
    if hasattr(audio, "detach") and hasattr(audio, "numpy"):
        audio = audio.detach().cpu().numpy()
    if not hasattr(audio, "dtype") or not hasattr(audio, "shape"):
        raise TypeError(
            f"`{name}` must be an array of waveform samples; got {type(audio).__name__}."
        )
    if jnp.issubdtype(audio.dtype, jnp.integer) or audio.dtype == bool:
        raise TypeError(
            f"`{name}` has dtype {audio.dtype}; pass floating-point samples in [-1, 1] "
            "(for int16 PCM divide by 32768)."
        )
    if audio.ndim < 1:
        raise ValueError(f"`{name}` must have shape (..., n_samples); got a scalar.")
    if audio.shape[-1] == 0:
        raise ValueError(f"`{name}` is empty (0 samples); nothing to featurise.")
    if not isinstance(audio, jax.core.Tracer) and not isinstance(audio, jax.Array):
        a = np.asarray(audio)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` contains NaN/inf samples; clean the audio first.")
    dt = result_dtype(audio)
    return jnp.asarray(audio, dt)


def n_frames(n_samples: int, hop: int = 160, win: int = 400, center: bool = True) -> int:
    """Frames produced for ``n_samples`` samples (librosa's convention)."""
    if center:
        return 1 + int(n_samples) // hop
    return max(0, 1 + (int(n_samples) - win) // hop)


@functools.cache
def _window(kind: str, win_length: int, n_fft: int) -> np.ndarray:
    import scipy.signal

    if kind == "hann":  # periodic, as librosa's default
        w = scipy.signal.get_window("hann", win_length, fftbins=True)
    elif kind == "hamming":  # symmetric, as deepspeech.pytorch passes scipy's hamming
        w = scipy.signal.windows.hamming(win_length, sym=True)
    else:
        raise ValueError(f"`window` must be 'hann' or 'hamming'; got {kind!r}.")
    lpad = (n_fft - win_length) // 2
    return np.pad(w, (lpad, n_fft - win_length - lpad))


def _frames(x, n_fft: int, hop: int, center: bool):
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = jnp.pad(x, pad)
    L = x.shape[-1]
    if L < n_fft:
        raise ValueError(
            f"`audio` has {L} samples, fewer than the {n_fft}-sample window with center=False; "
            "pass longer audio or center=True."
        )
    T = 1 + (L - n_fft) // hop
    idx = np.arange(T)[:, None] * hop + np.arange(n_fft)[None, :]
    return x[..., idx]  # (..., T, n_fft)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "win_length", "window", "center",
                                              "power"))
def _stft(x, n_fft, hop, win_length, window, center, power):
    w = jnp.asarray(_window(window, win_length, n_fft), x.dtype)
    spec = jnp.fft.rfft(_frames(x, n_fft, hop, center) * w, axis=-1)
    mag = jnp.abs(spec)
    return mag if power == 1 else mag**power


def stft_magnitude(audio, n_fft: int = 400, hop: int = 160, win_length: int | None = None,
                   window: str = "hann", center: bool = True, power: float = 1.0):
    """``|STFT|**power``, shape ``(..., n_frames, n_fft // 2 + 1)``."""
    x = _check_audio(audio)
    return _stft(x, int(n_fft), int(hop), int(win_length or n_fft), window, bool(center),
                 float(power))


@functools.cache
def _mel_matrix(n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T


def _mel_power(x, n_fft, hop, win_length, n_mels, fmin, fmax, center):
    p = _stft(x, n_fft, hop, win_length, "hann", center, 2.0)
    m = jnp.asarray(_mel_matrix(n_fft, n_mels, fmin, fmax), x.dtype)
    return jnp.matmul(p, m, precision=_HI)


@functools.partial(jax.jit, static_argnames=("n_mels", "n_fft", "hop", "win_length", "fmin",
                                              "fmax", "center", "log_offset"))
def _log_mel(x, n_mels, n_fft, hop, win_length, fmin, fmax, center, log_offset):
    return jnp.log(_mel_power(x, n_fft, hop, win_length, n_mels, fmin, fmax, center) + log_offset)


def log_mel(audio, n_mels: int = 23, n_fft: int = 400, hop: int = 160,
            win_length: int | None = None, fmin: float = 0.0, fmax: float | None = None,
            center: bool = True, log_offset: float = 1e-6):
    """Log Mel power spectrum ``log(mel(|STFT|^2) + log_offset)``.

    Defaults: 23 bands, 25 ms Hann window (400 samples), 10 ms hop (Nagamine et al. 2015).
    Equal to ``log(librosa.feature.melspectrogram(y, sr=16000, n_fft, hop_length, n_mels) +
    log_offset).T``.

    Args:
        audio: ``(..., n_samples)`` float waveform at 16 kHz.

    Returns:
        ``(..., n_frames, n_mels)``.
    """
    x = _check_audio(audio)
    return _log_mel(x, int(n_mels), int(n_fft), int(hop), int(win_length or n_fft), float(fmin),
                    None if fmax is None else float(fmax), bool(center), float(log_offset))


@functools.cache
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    import scipy.fft

    return scipy.fft.dct(np.eye(n_in), type=2, norm="ortho", axis=0)[:n_out].T  # (n_in, n_out)


@functools.partial(jax.jit, static_argnames=("n_mfcc", "n_mels", "n_fft", "hop", "win_length",
                                              "fmin", "fmax", "center", "top_db"))
def _mfcc(x, n_mfcc, n_mels, n_fft, hop, win_length, fmin, fmax, center, top_db):
    s = _mel_power(x, n_fft, hop, win_length, n_mels, fmin, fmax, center)
    db = 10.0 * jnp.log10(jnp.maximum(s, 1e-10))
    if top_db is not None:
        db = jnp.maximum(db, jnp.max(db, axis=(-2, -1), keepdims=True) - top_db)
    d = jnp.asarray(_dct_matrix(n_mels, n_mfcc), x.dtype)
    return jnp.matmul(db, d, precision=_HI)


def mfcc(audio, n_mfcc: int = 40, n_mels: int = 40, n_fft: int = 512, hop: int = 160,
         win_length: int = 400, fmin: float = 0.0, fmax: float | None = None,
         center: bool = True, top_db: float | None = 80.0):
    """Mel-frequency cepstral coefficients (librosa ``feature.mfcc`` semantics).

    ``DCT-II_ortho(max(dB(mel |STFT|^2), max_dB - top_db))[:n_mfcc]`` where the maximum is taken
    over each utterance (each leading index), as librosa takes it over the array it is given.

    Returns:
        ``(..., n_frames, n_mfcc)``.
    """
    x = _check_audio(audio)
    if n_mfcc > n_mels:
        raise ValueError(f"`n_mfcc` ({n_mfcc}) cannot exceed `n_mels` ({n_mels}).")
    return _mfcc(x, int(n_mfcc), int(n_mels), int(n_fft), int(hop), int(win_length), float(fmin),
                 None if fmax is None else float(fmax), bool(center),
                 None if top_db is None else float(top_db))


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "normalize", "center"))
def _ds2(x, n_fft, hop, normalize, center):
    s = jnp.log1p(_stft(x, n_fft, hop, n_fft, "hamming", center, 1.0))
    if normalize:
        mu = jnp.mean(s, axis=(-2, -1), keepdims=True)
        sd = jnp.std(s, axis=(-2, -1), keepdims=True, ddof=1)
        s = (s - mu) / jnp.where(sd > 0, sd, 1.0)
    return s


def ds2_spectrogram(audio, n_fft: int = 320, hop: int = 160, normalize: bool = False,
                    center: bool = True):
    """Deep Speech 2 input: ``log1p(|STFT|)`` with a 20 ms symmetric Hamming window, 10 ms hop.

    Args:
        audio: ``(..., n_samples)`` float waveform at 16 kHz.
        normalize: subtract the utterance mean and divide by its standard deviation (as
            deepspeech.pytorch does with ``normalize=True``).

    Returns:
        ``(..., n_frames, n_fft // 2 + 1)`` (161 bins by default).
    """
    x = _check_audio(audio)
    return _ds2(x, int(n_fft), int(hop), bool(normalize), bool(center))


def _erb(f):
    return 21.4 * np.log10(1 + 0.00437 * f)


def _erb_inv(e):
    return (10 ** (e / 21.4) - 1) / 0.00437


@functools.cache
def erb_filters(n_fft: int, n_channels: int = 256, fmin: float = 50.0,
                fmax: float = 8000.0) -> tuple[np.ndarray, np.ndarray]:
    """Half-cosine filters equally spaced on the ERB-number scale (pycochleagram's design).

    Filter ``k`` is ``cos(pi (e - e_k) / (2 d))`` for ``|e - e_k| < d`` where ``e`` is the
    ERB number of a frequency and ``d`` the spacing, so neighbouring squared responses sum to one.

    Returns:
        ``(filters (n_fft // 2 + 1, n_channels), centre frequencies (n_channels,))``.
    """
    if n_channels < 1 or not 0 < fmin < fmax <= SR / 2:
        raise ValueError(f"need n_channels >= 1 and 0 < fmin < fmax <= {SR // 2}; got "
                         f"n_channels={n_channels}, fmin={fmin}, fmax={fmax}.")
    e_lo, e_hi = _erb(fmin), _erb(fmax)
    centres = np.linspace(e_lo, e_hi, n_channels + 2)[1:-1]
    d = (e_hi - e_lo) / (n_channels + 1)
    e = _erb(np.fft.rfftfreq(n_fft, 1 / SR))
    u = (e[:, None] - centres[None, :]) / d
    h = np.where(np.abs(u) < 1, np.cos(np.pi * u / 2), 0.0)
    return h, _erb_inv(centres)


@functools.cache
def _band_plan(L: int, n_channels: int, fmin: float, fmax: float, n_out: int):
    """Per-channel band bins of the one-sided spectrum, the analytic-signal weights on them,
    and the reduced FFT length the envelopes are computed at."""
    h, _ = erb_filters(L, n_channels, fmin, fmax)
    nb = L // 2 + 1
    one_sided = np.full(nb, 2.0)  # analytic signal: positive frequencies doubled
    one_sided[0] = 1.0
    if L % 2 == 0:
        one_sided[-1] = 1.0
    hw = h * one_sided[:, None]
    nz = hw > 0
    first = np.where(nz.any(0), nz.argmax(0), 0)
    last = np.where(nz.any(0), nb - 1 - nz[::-1].argmax(0), 0)
    width = int(max(1, (last - first + 1).max()))
    n_env = int(2 ** np.ceil(np.log2(max(2 * width, 8 * n_out, 8))))
    n_env = min(n_env, L) if L >= 2 * width else n_env
    idx = np.clip(first[:, None] + np.arange(width)[None, :], 0, nb - 1)  # (C, B)
    w = np.take_along_axis(hw.T, idx, axis=1)
    w[(first[:, None] + np.arange(width)[None, :]) > nb - 1] = 0.0
    return idx, w, n_env


@functools.partial(jax.jit, static_argnames=("n_channels", "n_out", "fmin", "fmax", "power"))
def _cochleagram(x, n_channels, n_out, fmin, fmax, power):
    L = x.shape[-1]
    idx, w, n_env = _band_plan(L, n_channels, fmin, fmax, n_out)
    X = jnp.fft.rfft(x, axis=-1)
    # Each band, shifted down to start at bin 0: the envelope |z(t)| is unchanged by the shift,
    # and an n_env-point inverse FFT samples it exactly at t = m L / n_env (no aliasing: the
    # band is narrower than n_env bins).
    Z = X[..., idx] * jnp.asarray(w, x.dtype)  # (..., C, B)
    env = jnp.abs(jnp.fft.ifft(Z, n=n_env, axis=-1)) * (n_env / L)
    env = env**power
    # band-limited resampling to n_out frames: keep the lowest n_out // 2 + 1 bins
    E = jnp.fft.rfft(env, axis=-1)[..., : n_out // 2 + 1]
    out = jnp.fft.irfft(E, n=n_out, axis=-1) * (n_out / n_env)
    return jnp.swapaxes(jnp.maximum(out, 0.0), -1, -2)  # (..., n_out, C)


def cochleagram(audio, n_channels: int = 256, n_frames: int = 256, fmin: float = 50.0,
                fmax: float = 8000.0, power: float = 0.3):
    """Cochleagram-like front end for the word CNN.

    The waveform spectrum is multiplied by ERB-spaced half-cosine filters (:func:`erb_filters`),
    each band's Hilbert envelope ``|analytic signal|`` is compressed as ``env ** power`` and
    resampled (band-limited, via the FFT) to ``n_frames`` time steps. A 2-s clip gives the word
    CNN's 256 x 256 input with the defaults.

    Each band's envelope is computed at a reduced rate: the band's bins are shifted down to
    bin 0 (which leaves ``|analytic signal|`` unchanged) and inverse-transformed with
    ``n_env = 2^ceil(log2(max(2 B, 8 n_frames)))`` points (``B`` the widest band in bins), which
    samples the exact Hilbert envelope on a coarser grid. Only the compression's harmonics above
    ``n_env / 2`` alias; against a full-rate computation the mean relative difference is about
    1e-4 (tested). About 30x cheaper than full-rate envelopes for 2-s clips.

    Args:
        audio: ``(..., n_samples)`` float waveform at 16 kHz.
        n_channels: number of ERB filters (frequency axis).
        n_frames: output time steps.
        fmin, fmax: lowest / highest filter edges in Hz.
        power: compression exponent.

    Returns:
        ``(..., n_frames, n_channels)`` (time-major like the other front ends; transpose for a
        frequency x time image).
    """
    x = _check_audio(audio)
    if n_frames < 1:
        raise ValueError(f"`n_frames` must be >= 1; got {n_frames}.")
    return _cochleagram(x, int(n_channels), int(n_frames), float(fmin), float(fmax), float(power))


@functools.partial(jax.jit, static_argnames=("context",))
def _splice(f, context):
    T = f.shape[-2]
    pad = [(0, 0)] * (f.ndim - 2) + [(context, context), (0, 0)]
    g = jnp.pad(f, pad, mode="edge")
    parts = [g[..., k: k + T, :] for k in range(2 * context + 1)]
    return jnp.concatenate(parts, axis=-1)


def splice(features, context: int = 5):
    """Stack each frame with its ``context`` neighbours on both sides (edges repeat).

    ``(..., T, F) -> (..., T, F * (2 context + 1))``; the centre frame occupies columns
    ``[context F, (context + 1) F)``.
    """
    f = jnp.asarray(features)
    if f.ndim < 2:
        raise ValueError(f"`features` must be (..., T, F); got shape {tuple(f.shape)}.")
    if context < 0:
        raise ValueError(f"`context` must be >= 0; got {context}.")
    return _splice(f, int(context))


_KINDS = {"log_mel": log_mel, "mfcc": mfcc, "ds2": ds2_spectrogram, "cochleagram": cochleagram}


def featurize(audio, kind: str = "log_mel", batch_size: int = 512, progress: bool = False,
              dtype=None, **kwargs) -> np.ndarray:
    """Features of many equal-length clips, ``(n, n_samples) -> (n, n_frames, F)`` on the host.

    Runs the JAX front end in batches of ``batch_size`` (the last batch is padded to the same
    shape so it compiles once) and gathers the results as NumPy.

    Args:
        audio: ``(n, n_samples)`` float waveforms.
        kind: "log_mel", "mfcc", "ds2" or "cochleagram".
        dtype: output dtype (default: the feature dtype).
        **kwargs: passed to the front end.
    """
    if kind not in _KINDS:
        raise ValueError(f"`kind` must be one of {sorted(_KINDS)}; got {kind!r}.")
    a = np.asarray(audio)
    if a.ndim != 2:
        raise ValueError(f"`audio` must be (n_clips, n_samples); got shape {a.shape}.")
    if a.shape[0] == 0:
        raise ValueError("`audio` has no clips.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    from tqdm.auto import tqdm

    fn = _KINDS[kind]
    bs = min(batch_size, a.shape[0])
    out = None
    for s in tqdm(range(0, a.shape[0], bs), desc=kind, disable=not progress, leave=False):
        chunk = a[s: s + bs]
        n = chunk.shape[0]
        if n < bs:
            chunk = np.concatenate([chunk, np.zeros((bs - n,) + chunk.shape[1:], chunk.dtype)])
        f = np.asarray(fn(chunk, **kwargs))[:n]
        if out is None:
            out = np.empty((a.shape[0],) + f.shape[1:], dtype or f.dtype)
        out[s: s + n] = f
    return out
