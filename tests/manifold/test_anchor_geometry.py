"""anchor_geometry: exact agreement with an NNLS oracle, ball theory, limits and trends."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_mftma import anchors_nnls, geometry_coded  # noqa: E402
from geomjax.manifold import anchor_geometry  # noqa: E402

# (M, D+1) buckets: D = M (the usual M < N case) and M > D + 1 (the M >= N case).
BUCKETS = [(10, 11), (16, 6)]
N_T = 24


def _reduced(seed, shape, radius, duplicates):
    rng = np.random.default_rng(seed)
    M, D1 = shape
    Z = rng.standard_normal((M, D1 - 1))
    if duplicates:
        Z[M // 2 :] = Z[: M - M // 2]
    Z -= Z.mean(axis=0)
    S = np.concatenate([radius * Z / np.sqrt(D1 - 1), np.ones((M, 1))], axis=1)
    t = rng.standard_normal((N_T, D1))
    return S, t


@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from(BUCKETS),
    radius=st.sampled_from([0.05, 0.5, 2.0]),
    kappa=st.sampled_from([0.0, 0.25]),
    duplicates=st.booleans(),
)
def test_matches_exact_nnls_oracle(seed, shape, radius, kappa, duplicates):
    S, t = _reduced(seed, shape, radius, duplicates)
    geo = anchor_geometry(S, t, kappa)
    assert bool(np.all(geo.solution.converged))
    a, r, d = geometry_coded(anchors_nnls(S, t, kappa), t, kappa)
    np.testing.assert_allclose(float(geo.capacity), a, rtol=1e-7)
    np.testing.assert_allclose(float(geo.radius), r, rtol=1e-7)
    np.testing.assert_allclose(float(geo.dimension), d, rtol=1e-7, atol=1e-12)


def test_float32_follows_dtype_and_is_close():
    S, t = _reduced(1, BUCKETS[0], 0.5, False)
    g32 = anchor_geometry(S.astype(np.float32), t.astype(np.float32))
    assert g32.capacity.dtype == jnp.float32 and g32.anchors.dtype == jnp.float32
    a, r, d = geometry_coded(anchors_nnls(S, t, 0.0), t, 0.0)
    np.testing.assert_allclose([float(g32.capacity), float(g32.radius), float(g32.dimension)],
                               [a, r, d], rtol=2e-4)


def test_vmap_over_manifolds_equals_loop():
    Ss, ts = zip(*[_reduced(s, BUCKETS[1], 0.5, False) for s in range(3)], strict=False)
    Ss, ts = jnp.asarray(np.stack(Ss)), jnp.asarray(np.stack(ts))
    batched = jax.vmap(lambda S, t: anchor_geometry(S, t))(Ss, ts)
    for i in range(3):
        one = anchor_geometry(Ss[i], ts[i])
        np.testing.assert_allclose(float(batched.capacity[i]), float(one.capacity), rtol=1e-12)
        np.testing.assert_allclose(float(batched.dimension[i]), float(one.dimension), rtol=1e-12)


def test_chunking_does_not_change_results():
    S, t = _reduced(4, BUCKETS[0], 0.5, False)
    full = anchor_geometry(S, t)
    chunked = anchor_geometry(S, t, chunk_size=7)
    for f in ("capacity", "radius", "dimension", "anchors"):
        np.testing.assert_allclose(np.asarray(getattr(chunked, f)), np.asarray(getattr(full, f)),
                                   rtol=1e-12, atol=1e-14)


# --- ball theory (Chung, Lee & Sompolinsky 2018) -----------------------------------------------


def ball_inv_capacity(kappa, R, D):
    """1/alpha_Ball by quadrature of the closed form (Gaussian limits clipped to +-12)."""
    phi = stats.norm.pdf

    def inner(t):
        lo = max(kappa - t / R, -12.0)
        hi = min(kappa + R * t, 12.0)
        touch = integrate.quad(lambda t0: phi(t0) * (kappa + R * t - t0) ** 2, lo, hi)[0] / (
            1 + R * R) if hi > lo else 0.0
        embed = integrate.quad(lambda t0: phi(t0) * ((kappa - t0) ** 2 + t * t), -12.0, lo)[0]
        return stats.chi.pdf(t, D) * (touch + embed)

    return integrate.quad(inner, 0, 12 + np.sqrt(D))[0]


@pytest.mark.parametrize(
    "R, D, expected", [(1e-4, 3, 1.9995), (0.1, 3, 1.5703), (0.5, 3, 0.7750), (0.5, 10, 0.3600)]
)
def test_ball_quadrature_reproduces_known_values(R, D, expected):
    assert 1 / ball_inv_capacity(0.0, R, D) == pytest.approx(expected, abs=6e-4)


def _ball_per_sample_F(t, R, kappa):
    """Exact per-sample F(t) for the L2 ball of radius R (centre direction = last coordinate)."""
    tv = np.linalg.norm(t[:, :-1], axis=1)
    h = -t[:, -1]
    F = np.where(h > kappa + R * tv, 0.0, (kappa + R * tv - h) ** 2 / (1 + R * R))
    return np.where(h < kappa - tv / R, (kappa - h) ** 2 + tv**2, F)


def _fibonacci_sphere(n):
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


SPHERE_M, SPHERE_NT = 120, 1000


@pytest.mark.parametrize("kappa", [0.0, 0.3])
def test_dense_sphere_matches_ball_capacity(kappa):
    R, D, M, n_t = 0.5, 3, SPHERE_M, SPHERE_NT
    S = np.concatenate([R * _fibonacci_sphere(M), np.ones((M, 1))], axis=1)
    t = np.asarray(jax.random.normal(jax.random.key(0), (n_t, D + 1), jnp.float64))
    geo = anchor_geometry(S, t, kappa)
    assert bool(np.all(geo.solution.converged))
    F_ball = _ball_per_sample_F(t, R, kappa)
    inv_poly = float(geo.inv_capacity)
    # The polytope lies inside the ball: per sample F_poly <= F_ball, and it is close.
    assert inv_poly <= F_ball.mean() * (1 + 1e-12)
    assert inv_poly >= 0.95 * F_ball.mean()
    # Same samples through the closed form: agreement within Monte-Carlo error.
    se = F_ball.std() / np.sqrt(n_t)
    assert abs(F_ball.mean() - ball_inv_capacity(kappa, R, D)) <= 4 * se


def test_points_limit_gives_capacity_two():
    # Same shapes as the sphere test (one compilation), shrunk towards the centre.
    M, D1, n_t = SPHERE_M, 4, SPHERE_NT
    S = np.concatenate([1e-7 * _fibonacci_sphere(M), np.ones((M, 1))], axis=1)
    t = np.asarray(jax.random.normal(jax.random.key(1), (n_t, D1), jnp.float64))
    geo = anchor_geometry(S, t)
    F_point = np.maximum(t[:, -1], 0) ** 2
    np.testing.assert_allclose(float(geo.inv_capacity), F_point.mean(), rtol=1e-5)
    se = F_point.std() / np.sqrt(n_t)
    assert abs(float(geo.inv_capacity) - 0.5) <= 4 * se  # alpha -> 2 at kappa = 0


def test_capacity_falls_with_radius_and_dimension():
    rng = np.random.default_rng(3)
    M, D1 = 16, 6
    Z = rng.standard_normal((M, D1 - 1))
    Z -= Z.mean(0)
    t = rng.standard_normal((N_T, D1))
    caps = []
    for r in [0.1, 0.3, 1.0, 3.0]:
        S = np.concatenate([r * Z, np.ones((M, 1))], axis=1)
        caps.append(float(anchor_geometry(S, t).capacity))
    # Centred points: the smaller cone lies in the larger one, so F grows sample by sample.
    assert all(a > b for a, b in zip(caps, caps[1:], strict=False))

    # Dimension: a flat (rank-1) cloud vs a full-rank cloud of the same size.
    t2 = np.asarray(jax.random.normal(jax.random.key(5), (N_T, 11), jnp.float64))
    Z2 = rng.standard_normal((10, 10))
    Z2 -= Z2.mean(0)
    flat = Z2.copy()
    flat[:, 1:] = 0
    g_lo = anchor_geometry(np.concatenate([0.5 * flat / np.linalg.norm(flat, axis=1).mean(),
                                           np.ones((10, 1))], 1), t2)
    g_hi = anchor_geometry(np.concatenate([0.5 * Z2 / np.linalg.norm(Z2, axis=1).mean(),
                                           np.ones((10, 1))], 1), t2)
    assert float(g_lo.capacity) > float(g_hi.capacity)
    assert float(g_lo.dimension) < float(g_hi.dimension)


def test_paper_radius_is_at_least_coded_radius():
    S, t = _reduced(8, BUCKETS[0], 0.5, False)
    coded = anchor_geometry(S, t, forms="coded")
    paper = anchor_geometry(S, t, forms="paper")
    assert float(paper.radius) >= float(coded.radius) * (1 - 1e-12)
    assert float(paper.capacity) == pytest.approx(float(coded.capacity), rel=1e-14)
    assert np.isfinite(float(paper.dimension)) and float(paper.dimension) > 0


def test_all_interior_reports_infinite_capacity():
    S, t = _reduced(2, BUCKETS[0], 0.5, False)
    geo = anchor_geometry(S, t, kappa=-100.0)
    assert np.isinf(float(geo.capacity)) and bool(np.all(geo.interior))
    assert np.isfinite(float(geo.radius))


@pytest.mark.parametrize(
    "points, t, match",
    [
        (np.ones(4), np.ones((3, 4)), "`points` must be"),
        (np.ones((4, 3)), np.ones((3, 4)), "`t` must be"),
        (np.array([[0.0, 1.0], [np.nan, 1.0]]), np.ones((3, 2)), "NaN/inf"),
        (np.array([[0.0, 2.0], [1.0, 1.0]]), np.ones((3, 2)), "last column all ones"),
        (np.ones((4, 3)), np.full((3, 3), np.inf), "NaN/inf"),
    ],
)
def test_bad_input(points, t, match):
    with pytest.raises(ValueError, match=match):
        anchor_geometry(points, t)


def test_bad_forms():
    with pytest.raises(ValueError, match="`forms`"):
        anchor_geometry(np.ones((3, 2)), np.ones((2, 2)), forms="matlab")
