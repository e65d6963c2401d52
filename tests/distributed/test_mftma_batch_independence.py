"""The anchor stage's arithmetic per manifold does not depend on which other manifolds share the
batch: what lets geomjax.distributed.mftma_sweep (any slice of a pooled batch per device) equal
geomjax.manifold.mftma bitwise. Runs on one device."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from geomjax.manifold._mftma import _anchors_from_keys, _draw_samples, _solver_items


def _reduced(seed, P, M, D1):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((P, M, D1 - 1)) * 0.4
    Z -= Z.mean(axis=1, keepdims=True)
    return jnp.asarray(np.concatenate([Z, np.ones((P, M, 1))], axis=2))


def test_sample_draw_is_per_manifold():
    keys = jax.random.split(jax.random.key(1), 6)
    full = _draw_samples(keys, 9, 5, jnp.float32)
    part = _draw_samples(keys[2:5], 9, 5, jnp.float32)
    np.testing.assert_array_equal(np.asarray(full[2:5]), np.asarray(part))


def test_anchor_stage_slice_equals_full_batch():
    P, M, D1, n_t = 7, 6, 7, 12
    S = _reduced(0, P, M, D1)
    mask = jnp.ones((P, M), bool).at[1, -2:].set(False)
    S = jnp.where(mask[:, :, None], S, 0)
    dims = jnp.full((P,), D1 - 1)
    keys = jax.random.split(jax.random.key(2), P)
    items = _solver_items(None, 0.0, 10_000, 10, S.dtype)
    kap = jnp.asarray(0.1, S.dtype)
    full = _anchors_from_keys(keys, S, mask, dims, kap, n_t, "coded", None, items)
    for sl in (slice(0, 3), slice(1, 2), slice(3, 7)):
        part = _anchors_from_keys(keys[sl], S[sl], mask[sl], dims[sl], kap, n_t, "coded", None,
                                  items)
        for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(part),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a)[sl], np.asarray(b))
