"""JAX front ends against librosa; shapes, dtypes, edge cases and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.signal

from geomjax.data import (
    cochleagram,
    ds2_spectrogram,
    erb_filters,
    featurize,
    log_mel,
    mfcc,
    n_frames,
    splice,
)


def _ref_log_mel(y):
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=23)
    return np.log(S + 1e-6).T


def _ref_mfcc(y):
    return librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40, n_fft=512, win_length=400,
                                hop_length=160, n_mels=40).T


def _ref_ds2(y):
    S = librosa.stft(y, n_fft=320, hop_length=160, win_length=320,
                     window=scipy.signal.windows.hamming)
    return np.log1p(np.abs(S)).T


CASES = [(log_mel, _ref_log_mel, 23), (mfcc, _ref_mfcc, 40), (ds2_spectrogram, _ref_ds2, 161)]


@pytest.mark.filterwarnings("ignore:n_fft=")
@pytest.mark.parametrize("n", [32000, 16001, 399, 1])
@pytest.mark.parametrize("fn,ref,F", CASES, ids=["log_mel", "mfcc", "ds2"])
def test_agrees_with_librosa_float64(fn, ref, F, n, rng):
    y = 0.1 * rng.standard_normal(n)
    got = np.asarray(fn(y))
    want = ref(y)
    assert got.shape == want.shape == (n_frames(n), F)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fn,ref,F", CASES, ids=["log_mel", "mfcc", "ds2"])
def test_float32_within_tolerance_and_batched(fn, ref, F, rng):
    y = (0.1 * rng.standard_normal((3, 8000))).astype(np.float32)
    got = np.asarray(fn(y))
    assert got.dtype == np.float32 and got.shape == (3, 51, F)
    for i in range(3):
        want = ref(y[i].astype(np.float64))
        np.testing.assert_allclose(got[i], want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    np.testing.assert_array_equal(np.asarray(fn(y[1])), got[1])  # batch == single


def test_speech_like_signal_and_silence(rng):
    t = np.arange(16000) / 16000
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.5)  # silence, then a tone
    np.testing.assert_allclose(np.asarray(log_mel(y)), _ref_log_mel(y), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.asarray(mfcc(y)), _ref_mfcc(y), rtol=1e-8, atol=1e-7)
    z = np.zeros(4000)
    for fn in (log_mel, mfcc, ds2_spectrogram, cochleagram):
        assert np.all(np.isfinite(np.asarray(fn(z))))
    assert np.allclose(np.asarray(log_mel(z)), np.log(1e-6))


def test_ds2_normalize():
    y = np.random.default_rng(1).standard_normal(16000) * 0.1
    s = np.asarray(ds2_spectrogram(y, normalize=True))
    assert abs(s.mean()) < 1e-10 and abs(s.std(ddof=1) - 1) < 1e-10


def test_splice():
    f = np.arange(4 * 2, dtype=np.float64).reshape(4, 2)
    s = np.asarray(splice(f, 1))
    assert s.shape == (4, 6)
    np.testing.assert_array_equal(s[0], [0, 1, 0, 1, 2, 3])  # edge repeated
    np.testing.assert_array_equal(s[2], [2, 3, 4, 5, 6, 7])
    assert splice(jnp.zeros((2, 201, 23)), 5).shape == (2, 201, 253)


def test_cochleagram_shape_and_place_code():
    t = np.arange(32000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t)
    c = np.asarray(cochleagram(tone))
    assert c.shape == (256, 256) and np.all(c >= 0)
    _, cf = erb_filters(32000, 256)
    peak = cf[np.argmax(c[64:192].mean(0))]
    assert 900 < peak < 1100
    h, _ = erb_filters(4000, 64)
    inner = (np.fft.rfftfreq(4000, 1 / 16000) > 100) & (np.fft.rfftfreq(4000, 1 / 16000) < 7000)
    np.testing.assert_allclose((h**2).sum(1)[inner], 1.0, atol=1e-12)  # squared responses tile
    c32 = cochleagram(tone.astype(np.float32)[:8001], n_channels=32, n_frames=40)
    assert c32.shape == (40, 32) and c32.dtype == jnp.float32


def _full_rate_cochleagram(x, C, n_out, power=0.3):
    L = x.size
    h, _ = erb_filters(L, C)
    nb = L // 2 + 1
    o = np.full(nb, 2.0)
    o[0] = 1.0
    if L % 2 == 0:
        o[-1] = 1.0
    X = np.fft.rfft(x)[None, :] * (h * o[:, None]).T
    env = np.abs(np.fft.ifft(np.concatenate([X, np.zeros((C, L - nb))], 1), axis=1)) ** power
    E = np.fft.rfft(env, axis=1)[:, : n_out // 2 + 1]
    return np.maximum(np.fft.irfft(E, n=n_out, axis=1) * (n_out / L), 0).T


@pytest.mark.parametrize("n", [16000, 12001])
def test_cochleagram_matches_full_rate_envelopes(n, rng):
    t = np.arange(n) / 16000
    y = (np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 4 * t))
         + 0.5 * np.sin(2 * np.pi * 2500 * t) * (t > 0.3) + 0.05 * rng.standard_normal(n))
    got = np.asarray(cochleagram(y, n_channels=64, n_frames=100))
    ref = _full_rate_cochleagram(y, 64, 100)
    assert got.shape == ref.shape == (100, 64)
    assert np.abs(got - ref).mean() < 2e-3 * np.abs(ref).mean()
    assert np.abs(got - ref).max() < 3e-2 * np.abs(ref).max()


def test_differentiable_and_jittable(rng):
    y = jnp.asarray(0.1 * rng.standard_normal(4000))
    for fn in (log_mel, mfcc, ds2_spectrogram, lambda a: cochleagram(a, 16, 20)):
        g = jax.grad(lambda a, f=fn: jnp.sum(f(a)))(y)
        assert g.shape == y.shape and bool(jnp.all(jnp.isfinite(g)))
    eager = np.asarray(log_mel(y))
    jitted = np.asarray(jax.jit(log_mel)(y))
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)


def test_featurize_matches_direct(rng):
    a = (0.1 * rng.standard_normal((5, 4000))).astype(np.float32)
    f = featurize(a, "mfcc", batch_size=2)
    assert f.shape == (5, 26, 40) and isinstance(f, np.ndarray)
    np.testing.assert_allclose(f, np.asarray(mfcc(a)), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="kind"):
        featurize(a, "plp")


def test_bad_input():
    with pytest.raises(TypeError, match="audio"):
        log_mel(np.zeros(1000, np.int16))
    with pytest.raises(ValueError, match="empty"):
        mfcc(np.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        ds2_spectrogram(np.array([0.0, np.nan, 0.1] * 200))
    with pytest.raises(ValueError, match="center=False"):
        log_mel(np.zeros(100), center=False)
    with pytest.raises(ValueError, match="n_mfcc"):
        mfcc(np.zeros(1000), n_mfcc=50, n_mels=40)
    with pytest.raises(TypeError, match="audio"):
        log_mel("not audio")


@pytest.fixture(scope="module")
def tiny_corpus():
    from geomjax.data import espeak_available, synthesize_corpus

    if not espeak_available():
        pytest.skip("libespeak-ng not installed")
    return synthesize_corpus("tiny", seed=0)


def test_utterance_features_exact_despite_padding(tiny_corpus):
    from geomjax.data import utterance_features

    fs = utterance_features(tiny_corpus, "log_mel", utts=[0, 3], bucket=16000)
    for f, i in zip(fs, [0, 3]):
        direct = np.asarray(log_mel(tiny_corpus.utterance(i)))
        assert f.shape == direct.shape
        np.testing.assert_allclose(f, direct, rtol=1e-5, atol=1e-5)


def test_frame_dataset_phone_mlp_input(tiny_corpus):
    from geomjax.data import frame_dataset

    X, y, utt, classes = frame_dataset(tiny_corpus, n_classes=12)
    assert X.shape[1] == 253 and X.dtype == np.float32 and len(classes) == 12
    assert X.shape[0] == y.size == utt.size and y.min() >= 0 and y.max() < 12
    assert np.all(np.isfinite(X))
    # the centre columns of utterance 0 are its normalised log-Mel frames at labelled positions
    f = np.asarray(log_mel(tiny_corpus.utterance(0)))
    f = (f - f.mean(0)) / (f.std(0) + 1e-8)
    lab = tiny_corpus.frame_labels(0, "phone", classes=classes)
    np.testing.assert_allclose(X[utt == 0][:, 5 * 23: 6 * 23], f[lab >= 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(y[utt == 0], lab[lab >= 0])
    with pytest.raises(ValueError, match="normalize"):
        frame_dataset(tiny_corpus, normalize="global")
