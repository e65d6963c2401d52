"""NNLS solver: agreement with scipy.optimize.nnls, exactness, dtype, vmap/jit, strictness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import given
from hypothesis import strategies as st

from geomjax._types import NotConvergedError
from geomjax.solvers import kkt_residual, nnls, nnls_gram

# Fixed shape buckets keep the number of compilations small.
SHAPES = [(7, 12), (13, 9)]  # (m, n): n > m is rank-deficient (the M > N case)
N_RHS = 6


@jax.jit
def _solve(A, B):
    return jax.vmap(lambda b: nnls(A, b))(B)


@jax.jit
def _solve_fista_only(A, B):
    return jax.vmap(lambda b: nnls(A, b, polish=False, rtol=1e-9, max_steps=20_000))(B)


def _batched(A, B, fista_only=False):
    # Module-level jitted functions: one compilation per shape bucket and dtype.
    return (_solve_fista_only if fista_only else _solve)(A, B)


def _problem(seed, shape, kind):
    rng = np.random.default_rng(seed)
    m, n = shape
    A = rng.standard_normal((m, n))
    if kind == "anchor":  # anchor-point structure: last row all ones, small spread
        A = 0.3 * A
        A[-1] = 1.0
    elif kind == "duplicates":
        A[:, n // 2 :] = A[:, : n - n // 2]
    elif kind == "tight":
        A = 0.05 * A
        A[-1] = 1.0
    B = rng.standard_normal((N_RHS, m))
    return A, B


@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from(SHAPES),
    kind=st.sampled_from(["gauss", "anchor", "duplicates", "tight"]),
)
def test_matches_scipy_nnls(seed, shape, kind):
    A, B = _problem(seed, shape, kind)
    sol = _batched(jnp.asarray(A), jnp.asarray(B))
    assert bool(np.all(sol.converged))
    X = np.asarray(sol.value)
    assert (X >= 0).all()
    for b, x in zip(B, X, strict=False):
        xs, rs = so.nnls(A, b, maxiter=100 * A.shape[1])
        # The fitted vector A x is unique even when x is not (rank-deficient A).
        scale = max(1.0, np.linalg.norm(b))
        assert np.linalg.norm(A @ x - A @ xs) <= 1e-8 * scale
        assert np.linalg.norm(A @ x - b) <= rs + 1e-10 * scale


@jax.jit
def _solve_exact_start(A, B):
    # The default start (best single coordinate) is the least-squares solution on its support.
    return jax.vmap(lambda b: nnls(A, b, exact_start=True, polish_rounds=3, max_steps=0))(B)


@pytest.mark.parametrize("kind", ["anchor", "duplicates", "tight"])
def test_exact_start_polish_matches_scipy_nnls(kind):
    A, B = _problem(17, SHAPES[0], kind)
    sol = _solve_exact_start(jnp.asarray(A), jnp.asarray(B))
    full = _batched(jnp.asarray(A), jnp.asarray(B))
    for b, x, ok, xf in zip(B, np.asarray(sol.value), np.asarray(sol.converged),
                            np.asarray(full.value), strict=False):
        scale = max(1.0, np.linalg.norm(b))
        if ok:  # solved by the polish alone (3 forward steps): exact
            xs, _ = so.nnls(A, b, maxiter=100 * A.shape[1])
            assert np.linalg.norm(A @ x - A @ xs) <= 1e-10 * scale
        else:  # left unchanged for the caller's next pass
            assert (x >= 0).all() and np.count_nonzero(x) <= 1
        assert np.linalg.norm(A @ xf - A @ x) <= 1e-10 * scale or not ok
    assert np.asarray(sol.converged).any()


def test_polish_is_exact_to_roundoff():
    A, B = _problem(3, SHAPES[0], "anchor")
    sol = _batched(jnp.asarray(A), jnp.asarray(B))
    G, C = A.T @ A, B @ A
    for x, c in zip(np.asarray(sol.value), C, strict=False):
        assert float(kkt_residual(jnp.asarray(G), jnp.asarray(c), jnp.asarray(x))) < 1e-12


def test_float32_dtype_and_accuracy():
    A, B = _problem(5, SHAPES[0], "anchor")
    sol = _batched(jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32))
    assert sol.value.dtype == jnp.float32
    assert bool(np.all(sol.converged))
    for b, x in zip(B, np.asarray(sol.value, np.float64), strict=False):
        xs, _ = so.nnls(A, b)
        assert np.linalg.norm(A @ x - A @ xs) <= 1e-4 * max(1.0, np.linalg.norm(b))


def test_eager_jit_vmap_loop_agree():
    A, B = _problem(11, SHAPES[0], "gauss")
    A, B = jnp.asarray(A), jnp.asarray(B)
    batched = _batched(A, B)
    for i in range(2):
        eager = nnls(A, B[i])
        np.testing.assert_allclose(np.asarray(eager.value), np.asarray(batched.value[i]),
                                   rtol=1e-10, atol=1e-12)
        assert int(eager.num_steps) == int(batched.num_steps[i])


def test_warm_start_solves_single_vertex_in_zero_steps():
    # b is a positive multiple of one column and all columns are nearly orthogonal: the
    # warm start (best single coordinate) is optimal.
    A = np.eye(5) + 0.01 * np.ones((5, 5))
    b = 2.0 * A[:, 2]
    sol = nnls(jnp.asarray(A), jnp.asarray(b))
    assert int(sol.num_steps) == 0 and bool(sol.converged)
    np.testing.assert_allclose(np.asarray(sol.value), 2.0 * np.eye(5)[2], atol=1e-12)


def test_mask_fixes_coordinates_at_zero():
    A, B = _problem(2, SHAPES[0], "gauss")
    mask = np.arange(A.shape[1]) < 8
    sol = nnls_gram(jnp.asarray(A.T @ A), jnp.asarray(A.T @ B[0]), mask=jnp.asarray(mask))
    x = np.asarray(sol.value)
    assert (x[~mask] == 0).all()
    xs, _ = so.nnls(A[:, mask], B[0])
    np.testing.assert_allclose(A[:, mask] @ x[mask], A[:, mask] @ xs, atol=1e-9)


def test_strict_raises_and_flag_reports():
    A, B = _problem(7, (13, 9), "tight")
    sol = nnls(jnp.asarray(A), jnp.asarray(B[0]), max_steps=0, polish=False, rtol=1e-14)
    if not bool(sol.converged):
        with pytest.raises(NotConvergedError, match="did not converge"):
            nnls(jnp.asarray(A), jnp.asarray(B[0]), max_steps=0, polish=False, rtol=1e-14,
                 strict=True)
    s = sol.summary()
    assert s["n_problems"] == 1 and s["n_unconverged"] == int(not bool(sol.converged))
    assert sol.settings.method == "fista"


def test_fista_alone_converges_without_polish():
    A, B = _problem(9, SHAPES[0], "anchor")
    sol = _batched(jnp.asarray(A), jnp.asarray(B), fista_only=True)
    assert bool(np.all(sol.converged))
    for b, x in zip(B, np.asarray(sol.value), strict=False):
        xs, _ = so.nnls(A, b)
        assert np.linalg.norm(A @ x - A @ xs) <= 1e-6 * max(1.0, np.linalg.norm(b))


@pytest.mark.parametrize(
    "A, b, match",
    [
        (np.ones(3), np.ones(3), "`A` must be a matrix"),
        (np.ones((3, 2)), np.ones(4), "`b` must have shape"),
    ],
)
def test_bad_input(A, b, match):
    with pytest.raises(ValueError, match=match):
        nnls(A, b)


def test_bad_gram_input():
    with pytest.raises(ValueError, match="`G` must be a square"):
        nnls_gram(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="`c` must have shape"):
        nnls_gram(np.eye(3), np.ones(2))


# --- Lawson-Hanson over many problems (the anchor solver's first pass) -------------------------


def _lanes_problems(seed, n_groups=3, m=9, n=12, per=10, kind="anchor"):
    rng = np.random.default_rng(seed)
    As, bs, grp = [], [], []
    for p in range(n_groups):
        A, B = _problem(seed * 7 + p, (m, n), kind)
        B = np.concatenate([B, rng.standard_normal((per - B.shape[0], m))])
        As.append(A)
        bs.append(B)
        grp += [p] * per
    G = np.stack([A.T @ A for A in As])
    c = np.concatenate([B @ A for A, B in zip(As, bs, strict=True)])
    return As, np.concatenate(bs), G, c, np.array(grp)


def _lanes_start(G, c, grp):
    # The single-coordinate warm start at the largest c_k (the max-projection vertex).
    i0 = np.argmax(c, axis=1)
    v = np.maximum(c[np.arange(len(c)), i0], 0) / G[grp, i0, i0]
    return i0, v


@pytest.mark.parametrize("kind", ["anchor", "tight", "duplicates"])
def test_lawson_hanson_lanes_matches_scipy_nnls(kind):
    from geomjax.solvers._nnls import lawson_hanson_lanes

    As, bs, G, c, grp = _lanes_problems(3, kind=kind)
    i0, v = _lanes_start(G, c, grp)
    mask = np.ones(G.shape[:2], bool)
    tol = 1e-10 * np.max(np.abs(c), axis=1)
    x, ok, rounds, res = jax.jit(lambda *a: lawson_hanson_lanes(*a, buffer=7))(
        G, c, i0, v, mask, tol, grp)
    x = np.asarray(x)
    for k in np.flatnonzero(np.asarray(ok)):
        A, b = As[grp[k]], bs[k]
        ref, _ = so.nnls(A, b)
        # The fitted vector A x is unique even when x is not (duplicate columns).
        np.testing.assert_allclose(A @ x[k], A @ ref, rtol=1e-9, atol=1e-10)
        assert np.all(x[k] >= 0)
    assert np.asarray(ok).mean() > 0.9  # the rest is left, feasible, for FISTA
    assert np.all(np.asarray(res)[np.asarray(ok)] <= tol[np.asarray(ok)])
    assert np.all(x >= 0)


def test_lawson_hanson_lanes_problem_independent_of_batch():
    # Each problem's arithmetic is its own: a subset solved alone (other buffer size, other
    # neighbours) gives bitwise the same answers.
    from geomjax.solvers._nnls import lawson_hanson_lanes

    _, _, G, c, grp = _lanes_problems(5)
    i0, v = _lanes_start(G, c, grp)
    mask = np.ones(G.shape[:2], bool)
    tol = 1e-10 * np.max(np.abs(c), axis=1)
    full = lawson_hanson_lanes(G, c, i0, v, mask, tol, grp, buffer=8)
    sub = np.arange(3, 25, 2)
    part = lawson_hanson_lanes(G, c[sub], i0[sub], v[sub], mask, tol[sub], grp[sub], buffer=3)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_array_equal(np.asarray(a)[sub], np.asarray(b))
