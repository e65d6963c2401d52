"""Rankings against a loop implementation of NeuroX's documented algorithm."""

import jax
import numpy as np
import pytest

import geomjax.probing as gp


def _neurox_top(w_cd, p, descending=True):
    """NeuroX get_top_neurons / get_bottom_neurons on |W| of shape (C, D)."""
    sets = []
    for row in np.abs(w_cd):
        total = np.sum(row)
        idx = np.argsort(row, kind="stable")
        idx = idx[::-1] if descending else idx
        cums = np.cumsum(row[idx])
        over = np.where(cums >= total * p)[0]
        sel = np.arange(cums.shape[0]) if over.shape[0] == 0 else np.arange(over[0] + 1)
        sets.append(set(idx[sel].tolist()))
    return set().union(*sets), sets


def _neurox_ordering(w_cd, stride):
    ordering, seen, cutoffs = [], set(), []
    for s in range(stride + 1):
        new = _neurox_top(w_cd, s / stride)[0] - seen
        ordering += sorted(new)
        seen |= new
        cutoffs.append(len(ordering))
    return ordering, cutoffs


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((4, 80)) * rng.exponential(1.0, (4, 80))
    w[:, 5] = 0.0  # an all-zero neuron: no mass step ever selects it
    w[1, 7] = w[1, 9] = 2.5  # a tie
    return w  # (C, D) like NeuroX's probe.linear.weight


@pytest.mark.parametrize("stride", [10, 100, 1000])
def test_ordering_reproduces_neurox_chunks_and_cutoffs(weights, stride):
    ref_order, ref_cut = _neurox_ordering(weights, stride)
    got = gp.neuron_ordering(weights.T, stride=stride)
    cut = np.asarray(got.cutoffs)
    np.testing.assert_array_equal(cut, ref_cut)
    order = np.asarray(got.order)
    starts = [0] + ref_cut[:-1]
    for a, b in zip(starts, ref_cut, strict=False):
        assert set(order[a:b]) == set(ref_order[a:b])
    # neurons NeuroX never selects come last, then rank is the inverse permutation
    assert set(order[ref_cut[-1]:]) == set(range(80)) - set(ref_order)
    np.testing.assert_array_equal(np.asarray(got.rank)[order], np.arange(80))
    # inside a chunk the order is by decreasing share of class mass
    share = (np.abs(weights) / np.abs(weights).sum(1, keepdims=True)).max(0)
    for a, b in zip(starts, ref_cut, strict=False):
        assert np.all(np.diff(share[order[a:b]]) <= 0)


@pytest.mark.parametrize("p", [0.0, 0.01, 0.2, 0.5, 0.9, 1.0])
def test_top_and_bottom_reproduce_neurox(weights, p):
    # (with all-zero rows, p = 1 depends on how the total mass rounds, in NeuroX as here)
    weights = np.where(weights == 0, 0.01, weights)
    for fn, desc in ((gp.top_neurons, True), (gp.bottom_neurons, False)):
        union, per_class = fn(weights.T, p)
        ref_union, ref_sets = _neurox_top(weights, p, desc)
        assert set(np.flatnonzero(union)) == ref_union
        for c in range(4):
            assert set(np.flatnonzero(per_class[c])) == ref_sets[c]


def test_hard_threshold_and_random(weights):
    union, per_class = gp.top_neurons_hard_threshold(weights.T, 10)
    absw = np.abs(weights)
    ref = absw > absw.max(1, keepdims=True) / 10
    np.testing.assert_array_equal(per_class, ref)
    np.testing.assert_array_equal(union, ref.any(0))
    k = jax.random.key(0)
    a = gp.random_neurons(k, 80, 0.3)
    np.testing.assert_array_equal(a, gp.random_neurons(k, 80, 0.3))
    assert 5 < int(a.sum()) < 45
    r = gp.random_k_neurons(k, 80, 17)
    assert int(r.sum()) == 17
    assert not np.array_equal(r, gp.random_k_neurons(jax.random.key(1), 80, 17))


def test_layer_distribution_counts_selected_neurons():
    lon = np.repeat(np.arange(3), [4, 2, 5])
    mask = np.zeros(11, bool)
    mask[[0, 3, 4, 10]] = True
    np.testing.assert_array_equal(gp.layer_distribution(mask, lon), [2, 1, 1])
    both = gp.layer_distribution(np.stack([mask, ~mask]), lon)
    np.testing.assert_array_equal(both, [[2, 1, 1], [2, 1, 4]])
    np.testing.assert_array_equal(gp.mask_from_indices([0, 3, 4, 10], 11), mask)
