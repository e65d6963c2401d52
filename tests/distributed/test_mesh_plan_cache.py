"""The memory plan of a sharded batched kernel is worked out once, not on every call."""

import jax
import jax.numpy as jnp
import numpy as np

import geomjax.distributed as gd
from geomjax.distributed import _memory


def _batched_kernel(x, w):
    return jax.lax.map(lambda row: jnp.tanh(row @ w), x)


def test_batched_kernel_plan_is_cached(monkeypatch):
    calls = []
    real = _memory._item_bytes

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(_memory, "_item_bytes", counting)
    mesh = gd.make_mesh(1)
    x = np.random.default_rng(0).normal(size=(6, 5))
    w = np.eye(5)
    want = np.tanh(x @ w)
    for _ in range(3):
        # a new wrapper each call, as the sharded analyses build them
        fn = gd.sharded_vmap(_batched_kernel, mesh, in_axes=(0, None), batched_fn=True)
        np.testing.assert_allclose(np.asarray(fn(x, w)), want, rtol=1e-12)
    assert len(calls) == 1
