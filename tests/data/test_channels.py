"""Channel and noise conditions."""

from __future__ import annotations

import numpy as np
import pytest

from geomjax.data import _channels as ch


def _tone(f, n=16000, sr=16000):
    return (0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def _rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def test_telephone_band_passes_speech_band_only():
    inside = ch.telephone_band(_tone(1000))
    assert 0.9 < _rms(inside) / _rms(_tone(1000)) < 1.1
    for f in (80, 6000):
        assert _rms(ch.telephone_band(_tone(f))) < 0.05 * _rms(_tone(f))
    y = ch.telephone(_tone(1000))
    assert y.shape == (16000,) and y.dtype == np.float32
    assert np.corrcoef(y[1000:-1000], _tone(1000)[1000:-1000])[0, 1] > 0.99  # no delay


def test_mu_law_roundtrip():
    x = np.linspace(-1, 1, 10001).astype(np.float32)
    y = ch.mu_law(x)
    assert np.abs(y - x).max() < 0.04 and np.abs(y[4900:5100] - x[4900:5100]).max() < 1e-3
    assert np.unique(y).size <= 256


def test_add_noise_hits_snr():
    rng = np.random.default_rng(0)
    x = _tone(440)
    n = ch.pink_noise(rng, 16000)
    for snr in ch.SNRS_DB:
        y = ch.add_noise(x, n, snr)
        got = 10 * np.log10(_rms(x) ** 2 / _rms(y - x) ** 2)
        assert abs(got - snr) < 1e-3
    # pink: power falls ~3 dB per octave
    spec = np.abs(np.fft.rfft(ch.pink_noise(rng, 1 << 16))) ** 2
    f = np.fft.rfftfreq(1 << 16, 1 / 16000)
    lo, hi = spec[(f > 200) & (f < 400)].mean(), spec[(f > 3200) & (f < 6400)].mean()
    assert 8 < 10 * np.log10(lo / hi) < 16  # 4 octaves -> ~12 dB


def test_reverb_keeps_level_and_adds_tail():
    rng = np.random.default_rng(1)
    x = np.zeros(16000, np.float32)
    x[:1600] = _tone(500, 1600)
    y, rt60 = ch.reverb(x, rng)
    assert 0.2 <= rt60 <= 0.8 and abs(_rms(y) - _rms(x)) < 1e-4
    assert _rms(y[3200:4800]) > 10 * _rms(x[3200:4800]) + 1e-6  # energy after the tone ends


@pytest.mark.parametrize("codec", ["gsm", "amr-nb"])
def test_codec_roundtrip(codec):
    if codec not in ch.available_channels():
        pytest.skip(f"sox cannot write {codec} here")
    rng = np.random.default_rng(0)
    env = [np.abs(np.sin(np.pi * np.arange(n) / 4000)) for n in (12345, 8000)]  # syllable-like
    xs = [(0.3 * e * rng.standard_normal(e.size)).astype(np.float32) for e in env]
    ys = ch.codec_roundtrip(xs, codec)
    for x, y in zip(xs, ys, strict=True):
        assert y.shape == x.shape and y.dtype == np.float32
        b = ch.telephone_band(x)[800:-800]
        assert np.corrcoef(b, y[800:-800])[0, 1] > 0.3  # noise is hard to code at 4.75k
        # no delay: the best lag is 0 (alignments survive the codec)
        cc = [np.dot(b[50:-50], y[800 + k + 50: 800 + k + 50 + b.size - 100]) for k in range(-8, 9)]
        assert int(np.argmax(cc)) - 8 == 0
    with pytest.raises(ValueError, match="codec"):
        ch.codec_roundtrip(xs, "mp3")
