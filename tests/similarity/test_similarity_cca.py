"""CCA / SVCCA / PWCCA: google/svcca and Morcos references, invariances, rank handling."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import similarity_refs as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import geomjax.similarity as sim

SHAPES = [(60, 5, 7), (80, 9, 4)]
pairs = st.tuples(st.integers(0, 10_000), st.sampled_from(SHAPES))


def _pair(seed, shape, shared=3):
    n, dx, dy = shape
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, shared))
    x = z @ rng.normal(size=(shared, dx)) + 0.8 * rng.normal(size=(n, dx))
    y = z @ rng.normal(size=(shared, dy)) + 0.8 * rng.normal(size=(n, dy)) - 2.0
    return x, y


@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_cca_matches_google_svcca(epsilon):
    x, y = _pair(0, (200, 12, 17))
    r = sim.cca(x, y, epsilon=epsilon)
    want = ref.svcca_cca(x.T, y.T, epsilon=epsilon)
    k = int(r.n_components)
    assert k == 12
    np.testing.assert_allclose(r.valid_rho, want[:k], atol=1e-9)
    assert float(r.mean) == pytest.approx(want[:k].mean(), abs=1e-9)
    assert float(r.mean_sq) == pytest.approx(np.mean(want[:k] ** 2), abs=1e-9)


def test_cca_matches_thin_svd_definition_and_rank():
    x, y = _pair(1, (100, 6, 8))
    x = np.concatenate([x, x[:, :2] + x[:, 2:4], np.zeros((100, 1))], axis=1)  # rank 6 of 9
    r = sim.cca(x, y)
    assert int(r.rank_x) == 6 and int(r.rank_y) == 8 and int(r.n_components) == 6
    np.testing.assert_allclose(r.valid_rho, ref.cca_rho(x, y), atol=1e-10)
    assert np.all(np.asarray(r.rho)[6:] == 0)


def test_svcca_matches_reference_and_threshold_one_is_cca():
    x, y = _pair(2, (150, 15, 10), shared=4)
    r = sim.svcca(x, y, threshold=0.9)
    want, kept = ref.svcca_mean(x, y, 0.9)
    assert (int(r.kept_x), int(r.kept_y)) == tuple(kept)
    assert float(r.mean) == pytest.approx(want, abs=1e-9)
    assert float(sim.svcca(x, y, threshold=1.0).mean) == pytest.approx(
        float(sim.cca(x, y).mean), abs=1e-12
    )


def test_svcca_kept_dimension_on_known_spectrum():
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.normal(size=(200, 10)))[0]
    s = np.array([10, 8, 6, 4, 2, 0.1, 0.1, 0.1, 0.1, 0.1])
    x = q * s  # centred-ish basis: exact spectrum after centring up to tiny mean removal
    x = x - x.mean(0)
    frac = np.cumsum(np.linalg.svd(x, compute_uv=False) ** 2)
    frac /= frac[-1]
    k_true = int(np.argmax(frac >= 0.99)) + 1
    r = sim.svcca(x, x, threshold=0.99)
    assert int(r.kept_x) == k_true == 5
    assert float(r.mean) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("side", ["x", "y"])
def test_pwcca_matches_morcos_definition(side):
    x, y = _pair(4, (120, 7, 11))
    r = sim.pwcca(x, y, side=side)
    assert float(r.value) == pytest.approx(ref.pwcca_morcos(x, y, side), abs=1e-10)
    w = np.asarray(r.weights)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0, abs=1e-12)
    rho = r_valid = np.asarray(r.rho)[: int(r.n_components)]
    assert rho.min() - 1e-12 <= float(r.value) <= r_valid.max() + 1e-12


def test_pwcca_svcca_repo_variant_matches_google_code():
    x, y = _pair(10, (150, 6, 9))
    x = x + 3.0  # the variant weights with uncentred activations: offsets matter there
    got = sim.pwcca(x, y, variant="svcca_repo")
    assert got.side == "x"
    assert float(got.value) == pytest.approx(ref.pwcca_svcca_repo(x.T, y.T), abs=1e-9)
    assert float(got.value) != pytest.approx(float(sim.pwcca(x, y).value), abs=1e-4)
    other = sim.pwcca(y, x, variant="svcca_repo")  # google raises here; the intended branch
    assert other.side == "y"
    assert float(other.value) == pytest.approx(ref.pwcca_svcca_repo(y.T, x.T), abs=1e-9)
    with pytest.raises(ValueError, match="fewer neurons"):
        sim.pwcca(x, y, variant="svcca_repo", side="y")


def test_pwcca_asymmetric_and_identity():
    x, y = _pair(5, (120, 7, 11))
    assert float(sim.pwcca(x, y).value) != pytest.approx(float(sim.pwcca(y, x).value), abs=1e-4)
    assert float(sim.pwcca(x, y, side="y").value) == pytest.approx(
        float(sim.pwcca(y, x, side="x").value), abs=1e-12
    )
    assert float(sim.pwcca(x, x).value) == pytest.approx(1.0, abs=1e-10)


def test_pwcca_equals_rho_when_all_rho_equal():
    rng = np.random.default_rng(6)
    n, d = 400, 3
    z = np.linalg.qr(rng.normal(size=(n, 2 * d)) - 0)[0]
    z = z - z.mean(0)
    z = np.linalg.qr(z)[0]
    c = 0.6
    x = z[:, :d]
    y = c * z[:, :d] + np.sqrt(1 - c**2) * z[:, d:]
    r = sim.cca(x, y)
    np.testing.assert_allclose(r.valid_rho, c, atol=1e-8)
    assert float(sim.pwcca(x @ rng.normal(size=(d, d)), y).value) == pytest.approx(c, abs=1e-8)


@settings(max_examples=8)
@given(pairs)
def test_cca_invariant_to_invertible_maps_symmetric_bounded(p):
    x, y = _pair(p[0], p[1])
    rng = np.random.default_rng(p[0])
    a = rng.normal(size=(x.shape[1], x.shape[1])) + 3 * np.eye(x.shape[1])
    base = sim.cca(x, y)
    np.testing.assert_allclose(sim.cca(x @ a + 7.0, y).rho, base.rho, atol=1e-8)
    np.testing.assert_allclose(sim.cca(y, x).rho, base.rho, atol=1e-10)
    rho = np.asarray(base.rho)
    assert np.all(rho >= 0) and np.all(rho <= 1) and np.all(np.diff(rho) <= 1e-12)
    assert float(sim.cca(x, x).mean) == pytest.approx(1.0, abs=1e-10)
    sv = sim.svcca(x, y)
    assert float(sv.mean) == pytest.approx(float(sim.svcca(y, x).mean), abs=1e-10)
    assert 0 <= float(sv.mean) <= 1
    assert float(sim.svcca(x, x).mean) == pytest.approx(1.0, abs=1e-10)


def test_cca_duplicated_features_handled_by_rank():
    x, y = _pair(7, (90, 5, 6))
    base = float(sim.cca(x, y).mean)
    dup = np.concatenate([x, x[:, :2]], axis=1)
    assert float(sim.cca(dup, y).mean) == pytest.approx(base, abs=1e-9)


def test_cca_n_less_than_d_with_regularisation():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(20, 30)), rng.normal(size=(20, 25))
    plain = sim.cca(x, y)
    # N < Dx + Dy without ridge: the correlations saturate (overfitting), as documented
    assert float(plain.mean) > 0.99
    assert int(plain.n_components) == 19  # rank of centred data is N - 1
    r = sim.cca(x, y, epsilon=0.1)
    want = ref.ridge_cca_rho(x, y, 0.1)
    k = int(r.n_components)
    np.testing.assert_allclose(r.valid_rho, want[:k], atol=1e-9)
    assert 0 < float(r.mean) < 0.99


@pytest.mark.parametrize("route", ["cov", "chol"])
@pytest.mark.parametrize("fn", ["cca", "svcca", "pwcca"])
def test_svd_and_covariance_routes_agree(fn, route):
    x, y = _pair(11, (300, 8, 12))
    x = np.concatenate([x, x[:, :2] + x[:, 2:4]], axis=1)  # rank-deficient: 8 of 10
    f = getattr(sim, fn)
    a, b = f(x, y, method="svd"), f(x, y, method=route)  # chol falls back: not full rank
    if fn == "pwcca":
        assert float(a.value) == pytest.approx(float(b.value), abs=1e-10)
    else:
        assert int(a.rank_x) == int(b.rank_x) == 8
        np.testing.assert_allclose(a.rho, b.rho, atol=1e-10)
    assert sim.cca_method(300, 10, 12, np.float64) == "cov"
    assert sim.cca_method(300, 10, 12, np.float32) == "svd"
    assert sim.cca_method(20, 10, 12, np.float64) == "svd"


def test_truncated_mean_matches_google_summary():
    rho = np.array([0.9, 0.8, 0.5, 0.1, 0.01])
    i = next(i for i in range(len(rho)) if rho[:i].sum() / rho.sum() >= 0.98)
    assert sim.truncated_mean(rho, 0.98) == pytest.approx(rho[:i].mean())


def test_cca_vmap_equals_loop_and_jit():
    xs = np.stack([_pair(s, SHAPES[0])[0] for s in range(3)])
    ys = np.stack([_pair(s, SHAPES[0])[1] for s in range(3)])
    vm = jax.vmap(lambda a, b: sim.cca(a, b).mean)(xs, ys)
    loop = [float(sim.cca(a, b).mean) for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(vm, loop, atol=1e-12)
    jt = jax.jit(lambda a, b: sim.pwcca(a, b).value)(xs[0], ys[0])
    assert float(jt) == pytest.approx(float(sim.pwcca(xs[0], ys[0]).value), abs=1e-12)


def test_cca_float32():
    x, y = _pair(9, (200, 8, 6))
    r = sim.cca(x.astype(np.float32), y.astype(np.float32))
    assert r.rho.dtype == np.float32
    np.testing.assert_allclose(r.valid_rho, ref.cca_rho(x, y), atol=2e-5)


@pytest.mark.parametrize("side", ["x", "y"])
def test_cholesky_route_matches_svd_route_full_rank(side):
    from geomjax.similarity import _cca

    x, y = _pair(12, (400, 9, 14))
    a, b = sim.cca(x, y, method="svd"), sim.cca(x, y, method="chol")
    assert int(b.rank_x) == 9 and int(b.rank_y) == 14 and int(b.n_components) == 9
    np.testing.assert_allclose(b.rho, a.rho, atol=1e-10)
    pa, pb = sim.pwcca(x, y, side=side, method="svd"), sim.pwcca(x, y, side=side)
    assert float(pb.value) == pytest.approx(float(pa.value), abs=1e-10)
    assert float(pb.value) == pytest.approx(ref.pwcca_morcos(x, y, side), abs=1e-10)
    np.testing.assert_allclose(pb.weights, pa.weights, atol=1e-9)
    # host-BLAS cross-products (eager, CPU) and the XLA ones (the jitted core) agree
    xa, ya = jax.numpy.asarray(x), jax.numpy.asarray(y)
    rt = _cca._default_rtol(400, 14, xa.dtype, "cov")
    xla = _cca._cca_gram_core(xa, ya, 0.0, rt, rt, 1.0, False, "chol", side)
    assert float(xla.value) == pytest.approx(float(pb.value), abs=1e-12)


def test_cholesky_route_refuses_near_singular_side():
    from geomjax.similarity import _cca

    x, y = _pair(13, (300, 6, 8))
    g = np.cov(x.T) * 299
    lf, ok = _cca._cholesky_certified(jax.numpy.asarray(g), 1e-6)
    assert bool(ok)
    x2 = np.concatenate([x, x[:, :1] + 1e-9 * x[:, 1:2]], axis=1)  # condition ~1e18
    xc = x2 - x2.mean(0)
    _, ok2 = _cca._cholesky_certified(jax.numpy.asarray(xc.T @ xc), 1e-6)
    assert not bool(ok2)
    r = sim.cca(x2, y)  # falls back to the rank-revealing eigen-route
    assert int(r.rank_x) == 6
    np.testing.assert_allclose(r.valid_rho, sim.cca(x2, y, method="svd").valid_rho, atol=1e-7)


@pytest.mark.parametrize(
    "fn, kw, deficient",
    [
        ("svcca", {}, False),
        ("svcca", {"epsilon": 1e-3, "threshold": 0.9}, True),
        ("svcca", {"swap": True}, False),  # more kept directions on x than on y
        ("cca", {}, False),  # Cholesky whitening
        ("cca", {}, True),  # certification fails: eigen-route
        ("pwcca", {}, False),
        ("pwcca", {"side": "y", "threshold": 0.95}, True),
    ],
)
def test_host_lapack_route_matches_jitted_core(fn, kw, deficient):
    """Eager float64 on CPU runs in host LAPACK (kept eigenvectors only); the jitted core on
    the same cross-products is the reference. Widths >= 64 take the tridiagonal path."""
    from geomjax.similarity import _cca

    x, y = _pair(14, (500, 70, 90), shared=5)
    if deficient:  # rank 70 of 72 (an exact combination and a constant): the eigen-route
        x = np.concatenate([x, x[:, :1] - x[:, 1:2], np.full((500, 1), 3.0)], axis=1)
    kw = dict(kw)
    if kw.pop("swap", False):
        x, y = y, x
    side, thr = kw.pop("side", None), kw.pop("threshold", None)
    if fn == "svcca":
        thr = 0.99 if thr is None else thr
    xa, ya, eps, rx, ry, m = _cca._prep_cca(
        x, y, kw.get("epsilon", 0.0), None, kw.get("method", "auto"), chol_ok=thr is None
    )
    weights = (side or "x") if fn == "pwcca" else None
    use = thr is not None
    grams = _cca._host_cross_products(xa, ya)
    args = (xa.shape[0], eps, rx, ry, 1.0 if thr is None else thr, use, m, weights)
    host = _cca._host_cca(*grams, *args)
    jit = _cca._cca_host_core(*(jax.numpy.asarray(g) for g in grams), *args)
    if weights is not None:
        assert float(host.value) == pytest.approx(float(jit.value), abs=1e-10)
        np.testing.assert_allclose(host.weights, jit.weights, atol=1e-9)
        np.testing.assert_allclose(host.rho, jit.rho, atol=1e-10)
        return
    for f in ("n_components", "rank_x", "rank_y", "kept_x", "kept_y"):
        assert int(getattr(host, f)) == int(getattr(jit, f)), f
    assert host.rho.dtype == jit.rho.dtype and host.rank_x.dtype == jit.rank_x.dtype
    np.testing.assert_allclose(host.rho, jit.rho, atol=1e-10)
    assert float(host.mean) == pytest.approx(float(jit.mean), abs=1e-12)
    if deficient:
        assert int(host.rank_x) == 70
    # the public function takes the host route here and gives the same answer
    pub = getattr(sim, fn)(x, y, **kw, **({"threshold": thr} if thr is not None else {}))
    assert float(pub.mean) == pytest.approx(float(host.mean), abs=1e-14)


def test_host_route_ill_conditioned_side_falls_back_like_svd():
    """Widths >= 64 (the tridiagonal path): a near-duplicate feature (condition ~1e18) fails
    the Cholesky certification and the eigen-route drops it, as the thin-SVD route does."""
    x, y = _pair(15, (400, 70, 66), shared=5)
    x = np.concatenate([x, x[:, :1] + 1e-9 * x[:, 1:2]], axis=1)
    for fn in ("cca", "pwcca"):
        a, b = getattr(sim, fn)(x, y), getattr(sim, fn)(x, y, method="svd")
        np.testing.assert_allclose(a.rho, b.rho, atol=1e-7)
        if fn == "pwcca":
            assert float(a.value) == pytest.approx(float(b.value), abs=1e-7)
        else:
            assert int(a.rank_x) == int(b.rank_x) == 70
