"""Centre-subspace fit: the written-out cost and gradient against float64 direct forms, and the
fitted subspace (orthonormal, converged, residual correlation as recomputed, reproducible)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geomjax.manifold import center_correlation, fit_center_subspace, max_rank_budget
from geomjax.manifold._center import (
    _corr_cost,
    _corr_cost_fast,
    _fields,
    _lbfgs_fit,
    _rank_budget,
    _solve_restarts,
    _starts,
    center_basis,
)
from geomjax.solvers import random_stiefel


def _centers(P=12, N=40, seed=0, shared=0.0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((P, N))
    if shared:  # a shared direction raises the centre correlation
        c += shared * rng.standard_normal((P, 1)) * rng.standard_normal((1, N))
    return c


def _direct_cost(V, X):
    """1/2 sum (C - c c^T)^2 / (c0 c0^T), written as the reference writes it."""
    C = X @ X.T
    c = X @ V
    c0 = np.diag(C) - np.sum(c * c, axis=1)
    return 0.5 * np.sum((C - c @ c.T) ** 2 / np.outer(c0, c0))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("cost", [_corr_cost, _corr_cost_fast], ids=["direct", "expanded"])
@pytest.mark.parametrize("shared", [0.0, 3.0])
def test_cost_and_gradient_match_direct_form(k, cost, shared):
    X, _ = center_basis(jnp.asarray(_centers(shared=shared)))
    C = X @ X.T
    V = random_stiefel(jax.random.key(k), X.shape[1], k, jnp.float64)
    f, G = jax.value_and_grad(cost)(V, X, C, C * C)
    Xn, Vn = np.asarray(X), np.asarray(V)
    np.testing.assert_allclose(float(f), _direct_cost(Vn, Xn), rtol=1e-12)
    # = P/2 + sum_{mu<nu} cos^2 of the residual centres
    R = Xn - Xn @ Vn @ Vn.T
    Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
    cos = Rn @ Rn.T
    np.testing.assert_allclose(float(f), Xn.shape[0] / 2 + np.sum(np.triu(cos, 1) ** 2),
                               rtol=1e-12)
    # gradient against central differences of the direct form
    Gd = np.zeros_like(Vn)
    h = 1e-6
    for i in range(Vn.shape[0]):
        for j in range(k):
            E = np.zeros_like(Vn)
            E[i, j] = h
            Gd[i, j] = (_direct_cost(Vn + E, Xn) - _direct_cost(Vn - E, Xn)) / (2 * h)
    np.testing.assert_allclose(np.asarray(G), Gd, rtol=1e-6, atol=1e-7)


def test_rank_budget_from_coordinates_matches_public_form():
    for seed, shared in [(0, 0.0), (1, 3.0)]:
        c = _centers(seed=seed, shared=shared)
        X, _ = center_basis(jnp.asarray(c))
        s = np.linalg.svd(np.asarray(X), compute_uv=False)
        assert _rank_budget(s, c.shape[0]) == max_rank_budget(c)


def test_fit_auto_k_properties():
    c = _centers(P=12, shared=2.0)
    key = jax.random.key(0)
    out = fit_center_subspace(key, c, max_k=6, n_reps=3)
    V = np.asarray(out["V"])
    K = out["K"]
    n_tried = out["n_k_tried"]
    assert n_tried in (5, 6) and 1 <= K <= n_tried and V.shape == (c.shape[1], K)
    np.testing.assert_allclose(V.T @ V, np.eye(K), atol=1e-10)
    assert out["converged"] and out["grad_norm"] <= 1e-6
    ct = c - c.mean(axis=0)
    np.testing.assert_allclose(float(out["center_correlation"]), float(center_correlation(c)),
                               rtol=1e-12)
    resid = ct - ct @ V @ V.T
    np.testing.assert_allclose(float(out["residual_correlation"]),
                               float(center_correlation(resid + c.mean(axis=0))), rtol=1e-9)
    # the chosen K is the argmin over the fixed-K fits (same keys per K)
    res = [float(fit_center_subspace(key, c, k, n_reps=3)["residual_correlation"])
           for k in range(1, n_tried + 1)]
    if n_tried == 5:  # the early stop: risen three times in a row
        assert res[4] > res[3] > res[2] > res[1]
    assert K == 1 + int(np.argmin(res))
    np.testing.assert_allclose(res[K - 1], float(out["residual_correlation"]), rtol=1e-12)
    again = fit_center_subspace(key, c, max_k=6, n_reps=3)
    np.testing.assert_array_equal(np.asarray(again["V"]), V)


def test_fit_float32_and_edge_ranks():
    c = _centers(P=8, N=20, seed=2, shared=2.0).astype(np.float32)
    out = fit_center_subspace(jax.random.key(1), jnp.asarray(c), 2, n_reps=2)
    V = np.asarray(out["V"])
    assert V.dtype == np.float32 and out["converged"]
    np.testing.assert_allclose(V.T @ V, np.eye(2), atol=1e-5)
    assert fit_center_subspace(jax.random.key(1), c, 0)["K"] == 0
    # P = 2: removing the only centre direction is never chosen
    assert fit_center_subspace(jax.random.key(1), c[:2].astype(np.float64))["K"] == 0


def _riemannian_gnorm(V, X):
    """Riemannian gradient norm at ``V`` of the cost as defined (``P/2 + sum_{mu<nu} cos^2``
    of the residual centres), by automatic differentiation in float64 (central differences fail
    where a residual centre is nearly zero, as at some points below)."""

    def cost(V):
        R = X - X @ V @ V.T
        Rn = R / jnp.linalg.norm(R, axis=1, keepdims=True)
        return jnp.sum(jnp.triu(Rn @ Rn.T, 1) ** 2)

    G = np.asarray(jax.grad(cost)(jnp.asarray(V)))
    S = V.T @ G
    return np.linalg.norm(G - V @ (S + S.T) / 2)


@pytest.mark.parametrize("batched", [False, True], ids=["sequential", "vmapped"])
def test_fallback_redoes_only_restarts_short_of_tolerance(batched):
    # Three strong shared directions fitted at rank 5: past the shared structure, some L-BFGS
    # restarts stop far from a stationary point (the expanded cost loses digits once a centre
    # has lost most of its norm). Only those are solved again by the fallback (the better end
    # point kept); the others are returned as the L-BFGS left them.
    rng = np.random.default_rng(1)
    P, N, k, gtol = 20, 100, 5, 1e-6
    c = rng.standard_normal((P, N)) + 0.5 * rng.standard_normal((P, 3)) @ rng.standard_normal(
        (3, N))
    X, _ = center_basis(jnp.asarray(c))
    C = X @ X.T
    V0 = _starts(jax.random.key(1), k, P - 1, 8, jnp.float64)

    def lbfgs(v):
        return _fields(_lbfgs_fit(v, X, C, C * C, 1000, gtol))

    first = jax.jit(lambda v0: jax.vmap(lbfgs)(v0) if batched else jax.lax.map(lbfgs, v0))(V0)
    out = jax.jit(lambda v0: _solve_restarts(v0, X, C, C * C, 1000, gtol, batched))(V0)
    Xn = np.asarray(X)
    V1, V2, conv, steps, gn = (np.asarray(a) for a in (first[0], *out))
    # the restarts that stop short of the tolerance, with the direct form's gradient
    short = np.asarray(first[3]) > gtol
    assert short.any() and not short.all()
    # left alone: the restarts the L-BFGS brought to the tolerance
    np.testing.assert_allclose(V2[~short], V1[~short], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(steps[~short], np.asarray(first[2])[~short])
    # redone: the steps of both solvers count, and the end point kept has the smaller gradient
    assert (steps[short] > np.asarray(first[2])[short]).all()
    # `converged` says gn <= gtol, and gn is the gradient norm of the cost as defined (checked
    # where no residual centre is nearly gone: there the gradient is round-off noise)
    np.testing.assert_array_equal(conv, gn <= gtol)
    Rn = [np.linalg.norm(Xn - Xn @ v @ v.T, axis=1) / np.linalg.norm(Xn, axis=1) for v in V2]
    ok = np.array([r.min() > 0.05 for r in Rn])
    assert ok.sum() >= 4
    g2 = np.array([_riemannian_gnorm(v, Xn) for v in V2[ok]])
    np.testing.assert_allclose(gn[ok], g2, rtol=1e-3, atol=2e-8)
    for v in V2:
        np.testing.assert_allclose(v.T @ v, np.eye(k), atol=1e-10)
