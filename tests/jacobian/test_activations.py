"""Activation analyses: selectivity, UPGMA clustering, LDA, class spectra, COR/INC, expansion."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import geomjax.jacobian as gj


def confusion(y, pred, n_classes):
    C = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(C, (y, pred), 1)
    return C


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(7)
    K, D, N = 4, 6, 240
    y = np.repeat(np.arange(K), N // K)
    centers = rng.standard_normal((K, D)) * 1.5
    X = centers[y] + rng.standard_normal((N, D))
    return X, y


def test_class_selectivity_equals_groupby_mean(blobs):
    X, y = blobs
    S = np.asarray(gj.class_selectivity(X, y))
    ref = np.stack([X[y == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(S, ref, rtol=1e-13, atol=1e-13)
    S6 = np.asarray(gj.class_selectivity(X, y, n_classes=6))
    np.testing.assert_array_equal(S6[4:], 0)


def test_selectivity_clusters_match_scipy():
    rng = np.random.default_rng(8)
    S = rng.random((10, 30))
    S[:, 3] = 0.7  # constant CSV: dropped
    res = gj.selectivity_clusters(S, cut=0.5)
    kept = np.ones(30, bool)
    kept[3] = False
    np.testing.assert_array_equal(res.kept, kept)
    Zn = linkage(S[:, kept].T, method="average", metric="correlation")
    np.testing.assert_allclose(res.node_linkage, Zn)
    np.testing.assert_allclose(
        res.class_linkage, linkage(S[:, kept], method="average", metric="correlation")
    )
    ref = np.unique(fcluster(Zn, t=0.5, criterion="distance")).size
    assert res.n_clusters == ref and res.n_dropped == 1 and res.node_labels[3] == 0
    t = res.table()
    assert len(t) == 30 and t.cluster.nunique() == ref + 1 and not t.kept[3]


def _sk(X, y):
    return LinearDiscriminantAnalysis(solver="svd").fit(X, y)


@pytest.mark.parametrize("case", ["plain", "constant_feature", "rank_deficient", "many_classes"])
def test_lda_matches_sklearn(blobs, case):
    X, y = blobs
    X = X.copy()
    if case == "constant_feature":
        X[:, 2] = 3.0
    elif case == "rank_deficient":
        X = np.concatenate([X, X[:, :2] @ np.array([[1.0], [2.0]])], axis=1)
    elif case == "many_classes":  # K - 1 > D
        X, y = X[:, :2], np.arange(X.shape[0]) % 6
        X = X + y[:, None] * 0.3
    ref = _sk(X, y)
    lda = gj.fit_lda(X, y)
    np.testing.assert_allclose(
        lda.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_array_equal(np.asarray(gj.lda_predict(lda, X)), ref.predict(X))
    Z, Zr = np.asarray(gj.lda_transform(lda, X)), ref.transform(X)
    assert Z.shape[1] == lda.n_components
    Z = Z[:, : Zr.shape[1]]
    signs = np.sign(np.sum(Z * Zr, axis=0))
    np.testing.assert_allclose(Z * signs, Zr, rtol=1e-8, atol=1e-9)
    assert gj.lda_accuracy(lda, X, y) == pytest.approx(ref.score(X, y))


def test_lda_scatter_method(blobs):
    X, y = blobs
    a, b = gj.fit_lda(X, y), gj.fit_lda(X, y, method="scatter")
    np.testing.assert_allclose(a.explained_variance_ratio, b.explained_variance_ratio, atol=1e-10)
    np.testing.assert_array_equal(gj.lda_predict(a, X), gj.lda_predict(b, X))


def test_lda_float32(blobs):
    X, y = blobs
    lda = gj.fit_lda(X.astype(np.float32), y)
    assert lda.scalings.dtype == np.float32
    assert (
        np.mean(np.asarray(gj.lda_predict(lda, X.astype(np.float32))) == _sk(X, y).predict(X))
        > 0.98
    )


def test_class_spectra_equals_per_class_svd(blobs):
    X, y = blobs
    for center in (False, True):
        res = gj.class_spectra(X, y, center=center)
        for i, k in enumerate(res.classes):
            M = X[y == k] - (X[y == k].mean(0) if center else 0)
            ref = np.linalg.svd(M, compute_uv=False)
            np.testing.assert_allclose(res.sigma[i], ref, rtol=1e-10)
        auc = [np.trapezoid(np.asarray(n)) for n in res.normalized]
        np.testing.assert_allclose(res.auc, auc, rtol=1e-12)
        assert res.mean_auc == pytest.approx(np.mean(auc), rel=1e-12)


def test_lda_layers_and_affine_invariance(blobs):
    """A layer that is an invertible affine map of the input has the same LDA accuracy and zero
    expansion of centroid distances."""
    X, y = blobs
    rng = np.random.default_rng(9)
    T = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    H = X @ T + 1.5
    res = gj.lda_layers([X, H], y, [X, H], y)
    t = res.table()
    assert list(t.columns[:3]) == ["layer", "dev_accuracy", "test_accuracy"]
    assert t.dev_accuracy[0] == pytest.approx(t.dev_accuracy[1])
    assert t.dev_accuracy[0] == pytest.approx(_sk(X, y).score(X, y))
    np.testing.assert_allclose(res.evr[0], res.evr[1], atol=1e-10)
    Zs = [gj.lda_transform(m, a) for m, a in zip(res.ldas, [X, H], strict=False)]
    ex = gj.relative_expansion(Zs, y)
    np.testing.assert_allclose(ex.expansion[1], 0, atol=1e-9)
    np.testing.assert_allclose(ex.ratio[0], 1)


def test_relative_expansion_definition(blobs):
    X, y = blobs
    Z0, Z1 = X[:, :3], 2 * X[:, :3]
    g = {"A": y < 10**6, "B": np.arange(y.size) % 2 == 0}
    ex = gj.relative_expansion({"in": Z0, "l1": Z1}, y, g, pairs=[(0, 1), (2, 3)])
    np.testing.assert_allclose(ex.expansion[1], 1.0, rtol=1e-12)  # distances double
    m = g["B"]
    d = np.linalg.norm(Z0[m & (y == 0)].mean(0) - Z0[m & (y == 1)].mean(0))
    assert ex.distance[0, 1, 0] == pytest.approx(d)
    ex_all = gj.relative_expansion({"in": Z0}, y, g, pairs=[(0, 1)], centroid_j="all")
    d_all = np.linalg.norm(Z0[m & (y == 0)].mean(0) - Z0[y == 1].mean(0))
    assert ex_all.distance[0, 1, 0] == pytest.approx(d_all)
    assert len(ex.table()) == 2 * 2 * 2 and len(ex.mean()) == 4


def test_cor_inc_split_and_confusions(blobs):
    X, y = blobs
    lda0 = gj.fit_lda(X, y)
    lin = np.asarray(gj.lda_predict(lda0, X)) == y
    pred = y.copy()
    pred[::5] = (y[::5] + 1) % 4
    s = gj.cor_inc_split(lda0, X, y, pred)
    np.testing.assert_array_equal(s["COR"], lin & (pred == y))
    np.testing.assert_array_equal(s["INC"], ~lin & (pred == y))
    np.testing.assert_array_equal(s["ALL"], pred == y)
    s2 = gj.cor_inc_split(lda0, X, y, output_filter=False)
    assert s2["COR"].sum() + s2["INC"].sum() == y.size
    C = confusion(y, pred, 4)
    np.testing.assert_array_equal(
        gj.most_confused_pairs(C), np.stack([np.arange(4), (np.arange(4) + 1) % 4], 1)
    )
    C = np.zeros((4, 4))
    C[0, 1] = C[1, 2] = C[2, 0] = 5
    C[np.arange(4), np.arange(4)] = 10
    trip = gj.confusable_triplets(C)
    assert trip["most"] == (0, 1, 2) and trip["least"] != (0, 1, 2)


def test_embed_2d_deterministic(blobs):
    X, y = blobs
    a = gj.embed_2d(jax.random.key(0), X, y, method="mds")
    b = gj.embed_2d(jax.random.key(0), X, y, method="mds")
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.sizes.sum() == X.shape[0] and a.centroids.shape == (4, 2)
    assert a.coords.shape[0] == sum(max(1, (y == k).sum() // 10) for k in range(4))


def test_bad_input_errors(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="`y` has 1 class"):
        gj.fit_lda(X, np.zeros(X.shape[0], int))
    with pytest.raises(TypeError, match="integers"):
        gj.fit_lda(X, y.astype(float))
    with pytest.raises(ValueError, match="`X` must be"):
        gj.lda_transform(gj.fit_lda(X, y), X[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        gj.class_selectivity(np.full((3, 2), np.nan), [0, 1, 0])
    with pytest.raises(ValueError, match="n_classes"):
        gj.class_selectivity(X, y, n_classes=2)
    with pytest.raises(ValueError, match="cut"):
        gj.selectivity_clusters(np.random.default_rng(0).random((4, 5)), cut=3)
    with pytest.raises(ValueError, match="net_pred"):
        gj.cor_inc_split(gj.fit_lda(X, y), X, y)
    with pytest.raises(ValueError, match="sample counts"):
        gj.relative_expansion([X, X[:10]], y)
    with pytest.raises(ValueError, match="method"):
        gj.embed_2d(jax.random.key(0), X, y, method="umap")
