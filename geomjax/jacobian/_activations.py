"""Activation analyses of Nagamine & Mesgarani (2017, §3): class selectivity vectors and their
clustering, per-layer LDA, per-class spectra in LDA space, the COR/INC split and the relative
expansion of class-centroid distances, plus 2-D embeddings for figures."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._checks import as_array, check_finite, check_labels, check_same_samples
from .._types import pytree_dataclass, result_dtype
from ._auc import _auc_kernel
from ._lda import LDA, fit_lda, lda_predict, lda_transform
from ._spectra import _gram_spectrum, default_rcond

__all__ = [
    "class_selectivity",
    "SelectivityClusters",
    "selectivity_clusters",
    "ClassSpectra",
    "class_spectra",
    "LDALayers",
    "lda_layers",
    "cor_inc_split",
    "confusable_triplets",
    "most_confused_pairs",
    "Expansion",
    "relative_expansion",
    "Embedding",
    "embed_2d",
]

_HI = jax.lax.Precision.HIGHEST


def _acts_labels(acts, y, name="acts", n_classes=None):
    a = as_array(acts, name)
    if a.ndim != 2:
        raise ValueError(
            f"`{name}` must be (N, H) with samples as rows; got shape {tuple(a.shape)}."
        )
    if a.shape[0] == 0:
        raise ValueError(f"`{name}` has no samples (N=0).")
    check_finite(a, name)
    y = check_labels(y, a.shape[0], "y", n_classes)
    return jnp.asarray(a, result_dtype(a)), y


# ----------------------------------------------------------------------------------------------
# class selectivity vectors (eq. 6) and UPGMA clustering
# ----------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("n_classes",))
def _csv_kernel(acts, y, n_classes):
    sums = jax.ops.segment_sum(acts, y, n_classes)
    counts = jax.ops.segment_sum(jnp.ones_like(y, acts.dtype), y, n_classes)
    return sums / jnp.where(counts > 0, counts, 1)[:, None], counts


def class_selectivity(acts, y, n_classes: int | None = None) -> jax.Array:
    """Class selectivity matrix ``S[k, m] = (1/N_k) sum_{i: y_i = k} h_m(x_i)`` (eq. 6).

    Args:
        acts: ``(N, H)`` activations of one layer; y: ``(N,)`` labels in ``0..K-1``.
        n_classes: ``K`` (default ``max(y) + 1``).

    Returns:
        ``(K, H)``: row ``k`` is the mean activation pattern of class ``k``; column ``m`` is node
        ``m``'s class selectivity vector (CSV). Classes with no samples get zero rows.
    """
    a, y = _acts_labels(acts, y, n_classes=n_classes)
    K = int(n_classes) if n_classes is not None else int(y.max()) + 1
    S, _ = _csv_kernel(a, jnp.asarray(y), K)
    return S


@pytree_dataclass(meta=("cut",))
class SelectivityClusters:
    """UPGMA clustering (correlation distance) of a layer's class selectivity vectors.

    Attributes:
        S: ``(K, H)`` selectivity matrix.
        kept: ``(H,)`` bool, nodes whose CSV varies over classes (constant ones -- dead nodes or
            nodes with the same mean for every class -- have no correlation and are dropped).
        node_linkage: SciPy linkage of the kept nodes (``(H_kept - 1, 4)``).
        class_linkage: SciPy linkage of the classes over the kept nodes.
        node_labels: ``(H,)`` flat cluster labels at the cut (0 for dropped nodes, else 1..).
        n_clusters: number of node clusters at ``cut``; n_dropped: dropped node count.
        cut: correlation-distance cut-off.
    """

    S: Any
    kept: Any
    node_linkage: Any
    class_linkage: Any
    node_labels: Any
    n_clusters: int
    n_dropped: int
    cut: float

    def table(self) -> pd.DataFrame:
        """One row per node: cluster label (0 if dropped), kept flag, preferred class."""
        S = np.asarray(self.S)
        return pd.DataFrame(
            {
                "node": np.arange(S.shape[1]),
                "cluster": np.asarray(self.node_labels),
                "kept": np.asarray(self.kept),
                "preferred_class": S.argmax(axis=0),
            }
        )


def selectivity_clusters(S, cut: float = 0.5, eps: float = 1e-12) -> SelectivityClusters:
    """UPGMA (average linkage) with correlation distance ``1 - r`` of nodes and of classes.

    Nodes (columns of ``S``) are clustered by their CSVs over classes,
    ``linkage(S.T, "average", "correlation")``; classes (rows) by their pattern over nodes. The
    node count at the cut is ``len(unique(fcluster(Z, t=cut, criterion="distance")))`` (paper
    Fig. 2D uses cut 0.5). Nodes whose CSV has ``std < eps`` over classes are dropped first.

    Args:
        S: ``(K, H)`` selectivity matrix (:func:`class_selectivity`).
        cut: correlation-distance threshold in ``[0, 2]``.
        eps: threshold on the CSV standard deviation for dropping constant nodes.

    Returns:
        :class:`SelectivityClusters`.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    S = np.asarray(as_array(S, "S"), dtype=np.float64)
    if S.ndim != 2:
        raise ValueError(f"`S` must be (K, H) classes x nodes; got shape {S.shape}.")
    check_finite(S, "S")
    if not 0 <= cut <= 2:
        raise ValueError(f"`cut` is a correlation distance in [0, 2]; got {cut}.")
    kept = S.std(axis=0) >= eps
    Sk = S[:, kept]
    if Sk.shape[1] < 2:
        raise ValueError(
            f"only {Sk.shape[1]} node(s) of {S.shape[1]} have a CSV that varies over classes; "
            "clustering needs at least 2."
        )
    if S.shape[0] < 2:
        raise ValueError("`S` needs at least 2 classes (rows) for correlation distances.")
    Zn = linkage(Sk.T, method="average", metric="correlation")
    rows_ok = Sk.std(axis=1) >= eps
    Zc = (
        linkage(Sk[rows_ok], method="average", metric="correlation") if rows_ok.sum() >= 2 else None
    )
    lab = fcluster(Zn, t=cut, criterion="distance")
    labels = np.zeros(S.shape[1], dtype=np.int64)
    labels[kept] = lab
    return SelectivityClusters(
        S=S,
        kept=kept,
        node_linkage=Zn,
        class_linkage=Zc,
        node_labels=labels,
        n_clusters=int(np.unique(lab).size),
        n_dropped=int((~kept).sum()),
        cut=float(cut),
    )


# ----------------------------------------------------------------------------------------------
# per-class spectra (Fig. 3B-C)
# ----------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("n_classes", "center"))
def _class_gram(Z, y, n_classes, center):
    onehot = jax.nn.one_hot(y, n_classes, dtype=Z.dtype)
    G = jnp.einsum("nk,nd,ne->kde", onehot, Z, Z, precision=_HI)
    if center:
        s = jnp.matmul(onehot.T, Z, precision=_HI)
        n = jnp.maximum(onehot.sum(0), 1)
        G = G - s[:, :, None] * s[:, None, :] / n[:, None, None]
    return G


@pytree_dataclass(meta=("center", "abscissa"))
class ClassSpectra:
    """Per-class singular-value spectra of a representation (e.g. LDA-transformed activations).

    Attributes:
        classes: ``(C,)`` labels; counts: ``(C,)`` samples per class.
        sigma: ``(C, d)`` singular values of each class's ``N_k x d`` matrix, descending.
        normalized: ``(C, d)`` ``sigma / sigma_1``; mean_spectrum: ``(d,)`` their mean.
        auc: ``(C,)`` per-class AUCs (eq. 5) at ``n_sigma``; mean_auc: the AUC of the mean
            spectrum (= the mean of the per-class AUCs).
        n_sigma: values entering the AUC; center: per-class centring used; abscissa: eq. 5 reading.
    """

    classes: Any
    counts: Any
    sigma: Any
    normalized: Any
    mean_spectrum: Any
    auc: Any
    mean_auc: Any
    n_sigma: int
    center: bool
    abscissa: str


def class_spectra(
    Z,
    y,
    *,
    center: bool = False,
    n_sigma: int | None = None,
    abscissa: str = "index",
    rcond: float | None = None,
) -> ClassSpectra:
    """Singular values of ``Z[y = k]`` for every class, normalised by ``sigma_1`` (Fig. 3B-C).

    Computed from the ``d x d`` class Gram matrices ``Z_k^T Z_k`` (minus ``s s^T / N_k`` with
    ``center=True``), so the cost is ``O(N d^2)`` for all classes at once. By default the class
    matrices are not centred (only the global LDA centring by ``xbar`` applies), the literal reading
    of the paper.

    Args:
        Z: ``(N, d)`` representation, e.g. :func:`lda_transform` of a layer's test activations.
        y: ``(N,)`` labels.
        center: centre each class matrix before its SVD.
        n_sigma: values entering the AUC (default ``d``).
        abscissa: eq. 5 reading.
        rcond: singular values below ``rcond * sigma_1`` are zeroed (Gram round-off floor; default
            ``4 sqrt(eps)``, see :func:`gram_spectrum`).

    Returns:
        :class:`ClassSpectra` (classes with no samples are omitted).
    """
    Zj, y = _acts_labels(Z, y, "Z")
    d = Zj.shape[1]
    n_sigma = d if n_sigma is None else int(n_sigma)
    if not 2 <= n_sigma <= d:
        raise ValueError(f"`n_sigma` must be between 2 and d={d}; got {n_sigma}.")
    if abscissa not in ("index", "unit"):
        raise ValueError(f"`abscissa` must be 'index' or 'unit'; got {abscissa!r}.")
    K = int(y.max()) + 1
    G = _class_gram(Zj, jnp.asarray(y), K, bool(center))
    present = np.bincount(y, minlength=K) > 0
    sig = _gram_spectrum(G, default_rcond(G.dtype) if rcond is None else float(rcond))[present]
    s1 = sig[:, :1]
    norm = sig / jnp.where(s1 > 0, s1, 1)
    auc = _auc_kernel(sig, n_sigma, abscissa)
    mean_spec = jnp.nanmean(jnp.where(s1 > 0, norm, jnp.nan), axis=0)
    return ClassSpectra(
        classes=np.flatnonzero(present),
        counts=np.bincount(y, minlength=K)[present],
        sigma=sig,
        normalized=norm,
        mean_spectrum=mean_spec,
        auc=auc,
        mean_auc=float(_auc_kernel(mean_spec, n_sigma, abscissa)),
        n_sigma=n_sigma,
        center=bool(center),
        abscissa=abscissa,
    )


# ----------------------------------------------------------------------------------------------
# LDA per layer (Table 2, Fig. 3)
# ----------------------------------------------------------------------------------------------


@pytree_dataclass(meta=("layer_names",))
class LDALayers:
    """Per-layer LDA analysis (fit on dev, evaluate on dev and test).

    Attributes:
        ldas: list of fitted :class:`LDA` (one per layer).
        dev_accuracy, test_accuracy: ``(L,)``.
        evr: list of explained-variance-ratio curves; evr_auc: ``(L,)`` their AUC (eq. 5, values
            normalised by the maximum, ``n_sigma`` = curve length).
        class_auc: ``(L,)`` mean per-class AUC of the LDA-transformed test activations (Fig. 3C).
        spectra: list of :class:`ClassSpectra`.
        layer_names: labels.
    """

    ldas: list
    dev_accuracy: Any
    test_accuracy: Any
    evr: list
    evr_auc: Any
    class_auc: Any
    spectra: list
    layer_names: tuple

    def table(self) -> pd.DataFrame:
        """One row per layer."""
        return pd.DataFrame(
            {
                "layer": list(self.layer_names),
                "dev_accuracy": np.asarray(self.dev_accuracy),
                "test_accuracy": np.asarray(self.test_accuracy),
                "evr_auc": np.asarray(self.evr_auc),
                "class_auc": np.asarray(self.class_auc),
                "n_components": [int(lda.n_components) for lda in self.ldas],
            }
        )


def _as_layer_list(layers, name):
    if isinstance(layers, Mapping):
        return list(layers.keys()), list(layers.values())
    if isinstance(layers, Sequence) and not isinstance(layers, (str, bytes)):
        return [str(i) for i in range(len(layers))], list(layers)
    raise TypeError(f"`{name}` must be a list or dict of (N, H) arrays, one per layer.")


def lda_layers(
    dev_layers,
    y_dev,
    test_layers,
    y_test,
    *,
    tol: float = 1e-4,
    center_per_class: bool = False,
    abscissa: str = "index",
) -> LDALayers:
    """LDA per layer: accuracy, explained-variance ratio and per-class spectra (Table 2, Fig. 3).

    For each layer an LDA (:func:`fit_lda`) is fitted on the dev activations and evaluated on dev
    and test; the EVR curve's AUC uses eq. 5 on the EVR values normalised by their maximum; the
    test activations are LDA-transformed and :func:`class_spectra` gives their mean per-class AUC.

    Args:
        dev_layers, test_layers: lists (or dicts, same keys) of ``(N, H_l)`` activations per layer;
            include the input features as the first entry to get the paper's "features" row.
        y_dev, y_test: labels.
        tol: LDA rank tolerance.
        center_per_class: centre each class before its SVD (default: the paper's literal reading).
        abscissa: eq. 5 reading.

    Returns:
        :class:`LDALayers`.
    """
    names, devs = _as_layer_list(dev_layers, "dev_layers")
    names_t, tests = _as_layer_list(test_layers, "test_layers")
    if len(devs) != len(tests):
        raise ValueError(
            f"`dev_layers` has {len(devs)} layers but `test_layers` has {len(tests)}; "
            "they must match."
        )
    ldas, dacc, tacc, evrs, evr_auc, cauc, specs = [], [], [], [], [], [], []
    for i, (Xd, Xt) in enumerate(zip(devs, tests, strict=False)):
        Xd = as_array(Xd, f"dev_layers[{names[i]}]")
        Xt = as_array(Xt, f"test_layers[{names[i]}]")
        yd = check_labels(y_dev, Xd.shape[0], "y_dev")
        yt = check_labels(y_test, Xt.shape[0], "y_test")
        lda = fit_lda(Xd, yd, tol=tol)
        ldas.append(lda)
        dacc.append(float(np.mean(np.asarray(lda_predict(lda, Xd)) == yd)))
        tacc.append(float(np.mean(np.asarray(lda_predict(lda, Xt)) == yt)))
        evr = np.asarray(lda.explained_variance_ratio)
        evrs.append(evr)
        evr_auc.append(
            float(_auc_kernel(jnp.asarray(evr), evr.size, abscissa)) if evr.size >= 2 else np.nan
        )
        Z = lda_transform(lda, Xt)
        if Z.shape[1] >= 2:
            cs = class_spectra(Z, yt, center=center_per_class, abscissa=abscissa)
            specs.append(cs)
            cauc.append(cs.mean_auc)
        else:
            specs.append(None)
            cauc.append(np.nan)
    return LDALayers(
        ldas=ldas,
        dev_accuracy=np.asarray(dacc),
        test_accuracy=np.asarray(tacc),
        evr=evrs,
        evr_auc=np.asarray(evr_auc),
        class_auc=np.asarray(cauc),
        spectra=specs,
        layer_names=tuple(names),
    )


# ----------------------------------------------------------------------------------------------
# COR / INC split (§3.3), confusion matrices, expansion (Fig. 5)
# ----------------------------------------------------------------------------------------------


def cor_inc_split(
    lda0: LDA, X_test, y_test, net_pred=None, *, output_filter: bool = True
) -> dict[str, np.ndarray]:
    """Split test points into linearly separable (COR) and inseparable (INC) ones.

    COR are the points the input-feature LDA ``lda0`` classifies correctly, INC the ones it
    misclassifies. With ``output_filter=True`` (the paper's reading, applied to every group) only
    points that the network classifies correctly (``net_pred == y``) are kept in ALL, COR and INC.

    Args:
        lda0: LDA fitted on the input features of the dev split.
        X_test: ``(N, F)`` test input features; y_test: ``(N,)`` labels.
        net_pred: ``(N,)`` network predictions (required when ``output_filter``).
        output_filter: keep only network-correct points.

    Returns:
        ``{"ALL": mask, "COR": mask, "INC": mask}`` boolean ``(N,)`` arrays.
    """
    X = as_array(X_test, "X_test")
    y = check_labels(y_test, X.shape[0], "y_test")
    lin = np.asarray(lda_predict(lda0, X)) == y
    keep = np.ones_like(lin)
    if output_filter:
        if net_pred is None:
            raise ValueError("`net_pred` is required with output_filter=True (or set it False).")
        p = check_labels(net_pred, X.shape[0], "net_pred")
        keep = p == y
    return {"ALL": keep, "COR": keep & lin, "INC": keep & ~lin}


def confusable_triplets(C) -> dict[str, tuple[int, int, int]]:
    """The most and the least confusable class triplets under a confusion matrix.

    A triplet's confusability is the sum over its three pairs of the symmetric, row-normalised
    confusion ``c[a, b] + c[b, a]`` with ``c = C / C.sum(1)`` (classes without samples excluded).
    Ties go to the lexicographically first triplet.

    Returns:
        ``{"most": (a, b, c), "least": (a, b, c)}``.
    """
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"`C` must be a square confusion matrix; got shape {C.shape}.")
    rows = C.sum(1)
    present = np.flatnonzero(rows > 0)
    if present.size < 3:
        raise ValueError(f"`C` has {present.size} classes with samples; triplets need at least 3.")
    c = C / np.where(rows > 0, rows, 1)[:, None]
    sym = c + c.T
    best, worst = None, None
    for t in itertools.combinations(present.tolist(), 3):
        s = sym[t[0], t[1]] + sym[t[0], t[2]] + sym[t[1], t[2]]
        if best is None or s > best[0]:
            best = (s, t)
        if worst is None or s < worst[0]:
            worst = (s, t)
    return {"most": best[1], "least": worst[1]}


@pytree_dataclass(meta=("layer_names", "group_names", "centroid_j"))
class Expansion:
    """Relative expansion of class-centroid distances in LDA space (Fig. 5).

    Attributes:
        pairs: ``(P, 2)`` class pairs ``(k, j)``.
        distance: ``(L, G, P)`` centroid distances ``d^l_g(k, j)`` (NaN where a centroid is empty).
        ratio: ``(L, G, P)`` ``d^l_g / d^0_g``; expansion: ``ratio - 1``.
        layer_names, group_names: labels; centroid_j: ``"same"`` or ``"all"``.
    """

    pairs: Any
    distance: Any
    ratio: Any
    expansion: Any
    layer_names: tuple
    group_names: tuple
    centroid_j: str

    def table(self) -> pd.DataFrame:
        """One row per (layer, group, pair)."""
        L, G, P = self.distance.shape
        li, gi, pi = np.meshgrid(np.arange(L), np.arange(G), np.arange(P), indexing="ij")
        pairs = np.asarray(self.pairs)
        return pd.DataFrame(
            {
                "layer": np.asarray(self.layer_names, dtype=object)[li.ravel()],
                "group": np.asarray(self.group_names, dtype=object)[gi.ravel()],
                "class_a": pairs[pi.ravel(), 0],
                "class_b": pairs[pi.ravel(), 1],
                "distance": self.distance.ravel(),
                "ratio": self.ratio.ravel(),
                "expansion": self.expansion.ravel(),
            }
        )

    def mean(self) -> pd.DataFrame:
        """Mean expansion over pairs per (layer, group)."""
        return (
            self.table().groupby(["layer", "group"], sort=False)["expansion"].mean().reset_index()
        )


def relative_expansion(
    Z_layers,
    y,
    groups: Mapping[str, Any] | None = None,
    pairs=None,
    *,
    centroid_j: str = "same",
) -> Expansion:
    """Relative expansion ``E^l_g(k, j) = d^l_g(k, j) / d^0_g(k, j) - 1`` of centroid distances.

    ``d^l_g(k, j) = || mean{Z^l_i : i in g, y_i = k} - mean{Z^l_i : i in g', y_i = j} ||_2`` in
    each layer's LDA space ``Z^l`` (``Z^0``: the LDA-transformed input features), with ``g' = g``
    (``centroid_j="same"``) or ``g' = ALL`` (``"all"``, all points).

    Args:
        Z_layers: list (or dict) of ``(N, d_l)`` LDA-transformed test representations, input first.
        y: ``(N,)`` labels.
        groups: ``name -> (N,) bool mask`` (e.g. from :func:`cor_inc_split`); default one group of
            all points.
        pairs: ``(P, 2)`` class pairs; default all pairs ``k < j``.
        centroid_j: ``"same"`` or ``"all"``.

    Returns:
        :class:`Expansion`.
    """
    if centroid_j not in ("same", "all"):
        raise ValueError(f"`centroid_j` must be 'same' or 'all'; got {centroid_j!r}.")
    names, Zs = _as_layer_list(Z_layers, "Z_layers")
    if len(Zs) < 1:
        raise ValueError("`Z_layers` is empty; pass the input-feature LDA space first.")
    Zs = [
        np.asarray(as_array(z, f"Z_layers[{n}]"), np.float64)
        for n, z in zip(names, Zs, strict=False)
    ]
    for n, z in zip(names, Zs, strict=False):
        if z.ndim != 2:
            raise ValueError(f"`Z_layers[{n}]` must be (N, d); got shape {z.shape}.")
        check_finite(z, f"Z_layers[{n}]")
    check_same_samples(Zs, [f"Z_layers[{n}]" for n in names])
    N = Zs[0].shape[0]
    y = check_labels(y, N, "y")
    K = int(y.max()) + 1
    if groups is None:
        groups = {"ALL": np.ones(N, bool)}
    gnames = tuple(groups)
    masks = []
    for g in gnames:
        m = np.asarray(groups[g])
        if m.shape != (N,) or m.dtype != bool:
            raise ValueError(f"`groups[{g!r}]` must be a boolean mask of shape ({N},).")
        masks.append(m)
    if pairs is None:
        pairs = np.array(list(itertools.combinations(range(K), 2)), dtype=np.int64).reshape(-1, 2)
    pairs = np.asarray(pairs, dtype=np.int64)
    if (
        pairs.ndim != 2
        or pairs.shape[1] != 2
        or (pairs.size and (pairs.min() < 0 or pairs.max() >= K))
    ):
        raise ValueError(
            f"`pairs` must be (P, 2) class indices in 0..{K - 1}; got shape {pairs.shape}."
        )

    def centroids(Z, m):
        onehot = np.zeros((N, K))
        onehot[np.arange(N), y] = m
        cnt = onehot.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (onehot.T @ Z) / cnt[:, None]

    dist = np.empty((len(Zs), len(masks), len(pairs)))
    for li, Z in enumerate(Zs):
        c_all = centroids(Z, np.ones(N, bool))
        for gi, m in enumerate(masks):
            c = centroids(Z, m)
            cj = c if centroid_j == "same" else c_all
            dist[li, gi] = np.linalg.norm(c[pairs[:, 0]] - cj[pairs[:, 1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = dist / dist[:1]
    return Expansion(
        pairs=pairs,
        distance=dist,
        ratio=ratio,
        expansion=ratio - 1,
        layer_names=tuple(names),
        group_names=gnames,
        centroid_j=centroid_j,
    )


def most_confused_pairs(C_out) -> np.ndarray:
    """``(k, j*(k))`` with ``j*(k) = argmax_{j != k} C_out[k, j]`` (ties: lowest index); classes
    with no off-diagonal confusion are skipped. Use as ``pairs`` for Fig. 5F."""
    C = np.asarray(C_out, dtype=np.float64).copy()
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"`C_out` must be a square confusion matrix; got shape {C.shape}.")
    np.fill_diagonal(C, -np.inf)
    j = np.argmax(C, axis=1)
    ok = C[np.arange(C.shape[0]), j] > 0
    return np.stack([np.flatnonzero(ok), j[ok]], 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# 2-D embeddings for figures
# ----------------------------------------------------------------------------------------------


@pytree_dataclass(meta=("method",))
class Embedding:
    """2-D embedding of (optionally k-means-aggregated) points.

    Attributes:
        coords: ``(P, 2)``; labels: ``(P,)`` class of each point; sizes: ``(P,)`` how many samples
            each point stands for; centroids: ``(C, 2)`` per-class means of ``coords`` weighted
            by size; classes: ``(C,)``; method: ``"mds"`` or ``"tsne"``.
    """

    coords: Any
    labels: Any
    sizes: Any
    centroids: Any
    classes: Any
    method: str


def embed_2d(
    key,
    Z,
    y,
    *,
    method: str = "mds",
    aggregate: bool = True,
    points_per_cluster: int = 10,
    perplexity: float = 30.0,
) -> Embedding:
    """Metric MDS or t-SNE of a representation for figures (paper Figs. 4-5), via scikit-learn.

    With ``aggregate=True`` each class is first summarised by k-means with
    ``max(1, N_k // points_per_cluster)`` clusters; the centres are embedded and ``sizes`` holds
    the cluster sizes (marker size in plots).

    Args:
        key: ``jax.random.key`` seeding k-means, MDS and t-SNE.
        Z: ``(N, d)`` data (e.g. LDA space); y: ``(N,)`` labels.
        method: ``"mds"`` (metric MDS of Euclidean distances) or ``"tsne"``.
        aggregate: k-means aggregation per class.
        points_per_cluster: samples per k-means cluster.
        perplexity: t-SNE perplexity (clipped below the number of points).

    Returns:
        :class:`Embedding`.
    """
    from sklearn.cluster import KMeans
    from sklearn.manifold import MDS, TSNE

    if method not in ("mds", "tsne"):
        raise ValueError(f"`method` must be 'mds' or 'tsne'; got {method!r}.")
    Zj, y = _acts_labels(Z, y, "Z")
    Zn = np.asarray(Zj, np.float64)
    seeds = np.asarray(jax.random.randint(key, (2,), 0, 2**31 - 1))
    classes = np.unique(y)
    pts, labs, sizes = [], [], []
    rng_seed = int(seeds[0])
    for k in classes:
        Zk = Zn[y == k]
        if aggregate:
            nc = max(1, Zk.shape[0] // int(points_per_cluster))
            km = KMeans(n_clusters=nc, n_init=3, random_state=(rng_seed + int(k)) % (2**31)).fit(Zk)
            pts.append(km.cluster_centers_)
            sizes.append(np.bincount(km.labels_, minlength=nc))
            labs.append(np.full(nc, k))
        else:
            pts.append(Zk)
            sizes.append(np.ones(Zk.shape[0], np.int64))
            labs.append(np.full(Zk.shape[0], k))
    P = np.concatenate(pts)
    labels = np.concatenate(labs)
    sizes = np.concatenate(sizes)
    if P.shape[0] < 3:
        raise ValueError(f"only {P.shape[0]} point(s) to embed; need at least 3.")
    if method == "mds":
        emb = MDS(
            n_components=2,
            random_state=int(seeds[1]),
            n_init=1,
            metric_mds=True,
            init="random",
            normalized_stress="auto",
        ).fit_transform(P)
    else:
        emb = TSNE(
            n_components=2,
            random_state=int(seeds[1]),
            perplexity=min(perplexity, (P.shape[0] - 1) / 3),
            init="pca",
        ).fit_transform(P)
    cents = np.stack(
        [np.average(emb[labels == k], axis=0, weights=sizes[labels == k]) for k in classes]
    )
    return Embedding(
        coords=emb, labels=labels, sizes=sizes, centroids=cents, classes=classes, method=method
    )
