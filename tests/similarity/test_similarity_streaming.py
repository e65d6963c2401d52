"""Streaming (minibatch) CKA: equals the in-memory float64 estimator on the same batches, and its
state does not grow with the number of samples streamed."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import geomjax.similarity as sim


def _batches(n_batches, b=64, dx=12, dy=9, seed=0):
    """Batches drawn one at a time from a seeded generator (never held together)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(4, dx))
    c = rng.normal(size=(4, dy))
    for _ in range(n_batches):
        z = rng.normal(size=(b, 4))
        yield z @ a + rng.normal(size=(b, dx)), np.tanh(z @ c) + 0.5 * rng.normal(size=(b, dy)) + 5


def _u_hsic(x, y):
    """float64 NumPy unbiased HSIC (Song et al. 2012) in Gram space, straight from the formula."""
    n = x.shape[0]
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (
        np.trace(k @ l)
        + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ k @ l @ one)
    ) / (n * (n - 3))


@pytest.mark.parametrize("method", ["gram", "feature"])
def test_streaming_equals_in_memory_estimator(method):
    acc = sim.MinibatchCKA(method=method, flush_every=4)
    s = np.zeros(3)
    xs, ys = [], []
    for xb, yb in _batches(10):
        acc.update(xb, yb)
        s += [_u_hsic(xb, yb), _u_hsic(xb, xb), _u_hsic(yb, yb)]
        xs.append(xb)
        ys.append(yb)
    want = s[0] / np.sqrt(s[1] * s[2])
    assert acc.result()[0, 1] == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(acc.hsic_sum[[0, 0, 1], [1, 0, 1]], s, rtol=1e-12)
    # the functional form over an iterator gives the same number
    assert sim.minibatch_cka(_batches(10), method=method) == pytest.approx(want, abs=1e-12)
    # one batch holding everything is debiased CKA of the whole subset in memory
    x, y = np.concatenate(xs), np.concatenate(ys)
    one = sim.MinibatchCKA(method=method)
    one.update(x, y)
    assert one.result()[0, 1] == pytest.approx(float(sim.cka(x, y, debiased=True)), abs=1e-12)


def _state_bytes(acc):
    """Bytes held by the accumulator's array state (host and device)."""
    total = 0
    for v in vars(acc).values():
        for item in v if isinstance(v, list) else [v]:
            leaves = jax.tree_util.tree_leaves(item)
            total += sum(np.asarray(leaf).nbytes for leaf in leaves if hasattr(leaf, "shape"))
    return total


def test_streaming_state_is_independent_of_n():
    sizes = {}
    for n_batches in (8, 80):
        acc = sim.MinibatchCKA(flush_every=8)
        for xb, yb in _batches(n_batches):
            acc.update(xb, yb)
        acc.result()
        assert acc.n_samples == 64 * n_batches and acc.n_batches == n_batches
        assert acc._sum.shape == (2, 2) and acc._pending == []
        sizes[n_batches] = _state_bytes(acc)
    # 10x more samples, the same state: the (L, L) float64 sum plus scalar counters
    assert sizes[8] == sizes[80] == 2 * 2 * 8
    # pending per-batch results are bounded by flush_every, not by the number of batches
    acc = sim.MinibatchCKA(flush_every=5)
    longest = 0
    for xb, yb in _batches(23):
        acc.update(xb, yb)
        longest = max(longest, len(acc._pending))
    assert longest < 5
