"""Output-node SLT functions: clusters, nearest-centroid templates, confusable pairs, diversity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

import geomjax.jacobian as gj


def confusion(y, pred, n_classes):
    C = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(C, (y, pred), 1)
    return C


SIZES = (6, 8, 7, 4)


@pytest.fixture(scope="module")
def setup():
    net = gj.init_relu_mlp(jax.random.key(11), SIZES, dtype=jnp.float64)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((80, SIZES[0]))
    logits, _ = gj.relu_mlp_apply(net, x)
    y = np.array(jnp.argmax(logits, 1))
    y[::7] = (y[::7] + 1) % SIZES[-1]  # some misclassified points
    return net, x, y, np.asarray(logits).argmax(1), np.asarray(gj.output_slts(net, x))


def test_output_slts_routes_agree(setup):
    net, x, _, _, O = setup
    via_fn = gj.output_slts(net, x, fn=lambda p, xi: gj.relu_mlp_apply(p, xi)[0])
    np.testing.assert_allclose(via_fn, O, rtol=1e-12, atol=1e-13)


def test_slt_clusters_match_scipy(setup):
    net, x, y, pred, O = setup
    k = int(np.bincount(y[pred == y]).argmax())
    res = gj.slt_clusters(jax.random.key(0), O, y, k, features=x, correct=pred == y, n_clusters=3)
    idx = np.flatnonzero((y == k) & (pred == y))
    np.testing.assert_array_equal(res.indices, idx)
    Z = linkage(O[idx, k, :], method="average", metric="euclidean")
    np.testing.assert_allclose(res.linkage, Z)
    lab = fcluster(Z, t=3, criterion="maxclust")
    np.testing.assert_array_equal(res.labels, lab)
    for c in range(1, lab.max() + 1):
        np.testing.assert_allclose(res.mean_slt[c - 1], O[idx[lab == c], k, :].mean(0))
        np.testing.assert_allclose(res.mean_features[c - 1], x[idx[lab == c]].mean(0))
        np.testing.assert_array_equal(res.members(c), idx[lab == c])
    assert res.embedding.shape == (idx.size, 2)
    thr = gj.slt_clusters(None, O, y, k, correct=pred == y, distance_threshold=float(Z[-1, 2]) + 1)
    assert thr.counts.tolist() == [idx.size] and thr.embedding is None


def test_slt_templates_nearest_centroid(setup):
    _, x, y, pred, O = setup
    res = gj.slt_templates(O, y, features=x, correct=pred == y, n_nearest=5)
    for i, k in enumerate(res.classes):
        idx = np.flatnonzero((y == k) & (pred == y))
        rows = O[idx, k, :]
        sel = np.argsort(np.linalg.norm(rows - rows.mean(0), axis=1), kind="stable")[:5]
        np.testing.assert_allclose(res.templates[i], rows[sel].mean(0))
        np.testing.assert_allclose(res.mean_features[i], x[idx[sel]].mean(0))
    feat = gj.slt_templates(O, y, features=x, n_nearest=1000, space="features")
    k0 = int(feat.classes[0])
    np.testing.assert_allclose(
        feat.templates[0], O[y == k0, k0, :].mean(0)
    )  # all points when N_k < n
    with pytest.raises(ValueError, match="reshape|inputs"):
        feat.as_images()


def test_confusable_pairs_grid_and_contrast(setup):
    net, x, y, pred, O = setup
    C = confusion(y, pred, SIZES[-1])
    res = gj.confusable_pairs(O, y, C_out=C, top=2)
    sym = C + C.T
    assert sym[tuple(res.pairs[0])] == sym[np.triu_indices(SIZES[-1], 1)].max()
    a, b = res.pairs[0]
    np.testing.assert_allclose(res.grid[0, 1, 0], O[y == a][:, b, :].mean(0))
    # the contrast is the SLT of the logit difference y_a - y_b
    J = gj.per_sample_jacobian(
        lambda p, xi: gj.relu_mlp_apply(p, xi)[0][a] - gj.relu_mlp_apply(p, xi)[0][b],
        net,
        x[y == b],
    )
    np.testing.assert_allclose(res.contrast[0, 1], np.asarray(J).mean(0), rtol=1e-10, atol=1e-12)
    assert len(res.table()) == 2
    with pytest.raises(ValueError, match="pairs"):
        gj.confusable_pairs(O, y)


def test_slt_diversity_is_auc_difference(setup):
    net, x, y, _, _ = setup
    cor = np.arange(x.shape[0]) % 3 != 0
    inc = ~cor
    res = gj.slt_diversity(net, x, cor, inc, layers=[1, 2], batch_size=32)
    assert res.n_sigma == min(cor.sum(), inc.sum(), SIZES[0])
    for li, layer in enumerate((1, 2)):
        (A,) = gj.relu_mlp_slt(net, x, layers=layer)
        A = np.asarray(A)
        for m in range(A.shape[1]):
            s_c = np.linalg.svd(A[cor][:, m, :], compute_uv=False)[: res.n_sigma]
            s_i = np.linalg.svd(A[inc][:, m, :], compute_uv=False)[: res.n_sigma]
            if s_c[0] == 0 or s_i[0] == 0:
                assert np.isnan(res.diff[li][m])
                continue
            ref = np.trapezoid(s_i / s_i[0] - s_c / s_c[0])
            assert res.diff[li][m] == pytest.approx(ref, abs=1e-6)
    assert len(res.table()) == 2


def test_bad_input_errors(setup):
    _, x, y, _, O = setup
    with pytest.raises(ValueError, match="exactly one"):
        gj.slt_clusters(None, O, y, 0)
    with pytest.raises(ValueError, match="`slts` must be"):
        gj.slt_templates(O[:, 0], y)
    with pytest.raises(ValueError, match="`node`"):
        gj.slt_clusters(None, O, y, 99, n_clusters=2)
    with pytest.raises(ValueError, match="space"):
        gj.slt_templates(O, y, space="pca")
    with pytest.raises(ValueError, match="features"):
        gj.slt_templates(O, y, space="features")
