"""Separability verdicts against an exact LP feasibility oracle, certificates, batching, dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from geomjax.solvers import separability

# One padded shape bucket for every random problem: a single compilation.
KMAX, NMAX = 32, 8


def lp_separable(x, y):
    """Strict separability with bias <=> {y_j (w.x_j + b) >= 1} is feasible (exact LP)."""
    k, n = x.shape
    A = -(y[:, None] * np.hstack([x, np.ones((k, 1))]))
    r = linprog(np.zeros(n + 1), A_ub=A, b_ub=-np.ones(k), bounds=[(None, None)] * (n + 1),
                method="highs")
    assert r.status in (0, 2), r.message
    return r.status == 0


def pad(x, y):
    k, n = x.shape
    X = np.zeros((KMAX, NMAX))
    X[:k, :n] = x
    Y = np.ones(KMAX)
    Y[:k] = y
    M = np.zeros(KMAX, bool)
    M[:k] = True
    return X, Y, M


_batched = jax.jit(jax.vmap(lambda x, y, m: separability(x, y, m)))


def check_certificate(sol, x, y):
    c = sol.value
    n = x.shape[1]
    if bool(c.separable):
        f = x @ np.asarray(c.w)[:n] + float(c.b)
        assert np.all(y * f > 0), "separable verdict without every sign correct"
        assert float(c.margin) > 0
    else:
        lam = np.asarray(c.weights)[: x.shape[0]]
        assert lam.min() >= 0 and abs(lam.sum() - 1) < 1e-12
        s = float(c.scale)
        z = y[:, None] * np.hstack([x, np.full((x.shape[0], 1), s)])
        zmax = np.linalg.norm(z, axis=1).max()
        assert np.linalg.norm(lam @ z) / zmax <= 1e-7


def random_problems(rng, n_problems):
    probs = []
    for _ in range(n_problems):
        n = int(rng.integers(1, NMAX + 1))
        # Around Cover's threshold K ~ 2(n + 1) both verdicts are common.
        k = int(np.clip(rng.integers(n + 1, 3 * (n + 1) + 2), 3, KMAX))
        x = rng.standard_normal((k, n))
        y = rng.choice([-1.0, 1.0], k)
        probs.append((x, y))
    return probs


def test_agrees_with_lp_oracle_on_random_problems():
    rng = np.random.default_rng(0)
    probs = random_problems(rng, 200)
    X, Y, M = map(np.stack, zip(*[pad(x, y) for x, y in probs], strict=True))
    sol = _batched(X, Y, M)
    sep = np.asarray(sol.value.separable)
    dec = np.asarray(sol.converged)
    ref = np.array([lp_separable(x, y) for x, y in probs])
    assert dec.all()
    assert 0.2 < ref.mean() < 0.8  # both verdicts exercised
    np.testing.assert_array_equal(sep, ref)
    for i in range(0, 200, 17):
        sol_i = jax.tree_util.tree_map(lambda a, i=i: a[i], sol)
        check_certificate(sol_i, *probs[i])


def _degenerate(kind, rng, k, n):
    x = rng.standard_normal((k, n))
    y = rng.choice([-1.0, 1.0], k)
    y[0], y[1] = 1.0, -1.0
    if kind == "opposite_duplicate":  # 0 on the hull boundary: not strictly separable
        x[1] = x[0]
    elif kind == "touching":  # a +1 point is the midpoint of two -1 points on the plane
        w = rng.standard_normal(n)
        y = np.where(x @ w >= 0, 1.0, -1.0)
        p = x[0] - (x[0] @ w) / (w @ w) * w
        v = rng.standard_normal(n)
        v -= (v @ w) / (w @ w) * w
        x[0], x[1], x[2] = p, p + v, p - v
        y[0], y[1], y[2] = 1.0, -1.0, -1.0
    elif kind == "tiny_margin":  # separable with a gap of 1e-3 along w
        w = rng.standard_normal(n)
        w /= np.linalg.norm(w)
        f = x @ w
        y = np.where(f >= 0, 1.0, -1.0)
        y[0], y[1] = 1.0, -1.0
        x = x - np.outer(f, w) + np.outer(y * (np.abs(f) + 5e-4), w)
    elif kind == "low_rank":  # all points on a line
        x = np.outer(rng.standard_normal(k), rng.standard_normal(n))
    elif kind == "identical":
        x[:] = x[0]
    elif kind == "xor" and n >= 2:
        x[:4] = 0.0
        x[:4, :2] = [[1, 1], [-1, -1], [1, -1], [-1, 1]]
        y[:4] = [1, 1, -1, -1]
    return x, y


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(
        ["general", "opposite_duplicate", "touching", "tiny_margin", "low_rank", "identical", "xor"]
    ),
    k=st.integers(4, KMAX),
    n=st.integers(1, NMAX),
)
def test_hypothesis_borderline_and_degenerate(seed, kind, k, n):
    rng = np.random.default_rng(seed)
    x, y = _degenerate(kind, rng, k, n)
    ref = lp_separable(x, y)
    X, Y, M = pad(x, y)
    sol = _batched(X[None], Y[None], M[None])
    sol = jax.tree_util.tree_map(lambda a: a[0], sol)
    assert bool(sol.converged)
    assert bool(sol.value.separable) == ref
    if kind in ("opposite_duplicate", "touching", "identical"):
        assert not ref
    if kind == "tiny_margin":
        assert ref
    check_certificate(sol, x, y)


def test_vmap_matches_loop_and_masks_are_padding():
    rng = np.random.default_rng(1)
    probs = random_problems(rng, 6)
    X, Y, M = map(np.stack, zip(*[pad(x, y) for x, y in probs], strict=True))
    batched = _batched(X, Y, M)
    for i in range(len(probs)):
        single = separability(X[i], Y[i], M[i])
        assert bool(single.value.separable) == bool(batched.value.separable[i])
        np.testing.assert_allclose(single.value.w, batched.value.w[i], rtol=1e-9, atol=1e-12)
    # Garbage in masked rows changes nothing.
    X2 = X.copy()
    X2[~M] = 1e3 * rng.standard_normal(X2[~M].shape)
    np.testing.assert_array_equal(_batched(X2, Y, M).value.separable, batched.value.separable)


def test_float32_follows_dtype_and_agrees():
    rng = np.random.default_rng(2)
    probs = random_problems(rng, 40)
    X, Y, M = map(np.stack, zip(*[pad(x, y) for x, y in probs], strict=True))
    s64 = _batched(X, Y, M)
    s32 = _batched(X.astype(np.float32), Y.astype(np.float32), M)
    assert s32.value.w.dtype == jnp.float32 and s32.residual.dtype == jnp.float32
    assert np.asarray(s32.converged).all()
    np.testing.assert_array_equal(s32.value.separable, s64.value.separable)


def test_undecided_is_flagged_not_guessed():
    rng = np.random.default_rng(3)
    probs = random_problems(rng, 100)
    X, Y, M = map(np.stack, zip(*[pad(x, y) for x, y in probs], strict=True))
    one = jax.jit(jax.vmap(lambda x, y, m: separability(x, y, m, max_steps=1)))(X, Y, M)
    und = ~np.asarray(one.converged)
    assert und.sum() > 0  # one Newton step cannot decide everything
    assert np.asarray(one.num_steps).max() <= 1
    # Undecided problems are never called separable, and their residual is above tolerance.
    assert not np.asarray(one.value.separable)[und].any()
    assert (np.asarray(one.residual)[und] > one.settings.rtol).all()
    full = _batched(X, Y, M)
    assert np.asarray(full.converged).all()
    sep1 = np.asarray(one.value.separable)
    np.testing.assert_array_equal(sep1[~und], np.asarray(full.value.separable)[~und])


def test_warm_start_gives_same_verdict():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((24, 5))
    y = rng.choice([-1.0, 1.0], 24)
    cold = separability(x, y)
    w0 = np.concatenate([np.asarray(cold.value.w), [float(cold.value.b)]])
    warm = separability(x, y, w0=w0)
    assert bool(warm.value.separable) == bool(cold.value.separable)
    assert int(warm.num_steps) <= 1


def test_bad_input_errors():
    with pytest.raises(ValueError, match="points"):
        separability(np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="labels"):
        separability(np.zeros((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="mask"):
        separability(np.zeros((5, 2)), np.ones(5), np.ones(3, bool))
    with pytest.raises(ValueError, match="w0"):
        separability(np.zeros((5, 2)), np.ones(5), w0=np.zeros(2))
    with pytest.raises(ValueError, match="max_steps"):
        separability(np.zeros((5, 2)), np.ones(5), max_steps=0)


def test_unbatched_solver_with_point_moments_agrees_with_lp_oracle():
    # The CPU path of the empirical capacity: Hessian branches chosen per step (n_update) and
    # the all-active Hessian from the label-free moments of the points (point_gram), from zero
    # and from warm starts; masked rows are padding. Verdicts and certificates are unchanged.
    from geomjax.solvers._separability import _separability_impl

    solve = jax.jit(lambda x, y, m, w0, T, u: _separability_impl(
        x, y, m, w0, max_steps=100, rtol=1.5e-8, ridge=1e4 * 2.2e-16, n_update=4,
        point_gram=(T, u)))
    rng = np.random.default_rng(7)
    seen = set()
    for x, y in random_problems(rng, 60):
        X, Y, M = pad(x, y)
        T = X[M].T @ X[M]
        u = X[M].sum(axis=0)
        truth = lp_separable(x, y)
        for w0 in (np.zeros(NMAX + 1), rng.standard_normal(NMAX + 1)):
            cert, steps, res = solve(X, Y, M, w0, T, u)
            assert bool(cert.decided)
            assert bool(cert.separable) == truth
            seen.add(truth)
            if truth:
                f = x @ np.asarray(cert.w)[: x.shape[1]] + float(cert.b)
                assert np.all(y * f > 0)
    assert seen == {True, False}
