import numpy as np
import pytest

from geomjax.data import ball_manifolds, synthetic_manifolds


def test_synthetic_manifolds_shape_seed_and_radius():
    a = synthetic_manifolds(3, n_manifolds=5, n_points=40, n_features=300, radius=0.5, dim=4)
    b = synthetic_manifolds(3, n_manifolds=5, n_points=40, n_features=300, radius=0.5, dim=4)
    c = synthetic_manifolds(4, n_manifolds=5, n_points=40, n_features=300, radius=0.5, dim=4)
    assert a.shape == (5, 40, 300) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # the spread around each centre is about r * ||c|| (B z / sqrt(d) has unit expected norm^2)
    centres = a.mean(axis=1)
    spread = np.linalg.norm(a - centres[:, None], axis=2).mean(axis=1)
    rel = spread / np.linalg.norm(centres, axis=1)
    assert np.all((rel > 0.3) & (rel < 0.7))
    # intrinsic dimension d: centred clouds have rank d
    assert np.linalg.matrix_rank(a[0] - centres[0]) == 4


def test_ball_manifolds_lie_on_spheres():
    x = ball_manifolds(0, n_manifolds=3, n_points=30, n_features=50, radius=0.7, dim=3)
    assert x.shape == (3, 30, 50)
    for pts in x:
        # unit-norm centre plus a radius-0.7 sphere orthogonal to it: ||x||^2 = 1 + 0.49
        np.testing.assert_allclose((pts**2).sum(axis=1), 1.49, rtol=1e-12)
        # the sphere spans `dim` directions
        assert np.linalg.matrix_rank(pts - pts.mean(0), tol=1e-8) == 3


def test_synthetic_manifolds_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_manifolds >= 2"):
        synthetic_manifolds(0, n_manifolds=1)
