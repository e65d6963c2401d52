import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from sklearn.linear_model import LogisticRegression

import geomjax.probing as gp

N, D, C = 120, 6, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, D))
    w = rng.standard_normal((D, C)) * 1.5
    y = np.argmax(x @ w + rng.gumbel(size=(N, C)), axis=1).astype(np.int32)
    return x, y


def _np_objective(w, b, x, y, l1, l2, squared):
    z = x @ w + b
    ce = np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y])
    pen = l2 * (np.sum(w**2) if squared else np.sqrt(np.sum(w**2)))
    g = (softmax(z, axis=1) - np.eye(w.shape[1])[y]) / len(y)
    gw = x.T @ g + l1 * np.sign(w) + (2 * l2 * w if squared else l2 * w / np.sqrt(np.sum(w**2)))
    return ce + l1 * np.abs(w).sum() + pen, gw, g.sum(0)


@pytest.mark.parametrize("l2", ["squared", "unsquared"])
def test_objective_and_gradient_match_numpy(data, rng, l2):
    x, y = data
    w, b = rng.standard_normal((D, C)), rng.standard_normal(C)
    val, gw, gb = _np_objective(w, b, x, y, 0.03, 0.02, l2 == "squared")
    f = lambda p: gp.probe_objective(p, x, y, 0.03, 0.02, l2=l2)  # noqa: E731
    p = gp.Probe(jnp.asarray(w), jnp.asarray(b))
    np.testing.assert_allclose(f(p), val, rtol=1e-12)
    g = jax.grad(f)(p)
    np.testing.assert_allclose(g.weights, gw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.bias, gb, rtol=1e-10, atol=1e-12)


def _sk_coef(x, y, lam1, lam2, solver):
    # mean CE + lam1|W|_1 + lam2|W|^2 == sklearn with C = 1/(n(lam1+2lam2)), l1_ratio = lam1/(...)
    n = len(y)
    c = 1.0 / (n * (lam1 + 2 * lam2))
    m = LogisticRegression(C=c, l1_ratio=lam1 / (lam1 + 2 * lam2), solver=solver, tol=1e-12,
                           max_iter=100_000)
    m.fit(x, y)
    return m.coef_.T, m.intercept_


@pytest.mark.parametrize("lam1,lam2,solver", [(0.0, 0.01, "lbfgs"), (0.01, 0.005, "saga")])
def test_converged_mode_matches_sklearn(data, lam1, lam2, solver):
    x, y = data
    sol = gp.fit_probes(jax.random.key(0), x, y, lam1=lam1, lam2=lam2, mode="converged",
                        rtol=1e-9, strict=True)
    assert bool(sol.converged) and sol.settings.method == "fista"
    w_ref, b_ref = _sk_coef(x, y, lam1, lam2, solver)
    np.testing.assert_allclose(sol.value.weights, w_ref, atol=2e-5)
    # the softmax bias is defined up to a constant shift
    bias = np.asarray(sol.value.bias)
    np.testing.assert_allclose(bias - bias.mean(), b_ref - b_ref.mean(), atol=2e-5)
    if lam1 > 0:  # L1 makes exact zeros where sklearn has them
        assert np.array_equal(np.asarray(sol.value.weights) == 0, w_ref == 0)


def test_converged_unsquared_satisfies_kkt(data):
    x, y = data
    lam1, lam2 = 0.01, 0.05
    sol = gp.fit_probes(jax.random.key(0), x, y, lam1=lam1, lam2=lam2, l2="unsquared",
                        mode="converged", rtol=1e-9)
    assert bool(sol.converged)
    w, b = np.asarray(sol.value.weights), np.asarray(sol.value.bias)
    z = x @ w + b
    g = (softmax(z, axis=1) - np.eye(C)[y]) / N
    gw = x.T @ g + lam2 * w / np.linalg.norm(w)
    nz = w != 0
    np.testing.assert_allclose(gw[nz], -lam1 * np.sign(w[nz]), atol=1e-6)
    assert np.all(np.abs(gw[~nz]) <= lam1 + 1e-6)
    np.testing.assert_allclose(g.sum(0), 0, atol=1e-6)


def test_adam_reports_unconverged_honestly_and_strict_raises(data):
    x, y = data
    sol = gp.fit_probes(jax.random.key(0), x, y, epochs=1, batch_size=64)
    assert not bool(sol.converged) and int(sol.num_steps) == 2
    assert float(sol.residual) > 0
    from geomjax._types import NotConvergedError

    with pytest.raises(NotConvergedError):
        gp.fit_probes(jax.random.key(0), x, y, epochs=1, batch_size=64, strict=True)


def test_vmapped_probes_equal_one_by_one(data):
    x, y = data
    rng = np.random.default_rng(1)
    masks = rng.random((3, D)) < 0.7
    lam1 = np.array([0.0, 1e-3, 1e-2])
    keys = jax.random.split(jax.random.key(4), 3)
    y2 = np.stack([y, rng.permutation(y), y])
    kw = dict(epochs=3, batch_size=32, n_classes=C)
    batched = gp.fit_probes(keys, x, y2, feature_mask=masks, lam1=lam1, **kw)
    for i in range(3):
        one = gp.fit_probes(keys[i], x, y2[i], feature_mask=masks[i], lam1=lam1[i], **kw)
        np.testing.assert_allclose(batched.value.weights[i], one.value.weights, rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(batched.residual[i], one.residual, rtol=1e-9)


def test_mask_equals_training_on_the_column_subset(data):
    x, y = data
    keep = np.array([True, False, True, True, False, True])
    kw = dict(epochs=3, batch_size=32, n_classes=C, lam1=1e-3)
    masked = gp.fit_probes(jax.random.key(2), x, y, feature_mask=keep, **kw)
    sub = gp.fit_probes(jax.random.key(2), x[:, keep], y, **kw)
    w = np.asarray(masked.value.weights)
    assert np.all(w[~keep] == 0)  # masked neurons never move
    np.testing.assert_allclose(w[keep], sub.value.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(masked.value.bias, sub.value.bias, rtol=1e-9, atol=1e-12)


def test_seeded_shuffle_is_reproducible_and_seed_dependent(data):
    x, y = data
    a = gp.fit_probes(jax.random.key(7), x, y, epochs=2, batch_size=32)
    b = gp.fit_probes(jax.random.key(7), x, y, epochs=2, batch_size=32)
    c = gp.fit_probes(jax.random.key(8), x, y, epochs=2, batch_size=32)
    np.testing.assert_array_equal(a.value.weights, b.value.weights)
    assert not np.allclose(a.value.weights, c.value.weights)


def test_float32_in_float32_out(data):
    x, y = data
    sol = gp.fit_probes(jax.random.key(0), x.astype(np.float32), y, epochs=2, batch_size=32)
    assert sol.value.weights.dtype == jnp.float32
    acc = np.mean(np.asarray(gp.predict(sol.value, x.astype(np.float32))) == y)
    assert acc > 0.5


def test_bad_input_gets_clear_errors(data):
    x, y = data
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="n_classes"):
        gp.fit_probes(key, x, y, n_classes=2)
    with pytest.raises(ValueError, match="negative"):
        gp.fit_probes(key, x, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match="single class"):
        gp.fit_probes(key, x, np.zeros(N, np.int32))
    with pytest.raises(ValueError, match="120 samples"):
        gp.fit_probes(key, x, y[:-1])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gp.fit_probes(key, bad, y)
    with pytest.raises(TypeError, match="integers"):
        gp.fit_probes(key, x, y.astype(float))
    with pytest.raises(ValueError, match="lam1"):
        gp.fit_probes(key, x, y, lam1=-1.0)
    with pytest.raises(ValueError, match="feature_mask"):
        gp.fit_probes(key, x, y, feature_mask=np.ones(D + 1))
    with pytest.raises(ValueError, match="batch size"):
        gp.fit_probes(key, x, np.stack([y, y]), lam1=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="mode"):
        gp.fit_probes(key, x, y, mode="sgd")


def test_kkt_residual_row_blocks_equal_the_full_batch_gradient(monkeypatch):
    """The residual's one-pass gradient (row blocks + a tail) equals autodiff of the full batch."""
    from geomjax.probing import _probe

    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 6))
    y = rng.integers(0, 3, 37)
    p = gp.Probe(rng.standard_normal((6, 3)) * 0.3, rng.standard_normal(3))
    mask = np.array([1, 1, 0, 1, 0, 1], float)
    ref = {}
    for blk in (10**6, 60):  # one block; 10 rows per block: 3 blocks and a 7-row tail
        monkeypatch.setattr(_probe, "_GRAD_BLOCK", blk)
        gw, gb = _probe._ce_grad_t(jnp.asarray(p.weights.T), jnp.asarray(p.bias), x, y)
        _, g = _probe._smooth_grad(gp.Probe(p.weights.T, p.bias), x, y, 0.0, "squared", None, True)
        np.testing.assert_allclose(gw, g.weights, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gb, g.bias, rtol=1e-12, atol=1e-14)
        for l2 in ("squared", "unsquared"):
            ref.setdefault(l2, []).append(float(gp.probe_kkt_residual(
                p, x, y, 1e-2, 1e-2, l2=l2, feature_mask=mask)))
    for vals in ref.values():
        assert np.isclose(vals[0], vals[1], rtol=1e-12)
