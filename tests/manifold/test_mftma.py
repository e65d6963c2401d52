"""mftma: agreement with the reference procedure, invariances, keys, ragged input, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_mftma import ref_mftma  # noqa: E402
from geomjax.data import synthetic_manifolds  # noqa: E402
from geomjax.manifold import MFTMAResult, center_correlation, mftma, reduce_manifolds  # noqa: E402

P, M, N, N_T = 5, 8, 30, 24
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def data():
    return synthetic_manifolds(0, P, M, N, radius=0.5, dim=4)


def _fields(r: MFTMAResult):
    return np.array([float(r.capacity), float(r.radius), float(r.dimension)])


def _orthonormal(seed, n, k):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, k)))
    return q


@pytest.mark.parametrize("kappa", [0.0, 0.2])
def test_matches_reference_procedure_with_injected_V_and_t(data, kappa):
    V = _orthonormal(1, N, 2)
    rng = np.random.default_rng(2)
    ts = [rng.standard_normal((N_T, M + 1)) for _ in range(P)]
    ref, *_ = ref_mftma(list(data), kappa, N_T, rng, V11=V, t_vecs=ts, solver="nnls")
    r = mftma(KEY, data, kappa, V=V, t=ts, reduction="qr")
    np.testing.assert_allclose(np.asarray(r.capacity_per_manifold), ref[:, 0], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(r.radius_per_manifold), ref[:, 1], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(r.dimension_per_manifold), ref[:, 2], rtol=1e-7)
    assert r.K == 2 and r.n_unconverged == 0 and r.n_t == N_T
    np.testing.assert_allclose(float(r.capacity), 1 / np.mean(1 / ref[:, 0]), rtol=1e-7)


def test_ragged_manifolds_match_reference(data):
    mans = [data[0][:5], data[1], data[2][:6], data[3], data[4][:3]]
    rng = np.random.default_rng(3)
    ts = [rng.standard_normal((N_T, m.shape[0] + 1)) for m in mans]
    V = np.zeros((N, 0))
    ref, *_ = ref_mftma(mans, 0.0, N_T, rng, V11=V, t_vecs=ts, solver="nnls")
    r = mftma(KEY, mans, K=0, t=ts, reduction="qr")
    np.testing.assert_allclose(np.asarray(r.capacity_per_manifold), ref[:, 0], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(r.radius_per_manifold), ref[:, 1], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(r.dimension_per_manifold), ref[:, 2], rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(r.n_points), [5, 8, 6, 8, 3])
    assert float(r.lower_bound) == pytest.approx(2 / np.mean([5, 8, 6, 8, 3]))


def test_gram_and_qr_reductions_have_equal_gram_matrices(data):
    X = jnp.asarray(data)
    mask = jnp.ones((P, M), bool)
    xbar = X.reshape(-1, N).mean(0)
    V = jnp.asarray(_orthonormal(4, N, 1))
    Sg, cg = reduce_manifolds(X, mask, xbar, V, "gram")
    Sq, cq = reduce_manifolds(X, mask, xbar, V, "qr")
    Gg = jnp.einsum("pmd,pnd->pmn", Sg, Sg)
    Gq = jnp.einsum("pmd,pnd->pmn", Sq, Sq)
    np.testing.assert_allclose(np.asarray(Gg), np.asarray(Gq), atol=1e-12)
    np.testing.assert_allclose(np.asarray(cg), np.asarray(cq), rtol=1e-13)


@pytest.mark.parametrize("K", [0, 2])
def test_host_and_device_data_passes_agree(data, K, monkeypatch):
    # On CPU the Gram reduction reads the input with host BLAS; the device path must agree.
    import geomjax.manifold._mftma as mm

    mans = [data[0][:5], data[1], data[2][:6], data[3], data[4]]
    a = mftma(KEY, mans, n_t=N_T, K=K, n_reps=2)
    monkeypatch.setattr(mm, "_host_pass", lambda backend, reduction: False)
    b = mftma(KEY, mans, n_t=N_T, K=K, n_reps=2)
    assert a.K == b.K == K
    for f in ("capacity_per_manifold", "radius_per_manifold", "dimension_per_manifold"):
        np.testing.assert_allclose(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)),
                                   rtol=1e-9)
    np.testing.assert_allclose(float(a.residual_center_correlation),
                               float(b.residual_center_correlation), rtol=1e-10)


def test_same_key_same_result_and_keys_matter(data):
    a = mftma(KEY, data, n_t=N_T, K=0)
    b = mftma(KEY, data, n_t=N_T, K=0)
    c = mftma(jax.random.key(1), data, n_t=N_T, K=0)
    np.testing.assert_array_equal(_fields(a), _fields(b))
    assert not np.allclose(_fields(a), _fields(c))


@pytest.mark.slow  # chunking is also checked (default run) on anchor_geometry
def test_chunking_and_manifold_batch_do_not_change_results(data):
    a = mftma(KEY, data, n_t=N_T, K=0)
    b = mftma(KEY, data, n_t=N_T, K=0, chunk_size=5)
    c = mftma(KEY, data, n_t=N_T, K=0, manifold_batch=P)
    np.testing.assert_allclose(_fields(b), _fields(a), rtol=1e-12)
    np.testing.assert_allclose(_fields(c), _fields(a), rtol=1e-12)


def test_invariant_to_rotation_scale_and_point_order(data):
    base = mftma(KEY, data, n_t=N_T, K=0)
    Q = _orthonormal(5, N, N)
    perm = np.random.default_rng(6).permutation(M)
    for X in (data @ Q, 7.3 * data, data[:, perm]):
        r = mftma(KEY, X, n_t=N_T, K=0)
        np.testing.assert_allclose(_fields(r), _fields(base), rtol=1e-8)
        np.testing.assert_allclose(float(r.center_correlation), float(base.center_correlation),
                                   rtol=1e-10)


def test_invariant_to_manifold_order(data):
    rng = np.random.default_rng(7)
    ts = [rng.standard_normal((N_T, M + 1)) for _ in range(P)]
    perm = np.array([3, 0, 4, 1, 2])
    a = mftma(KEY, data, K=0, t=ts)
    b = mftma(KEY, data[perm], K=0, t=[ts[i] for i in perm])
    np.testing.assert_allclose(np.asarray(b.capacity_per_manifold),
                               np.asarray(a.capacity_per_manifold)[perm], rtol=1e-9)
    np.testing.assert_allclose(_fields(b), _fields(a), rtol=1e-9)


def test_small_P_automatic_K_is_capped_and_rotation_invariant():
    X = synthetic_manifolds(1, 3, M, N, dim=4)
    r = mftma(KEY, X, n_t=N_T, n_reps=2)
    assert r.K == 1  # max K is capped at P - 1 = 2, and K = 2 would remove every centre direction
    Q = _orthonormal(8, N, N)
    r2 = mftma(KEY, X @ Q, n_t=N_T, n_reps=2)
    assert r2.K == r.K
    np.testing.assert_allclose(_fields(r2), _fields(r), rtol=1e-6)
    np.testing.assert_allclose(float(r.center_correlation),
                               float(center_correlation(X.mean(axis=1))), rtol=1e-12)


def test_result_table_and_summary(data):
    r = mftma(KEY, data, n_t=N_T, K=0)
    df = r.to_frame()
    assert list(df["manifold"]) == list(range(P))
    assert {"capacity", "radius", "dimension", "n_points", "reduced_dim", "K"} <= set(df.columns)
    s = r.to_frame("summary")
    assert len(s) == 1 and s["capacity_ratio"][0] == pytest.approx(float(r.capacity) * M / 2)
    assert r.summary()["n_unconverged"] == 0
    assert float(r.dimension_ratio) == pytest.approx(float(r.dimension) / M)
    leaves = jax.tree_util.tree_leaves(r)
    assert all(isinstance(x, jax.Array) for x in leaves)


@pytest.mark.slow  # float32 is also checked (default run) on anchor_geometry
def test_float32_input_gives_float32_result(data):
    r = mftma(KEY, data.astype(np.float32), n_t=N_T, K=0)
    assert r.capacity.dtype == jnp.float32
    r64 = mftma(KEY, data, n_t=N_T, K=0)
    assert float(r.radius) == pytest.approx(float(r64.radius), rel=0.05)


def test_all_interior_gives_infinite_capacity(data):
    r = mftma(KEY, data, kappa=-100.0, n_t=N_T, K=0)
    assert np.isinf(float(r.capacity)) and np.isfinite(float(r.radius))


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "at least 2 manifolds"),
        ([np.ones((4, 3))], "at least 2 manifolds"),
        ([np.ones((4, 3)), np.ones((1, 3))], "at least 2 points"),
        ([np.ones((4, 3)), np.ones((4, 5))], "share the feature count"),
        (np.ones((4, 3)), "one \\(P, M, N\\) array"),
        ([np.ones((4, 3)), np.ones((4, 3, 1))], "must be \\(M, N\\)"),
        ([np.ones((4, 3)), np.full((4, 3), np.nan)], "NaN/inf"),
        ([np.ones((4, 3)), np.full((4, 3), np.inf)], "NaN/inf"),
        (None, "None"),
    ],
)
def test_bad_manifolds(bad, match):
    with pytest.raises(ValueError, match=match):
        mftma(KEY, bad, K=0)


def test_bad_options(data):
    with pytest.raises(ValueError, match="`K` must be in"):
        mftma(KEY, data, K=P)
    with pytest.raises(ValueError, match="`forms`"):
        mftma(KEY, data, forms="nope")
    with pytest.raises(ValueError, match="orthonormal"):
        mftma(KEY, data, V=np.ones((N, 1)))
    with pytest.raises(ValueError, match="`t\\[0\\]` must be"):
        mftma(KEY, data, K=0, t=[np.ones((4, 3))] * P)
    with pytest.raises(ValueError, match="`n_t`"):
        mftma(KEY, data, n_t=0)


@pytest.mark.slow
def test_two_manifolds_run_without_removal():
    X = synthetic_manifolds(2, 2, M, N, dim=4)
    r = mftma(KEY, X, n_t=N_T, n_reps=2)
    assert r.K == 0 and np.isfinite(_fields(r)).all() and r.n_unconverged == 0
