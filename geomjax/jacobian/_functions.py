"""Functions learned at the output (Nagamine & Mesgarani 2017, §4): clusters of output-node SLTs,
mean SLT templates of the samples nearest each class centroid, confusable-pair comparisons and the
INC-vs-COR diversity of per-node SLTs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pandas as pd

from .._checks import as_array, check_finite, check_labels, check_same_samples
from .._types import pytree_dataclass
from ._slt import per_sample_jacobian, relu_mlp_output_slt
from ._spectra import slt_spectra

__all__ = [
    "output_slts",
    "SLTClusters",
    "slt_clusters",
    "SLTTemplates",
    "slt_templates",
    "ConfusablePairs",
    "confusable_pairs",
    "SLTDiversity",
    "slt_diversity",
]


def output_slts(params, x, *, fn: Callable | None = None, layer=None, chunk_size: int = 256):
    """Output-layer SLTs ``(N, K, F)`` of every sample (the logits' Jacobians).

    Without ``fn``, ``params`` is a ReLU MLP and the reverse masked product is used
    (:func:`relu_mlp_output_slt`); with ``fn`` it is ``vmap(jacrev)`` (:func:`per_sample_jacobian`),
    chunked. ``N * K * F`` values are materialised: pass the test subset the analysis needs.
    """
    if fn is None:
        return relu_mlp_output_slt(params, x)
    return per_sample_jacobian(fn, params, x, layer=layer, method="jacrev", chunk_size=chunk_size)


def _slts_setup(slts, y, features=None, correct=None):
    A = as_array(slts, "slts")
    if A.ndim != 3:
        raise ValueError(
            "`slts` must be (N, K, F) output SLTs (sample, node, input); "
            f"got shape {tuple(A.shape)}."
        )
    check_finite(A, "slts")
    y = check_labels(y, A.shape[0], "y", A.shape[1])
    X = None
    if features is not None:
        X = as_array(features, "features")
        if X.ndim != 2:
            raise ValueError(f"`features` must be (N, F); got shape {tuple(X.shape)}.")
        check_same_samples([A, X], ["slts", "features"])
    ok = np.ones(A.shape[0], bool)
    if correct is not None:
        ok = np.asarray(correct)
        if ok.shape != (A.shape[0],) or ok.dtype != bool:
            raise ValueError(f"`correct` must be a boolean mask of shape ({A.shape[0]},).")
    return A, y, X, ok


@pytree_dataclass(meta=("node",))
class SLTClusters:
    """UPGMA (Euclidean) clusters of one output node's SLTs over its correctly classified points.

    Attributes:
        indices: ``(n,)`` sample indices (into the input arrays) that were clustered.
        labels: ``(n,)`` cluster labels ``1..C``.
        linkage: SciPy linkage matrix.
        counts: ``(C,)`` members per cluster; mean_slt: ``(C, F)``; mean_features: ``(C, F)``
            or None.
        embedding: ``(n, 2)`` metric-MDS embedding of the pairwise SLT distances, or None.
        node: the output node / class.
    """

    indices: Any
    labels: Any
    linkage: Any
    counts: Any
    mean_slt: Any
    mean_features: Any
    embedding: Any
    node: int

    def members(self, cluster: int) -> np.ndarray:
        """Sample indices of cluster ``cluster`` (1-based, as SciPy's ``fcluster``)."""
        return np.asarray(self.indices)[np.asarray(self.labels) == cluster]


def slt_clusters(
    key,
    slts,
    y,
    node: int,
    *,
    features=None,
    correct=None,
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
    max_points: int | None = 5000,
) -> SLTClusters:
    """Cluster the SLTs of output node ``node`` over the (correct) points of that class.

    The rows ``A(x_i)[node, :]`` for ``y_i = node`` (and ``correct_i``) are clustered with UPGMA and
    Euclidean distance, ``linkage(rows, "average", "euclidean")`` (paper Figs. 6, 8B), and the tree
    is cut into ``n_clusters`` clusters or at ``distance_threshold``.

    Args:
        key: ``jax.random.key`` for subsampling beyond ``max_points`` and the MDS embedding;
            ``None`` skips the embedding (and requires no subsampling).
        slts: ``(N, K, F)`` output SLTs (:func:`output_slts`); y: ``(N,)`` labels.
        node: the output node / class.
        features: optional ``(N, F)`` inputs, averaged per cluster.
        correct: optional ``(N,)`` bool, the network-correct points.
        n_clusters / distance_threshold: exactly one cut criterion.
        max_points: subsample cap (UPGMA is O(n^2) in memory).

    Returns:
        :class:`SLTClusters`.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if (n_clusters is None) == (distance_threshold is None):
        raise ValueError("give exactly one of `n_clusters` or `distance_threshold`.")
    A, y, X, ok = _slts_setup(slts, y, features, correct)
    if not 0 <= int(node) < A.shape[1]:
        raise ValueError(f"`node` must be in 0..{A.shape[1] - 1}; got {node}.")
    idx = np.flatnonzero((y == node) & ok)
    if idx.size < 2:
        raise ValueError(f"class {node} has {idx.size} (correct) point(s); clustering needs >= 2.")
    if max_points is not None and idx.size > max_points:
        if key is None:
            raise ValueError(
                f"class {node} has {idx.size} points > max_points; pass a key to subsample."
            )
        key, sub = jax.random.split(key)
        idx = np.sort(idx[np.asarray(jax.random.permutation(sub, idx.size))[:max_points]])
    rows = np.asarray(A[idx, int(node), :], np.float64)
    Z = linkage(rows, method="average", metric="euclidean")
    if n_clusters is not None:
        lab = fcluster(Z, t=int(n_clusters), criterion="maxclust")
    else:
        lab = fcluster(Z, t=float(distance_threshold), criterion="distance")
    C = int(lab.max())
    counts = np.bincount(lab, minlength=C + 1)[1:]
    mean_slt = np.stack(
        [
            rows[lab == c].mean(0) if counts[c - 1] else np.zeros(rows.shape[1])
            for c in range(1, C + 1)
        ]
    )
    mean_feat = None
    if X is not None:
        Xr = np.asarray(X[idx], np.float64)
        mean_feat = np.stack(
            [
                Xr[lab == c].mean(0) if counts[c - 1] else np.zeros(Xr.shape[1])
                for c in range(1, C + 1)
            ]
        )
    emb = None
    if key is not None and rows.shape[0] >= 3:
        from scipy.spatial.distance import pdist, squareform
        from sklearn.manifold import MDS

        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        D = squareform(pdist(rows))
        emb = MDS(
            n_components=2,
            metric="precomputed",
            random_state=seed,
            n_init=1,
            init="random",
            normalized_stress="auto",
        ).fit_transform(D)
    return SLTClusters(
        indices=idx,
        labels=lab,
        linkage=Z,
        counts=counts,
        mean_slt=mean_slt,
        mean_features=mean_feat,
        embedding=emb,
        node=int(node),
    )


@pytree_dataclass(meta=("space", "n_nearest"))
class SLTTemplates:
    """Mean SLT templates of the points nearest each class centroid (paper Fig. 8A).

    Attributes:
        classes: ``(C,)`` classes with at least one (correct) point.
        templates: ``(C, F)`` mean SLT of output node ``k`` over the selected points of class ``k``.
        mean_features: ``(C, F)`` mean input features of those points, or None.
        counts: ``(C,)`` points averaged (``min(n_nearest, N_k)``).
        indices: list of selected sample indices per class.
        space: centroid space (``"slt"`` or ``"features"``); n_nearest: the requested count.
    """

    classes: Any
    templates: Any
    mean_features: Any
    counts: Any
    indices: list
    space: str
    n_nearest: int

    def as_images(self, n_frames: int = 11, n_bands: int = 23) -> np.ndarray:
        """Templates as ``(C, n_bands, n_frames)`` spectro-temporal images (spliced frames of
        ``n_bands`` values: ``reshape(n_frames, n_bands).T``)."""
        T = np.asarray(self.templates)
        if T.shape[1] != n_frames * n_bands:
            raise ValueError(f"templates have {T.shape[1]} inputs, not {n_frames} x {n_bands}.")
        return T.reshape(-1, n_frames, n_bands).transpose(0, 2, 1)


def slt_templates(
    slts, y, *, features=None, correct=None, n_nearest: int = 50, space: str = "slt"
) -> SLTTemplates:
    """For each class ``k``: the mean SLT of output node ``k`` over the ``n_nearest`` points of
    class ``k`` closest (Euclidean) to the class centroid.

    The centroid is taken over the SLT rows ``A(x_i)[k, :]`` (``space="slt"``, default) or the input
    features (``space="features"``) of the (correctly classified) class-``k`` points; all points are
    used when ``N_k < n_nearest``.

    Args:
        slts: ``(N, K, F)`` output SLTs; y: ``(N,)`` labels.
        features: ``(N, F)`` inputs (required for ``space="features"``).
        correct: optional ``(N,)`` bool network-correct mask.
        n_nearest: points per template (paper: 50).
        space: ``"slt"`` or ``"features"``.

    Returns:
        :class:`SLTTemplates`.
    """
    if space not in ("slt", "features"):
        raise ValueError(f"`space` must be 'slt' or 'features'; got {space!r}.")
    if int(n_nearest) < 1:
        raise ValueError(f"`n_nearest` must be positive; got {n_nearest}.")
    A, y, X, ok = _slts_setup(slts, y, features, correct)
    if space == "features" and X is None:
        raise ValueError("space='features' needs `features`.")
    classes, temps, feats, counts, idxs = [], [], [], [], []
    for k in range(A.shape[1]):
        idx = np.flatnonzero((y == k) & ok)
        if idx.size == 0:
            continue
        rows = np.asarray(A[idx, k, :], np.float64)
        pts = rows if space == "slt" else np.asarray(X[idx], np.float64)
        d = np.linalg.norm(pts - pts.mean(0), axis=1)
        sel = np.argsort(d, kind="stable")[: int(n_nearest)]
        classes.append(k)
        temps.append(rows[sel].mean(0))
        if X is not None:
            feats.append(np.asarray(X[idx[sel]], np.float64).mean(0))
        counts.append(sel.size)
        idxs.append(idx[sel])
    return SLTTemplates(
        classes=np.asarray(classes),
        templates=np.stack(temps) if temps else np.zeros((0, A.shape[2])),
        mean_features=np.stack(feats) if feats else None,
        counts=np.asarray(counts),
        indices=idxs,
        space=space,
        n_nearest=int(n_nearest),
    )


@pytree_dataclass
class ConfusablePairs:
    """Mean output-node SLTs for confusable class pairs (paper Fig. 8C).

    Attributes:
        pairs: ``(P, 2)`` class pairs ``(a, b)``.
        grid: ``(P, 2, 2, F)``: ``grid[p, i, j]`` is the mean SLT of node ``pair[i]`` over the
            (correct) points of class ``pair[j]`` (NaN if that class has none).
        contrast: ``(P, 2, F)``: ``grid[p, 0, j] - grid[p, 1, j]``, the SLT of the logit difference
            ``y_a - y_b`` on class ``pair[j]``.
        sign_agreement: ``(P,)`` fraction of inputs where node ``a``'s template on class ``a`` and
            node ``b``'s on class ``b`` have the same sign (shared vs distinguishing features).
        confusion: ``(P,)`` symmetric confusion ``C[a, b] + C[b, a]`` when a confusion matrix was
            given, else NaN.
    """

    pairs: Any
    grid: Any
    contrast: Any
    sign_agreement: Any
    confusion: Any

    def table(self) -> pd.DataFrame:
        p = np.asarray(self.pairs)
        return pd.DataFrame(
            {
                "class_a": p[:, 0],
                "class_b": p[:, 1],
                "confusion": np.asarray(self.confusion),
                "sign_agreement": np.asarray(self.sign_agreement),
            }
        )


def confusable_pairs(
    slts, y, *, pairs=None, C_out=None, top: int = 5, correct=None
) -> ConfusablePairs:
    """Compare output-node SLTs of confusable class pairs.

    For a pair ``(a, b)`` the 2 x 2 grid ``T[node, class]`` holds the mean SLT of ``node`` in
    ``{a, b}`` over the (correctly classified) points of ``class`` in ``{a, b}``; the contrast
    ``T[a, c] - T[b, c]`` is the SLT of the logit difference. Pairs default to the ``top`` pairs by
    symmetric output confusion ``C_out[a, b] + C_out[b, a]`` (ties: lexicographic).

    Args:
        slts: ``(N, K, F)`` output SLTs; y: ``(N,)`` labels.
        pairs: ``(P, 2)`` explicit pairs, or None to pick from ``C_out``.
        C_out: ``(K, K)`` network-output confusion matrix (rows true, columns predicted;
            e.g. ``geomjax.probing.confusion_matrix``).
        top: how many pairs to pick from ``C_out``.
        correct: optional ``(N,)`` bool mask of network-correct points.

    Returns:
        :class:`ConfusablePairs`.
    """
    A, y, _, ok = _slts_setup(slts, y, None, correct)
    K = A.shape[1]
    C = None
    if C_out is not None:
        C = np.asarray(C_out, dtype=np.float64)
        if C.shape != (K, K):
            raise ValueError(f"`C_out` must be ({K}, {K}); got shape {C.shape}.")
    if pairs is None:
        if C is None:
            raise ValueError("pass `pairs` or the output confusion matrix `C_out` to pick them.")
        sym = C + C.T
        iu = np.triu_indices(K, 1)
        order = np.lexsort((iu[1], iu[0], -sym[iu]))[: int(top)]
        pairs = np.stack([iu[0][order], iu[1][order]], 1)
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or pairs.max() >= K:
        raise ValueError(f"`pairs` must be (P, 2) class indices in 0..{K - 1}.")
    F = A.shape[2]
    grid = np.full((len(pairs), 2, 2, F), np.nan)
    for p, (a, b) in enumerate(pairs):
        for j, c in enumerate((a, b)):
            idx = np.flatnonzero((y == c) & ok)
            if idx.size:
                grid[p, :, j] = np.asarray(A[idx][:, [a, b], :], np.float64).mean(0)
    contrast = grid[:, 0] - grid[:, 1]
    with np.errstate(invalid="ignore"):
        agree = np.mean(np.sign(grid[:, 0, 0]) == np.sign(grid[:, 1, 1]), axis=1)
    conf = (
        np.array([C[a, b] + C[b, a] for a, b in pairs])
        if C is not None
        else np.full(len(pairs), np.nan)
    )
    return ConfusablePairs(
        pairs=pairs, grid=grid, contrast=contrast, sign_agreement=agree, confusion=conf
    )


@pytree_dataclass(meta=("layer_names",))
class SLTDiversity:
    """Per-node AUC difference ``AUC(INC) - AUC(COR)`` of SLT spectra (paper Fig. 7C).

    Attributes:
        diff: list over layers of ``(H_l,)`` per-node differences at ``n_sigma`` (NaN for nodes
            dead in either group); mean_diff: ``(L,)`` mean over nodes.
        n_sigma: the common number of singular values; counts: ``{"COR": n, "INC": n}``.
        spectra: the underlying :class:`SLTSpectra` (groups COR, INC).
    """

    diff: list
    mean_diff: Any
    n_sigma: int
    counts: dict
    spectra: Any
    layer_names: tuple

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "layer": list(self.layer_names),
                "mean_auc_diff": np.asarray(self.mean_diff),
                "n_sigma": self.n_sigma,
            }
        )


def slt_diversity(
    params,
    x,
    cor,
    inc,
    *,
    fn=None,
    layers=None,
    n_sigma: int | None = None,
    batch_size: int = 1024,
    abscissa: str = "index",
) -> SLTDiversity:
    """AUC of ``Sigma_INC - Sigma_COR`` per node, i.e. ``AUC(INC) - AUC(COR)`` at a common
    ``n_sigma <= min(|INC|, |COR|, F)`` (eq. 5 is linear in the normalised spectrum).

    Args:
        params, x, fn, layers, batch_size, abscissa: as in :func:`slt_spectra`.
        cor, inc: ``(N,)`` boolean masks from :func:`cor_inc_split`.
        n_sigma: common number of singular values (default ``min(|INC|, |COR|, F)``).

    Returns:
        :class:`SLTDiversity`.
    """
    cor = np.asarray(cor)
    inc = np.asarray(inc)
    res = slt_spectra(
        params,
        x,
        fn=fn,
        layers=layers,
        groups={"COR": cor, "INC": inc},
        batch_size=batch_size,
        abscissa=abscissa,
    )
    F = res.sigma[0].shape[-1]
    n_c, n_i = (int(c) for c in res.counts)
    ns = min(n_c, n_i, F) if n_sigma is None else int(n_sigma)
    if ns < 2:
        raise ValueError(f"COR has {n_c} and INC {n_i} points; n_sigma = {ns} < 2 leaves no AUC.")
    aucs = res.auc_at(ns)
    diff = [a[1] - a[0] for a in aucs]
    mean = np.asarray([np.nanmean(d) if np.isfinite(d).any() else np.nan for d in diff])
    return SLTDiversity(
        diff=diff,
        mean_diff=mean,
        n_sigma=ns,
        counts={"COR": n_c, "INC": n_i},
        spectra=res,
        layer_names=res.layer_names,
    )
