"""All-pairs matrices, streaming CKA, sequence helpers and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import similarity_refs as ref

import geomjax.similarity as sim


def _layers(n=53, widths=(6, 11, 9, 14), seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    return [z @ rng.normal(size=(5, d)) + 0.6 * rng.normal(size=(n, d)) for d in widths]


# ---------------------------------------------------------------- all-pairs CKA


@pytest.mark.parametrize("method,block", [("gram", None), ("gram", 16), ("feature", None)])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_equals_pairwise_reference(method, block, debiased):
    xs = _layers()
    want = np.array([[ref.linear_cka(a, b, debiased) for b in xs] for a in xs])
    m = sim.cka_matrix(xs, method=method, block_size=block, debiased=debiased)
    np.testing.assert_allclose(m.values, want, atol=1e-12)
    assert m.settings["method"] == method
    np.testing.assert_allclose(m.values, m.values.T, atol=1e-14)
    np.testing.assert_allclose(np.diag(m.values), 1.0, atol=1e-12)
    assert np.linalg.eigvalsh(m.values).min() > -1e-10  # PSD: a Gram matrix of unit vectors


@pytest.mark.parametrize("method", ["gram", "feature"])
def test_cka_matrix_cross_and_dict_input(method):
    xs = _layers()
    m = sim.cka_matrix({"a": xs[0], "b": xs[1]}, {"c": xs[2], "d": xs[3], "e": xs[0]},
                       method=method, block_size=20)
    want = np.array([[ref.linear_cka(a, b) for b in (xs[2], xs[3], xs[0])] for a in xs[:2]])
    np.testing.assert_allclose(m.values, want, atol=1e-12)
    df = m.to_frame()
    assert list(df.columns) == ["x", "y", "measure", "value"] and len(df) == 6
    row = df[(df.x == "b") & (df.y == "d")]
    assert float(row.value.iloc[0]) == pytest.approx(want[1, 1])
    assert m.to_wide().loc["a", "e"] == pytest.approx(1.0)


def test_cka_matrix_rbf_and_stacked_array():
    xs = _layers(n=30, widths=(7, 7, 7))
    stacked = np.stack(xs)
    m = sim.cka_matrix(stacked, kernel="rbf")
    want = np.array(
        [[ref.cka_gram(ref.gram_rbf(a), ref.gram_rbf(b)) for b in xs] for a in xs]
    )
    np.testing.assert_allclose(m.values, want, atol=1e-12)
    assert m.measure == "rbf_cka"


@pytest.mark.parametrize("measure", ["cca", "cca_sq", "svcca", "pwcca"])
def test_similarity_matrix_cca_family_equals_loop(measure):
    xs = _layers(n=60, widths=(6, 11, 9))
    f = {
        "cca": lambda a, b: ref.cca_rho(a, b).mean(),
        "cca_sq": lambda a, b: np.mean(ref.cca_rho(a, b) ** 2),
        "svcca": lambda a, b: ref.svcca_mean(a, b, 0.95)[0],
        "pwcca": ref.pwcca_morcos,
    }[measure]
    want = np.array([[f(a, b) for b in xs] for a in xs])
    m = sim.similarity_matrix(xs, measure=measure, threshold=0.95, pair_chunk=2)
    np.testing.assert_allclose(m.values, want, atol=1e-9)
    cross = sim.similarity_matrix(xs[:1], xs[1:], measure=measure, threshold=0.95)
    np.testing.assert_allclose(cross.values, want[:1, 1:], atol=1e-9)


def test_similarity_matrix_interpolation_option():
    xs = _layers(n=40, widths=(5, 9))
    m = sim.similarity_matrix(xs, measure="cka", match_width="interpolate")
    wide = np.asarray(sim.interpolate_features(xs[0], 9))
    assert m.values[0, 1] == pytest.approx(ref.linear_cka(wide, xs[1]), abs=1e-12)
    assert sim.similarity_matrix(xs, measure="debiased_cka").measure == "debiased_cka"


def test_interpolate_features_linear():
    x = np.array([[0.0, 2.0, 4.0]])
    np.testing.assert_allclose(sim.interpolate_features(x, 5), [[0, 1, 2, 3, 4]], atol=1e-12)


# ---------------------------------------------------------------- streaming


def test_minibatch_one_batch_equals_debiased_cka():
    xs = _layers(n=80)
    got = sim.minibatch_cka([(xs[0], xs[1])])
    assert got == pytest.approx(ref.linear_cka(xs[0], xs[1], debiased=True), abs=1e-12)


def test_minibatch_gram_and_feature_paths_agree_and_match_formula():
    xs = _layers(n=96)
    batches = [tuple(x[i : i + 24] for x in xs) for i in range(0, 96, 24)]
    a = sim.minibatch_cka_matrix(batches, method="gram")
    b = sim.minibatch_cka_matrix(batches, method="feature")
    np.testing.assert_allclose(a, b, atol=1e-12)
    hs = np.zeros((4, 4))
    for bt in batches:
        g = [ref.gram_linear(x) for x in bt]
        hs += np.array([[ref.hsic_unbiased(p, q) for q in g] for p in g])
    want = hs / np.sqrt(np.outer(np.diag(hs), np.diag(hs)))
    np.testing.assert_allclose(a, want, atol=1e-10)


def test_minibatch_converges_to_full_debiased_cka():
    rng = np.random.default_rng(3)
    n = 4000
    z = rng.normal(size=(n, 4))
    x = z @ rng.normal(size=(4, 10)) + rng.normal(size=(n, 10))
    y = z @ rng.normal(size=(4, 8)) + rng.normal(size=(n, 8))
    full = ref.linear_cka(x, y, debiased=True)
    errs = []
    for b in (16, 400):
        est = sim.minibatch_cka((x[i : i + b], y[i : i + b]) for i in range(0, n, b))
        errs.append(abs(est - full))
    assert errs[1] < 0.01
    assert errs[1] < errs[0] + 1e-3


def test_minibatch_accumulator_skips_tiny_batches_and_tracks_counts():
    xs = _layers(n=43)
    acc = sim.MinibatchCKA()
    acc.update(xs[0][:40], xs[1][:40])
    with pytest.warns(RuntimeWarning, match="skipping"):
        acc.update([xs[0][40:], xs[1][40:]])
    assert (acc.n_samples, acc.n_batches, acc.n_skipped) == (40, 1, 3)
    assert acc.result()[0, 1] == pytest.approx(
        ref.linear_cka(xs[0][:40], xs[1][:40], debiased=True), abs=1e-12
    )
    with pytest.raises(ValueError, match="batch sizes differ"):
        acc.update(xs[0][:10], xs[1][:11])
    with pytest.raises(ValueError, match="layers"):
        acc.update(xs[0][:10], xs[1][:10], xs[2][:10])
    bad = xs[1][:10].copy()
    bad[2, 1] = np.inf
    acc.update(xs[0][:10], bad)
    with pytest.raises(ValueError, match="batch 1 .*NaN/inf"):
        acc.result()


def test_minibatch_progress_bar_runs(capsys):
    xs = _layers(n=40)
    v = sim.minibatch_cka(iter([(xs[0][:20], xs[1][:20]), (xs[0][20:], xs[1][20:])]),
                          progress=True, total=2)
    assert np.isfinite(v)


def test_minibatch_float32_accumulates_in_float64():
    xs = _layers(n=64)
    a = sim.minibatch_cka([(x[:32].astype(np.float32), y[:32].astype(np.float32))
                           for x, y in [(xs[0], xs[1])]])
    assert isinstance(a, float)
    assert a == pytest.approx(ref.linear_cka(xs[0][:32], xs[1][:32], debiased=True), abs=1e-5)


# ---------------------------------------------------------------- sequences


def test_flatten_time_and_per_time_step():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(12, 3, 4)), rng.normal(size=(12, 3, 6))
    fx = np.asarray(sim.flatten_time(x))
    assert fx.shape == (36, 4) and np.allclose(fx[3 * 2 + 1], x[2, 1])
    mask = np.ones((12, 3), bool)
    mask[0, 2] = False
    assert np.asarray(sim.flatten_time(x, mask)).shape == (35, 4)
    per = sim.per_time_step(sim.cka, x, y)
    assert per.shape == (3,)
    assert per[1] == pytest.approx(ref.linear_cka(x[:, 1], y[:, 1]), abs=1e-12)
    res = sim.per_time_step(sim.cca, x, y)
    assert len(res) == 3 and hasattr(res[0], "rho")


# ---------------------------------------------------------------- bad input


def test_bad_input_errors():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="sample counts differ"):
        sim.cka(x, x[:9])
    with pytest.raises(ValueError, match="at least 2"):
        sim.cka(x[:1], x[:1])
    with pytest.raises(ValueError, match="at least 4"):
        sim.cka(x[:3], x[:3], debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        sim.hsic(x[:3], x[:3], estimator="unbiased")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        sim.cka(bad, x)
    with pytest.raises(ValueError, match="NaN/inf"):
        sim.cca(x, np.where(bad == bad, bad, np.inf))
    with pytest.raises(ValueError, match="flatten_time"):
        sim.cka(rng.normal(size=(10, 2, 3)), x)
    with pytest.raises(ValueError, match="rank 2"):
        sim.cka(np.ones(10), x)
    with pytest.raises(ValueError, match="kernel"):
        sim.cka(x, x, kernel="poly")
    with pytest.raises(ValueError, match="side"):
        sim.pwcca(x, x, side="z")
    with pytest.raises(ValueError, match="threshold"):
        sim.svcca(x, x, threshold=1.5)
    with pytest.raises(ValueError, match="sigma"):
        sim.rbf_cka(x, x, sigma=-1.0)
    with pytest.raises(ValueError, match="sample counts differ"):
        sim.cka_matrix([x, x[:8]])
    with pytest.raises(ValueError, match="measure"):
        sim.similarity_matrix([x, x], measure="procrustes")
    with pytest.raises(TypeError, match="`x`"):
        sim.cka(object(), x)


def test_constant_representation_gives_nan_with_warning():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(10, 3))
    const = np.ones((10, 4))  # constant features are fine; a constant representation is 0/0
    with pytest.warns(RuntimeWarning, match="constant"):
        v = sim.cka(x, const)
    assert np.isnan(float(v))
    partly = np.concatenate([x, np.ones((10, 1))], axis=1)
    assert float(sim.cka(x, partly)) == pytest.approx(1.0, abs=1e-12)
    with pytest.warns(RuntimeWarning, match="NaN"):
        sim.cka_matrix([x, const])
