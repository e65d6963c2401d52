"""HSIC / CKA: float64 references, invariances (hypothesis), estimator properties, dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import similarity_refs as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import geomjax.similarity as sim

SHAPES = [(24, 5, 7), (40, 12, 5)]  # (N, Dx, Dy) buckets keep compilations bounded


def _pair(seed, shape, shared=3):
    n, dx, dy = shape
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, shared))
    x = z @ rng.normal(size=(shared, dx)) + 0.7 * rng.normal(size=(n, dx))
    y = z @ rng.normal(size=(shared, dy)) + 0.7 * rng.normal(size=(n, dy)) + 3.0
    return x, y


pairs = st.tuples(st.integers(0, 10_000), st.sampled_from(SHAPES))


# ---------------------------------------------------------------- references (float64)


@pytest.mark.parametrize("method", ["feature", "gram"])
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matches_numpy(method, debiased):
    x, y = _pair(0, (60, 9, 14))
    got = float(sim.cka(x, y, method=method, debiased=debiased))
    assert got == pytest.approx(ref.linear_cka(x, y, debiased), abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka_matches_numpy(debiased):
    x, y = _pair(1, (50, 6, 8))
    want = ref.cka_gram(ref.gram_rbf(x, 0.5), ref.gram_rbf(y, 0.5), debiased)
    assert float(sim.rbf_cka(x, y, debiased=debiased)) == pytest.approx(want, abs=1e-12)
    # explicit sigma and the 1.0 x median rule are different, named variants
    sig = 2.5
    want_sig = ref.cka_gram(np.exp(-_sqd(x) / (2 * sig**2)), np.exp(-_sqd(y) / (2 * sig**2)))
    assert float(sim.rbf_cka(x, y, sigma=sig)) == pytest.approx(want_sig, abs=1e-12)
    assert float(sim.rbf_cka(x, y, bandwidth_factor=1.0)) != pytest.approx(
        float(sim.rbf_cka(x, y)), abs=1e-4
    )


def _sqd(x):
    d = x @ x.T
    s = np.diag(d)
    return np.maximum(s[:, None] + s[None, :] - 2 * d, 0)


def test_median_rule_exact_with_and_without_diagonal():
    x, _ = _pair(2, (31, 4, 4))  # odd N -> odd N^2 and even N(N-1)/2: both median branches
    sq = _sqd(x)
    np.fill_diagonal(sq, 0)
    assert float(sim.rbf_bandwidth(x)) == pytest.approx(0.5 * np.sqrt(np.median(sq)), rel=1e-12)
    off = sq[~np.eye(31, dtype=bool)]
    got = float(sim.rbf_bandwidth(x, bandwidth_factor=1.0, median_include_diagonal=False))
    assert got == pytest.approx(np.sqrt(np.median(off)), rel=1e-12)
    x2, _ = _pair(3, (30, 4, 4))  # even N^2
    sq2 = _sqd(x2)
    np.fill_diagonal(sq2, 0)
    assert float(sim.rbf_bandwidth(x2, bandwidth_factor=1.0)) == pytest.approx(
        np.sqrt(np.median(sq2)), rel=1e-12
    )


def test_hsic_estimators_match_numpy():
    x, y = _pair(4, (30, 5, 6))
    k, l = ref.gram_linear(x), ref.gram_linear(y)
    assert float(sim.hsic(x, y)) == pytest.approx(ref.hsic_biased(k, l), rel=1e-11)
    assert float(sim.hsic(x, y, estimator="unbiased")) == pytest.approx(
        ref.hsic_unbiased(k, l), rel=1e-10
    )
    assert float(sim.hsic_gram(k, l)) == pytest.approx(ref.hsic_biased(k, l), rel=1e-11)
    assert float(sim.hsic_gram(k, l, estimator="unbiased")) == pytest.approx(
        ref.hsic_unbiased(k, l), rel=1e-10
    )
    kr, lr = ref.gram_rbf(x), ref.gram_rbf(y)
    assert float(sim.hsic(x, y, kernel="rbf", estimator="unbiased")) == pytest.approx(
        ref.hsic_unbiased(kr, lr), rel=1e-9
    )
    assert float(sim.cka_gram(kr, lr, debiased=True)) == pytest.approx(
        ref.cka_gram(kr, lr, True), abs=1e-12
    )


def test_gram_helpers():
    x, _ = _pair(5, (20, 4, 4))
    xc = x - x.mean(0)
    np.testing.assert_allclose(np.asarray(sim.gram_linear(x)), xc @ xc.T, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sim.gram_rbf(x)), ref.gram_rbf(x), atol=1e-12)


def test_feature_and_gram_space_agree_and_auto_choice():
    assert sim.linear_cka_method(5000, 1024, 1024) == "feature"
    assert sim.linear_cka_method(100, 1024, 2048) == "gram"
    x, y = _pair(6, (20, 30, 25))  # D > N
    a = float(sim.cka(x, y, method="feature"))
    b = float(sim.cka(x, y, method="gram"))
    assert a == pytest.approx(b, abs=1e-13)


# ---------------------------------------------------------------- invariances (hypothesis)


@settings(max_examples=10)
@given(pairs, st.booleans())
def test_cka_symmetric_bounded_identity(p, debiased):
    x, y = _pair(p[0], p[1])
    a = float(sim.cka(x, y, debiased=debiased))
    b = float(sim.cka(y, x, debiased=debiased))
    assert a == pytest.approx(b, abs=1e-12)
    lo = -1.0 if debiased else 0.0
    assert lo - 1e-12 <= a <= 1 + 1e-12
    assert float(sim.cka(x, x, debiased=debiased)) == pytest.approx(1.0, abs=1e-12)
    r = float(sim.rbf_cka(x, y))
    assert 0 <= r <= 1 + 1e-12
    assert float(sim.rbf_cka(x, x)) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=8)
@given(pairs, st.floats(0.1, 50.0), st.booleans())
def test_cka_orthogonal_and_scale_invariant(p, c, debiased):
    x, y = _pair(p[0], p[1])
    q = ortho_group.rvs(x.shape[1], random_state=p[0])
    base = float(sim.cka(x, y, debiased=debiased))
    assert float(sim.cka(c * x @ q + 5.0, y, debiased=debiased)) == pytest.approx(base, abs=1e-10)
    assert float(sim.cka(x, c * y, debiased=debiased)) == pytest.approx(base, abs=1e-10)
    rb = float(sim.rbf_cka(x, y))
    assert float(sim.rbf_cka(c * x @ q, y)) == pytest.approx(rb, abs=1e-10)


@settings(max_examples=8)
@given(pairs)
def test_cka_not_invariant_to_general_invertible_maps(p):
    x, y = _pair(p[0], p[1])
    rng = np.random.default_rng(p[0] + 1)
    a = np.diag(np.linspace(0.2, 5.0, x.shape[1])) @ ortho_group.rvs(x.shape[1], random_state=rng)
    assert abs(np.linalg.det(a)) > 1e-6
    assert abs(float(sim.cka(x @ a, y)) - float(sim.cka(x, y))) > 1e-6


def test_cka_drops_under_one_sided_permutation():
    x, y = _pair(7, (200, 6, 6), shared=5)
    perm = np.random.default_rng(0).permutation(200)
    assert float(sim.cka(x, y)) > float(sim.cka(x[perm], y)) + 0.2
    assert abs(float(sim.cka(x[perm], y, debiased=True))) < 0.1


# ---------------------------------------------------------------- estimator properties


def test_unbiased_hsic_is_unbiased_over_subsets():
    """Averaged over size-n subsets of a finite pool, the U-statistic equals the pool's value;
    the biased estimator is offset by O(1/n)."""
    rng = np.random.default_rng(0)
    pool_n, n, draws = 120, 12, 400
    x, y = _pair(8, (pool_n, 3, 4))
    pool_u = ref.hsic_unbiased(ref.gram_linear(x), ref.gram_linear(y))
    idx = np.stack([rng.choice(pool_n, n, replace=False) for _ in range(draws)])
    f_u = jax.jit(jax.vmap(lambda a, b: sim.hsic(a, b, estimator="unbiased")))
    f_b = jax.jit(jax.vmap(lambda a, b: sim.hsic(a, b)))
    vals_u = np.asarray(f_u(x[idx], y[idx]))
    vals_b = np.asarray(f_b(x[idx], y[idx]))
    se = vals_u.std(ddof=1) / np.sqrt(draws)
    assert abs(vals_u.mean() - pool_u) < 4 * se
    assert abs(vals_b.mean() - pool_u) > 4 * se


def test_debiased_cka_near_zero_for_independent_data():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 40)), rng.normal(size=(300, 40))
    assert abs(float(sim.debiased_cka(x, y))) < 0.02
    assert float(sim.cka(x, y)) > 0.05  # the biased estimator is inflated


def test_rbf_limits():
    x, y = _pair(9, (40, 5, 5))
    assert float(sim.rbf_cka(x, y, sigma=1e-3)) == pytest.approx(1.0, abs=1e-9)
    far = float(sim.rbf_cka(x, y, bandwidth_factor=200.0))
    assert far == pytest.approx(float(sim.cka(x, y)), abs=1e-3)


# ---------------------------------------------------------------- jit / vmap / dtype / grad


def test_eager_equals_jit_and_vmap_equals_loop():
    xs = np.stack([_pair(s, SHAPES[0])[0] for s in range(3)])
    ys = np.stack([_pair(s, SHAPES[0])[1] for s in range(3)])
    loop = np.array([float(sim.cka(a, b, debiased=True)) for a, b in zip(xs, ys, strict=True)])
    jitted = jax.jit(lambda a, b: sim.cka(a, b, debiased=True))
    assert float(jitted(xs[0], ys[0])) == pytest.approx(loop[0], abs=1e-13)
    vm = np.asarray(jax.vmap(lambda a, b: sim.cka(a, b, debiased=True))(xs, ys))
    np.testing.assert_allclose(vm, loop, atol=1e-13)
    vr = np.asarray(jax.vmap(lambda a, b: sim.rbf_cka(a, b))(xs, ys))
    loop_r = [float(sim.rbf_cka(a, b)) for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(vr, loop_r, atol=1e-12)


def test_float32_follows_dtype_and_is_accurate_with_offsets():
    x, y = _pair(10, (300, 20, 30))
    want = ref.linear_cka(x, y)
    x32 = (x + 1000.0).astype(np.float32)
    y32 = y.astype(np.float32)
    got = sim.cka(x32, y32)
    assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(want, abs=2e-5)
    assert sim.cka(x, y).dtype == jnp.float64
    assert sim.cka(x.astype(np.int64), y.astype(np.int64)).dtype == jnp.float64


def test_gradient_finite_and_matches_finite_differences():
    x, y = _pair(11, (30, 4, 5))
    f = lambda a: sim.cka(a, jnp.asarray(y))  # noqa: E731
    g = np.asarray(jax.grad(f)(jnp.asarray(x)))
    assert np.all(np.isfinite(g))
    d = np.random.default_rng(0).normal(size=x.shape)
    h = 1e-6
    fd = (float(f(x + h * d)) - float(f(x - h * d))) / (2 * h)
    assert float(np.sum(g * d)) == pytest.approx(fd, rel=1e-5, abs=1e-9)
