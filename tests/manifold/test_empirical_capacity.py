"""Empirical capacity alpha_SIM: Cover's theorem, trends, certified thresholds, determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from geomjax.data import synthetic_manifolds
from geomjax.manifold import empirical_capacity
from geomjax.manifold._empirical import balanced_dichotomy, nested_projection

# One shape bucket for the manifold tests (P=16, M=8, N=64, n_max=48, 32 dichotomies), so the
# kernel compiles once for all of them.
P, M, N, NMAX, D = 16, 8, 64, 48, 32


def small(radius, dim, seed=1):
    return synthetic_manifolds(seed, P, M, N, radius=radius, dim=dim)


def run(X, key=0, **kw):
    kw.setdefault("n_max", NMAX)
    return empirical_capacity(jax.random.key(key), X, kw.pop("n_dichotomies", D), **kw)


def lp_separable(x, y):
    k, n = x.shape
    A = -(y[:, None] * np.hstack([x, np.ones((k, 1))]))
    r = linprog(np.zeros(n + 1), A_ub=A, b_ub=-np.ones(k), bounds=[(None, None)] * (n + 1),
                method="highs")
    return r.status == 0


def test_cover_points_critical_load_near_two():
    # M = 1: P points in general position; with a bias, half the dichotomies of K points are
    # separable at n + 1 = K / 2 (Cover 1965), so P / n_c = 2P / (P - 2) -> 2.
    Xp = np.random.default_rng(0).standard_normal((64, 1, 128))
    res = empirical_capacity(jax.random.key(0), Xp, 64)
    cover = 2 * 64 / (64 - 2)
    lo, hi = np.asarray(res.alpha_ci)
    assert lo <= cover <= hi
    assert abs(float(res.alpha_sim) - 2.0) < 0.15
    assert int(res.n_undecided) == 0 and int(res.n_censored) == 0
    # The measured curve matches Cover's count C(K, n+1) / 2^K within binomial noise.
    from scipy.special import comb

    n = np.asarray(res.n)
    K = 64
    cover_p = np.array([2 * sum(comb(K - 1, k, exact=True) for k in range(m + 1)) / 2**K
                        for m in n])
    err = np.abs(np.asarray(res.fraction) - np.minimum(cover_p, 1.0))
    assert err.max() < 4 * 0.5 / np.sqrt(64) + 0.05


def test_larger_radius_lowers_capacity():
    tight = run(small(0.1, 4))
    wide = run(small(1.5, 4))
    assert float(tight.alpha_sim) > float(wide.alpha_sim)
    assert np.asarray(tight.alpha_ci)[0] > np.asarray(wide.alpha_ci)[1]


def test_larger_dimension_lowers_capacity():
    low = run(small(1.0, 2))
    high = run(small(1.0, 12))
    assert float(low.alpha_sim) > float(high.alpha_sim)
    assert np.asarray(low.alpha_ci)[0] > np.asarray(high.alpha_ci)[1]


def test_result_structure_and_certified_thresholds():
    X = small(0.5, 4)
    res = run(X)
    frac = np.asarray(res.fraction)
    n_star = np.asarray(res.n_star)
    assert np.all(np.diff(frac) >= 0) and frac[0] == 0.0
    assert np.all((n_star >= 1) & (n_star <= NMAX + 1))
    nc = float(res.n_critical)
    assert frac[int(np.floor(nc))] < 0.5 <= frac[int(np.ceil(nc))]
    assert float(res.alpha_sim) == pytest.approx(P / nc)
    lo, hi = np.asarray(res.alpha_ci)
    assert lo <= float(res.alpha_sim) <= hi
    assert int(res.n_undecided) == 0 and int(res.n_checks) >= D
    df = res.to_frame()
    assert list(df.columns[:4]) == ["n", "fraction", "fraction_stderr", "n_tested"]
    assert len(df) == NMAX + 1 and df.attrs["n_dichotomies"] == D
    assert df["n_tested"].sum() == int(res.n_checks)
    # Rebuild three dichotomies and confirm each critical size with the exact LP oracle:
    # not separable with n* - 1 features, separable with n*.
    key = jax.random.key(0)
    Xc = X.reshape(P * M, N) - X.reshape(P * M, N).mean(0)
    for d in range(3):
        k_lab, k_proj = jax.random.split(jax.random.fold_in(key, d))
        y = np.repeat(np.asarray(balanced_dichotomy(k_lab, P)), M).astype(float)
        W = np.asarray(nested_projection(k_proj, N, 48, 16, jnp.float64))
        ns = int(n_star[d])
        assert lp_separable(Xc @ W[:, :ns], y)
        assert not lp_separable(Xc @ W[:, : ns - 1], y)


def test_same_key_same_result_and_batching_invariance():
    X = small(0.5, 4)
    a = run(X)
    b = run(X)
    np.testing.assert_array_equal(a.n_star, b.n_star)
    assert float(a.alpha_sim) == float(b.alpha_sim)
    # Fewer dichotomies, all solved at once with vmap: the same dichotomies give the same n*.
    c = run(X, n_dichotomies=16, chunk_size=16)
    np.testing.assert_array_equal(c.n_star, np.asarray(a.n_star)[:16])
    d = run(X, key=1)
    assert not np.array_equal(d.n_star, a.n_star)


@pytest.mark.slow
def test_bracket_doubles_when_censored():
    # Wide manifolds with a bracket far too small: n_max grows until the interval resolves.
    X = small(1.5, 4)
    res = run(X, n_max=None, capacity_guess=8.0)
    fixed = run(X)
    assert int(res.n_max) > 16
    assert int(res.n_censored) <= D - 22  # enough separable at n_max for the upper bound
    assert float(res.n_critical) == pytest.approx(float(fixed.n_critical))


def test_bad_input_errors():
    X = small(0.5, 4)
    key = jax.random.key(0)
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        empirical_capacity(key, bad)
    with pytest.raises(ValueError, match="P >= 2"):
        empirical_capacity(key, X[:1])
    with pytest.raises(ValueError, match="features"):
        empirical_capacity(key, [X[0], X[1][:, :10]])
    with pytest.raises(ValueError, match="rank|shape"):
        empirical_capacity(key, X[0])
    with pytest.raises(ValueError, match="n_dichotomies"):
        empirical_capacity(key, X, 0)
    with pytest.raises(ValueError, match="confidence"):
        empirical_capacity(key, X, confidence=1.0)
    with pytest.raises(ValueError, match="capacity_guess"):
        empirical_capacity(key, X, capacity_guess=-1.0)
    with pytest.raises(ValueError, match="n_max"):
        empirical_capacity(key, X, n_max=N + 1)
    with pytest.raises(ValueError, match="block"):
        empirical_capacity(key, X, block=0)
    with pytest.raises(TypeError, match="key"):
        empirical_capacity(0, X)


@pytest.mark.slow
def test_benchmark_scale_agrees_with_mean_field_capacity():
    from geomjax.manifold import mftma

    X = synthetic_manifolds(0)  # P=50, M=50, N=5000, r=0.5, d=10
    mft = float(mftma(jax.random.key(1), X).capacity)
    res = empirical_capacity(jax.random.key(0), X, 64, capacity_guess=mft)
    assert int(res.n_undecided) == 0
    assert abs(float(res.alpha_sim) / mft - 1) < 0.08


def test_median_interval_ranks_and_coverage():
    from scipy.stats import binom

    from geomjax.manifold._empirical import _median_ci_coverage, _median_ci_ranks

    assert _median_ci_ranks(20, 0.95) == (6, 15)
    for n in (6, 20, 64, 101):
        l, u = _median_ci_ranks(n, 0.95)
        cov = _median_ci_coverage(n, l, u)
        assert cov >= 0.95
        # Narrowest: moving either end inwards loses the coverage.
        assert binom.cdf(u - 2, n, 0.5) - binom.cdf(l, n, 0.5) < 0.95
    assert _median_ci_ranks(4, 0.95) == (1, 4)
    assert _median_ci_coverage(4, 1, 4) == pytest.approx(0.875)


@pytest.mark.slow
def test_float32_input_follows_dtype():
    X = small(0.5, 4)
    r64 = run(X)
    r32 = run(X.astype(np.float32))
    # float32 Gordan residuals plateau near sqrt(eps): a rare check may stay undecided (flagged).
    assert int(r32.n_undecided) <= 2
    # Projections are drawn in the input dtype (a different stream), so compare the estimates:
    # the two confidence intervals must overlap.
    lo32, hi32 = np.asarray(r32.alpha_ci)
    lo64, hi64 = np.asarray(r64.alpha_ci)
    assert lo32 <= hi64 and lo64 <= hi32


def test_ragged_manifolds():
    # Manifolds of different sizes (same total point count, so the same compiled kernel).
    X = small(0.5, 4)
    pts = X.reshape(P * M, N)
    sizes = [4, 12] + [M] * (P - 2)
    parts = np.split(pts, np.cumsum(sizes)[:-1])
    res = run(parts)
    assert int(res.n_undecided) == 0 and np.isfinite(float(res.alpha_sim))
    assert res.n_manifolds == P
    # Moving points between the first two manifolds changes which points share a label.
    assert not np.array_equal(res.n_star, run(X).n_star)


def _low_rank(seed, K, N, r):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((K, r)) @ rng.standard_normal((r, N))


def test_row_space_factor_reproduces_the_gram_matrix():
    from geomjax.manifold._empirical import _row_space_factor

    X = jnp.asarray(_low_rank(0, 40, 300, 7))
    A = _row_space_factor(jax.random.key(0), X, 30, block=4)
    assert A.shape == (40, 7)
    G = np.asarray(X @ X.T)
    np.testing.assert_allclose(np.asarray(A @ A.T), G, rtol=0, atol=1e-10 * np.abs(G).max())
    # Canonical (principal-component) factor: another sketch gives the same columns.
    A2 = _row_space_factor(jax.random.key(1), X, 30, block=5)
    np.testing.assert_allclose(np.asarray(A2), np.asarray(A), atol=1e-9 * float(np.abs(A).max()))
    # Full rank above the cap: no factor (the direct projection is used).
    assert _row_space_factor(jax.random.key(0), jnp.asarray(_low_rank(0, 40, 300, 20)), 12) is None


def test_factored_projection_has_the_law_of_the_direct_one():
    from scipy.stats import ks_2samp

    from geomjax.manifold._empirical import _row_space_factor, factored_projection

    K, N, r, C = 6, 50, 3, 4096
    X = jnp.asarray(_low_rank(2, K, N, r))
    A = _row_space_factor(jax.random.key(0), X, 10)
    Yf = np.asarray(factored_projection(jax.random.key(1), A, N - A.shape[1], C, 16))
    Yd = np.asarray(X @ nested_projection(jax.random.key(2), N, C, 16, jnp.float64))
    # E[y y^T] = X X^T / N for unit-norm Gaussian directions.
    G = np.asarray(X @ X.T) / N
    for Y in (Yf, Yd):
        np.testing.assert_allclose(Y @ Y.T / C, G, atol=6 * np.abs(G).max() / np.sqrt(C))
    # Same distribution of the projected points (two-sample KS on two coordinates).
    for j in (0, 3):
        assert ks_2samp(Yf[j], Yd[j]).pvalue > 1e-3
    # The chi-square part matters: without it the norms would be too large.
    Yn = np.asarray(factored_projection(jax.random.key(1), A, 0, C, 16))
    assert ks_2samp(Yn[0], Yd[0]).pvalue < 1e-6


def test_low_rank_path_certified_thresholds():
    from geomjax.manifold._empirical import _row_space_factor, factored_projection

    X = small(0.5, 2)  # rank <= P (d + 1) = 48 < N = 64
    res = run(X, low_rank=True)
    direct = run(X, low_rank=False)
    assert int(res.n_undecided) == 0
    lo, hi = np.asarray(res.alpha_ci)
    lo_d, hi_d = np.asarray(direct.alpha_ci)
    assert lo <= hi_d and lo_d <= hi
    key = jax.random.key(0)
    Xc = X.reshape(P * M, N) - X.reshape(P * M, N).mean(0)
    A = _row_space_factor(jax.random.fold_in(key, 2**31 - 1), jnp.asarray(Xc), N - 1)
    assert A.shape[1] < N
    # The run took the span factor (3-dim spans); its draws are those of the range finder's
    # principal-component factor, so the thresholds are checked on the latter's projections.
    from geomjax.manifold._empirical import _manifold_factor

    assert _manifold_factor(key, jnp.asarray(Xc), [M] * P, N - 1) is not None
    n_star = np.asarray(res.n_star)
    for d in range(3):
        k_lab, k_proj = jax.random.split(jax.random.fold_in(key, d))
        y = np.repeat(np.asarray(balanced_dichotomy(k_lab, P)), M).astype(float)
        Y = np.asarray(factored_projection(k_proj, A, N - A.shape[1], 48, 16))
        ns = int(n_star[d])
        assert lp_separable(Y[:, :ns], y)
        assert not lp_separable(Y[:, : ns - 1], y)


def test_manifold_factor_matches_the_row_space_factor():
    from geomjax.manifold._empirical import (
        _manifold_factor,
        _row_space_factor,
        factored_projection,
        manifold_factored_projection,
    )

    rng = np.random.default_rng(3)
    # Ragged manifolds, each a 3-dim cloud around a centre: spans of 4 dims, rank <= 4 P.
    counts = [12, 15, 10, 14, 13, 12]
    mans = [rng.standard_normal((1, 80))
            + rng.standard_normal((c, 3)) @ rng.standard_normal((3, 80)) for c in counts]
    X = np.concatenate(mans)
    X = jnp.asarray(X - X.mean(0))
    f = _manifold_factor(jax.random.key(0), X, counts, 60)
    assert f is not None
    B, G, rows = f
    A2 = np.asarray(jnp.matmul(B, G.reshape(B.shape[0], B.shape[2], -1)).reshape(-1, G.shape[1]))
    A2 = A2[np.asarray(rows)]
    A = np.asarray(_row_space_factor(jax.random.key(1), X, 60))
    assert A.shape == A2.shape == (sum(counts), 23)  # 6 spans of 4, less the global mean
    np.testing.assert_allclose(A2, A, atol=1e-9 * np.abs(A).max())
    Y1 = factored_projection(jax.random.key(2), jnp.asarray(A), 57, 32, 16)
    Y2 = manifold_factored_projection(jax.random.key(2), f, 57, 32, 16)
    np.testing.assert_allclose(np.asarray(Y2), np.asarray(Y1), atol=1e-9 * float(np.abs(Y1).max()))
    # Spans as large as the points (generic manifolds): no gain, no factor.
    Xg = jnp.asarray(rng.standard_normal((48, 80)))
    assert _manifold_factor(jax.random.key(0), Xg, [8] * 6, 40) is None
