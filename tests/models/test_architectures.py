"""Shapes, parameter counts (published sizes), activation dicts and masking of every model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from geomjax.models.ds2 import BiRNN
from geomjax.models.word_cnn import local_response_norm

from geomjax import models as M


def _shapes(name, preset, x_shape, lengths=None, **kw):
    m = M.build_model(name, preset, **kw)
    x = jnp.zeros(x_shape, jnp.float32)
    L = None if lengths is None else jnp.asarray(lengths)
    v = jax.eval_shape(lambda: M.init_variables(0, m, x, L))
    out = jax.eval_shape(lambda v: m.apply(v, x, L, train=False), v)
    return m, v, out


def test_word_cnn_paper_table():
    _, v, (logits, acts) = _shapes("word_cnn", "paper", (2, 256, 256))
    assert M.count_params(v, exclude_batchnorm=True) == 30_718_475
    assert M.count_params(v) == 30_718_475 + 2 * (96 + 256)  # BN scale + bias at norm1, norm2
    want = {
        "conv1": (86, 86, 96),
        "pool1": (43, 43, 96),
        "conv2": (22, 22, 256),
        "pool2": (11, 11, 256),
        "conv3": (11, 11, 512),
        "conv4": (11, 11, 1024),
        "conv5": (11, 11, 512),
        "pool5": (6, 6, 512),
        "fc6": (1024,),
        "fctop": (587,),
    }
    assert set(acts) == set(want)
    for k, s in want.items():
        assert acts[k].shape == (2, *s), k
    p = v["params"]
    assert p["fc6"]["kernel"].shape == (18432, 1024)
    assert M.count_params({"params": {"fc6": p["fc6"]}}) == 18_875_392


def test_ds2_paper_counts_and_shapes():
    _, v, (logits, acts) = _shapes("ds2", "paper", (2, 101, 161), [101, 60])
    n = M.count_params(v)
    assert n == 41_171_968  # Flax GRUCell layout
    assert n + 5 * 2 * 2 * 800 == 41_187_968  # + PyTorch's extra hidden biases r, z: 41.19 M
    assert acts["conv2"].shape == (2, 51, 1312)
    assert set(acts) == {"conv1", "conv2", "rnn1", "rnn2", "rnn3", "rnn4", "rnn5", "fc"}
    assert logits.shape == (2, 51, 29)
    assert "bias" not in v["params"]["fc"]
    _, v, _ = _shapes("ds2", "paper-lstm", (1, 50, 161))
    n = M.count_params(v)
    assert n + 5 * 2 * 4 * 1024 == 86_618_400  # PyTorch LSTM count 86.62 M


@pytest.mark.parametrize("n_spk", [100, 7])
def test_speaker_cnn_paper_counts(n_spk):
    _, v, (logits, acts) = _shapes(
        "speaker_cnn", "paper", (2, 200, 40), [200, 120], n_classes=n_spk
    )
    assert M.count_params(v) == 15_166_700 - 601 * 100 + 601 * n_spk
    assert acts["pool"].shape == (2, 3000)
    assert acts["conv2"].shape == (2, 100, 1000)
    assert logits.shape == (2, n_spk)


def test_phone_mlp_counts():
    _, v, (logits, acts) = _shapes("phone_mlp", "paper", (3, 253))
    assert M.count_params(v) == 338_472
    assert set(acts) == {"h1", "h2", "h3", "h4", "h5", "out"}
    _, v, _ = _shapes("phone_mlp", "paper-2048", (3, 253))
    assert M.count_params(v, exclude_batchnorm=True) == 17_387_560
    assert M.count_params(v) == 17_387_560 + 5 * 2 * 2048


def test_transformer_shapes():
    _, v, (recon, acts) = _shapes("transformer", "paper", (2, 300, 80), [300, 200])
    assert recon.shape == (2, 100, 240)  # 3 frames stacked
    assert set(acts) == {"input", "layer1", "layer2", "layer3", "recon"}
    assert acts["layer3"].shape == (2, 100, 768)


def _tiny_inputs(name, rng, B=4, T=40, F=24):
    if name == "word_cnn":
        return rng.normal(size=(B, 20, 32)).astype(np.float32), None
    if name == "phone_mlp":
        return rng.normal(size=(B, 253)).astype(np.float32), None
    L = np.array([T, T - 7, T - 20, 9][:B], np.int32)
    return rng.normal(size=(B, T, F)).astype(np.float32), L


@pytest.mark.parametrize("name", M.MODEL_NAMES)
def test_activations_complete_and_masked(name, rng):
    x, L = _tiny_inputs(name, rng)
    m = M.build_model(name, "tiny", **({} if name == "transformer" else {"n_classes": 5}))
    v = M.init_variables(1, m, x, L)
    apply = jax.jit(m.apply)
    out, acts = apply(v, x, L)
    a = M.activations(m, v, x, L, batch_size=3)  # last batch padded
    assert set(a.names) == set(acts)
    if name == "word_cnn":  # the model's layer order, not jit's sorted keys
        assert a.names == [
            "conv1",
            "pool1",
            "conv2",
            "pool2",
            "conv3",
            "conv4",
            "conv5",
            "pool5",
            "fc6",
            "fctop",
        ]
    np.testing.assert_allclose(a.output, np.asarray(out), rtol=1e-5, atol=1e-5)
    for k in acts:
        np.testing.assert_allclose(a.layers[k], np.asarray(acts[k]), rtol=1e-5, atol=1e-5)
    if name in M.SEQUENCE_MODELS:
        assert set(a.lengths) == {k for k in acts if acts[k].ndim == 3}
        for k, lens in a.lengths.items():
            mask = a.mask(k)
            assert mask.sum() == lens.sum() and mask[:, 0].all()
            assert np.all(a.layers[k][~mask] == 0), f"{k} not zero on padding"
            assert np.abs(a.layers[k][mask]).max() > 0
            fr, who = a.frames(k)
            assert fr.shape[0] == lens.sum() and np.array_equal(np.bincount(who), lens)
        # the shortest row alone, cropped to its length, gives the same valid activations
        i = int(np.argmin(L))
        _, acts1 = apply(v, x[i : i + 1, : L[i]], L[i : i + 1])
        for k, lens in a.lengths.items():
            n = int(lens[i])
            np.testing.assert_allclose(
                np.asarray(acts1[k])[0, :n], a.layers[k][i, :n], rtol=1e-4, atol=1e-5
            )
    else:
        assert a.lengths == {}


def test_birnn_matches_flax_gru(rng):
    """The fused bidirectional scan equals two flax nn.RNN(GRUCell) passes with seq_lengths."""
    B, T, I, H = 3, 9, 5, 6
    x = jnp.asarray(rng.normal(size=(B, T, I)))
    L = jnp.array([9, 4, 1])
    layer = BiRNN(H, "gru", "float64")
    p = layer.init(jax.random.key(0), x, L)["params"]
    p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape, a.dtype), p)
    y = jax.jit(layer.apply)({"params": p}, x, L)

    def cell_params(d):
        ki = p["input_kernel"][:, d * 3 * H : (d + 1) * 3 * H]
        bi = p["input_bias"][d * 3 * H : (d + 1) * 3 * H]
        kh = p["hidden_kernel"][d]
        g = lambda a, j: a[..., j * H : (j + 1) * H]  # noqa: E731
        return {
            "ir": {"kernel": g(ki, 0), "bias": g(bi, 0)},
            "iz": {"kernel": g(ki, 1), "bias": g(bi, 1)},
            "in": {"kernel": g(ki, 2), "bias": g(bi, 2)},
            "hr": {"kernel": g(kh, 0)},
            "hz": {"kernel": g(kh, 1)},
            "hn": {"kernel": g(kh, 2), "bias": p["hidden_bias"][d]},
        }

    ref = 0
    for d, rev in [(0, False), (1, True)]:
        rnn = nn.RNN(nn.GRUCell(H, param_dtype=jnp.float64), reverse=rev, keep_order=True)
        ref = ref + jax.jit(rnn.apply)({"params": {"cell": cell_params(d)}}, x, seq_lengths=L)
    mask = np.arange(T)[None, :] < np.asarray(L)[:, None]
    np.testing.assert_allclose(np.asarray(y)[mask], np.asarray(ref)[mask], rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(y)[~mask] == 0)


def test_lrn_matches_definition(rng):
    x = rng.normal(size=(2, 3, 4, 7))
    y = np.asarray(local_response_norm(jnp.asarray(x)))
    ref = np.empty_like(x)
    for d in range(7):
        s = (x[..., max(0, d - 2) : d + 3] ** 2).sum(-1)
        ref[..., d] = x[..., d] / (1 + 1e-3 * s) ** 0.75
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_avg_pool_excludes_padding():
    """On a constant input the SAME average pool stays constant at the borders (TF semantics)."""
    m = M.build_model(
        "word_cnn",
        "tiny",
        n_classes=3,
        pools=(None, None, None, None, "avg"),
        strides=(1, 1, 1, 1, 1),
        norm="none",
    )
    x = jnp.ones((1, 7, 7))
    v = M.init_variables(0, m, x)
    v = jax.tree.map(jnp.zeros_like, v)
    v["params"]["conv5"]["bias"] = jnp.ones_like(v["params"]["conv5"]["bias"])
    _, acts = m.apply(v, x)
    np.testing.assert_allclose(np.asarray(acts["pool5"]), 1.0)


@pytest.mark.parametrize("norm", ["lrn"])  # "batch" and "none" are covered above
def test_word_cnn_norm_options(norm, rng):
    m = M.build_model("word_cnn", "tiny", n_classes=3, norm=norm, norm_after_relu=norm != "lrn")
    x = rng.normal(size=(2, 16, 16)).astype(np.float32)
    v = M.init_variables(0, m, x)
    assert ("batch_stats" in v) == (norm == "batch")
    out, _ = m.apply(v, x)
    assert out.shape == (2, 3) and np.all(np.isfinite(out))


def test_dtype_follows_input(rng):
    m = M.build_model("phone_mlp", "tiny", n_classes=3, batch_norm=True)
    x32 = rng.normal(size=(2, 253)).astype(np.float32)
    v = M.init_variables(0, m, x32)
    assert jax.jit(m.apply)(v, x32)[0].dtype == jnp.float32
    m64 = M.build_model("phone_mlp", "tiny", n_classes=3, batch_norm=True, param_dtype="float64")
    v64 = M.init_variables(0, m64, x32.astype(np.float64))
    out, acts = jax.jit(m64.apply)(v64, x32.astype(np.float64))
    assert out.dtype == jnp.float64 and acts["h1"].dtype == jnp.float64


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="name"):
        M.build_model("resnet")
    with pytest.raises(ValueError, match="preset"):
        M.build_model("ds2", "huge")
    with pytest.raises(ValueError, match="unknown config field"):
        M.build_model("ds2", "tiny", widht=3)
    with pytest.raises(ValueError, match="n_classes"):
        M.build_model("transformer", "tiny", n_classes=3)
    with pytest.raises(ValueError, match="d_model"):
        M.build_model("transformer", "tiny", d_model=15)
    m = M.build_model("ds2", "tiny")
    x = rng.normal(size=(3, 20, 30)).astype(np.float32)
    v = M.init_variables(0, m, x)
    with pytest.raises(ValueError, match="lengths"):
        M.activations(m, v, x, np.array([20, 3]))
    with pytest.raises(ValueError, match="rank"):
        m.apply(v, x[0])
    with pytest.raises(ValueError, match="layers"):
        M.activations(m, v, x, layers=["rnn9"])
    with pytest.raises(TypeError, match="key"):
        M.init_variables("seed", m, x)


def test_mockingjay_mask(rng):
    B, T, F = 8, 300, 5
    x = jnp.asarray(rng.normal(size=(B, T, F)) + 3.0)
    L = jnp.array([300, 250, 200, 150, 300, 280, 100, 60])
    xm, sel = M.mockingjay_mask(jax.random.key(0), x, L, downsample=3, mask_prob=0.15, span=7)
    valid = np.arange(100)[None, :] < np.asarray((L + 2) // 3)[:, None]
    sel = np.asarray(sel)
    assert sel.shape == (B, 100) and not sel[~valid].any()
    frac = sel.sum() / valid.sum()
    assert 0.07 < frac < 0.3, frac
    changed = np.any(np.asarray(xm) != np.asarray(x), axis=-1)
    frame_sel = np.repeat(sel, 3, axis=1)[:, :T]
    assert not changed[~frame_sel].any()  # only selected frames are corrupted
