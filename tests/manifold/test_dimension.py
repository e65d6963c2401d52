"""D_PR, D_EV and the random projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geomjax.manifold import explained_variance_dimension, participation_ratio, random_projection


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    # 3 manifolds of 20 points in 15 dimensions with an anisotropic spectrum.
    return rng.standard_normal((3, 20, 15)) * np.linspace(3.0, 0.2, 15)


def _eig(x):
    a = x.reshape(-1, x.shape[-1])
    return np.linalg.eigvalsh(np.cov(a.T, bias=True))[::-1]


def test_participation_ratio_matches_numpy(cloud):
    lam = _eig(cloud)
    expected = lam.sum() ** 2 / (lam**2).sum()
    np.testing.assert_allclose(float(participation_ratio(cloud)), expected, rtol=1e-10)
    # list input (ragged allowed) and pooled array input agree
    np.testing.assert_allclose(float(participation_ratio(list(cloud))), expected, rtol=1e-10)


def test_participation_ratio_limits():
    iso = np.random.default_rng(1).standard_normal((4000, 5))
    assert float(participation_ratio(iso)) == pytest.approx(5.0, rel=0.02)
    line = np.outer(np.arange(10.0), np.ones(4))
    assert float(participation_ratio(line)) == pytest.approx(1.0, rel=1e-8)


def test_explained_variance_dimension_and_reference_count(cloud):
    lam = _eig(cloud)
    ratio = np.cumsum(lam) / lam.sum()
    k = explained_variance_dimension(cloud, 0.9)
    assert ratio[k - 1] >= 0.9 and (k == 1 or ratio[k - 2] < 0.9)
    assert explained_variance_dimension(cloud, 0.9, reference_convention=True) == k - 1
    assert explained_variance_dimension(cloud, 1.0) <= 15
    with pytest.raises(ValueError, match="`threshold`"):
        explained_variance_dimension(cloud, 1.5)


def test_random_projection_unit_rows_shared_and_deterministic():
    key = jax.random.key(0)
    N, n = 30, 12
    Pi_T = random_projection(key, jnp.eye(N), n)  # rows of I project to the columns of Pi^T
    np.testing.assert_allclose(np.linalg.norm(np.asarray(Pi_T), axis=0), 1.0, rtol=1e-12)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((5, N)), rng.standard_normal((7, N))
    pa, pb = random_projection(key, [a, b], n)
    np.testing.assert_allclose(np.asarray(pa), a @ np.asarray(Pi_T), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(pb), b @ np.asarray(Pi_T), rtol=1e-10, atol=1e-12)
    stacked = random_projection(key, np.stack([a[:5], b[:5]]), n)
    assert stacked.shape == (2, 5, n)
    np.testing.assert_allclose(np.asarray(random_projection(key, a, n)), np.asarray(pa))
    assert random_projection(key, a.astype(np.float32), n).dtype == jnp.float32


def test_random_projection_keeps_narrow_inputs_and_checks_input():
    x = np.ones((3, 4))
    assert random_projection(jax.random.key(0), x, 10) is not None
    np.testing.assert_array_equal(np.asarray(random_projection(jax.random.key(0), x, 10)), x)
    with pytest.raises(ValueError, match="`n_features`"):
        random_projection(jax.random.key(0), x, 0)
    with pytest.raises(ValueError, match="share a non-empty last"):
        random_projection(jax.random.key(0), [np.ones((2, 4)), np.ones((2, 5))], 2)


@pytest.mark.parametrize("bad, match", [
    (np.ones(5), "must be"),
    (np.full((4, 3), np.nan), "NaN/inf"),
    (np.ones((1, 3)), "at least 2 points"),
    ([], "empty"),
])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        participation_ratio(bad)
