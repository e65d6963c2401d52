"""Stiefel optimisation (gradient descent and L-BFGS): known optimum, constraint kept, padded
columns, vmapped restarts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geomjax.solvers import random_stiefel, stiefel_lbfgs, stiefel_minimize


def _neg_trace(V, A):
    return -jnp.trace(V.T @ A @ V)


def _problem():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((12, 12))
    return jnp.asarray(B @ B.T)


def test_top_eigenspace_with_vmapped_restarts():
    A = _problem()
    keys = jax.random.split(jax.random.key(0), 4)
    V0 = jax.vmap(lambda k: random_stiefel(k, 12, 3, jnp.float64))(keys)
    sol, f = jax.jit(jax.vmap(lambda v: stiefel_minimize(_neg_trace, v, A, gtol=1e-6)))(V0)
    best = -np.sort(np.linalg.eigvalsh(np.asarray(A)))[-3:].sum()
    np.testing.assert_allclose(np.asarray(f), best, rtol=1e-9)
    assert np.asarray(sol.converged).all()
    for V in np.asarray(sol.value):
        np.testing.assert_allclose(V.T @ V, np.eye(3), atol=1e-10)


def test_zero_padded_columns_stay_zero():
    A = _problem()
    V0 = random_stiefel(jax.random.key(1), 12, 4, jnp.float64) * (jnp.arange(4) < 2)

    def cost(V, A):  # depends only on the first two columns
        return _neg_trace(V[:, :2], A)

    sol, f = stiefel_minimize(cost, V0, A)
    V = np.asarray(sol.value)
    assert np.abs(V[:, 2:]).max() == 0
    np.testing.assert_allclose(V[:, :2].T @ V[:, :2], np.eye(2), atol=1e-10)
    np.testing.assert_allclose(float(f), -np.sort(np.linalg.eigvalsh(np.asarray(A)))[-2:].sum(),
                               rtol=1e-8)


def test_random_stiefel_and_errors():
    V = random_stiefel(jax.random.key(2), 6, 6, jnp.float64)
    np.testing.assert_allclose(np.asarray(V.T @ V), np.eye(6), atol=1e-12)
    with pytest.raises(ValueError, match="k <= n"):
        random_stiefel(jax.random.key(2), 3, 4)
    with pytest.raises(ValueError, match="`V0` must be"):
        stiefel_minimize(_neg_trace, np.ones((2, 3)), np.eye(2))


@pytest.mark.parametrize("invariant", [False, True])  # -tr(V^T A V) depends on span(V) only
@pytest.mark.parametrize("k", [1, 3, 8])  # 8 columns: the Cholesky-QR retraction path
def test_lbfgs_top_eigenspace_with_vmapped_restarts(k, invariant):
    A = _problem()
    keys = jax.random.split(jax.random.key(3), 3)
    V0 = jax.vmap(lambda kk: random_stiefel(kk, 12, k, jnp.float64))(keys)
    sol, f = jax.jit(jax.vmap(lambda v: stiefel_lbfgs(_neg_trace, v, A, gtol=1e-8,
                                                      invariant=invariant)))(V0)
    w, U = np.linalg.eigh(np.asarray(A))
    np.testing.assert_allclose(np.asarray(f), -w[-k:].sum(), rtol=1e-10)
    assert np.asarray(sol.converged).all() and (np.asarray(sol.residual) <= 1e-8).all()
    for V in np.asarray(sol.value):
        np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-12)
        # same subspace as the float64 eigenvectors
        np.testing.assert_allclose(V @ V.T, U[:, -k:] @ U[:, -k:].T, atol=1e-7)


def test_lbfgs_matches_gradient_descent_and_keeps_zero_columns():
    A = _problem()
    V0 = random_stiefel(jax.random.key(4), 12, 4, jnp.float64) * (jnp.arange(4) < 2)

    def cost(V, A):
        return _neg_trace(V[:, :2], A)

    sol, f = stiefel_lbfgs(cost, V0, A, strict=True)
    sol2, f2 = stiefel_minimize(cost, V0, A)
    assert np.abs(np.asarray(sol.value)[:, 2:]).max() == 0
    np.testing.assert_allclose(float(f), float(f2), rtol=1e-10)
    assert sol.settings.method == "stiefel-lbfgs-qf"


def test_lbfgs_float32_and_errors():
    A = _problem().astype(jnp.float32)
    V0 = random_stiefel(jax.random.key(5), 12, 2, jnp.float32)
    sol, f = stiefel_lbfgs(_neg_trace, V0, A)
    assert sol.value.dtype == jnp.float32 and bool(sol.converged)
    top2 = np.sort(np.linalg.eigvalsh(np.asarray(A, np.float64)))[-2:].sum()
    np.testing.assert_allclose(float(f), -top2, rtol=1e-5)
    with pytest.raises(ValueError, match="`V0` must be"):
        stiefel_lbfgs(_neg_trace, np.ones((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match="`memory`"):
        stiefel_lbfgs(_neg_trace, V0, A, memory=0)
