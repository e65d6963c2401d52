"""Per-sample Jacobians (SLT): autodiff routes, the exact ReLU masked product, and input checks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geomjax.jacobian as gj

SIZES = (7, 9, 8, 6, 4)  # F, three hidden layers, K


@pytest.fixture(scope="module")
def net():
    return gj.init_relu_mlp(jax.random.key(0), SIZES, dtype=jnp.float64)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(1).standard_normal((20, SIZES[0]))


def all_layers(params, x):
    logits, acts = gj.relu_mlp_apply(params, x)
    return {**{f"h{i + 1}": a for i, a in enumerate(acts)}, "logits": logits}


@pytest.fixture(scope="module")
def refs(net, data):
    """Reference: jax.jacfwd of every layer, one sample at a time (no vmap)."""
    jac = jax.jit(jax.jacfwd(lambda xi: all_layers(net, xi)))
    per = [jac(jnp.asarray(xi)) for xi in data]
    return {k: np.stack([np.asarray(p[k]) for p in per]) for k in per[0]}


@pytest.mark.parametrize("method", ["jacfwd", "jacrev", "auto"])
def test_per_sample_jacobian_equals_per_sample_jacfwd(net, data, refs, method):
    for name in ("h1", "h3", "logits"):
        ref = refs[name]
        got = np.asarray(
            gj.per_sample_jacobian(all_layers, net, data, layer=name, method=method, chunk_size=6)
        )
        assert got.shape == (data.shape[0], ref.shape[1], SIZES[0])
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)


def test_smooth_network_and_finite_differences(data):
    """A tanh net (eq. 1, no ReLU): Jacobians equal central differences."""
    W = np.random.default_rng(2).standard_normal((SIZES[0], 5)) / 2

    def fn(params, x):
        return jnp.tanh(x @ params) * x[:5]

    J = np.asarray(gj.per_sample_jacobian(fn, W, data))
    h = 1e-6
    E = np.eye(SIZES[0])
    for i in range(3):
        fd = (
            (np.tanh((data[i] + h * E) @ W) * (data[i] + h * E)[:, :5])
            - (np.tanh((data[i] - h * E) @ W) * (data[i] - h * E)[:, :5])
        ).T / (2 * h)
        np.testing.assert_allclose(J[i], fd, rtol=1e-7, atol=1e-8)


def test_relu_path_equals_autodiff_and_finite_differences(net, data, refs):
    A = gj.relu_mlp_slt(net, data)
    names = ["h1", "h2", "h3", "logits"]
    for a, name in zip(A, names, strict=False):
        np.testing.assert_allclose(np.asarray(a), refs[name], rtol=1e-12, atol=1e-13)
    apply = jax.jit(gj.relu_mlp_apply)
    # central differences where the activation pattern is unchanged: exact up to rounding
    F = SIZES[0]
    checked = 0
    for i in range(data.shape[0]):
        x = data[i]
        h = 1e-5 * (1 + np.abs(x))
        pattern = [np.asarray(a) > 0 for a in apply(net, x)[1]]
        cols = []
        for f in range(F):
            e = np.zeros(F)
            e[f] = h[f]
            same = all(
                all(
                    np.array_equal(np.asarray(a) > 0, p)
                    for a, p in zip(apply(net, x + s * e)[1], pattern, strict=False)
                )
                for s in (1, -1)
            )
            if not same:
                break
            up, dn = apply(net, x + e)[0], apply(net, x - e)[0]
            cols.append((np.asarray(up) - np.asarray(dn)) / (2 * h[f]))
        else:
            np.testing.assert_allclose(
                np.stack(cols, 1), np.asarray(A[-1][i]), rtol=1e-8, atol=1e-9
            )
            checked += 1
    assert checked >= 10


def test_affine_identity_and_eq4(net, data):
    A, c = gj.relu_mlp_slt(net, data, offsets=True)
    logits, acts = gj.relu_mlp_apply(net, data)
    for a, ci, h in zip(A, c, acts + [logits], strict=False):
        np.testing.assert_allclose(np.einsum("bhf,bf->bh", a, data) + ci, h, rtol=1e-12, atol=1e-12)
    zero_bias = [(k, jnp.zeros_like(b)) for k, b in net]
    (Aout,) = gj.relu_mlp_slt(zero_bias, data, layers=-1)
    np.testing.assert_allclose(
        np.einsum("bkf,bf->bk", Aout, data),
        gj.relu_mlp_apply(zero_bias, data)[0],
        rtol=1e-12,
        atol=1e-12,
    )


def test_reverse_output_product(net, data):
    (Aout,) = gj.relu_mlp_slt(net, data, layers=[-1])
    np.testing.assert_allclose(gj.relu_mlp_output_slt(net, data), Aout, rtol=1e-12, atol=1e-13)


def test_first_layer_slt_rank_one(net, data):
    (A1,) = gj.relu_mlp_slt(net, data, layers=0)
    for m in range(A1.shape[1]):
        s = np.linalg.svd(np.asarray(A1[:, m, :]), compute_uv=False)
        if s[0] > 0:
            assert s[1] <= 1e-12 * s[0]


def test_relu_derivative_zero_at_zero():
    """An exactly-zero pre-activation counts as inactive (eq. 3), like jax.nn.relu."""
    params = [(jnp.eye(2), jnp.zeros(2)), (jnp.ones((2, 1)), jnp.zeros(1))]
    x = np.array([[0.0, 1.0]])
    (A,) = gj.relu_mlp_slt(params, x, layers=-1)
    np.testing.assert_array_equal(A[0], [[0.0, 1.0]])
    J = gj.per_sample_jacobian(lambda p, xi: gj.relu_mlp_apply(p, xi)[0], params, x)
    np.testing.assert_array_equal(J, A)


def test_float32_dtype_and_chunk_invariance(net, data):
    n32 = [(k.astype(jnp.float32), b.astype(jnp.float32)) for k, b in net]
    x32 = data.astype(np.float32)
    A = gj.relu_mlp_slt(n32, x32)
    assert all(a.dtype == jnp.float32 for a in A)
    J = gj.per_sample_jacobian(all_layers, n32, x32, layer="h2", chunk_size=7)
    assert J.dtype == jnp.float32
    np.testing.assert_allclose(J, A[1], rtol=1e-5, atol=1e-5)
    J_all = gj.per_sample_jacobian(all_layers, n32, x32, layer="h2", chunk_size=None)
    np.testing.assert_allclose(J, J_all, rtol=1e-6, atol=1e-6)


def test_eager_equals_jit(net, data, refs):
    with jax.disable_jit():
        A = gj.relu_mlp_slt(net, data[:2], layers=1)[0]
    np.testing.assert_allclose(A, refs["h2"][:2], rtol=1e-12, atol=1e-13)


def _wide_net_refs():
    """A net wide enough that the active-unit capacities are below the layer widths."""
    sizes = (7, 48, 40, 44, 5)
    params = gj.init_relu_mlp(jax.random.key(3), sizes, dtype=jnp.float64)
    # a strongly negative bias leaves few units active in the second hidden layer
    params[1] = (params[1][0], params[1][1] - 1.5)
    x = np.random.default_rng(4).standard_normal((24, sizes[0]))
    jac = jax.jit(jax.jacfwd(lambda xi: all_layers(params, xi)))
    per = [jac(jnp.asarray(xi)) for xi in x]
    names = [f"h{i + 1}" for i in range(len(sizes) - 2)] + ["logits"]
    return params, x, [np.stack([np.asarray(p[k]) for p in per]) for k in names]


def test_active_unit_products_equal_autodiff_and_dense_product():
    from geomjax.jacobian._slt import _active_caps, _relu_slt_compact, _relu_slt_hbf, mlp_layers

    params, x, refs = _wide_net_refs()
    lay = mlp_layers(params)
    caps = _active_caps(lay, x)
    widths = [k.shape[1] for k, _ in lay[:-1]]
    assert all(c % 16 == 0 or c == w for c, w in zip(caps, widths, strict=True))
    assert any(c < w for c, w in zip(caps, widths, strict=True)), "compaction not exercised"
    A, c = gj.relu_mlp_slt(params, x, offsets=True)
    for a, r in zip(A, refs, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-13)
    # exact counts (no rounding), a zero-capacity dead layer and full widths all agree
    _, acts = gj.relu_mlp_apply(params, x)
    exact = tuple(int(np.max(np.sum(np.asarray(h) > 0, axis=1))) for h in acts)
    dead = [(k, b - 100.0) if i == 1 else (k, b) for i, (k, b) in enumerate(lay)]
    dead_caps = tuple(0 if i == 1 else w for i, w in enumerate(widths))
    for p, cp in [(lay, exact), (lay, tuple(widths)), (dead, dead_caps)]:
        A_c, c_c = jax.jit(_relu_slt_compact, static_argnums=(2, 3))(p, jnp.asarray(x), cp, True)
        A_d, c_d = _relu_slt_hbf(p, jnp.asarray(x), True)
        for a_c, a_d in zip(A_c, A_d, strict=True):
            np.testing.assert_allclose(a_c, np.transpose(a_d, (1, 0, 2)), rtol=1e-12, atol=1e-13)
        for u, v in zip(c_c, c_d, strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)
    # traced inputs keep every unit; the answer is the same
    A_jit = jax.jit(lambda p, xb: gj.relu_mlp_slt(p, xb))(params, jnp.asarray(x))
    for a, r in zip(A_jit, refs, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-13)
    A_vmap = jax.vmap(lambda xb: gj.relu_mlp_slt(params, xb, layers=-1)[0])(x[:, None, :])
    np.testing.assert_allclose(A_vmap[:, 0], refs[-1], rtol=1e-12, atol=1e-13)
    logits, acts = gj.relu_mlp_apply(params, x)
    for a, ci, h in zip(A, c, acts + [logits], strict=True):
        np.testing.assert_allclose(np.einsum("bhf,bf->bh", a, x) + ci, h, rtol=1e-12, atol=1e-12)


class FlaxMLP(nn.Module):
    widths: tuple = (9, 8)
    n_out: int = 4

    @nn.compact
    def __call__(self, x):
        acts = []
        for w in self.widths:
            x = nn.relu(nn.Dense(w)(x))
            acts.append(x)
        return nn.Dense(self.n_out)(x), acts


def test_flax_apply_with_layer_selector(data):
    model = FlaxMLP()
    variables = model.init(jax.random.key(3), jnp.zeros(SIZES[0]))
    via_flax = gj.per_sample_jacobian(model.apply, variables, data, layer=(1, 1))
    (masked,) = gj.relu_mlp_slt(variables, data, layers=1)  # Flax params dict, creation order
    np.testing.assert_allclose(via_flax, masked, rtol=1e-12, atol=1e-13)
    out = gj.per_sample_jacobian(model.apply, variables, data, layer=lambda o: o[0])
    np.testing.assert_allclose(out, gj.relu_mlp_output_slt(variables, data), rtol=1e-12, atol=1e-13)


def test_bad_input_errors(net, data):
    with pytest.raises(ValueError, match="`x` must be"):
        gj.per_sample_jacobian(all_layers, net, data[0], layer="h1")
    with pytest.raises(ValueError, match="NaN"):
        gj.per_sample_jacobian(all_layers, net, np.full((2, SIZES[0]), np.nan), layer="h1")
    with pytest.raises(TypeError, match="single array"):
        gj.per_sample_jacobian(all_layers, net, data)
    with pytest.raises(ValueError, match="`method`"):
        gj.per_sample_jacobian(all_layers, net, data, layer="h1", method="fd")
    with pytest.raises(TypeError, match="hashable"):
        gj.per_sample_jacobian(all_layers, net, data, layer=["h1"])
    with pytest.raises(TypeError, match="`fn`"):
        gj.per_sample_jacobian(3, net, data)
    with pytest.raises(ValueError, match="features"):
        gj.relu_mlp_slt(net, data[:, :3])
    with pytest.raises(ValueError, match="out of range"):
        gj.relu_mlp_slt(net, data, layers=9)
    with pytest.raises(ValueError, match="chain"):
        gj.relu_mlp_slt([(jnp.ones((7, 3)), jnp.ones(3)), (jnp.ones((4, 2)), jnp.ones(2))], data)
    with pytest.raises(TypeError, match="params"):
        gj.relu_mlp_slt("weights", data)
