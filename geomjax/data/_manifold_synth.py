"""Synthetic Gaussian-cloud manifolds: the standard MFTMA benchmark recipe.

Centres ``c_mu ~ N(0, I_N)``; points ``x_{mu i} = c_mu + r ||c_mu|| B_mu z_i / sqrt(d)`` with
``B_mu = G_mu / sqrt(N)`` (``G_mu`` an ``N x d`` Gaussian matrix) and ``z_i ~ N(0, I_d)``. The
optional centre correlation adds a shared rank-``corr_rank`` component of strength ``center_corr``
to every centre. Factors are drawn with ``numpy.random.default_rng(seed)`` and rounded to
float32; the points are then rebuilt in float64, so the same seed gives the same data everywhere.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic_manifolds", "ball_manifolds"]


def synthetic_manifolds(
    seed: int = 0,
    n_manifolds: int = 50,
    n_points: int = 50,
    n_features: int = 5000,
    radius: float = 0.5,
    dim: int = 10,
    center_corr: float = 0.0,
    corr_rank: int = 2,
    dtype=np.float64,
) -> np.ndarray:
    """P Gaussian point clouds of ``dim`` dimensions, shape ``(P, M, N)``.

    Args:
        seed: NumPy ``default_rng`` seed.
        n_manifolds: P. n_points: M. n_features: N.
        radius: cloud radius relative to the centre norm (``r``).
        dim: intrinsic dimension ``d`` of each cloud.
        center_corr: strength of a shared low-rank centre component (0 = independent centres).
        corr_rank: rank of that shared component.
        dtype: output dtype.
    """
    if n_manifolds < 2 or n_points < 1 or n_features < 1 or dim < 1:
        raise ValueError(
            "synthetic_manifolds needs n_manifolds >= 2 and positive n_points, n_features, dim; "
            f"got P={n_manifolds}, M={n_points}, N={n_features}, d={dim}."
        )
    rng = np.random.default_rng(seed)
    P, M, N, d = n_manifolds, n_points, n_features, dim
    c = rng.standard_normal((P, N)).astype(np.float32).astype(np.float64)
    if center_corr > 0:
        shared = rng.standard_normal((corr_rank, N)).astype(np.float32).astype(np.float64)
        w = rng.standard_normal((P, corr_rank)).astype(np.float32).astype(np.float64)
        c = c + center_corr * np.sqrt(N / corr_rank) * (w @ shared) / np.sqrt(N)
    out = np.empty((P, M, N), dtype=np.float64)
    for mu in range(P):
        G = rng.standard_normal((N, d)).astype(np.float32).astype(np.float64)
        z = rng.standard_normal((M, d)).astype(np.float32).astype(np.float64)
        B = G / np.sqrt(N)
        out[mu] = c[mu] + radius * np.linalg.norm(c[mu]) * (z @ B.T) / np.sqrt(d)
    return out.astype(dtype, copy=False)


def ball_manifolds(
    seed: int = 0,
    n_manifolds: int = 20,
    n_points: int = 200,
    n_features: int = 400,
    radius: float = 0.5,
    dim: int = 3,
    dtype=np.float64,
) -> np.ndarray:
    """Points sampled uniformly on ``dim``-dimensional spheres of relative radius ``radius``.

    The sphere of manifold ``mu`` lies in a random ``dim``-dimensional subspace orthogonal to its
    centre; its convex hull approximates the L2 ball of the mean-field ball theory as M grows.
    Shape ``(P, M, N)``.
    """
    rng = np.random.default_rng(seed)
    P, M, N, D = n_manifolds, n_points, n_features, dim
    if D + 1 > N:
        raise ValueError(f"ball_manifolds needs dim + 1 <= n_features; got dim={D}, N={N}.")
    c = rng.standard_normal((P, N))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    out = np.empty((P, M, N))
    for mu in range(P):
        A = rng.standard_normal((N, D))
        A -= np.outer(c[mu], c[mu] @ A)  # orthogonal to the centre
        Q, _ = np.linalg.qr(A)
        u = rng.standard_normal((M, D))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        out[mu] = c[mu] + radius * u @ Q.T
    return out.astype(dtype, copy=False)
