"""Streamed SLT spectra, per-class spectra and the eq. 5 AUC."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import geomjax.jacobian as gj

SIZES = (6, 8, 7, 3)


@pytest.fixture(scope="module")
def net():
    return gj.init_relu_mlp(jax.random.key(4), SIZES, dtype=jnp.float64)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    return rng.standard_normal((40, SIZES[0])), rng.integers(0, 3, 40)


def stacked_svd(A):
    """(N, H, F) -> (H, min(N, F)) singular values of each node's N x F matrix."""
    return np.stack([np.linalg.svd(A[:, m, :], compute_uv=False) for m in range(A.shape[1])])


def assert_spectra_close(got, ref):
    """sigma/sigma_1 to 1e-10 where sigma > 1e-6 sigma_1 (smaller ones are Gram round-off)."""
    n = ref.shape[-1]
    s1 = ref[..., :1]
    live = s1[..., 0] > 0
    big = ref > 1e-6 * s1
    np.testing.assert_allclose(
        got[..., :n][big] / np.broadcast_to(s1, ref.shape)[big],
        ref[big] / np.broadcast_to(s1, ref.shape)[big],
        rtol=0,
        atol=1e-10,
    )
    assert np.all(
        got[..., :n][~big & live[..., None]]
        <= 1e-6 * np.broadcast_to(s1, ref.shape)[~big & live[..., None]] + 1e-7
    )


def test_streamed_spectra_equal_stacked_svd_per_group(net, data):
    x, y = data
    A = [np.asarray(a) for a in gj.relu_mlp_slt(net, x)]
    res = gj.slt_spectra(net, x, groups=y, batch_size=16)  # 3 batches, last one padded
    assert res.group_names == ("0", "1", "2") and res.layer_names == (
        "hidden_1",
        "hidden_2",
        "output",
    )
    np.testing.assert_array_equal(res.counts, np.bincount(y))
    for li, a in enumerate(A):
        for g in range(3):
            ref = stacked_svd(a[y == g])
            assert_spectra_close(res.sigma[li][g], ref)
            ns = min((y == g).sum(), SIZES[0])
            live = ref[:, 0] > 0
            ref_auc = np.trapezoid(ref[live, :ns] / ref[live, :1], axis=1)
            np.testing.assert_allclose(res.auc[li][g][live], ref_auc, atol=1e-8)
            assert np.all(np.isnan(res.auc[li][g][~live]))
    t = res.table()
    assert len(t) == 3 * (8 + 7 + 3) and set(t.columns) >= {"layer", "group", "node", "auc", "dead"}
    assert len(res.summary()) == 9


def test_groups_forms_and_batch_invariance(net, data):
    x, y = data
    mask = y == 1
    r_dict = gj.slt_spectra(
        net, x, groups={"ALL": np.ones_like(mask), "A": mask, "B": ~mask}, batch_size=40
    )
    r_bool = gj.slt_spectra(net, x, groups=mask, batch_size=7)
    r_iter = gj.slt_spectra(
        net,
        ((x[i : i + 9], mask[i : i + 9].astype(int)) for i in range(0, 40, 9)),
        group_names=["B", "A"],
        batch_size=9,
    )
    r_all = gj.slt_spectra(net, x, batch_size=13)
    for li in range(3):
        np.testing.assert_allclose(r_dict.sigma[li][1], r_bool.sigma[li][0], atol=1e-7)
        np.testing.assert_allclose(r_dict.sigma[li][2], r_bool.sigma[li][1], atol=1e-7)
        np.testing.assert_allclose(r_iter.sigma[li][1], r_bool.sigma[li][0], atol=1e-7)
        np.testing.assert_allclose(r_dict.sigma[li][0], r_all.sigma[li][0], atol=1e-7)


def test_generic_fn_route_and_inputs(net, data):
    x, _ = data

    def fn(p, xi):
        logits, acts = gj.relu_mlp_apply(p, xi)
        return {"h2": acts[1], "logits": logits}

    r_fn = gj.slt_spectra(
        net, x, fn=fn, layers=["h2", "logits"], batch_size=16, inputs=True, keep_gram=True
    )
    r_relu = gj.slt_spectra(net, x, layers=[1, -1], batch_size=16, inputs=True)
    (A2,) = gj.relu_mlp_slt(net, x, layers=1)
    for li in range(2):
        np.testing.assert_allclose(r_fn.sigma[li], r_relu.sigma[li], atol=1e-7)
        np.testing.assert_allclose(r_fn.sigma_inputs[li], r_relu.sigma_inputs[li], atol=1e-7)
    ref_in = np.stack(
        [np.linalg.svd(np.asarray(A2)[:, :, f], compute_uv=False) for f in range(SIZES[0])]
    )
    assert_spectra_close(r_relu.sigma_inputs[0][0], ref_in)
    assert r_fn.gram[0].shape == (1, 7, SIZES[0], SIZES[0])


def test_float32_accumulation(net, data):
    x, _ = data
    n32 = [(k.astype(jnp.float32), b.astype(jnp.float32)) for k, b in net]
    r32 = gj.slt_spectra(n32, x.astype(np.float32), batch_size=16)
    r64 = gj.slt_spectra(net, x, batch_size=16)
    assert r32.sigma[0].dtype == np.float32
    for a, b in zip(r32.auc, r64.auc, strict=False):
        np.testing.assert_allclose(a, b, atol=2e-3 * SIZES[0])


def test_first_hidden_layer_rank_one_auc(net, data):
    x, _ = data
    res = gj.slt_spectra(net, x, layers=0, batch_size=40)
    live = np.isfinite(res.auc[0][0])
    np.testing.assert_allclose(res.auc[0][0][live], 0.5, atol=1e-6)


def test_slt_class_spectra_equals_direct_svd(net, data):
    x, y = data
    res = gj.slt_class_spectra(
        jax.random.key(0), net, x, y, layer=1, max_per_class=None, block_size=5
    )
    (A,) = gj.relu_mlp_slt(net, x, layers=1)
    A = np.asarray(A)
    for i, k in enumerate(res.classes):
        ref = np.linalg.svd(A[y == k].reshape((y == k).sum(), -1), compute_uv=False)
        big = ref > 1e-6 * ref[0]
        np.testing.assert_allclose(
            res.sigma[i, : ref.size][big] / ref[0], ref[big] / ref[0], atol=1e-10
        )
    capped = gj.slt_class_spectra(jax.random.key(0), net, x, y, layer=1, max_per_class=6)
    assert np.all(capped.counts == 6) and capped.n_sigma == 6
    again = gj.slt_class_spectra(jax.random.key(0), net, x, y, layer=1, max_per_class=6)
    np.testing.assert_array_equal(capped.auc, again.auc)


# ---------------------------------------------------------------------------------------------
# AUC (eq. 5)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 39])
def test_auc_known_spectra(n):
    flat, one_hot = np.ones(n), np.eye(n)[0]
    assert float(gj.spectrum_auc(flat)) == pytest.approx(n - 1)
    assert float(gj.spectrum_auc(flat, abscissa="unit")) == pytest.approx(1.0)
    assert float(gj.spectrum_auc(one_hot)) == pytest.approx(0.5)
    assert float(gj.spectrum_auc(one_hot, abscissa="unit")) == pytest.approx(1 / (2 * (n - 1)))


@given(
    st.lists(st.floats(0.0, 10.0), min_size=8, max_size=8),
    st.floats(1e-3, 1e3),
    st.integers(2, 8),
)
def test_auc_scale_invariant_and_trapezoid(vals, c, n_sigma):
    s = np.sort(np.asarray(vals))[::-1]
    if s[0] == 0:
        assert np.isnan(float(gj.spectrum_auc(s)))
        return
    a = float(gj.spectrum_auc(s, n_sigma=n_sigma))
    assert a == pytest.approx(np.trapezoid(s[:n_sigma] / s[0]), abs=1e-12)
    assert float(gj.spectrum_auc(c * s, n_sigma=n_sigma)) == pytest.approx(a, rel=1e-12, abs=1e-12)
    assert 0.5 - 1e-12 <= a <= n_sigma - 1 + 1e-12


def test_auc_batched_and_dead():
    s = np.array([[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]])
    out = np.asarray(gj.spectrum_auc(s))
    assert out[0] == pytest.approx(np.trapezoid([1, 2 / 3, 1 / 3])) and np.isnan(out[1])


def test_gram_spectrum_matches_svd():
    M = np.random.default_rng(0).standard_normal((30, 6))
    np.testing.assert_allclose(
        gj.gram_spectrum(M.T @ M), np.linalg.svd(M, compute_uv=False), rtol=1e-10
    )


def test_bad_input_errors(net, data):
    x, y = data
    with pytest.raises(ValueError, match="n_sigma"):
        gj.spectrum_auc(np.ones(4), n_sigma=5)
    with pytest.raises(ValueError, match="abscissa"):
        gj.spectrum_auc(np.ones(4), abscissa="log")
    with pytest.raises(ValueError, match="features"):
        gj.slt_spectra(net, x[:, :4])
    with pytest.raises(ValueError, match="groups"):
        gj.slt_spectra(net, x, groups={"a": y[:5] == 1})
    with pytest.raises(ValueError, match="NaN"):
        gj.slt_spectra(net, np.full((3, SIZES[0]), np.inf))
    with pytest.raises(ValueError, match="batch_size"):
        gj.slt_spectra(net, x, batch_size=0)
    with pytest.raises(ValueError, match="square"):
        gj.gram_spectrum(np.ones((3, 4)))
    with pytest.raises(ValueError, match="labels|entries"):
        gj.slt_class_spectra(jax.random.key(0), net, x, y[:5])
