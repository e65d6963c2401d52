import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

import geomjax.probing as gp


@pytest.fixture(scope="module")
def planted():
    x, y, planted, widths = gp.planted_probing_data(
        seed=1, n_samples=600, widths=(40, 40, 40), priors=(0.5, 0.3, 0.2),
        planted_per_layer=(1, 2, 3), signal=1.5, nuisance_rank=2, dtype=np.float64)
    st = gp.fit_standardizer(x[:480])
    return np.asarray(st(x[:480])), y[:480], np.asarray(st(x[480:])), y[480:], planted, widths


def test_masks_ablate_exactly(planted, rng):
    xtr, ytr, xte, yte, _, _ = planted
    probe = gp.Probe(jnp.asarray(rng.standard_normal((120, 3))),
                     jnp.asarray(rng.standard_normal(3)))
    masks = rng.random((4, 120)) < 0.3
    got = gp.evaluate_masks(probe, xte, yte, masks)
    for k in range(4):
        pred = np.argmax((xte * masks[k]) @ np.asarray(probe.weights) + np.asarray(probe.bias), 1)
        assert np.isclose(float(got.accuracy[k]), np.mean(pred == yte))


def test_planted_neurons_recovered_and_minimal_set(planted):
    xtr, ytr, xte, yte, pl, widths = planted
    kw = dict(lam1=1e-2, lam2=1e-4, mode="converged", rtol=1e-6)
    sol = gp.fit_probes(jax.random.key(0), xtr, ytr, **kw)
    assert bool(sol.converged)
    order = gp.neuron_ordering(sol.value.weights, stride=1000)
    assert set(pl.tolist()) <= set(np.asarray(order.order)[: 2 * len(pl)].tolist())
    oracle = float(gp.scores(yte, gp.predict(sol.value, xte), 3).accuracy)
    masks = gp.ablation_masks(jax.random.key(1), order, 0.1)
    assert masks.shape == (3, 120) and np.all(np.asarray(masks).sum(1) == 12)
    abl = gp.evaluate_masks(sol.value, xte, yte, masks)
    acc = np.asarray(abl.accuracy)
    assert acc[0] > acc[2] and acc[0] > acc[1]  # top beats random and bottom
    ms = gp.minimal_neuron_set(jax.random.key(2), order, xtr, ytr, xte, yte,
                               oracle_accuracy=oracle, fractions=(0.1, 0.25, 0.5), delta=0.02,
                               **kw)
    assert bool(ms.reached)
    assert int(ms.chosen) == 0  # the top 10 % hold every planted neuron and suffice
    mask = np.asarray(ms.mask)
    assert set(pl.tolist()) <= set(np.flatnonzero(mask).tolist())
    _, idx = gp.concat_layers([xtr[:, :40], xtr[:, 40:80], xtr[:, 80:]])
    lon = np.asarray(idx.layer_of_neuron)
    np.testing.assert_array_equal(gp.layer_distribution(mask, lon),
                                  np.bincount(lon[mask], minlength=3))


def test_select_minimal_rule():
    acc = np.array([0.5, 0.8, 0.89, 0.95])
    i, ok = gp.select_minimal(acc, 0.9, 0.01)
    assert int(i) == 2 and bool(ok)
    i, ok = gp.select_minimal(acc, 0.99, 0.01)
    assert int(i) == 3 and not bool(ok)


def test_control_labels_preserve_distribution():
    y = np.repeat(np.arange(4), [10, 5, 3, 2])
    c = np.asarray(gp.control_labels(jax.random.key(0), y))
    np.testing.assert_array_equal(np.bincount(c), np.bincount(y))
    assert not np.array_equal(c, y)
    groups = np.repeat(np.arange(10), 2)
    yg = np.repeat(np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3]), 2)
    cg = np.asarray(gp.control_labels(jax.random.key(1), yg, groups=groups))
    assert np.all(cg[0::2] == cg[1::2])  # one label per group
    np.testing.assert_array_equal(np.bincount(cg), np.bincount(yg))


def test_selectivity_near_zero_on_random_features():
    # random features carry no label: task and control accuracy are both chance
    rng = np.random.default_rng(5)
    n, d, c = 400, 20, 3
    x = rng.standard_normal((2 * n, d))
    y = rng.integers(0, c, 2 * n).astype(np.int32)
    keys = jax.random.split(jax.random.key(3), 2)
    ycs = np.stack([np.asarray(gp.control_labels(k, y)) for k in keys])
    ys = np.stack([y, ycs[0]])
    sol = gp.fit_probes(jax.random.key(0), x[:n], ys[:, :n], lam1=1e-2, lam2=1e-2,
                        mode="converged", n_classes=c)
    accs = []
    for i in range(2):
        probe = jax.tree_util.tree_map(lambda a, i=i: a[i], sol.value)
        accs.append(float(gp.scores(ys[i, n:], gp.predict(probe, x[n:]), c).accuracy))
    sel = float(gp.selectivity(accs[0], accs[1]))
    # both accuracies are binomial(400, ~1/3): their difference has s.e. ~ 0.033
    assert abs(sel) < 4 * np.sqrt(2 * (1 / 3) * (2 / 3) / n)
    assert abs(accs[0] - 1 / 3) < 4 * np.sqrt((1 / 3) * (2 / 3) / n)


def test_random_init_baseline_is_near_chance(planted):
    xtr, ytr, xte, yte, _, _ = planted
    rng = np.random.default_rng(9)
    s = gp.random_init_baseline(jax.random.key(0), rng.standard_normal(xtr.shape), ytr,
                                rng.standard_normal(xte.shape), yte, lam1=1e-2, lam2=1e-2,
                                mode="converged")
    maj = float(gp.majority_baseline(ytr, yte))
    assert float(s.accuracy) < maj + 4 * np.sqrt(0.25 / len(yte))


def test_majority_and_redundancy():
    assert float(gp.majority_baseline([0, 1, 1, 2], [1, 1, 0, 2])) == 0.5
    red = gp.redundant_layers([0.5, 0.89, 0.91, 0.95], 0.92, threshold=0.02)
    np.testing.assert_array_equal(red, [False, False, True, True])
    rel = gp.redundant_layers([0.5, 0.89, 0.91], 0.92, threshold=0.03, relative=True)
    np.testing.assert_array_equal(rel, [False, False, True])


def test_correlation_clusters_match_scipy(rng):
    base = rng.standard_normal((200, 4))
    x = np.concatenate([base + 0.1 * rng.standard_normal((200, 4)),
                        -base[:, :2] + 0.1 * rng.standard_normal((200, 2)),
                        rng.standard_normal((200, 3))], axis=1)
    corr = gp.neuron_correlation(x, block_size=4)
    np.testing.assert_allclose(corr, np.corrcoef(x.T), atol=1e-12)
    got = gp.correlation_clusters(x, threshold=0.5, block_size=4)
    dist = 1 - np.abs(np.corrcoef(x.T))
    iu = np.triu_indices(9, 1)
    ref = fcluster(linkage(dist[iu], method="average"), t=0.5, criterion="distance")
    # same partition
    assert len(set(zip(got, ref, strict=False))) == len(set(got)) == len(set(ref))
    assert got[0] == got[4] and got[1] == got[5]  # anti-correlated neurons are redundant
    keep = np.asarray(gp.independent_neurons(jax.random.key(0), got))
    assert len(keep) == len(set(got)) and len(set(got[keep])) == len(keep)
