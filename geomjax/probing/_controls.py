"""Baselines, control tasks, selectivity and redundancy.

* Majority baseline ('Maj-C'): predict the most frequent training class for every test item.
* Random-initialisation baseline ('R.INIT'): the same probe trained on features extracted from a
  randomly initialised model -- pass those features to :func:`~geomjax.probing.fit_probes`.
* Control task (Hewitt & Liang, EMNLP 2019; Chowdhury et al. 2023, Sec. 3.4): every utterance
  type gets a random label such that the class distribution is preserved -- here a seeded
  permutation of the labels, per utterance or per group (e.g. speaker).
* Selectivity ``Sel = Acc(task) - Acc(control)``.
* Redundancy (Dalvi et al., EMNLP 2020): layers / neuron subsets whose probe comes within a
  threshold of the oracle; neurons clustered by correlation (distance ``1 - |rho|``, average
  linkage = UPGMA, cut at a distance) with one representative kept per cluster.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_finite, check_rank

__all__ = [
    "majority_baseline",
    "random_init_baseline",
    "control_labels",
    "selectivity",
    "redundant_layers",
    "redundant_subsets",
    "neuron_correlation",
    "correlation_clusters",
    "independent_neurons",
]


def majority_baseline(y_train, y_test, n_classes: int | None = None):
    """Accuracy of always predicting the most frequent training class (ties: smallest label)."""
    y_train = jnp.asarray(y_train)
    y_test = jnp.asarray(y_test)
    if n_classes is None:
        n_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    counts = jnp.bincount(y_train, length=n_classes)
    return jnp.mean(y_test == jnp.argmax(counts))


def random_init_baseline(key, x_train, y_train, x_test, y_test, **probe_kwargs):
    """'R.INIT': test accuracy of the same probe trained on features of a randomly initialised
    model (extract ``x_train``/``x_test`` from the untrained network; standardise as usual).

    ``probe_kwargs`` go to :func:`~geomjax.probing.fit_probes`; returns the test
    :class:`~geomjax.probing.Scores`.
    """
    from geomjax.probing._metrics import scores
    from geomjax.probing._probe import fit_probes, predict

    n_classes = probe_kwargs.pop("n_classes", None)
    if n_classes is None:
        n_classes = int(max(np.max(y_train), np.max(y_test))) + 1
    sol = fit_probes(key, x_train, y_train, n_classes=n_classes, **probe_kwargs)
    return scores(jnp.asarray(y_test), predict(sol.value, jnp.asarray(x_test)), n_classes)


@partial(jax.jit, static_argnames=("n_groups",))
def _group_permute(key, y, groups, n_groups):
    # label of each group = label of its first member; the group labels are permuted
    first = jax.ops.segment_min(jnp.arange(y.shape[0]), groups, num_segments=n_groups)
    glab = y[jnp.clip(first, 0, y.shape[0] - 1)]
    present = jax.ops.segment_sum(jnp.ones_like(groups), groups, num_segments=n_groups) > 0
    # permute among the groups that exist only
    u = jnp.where(present, jax.random.uniform(key, (n_groups,)), jnp.inf)
    order = jnp.argsort(u, stable=True)  # present groups in random order, then absent ones
    present_ids = jnp.argsort(jnp.where(present, 0.0, 1.0), stable=True)
    new = glab.at[present_ids].set(glab[order])
    return new[groups]


def control_labels(key, y, groups=None):
    """Random control labels with the class distribution of ``y``.

    Without ``groups`` every item is its own type and the control labels are a seeded
    permutation of ``y`` (class counts preserved exactly). With ``groups`` ``(N,)`` (e.g. speaker
    ids) each group takes the label of its first member and the group labels are permuted among
    the groups, so all members of a group share one random label.

    Args:
        key: ``jax.random.key``.
        y: ``(N,)`` integer labels.
        groups: optional ``(N,)`` non-negative integer group ids.
    """
    y = jnp.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"`y` must be (N,) labels; got shape {y.shape}.")
    if groups is None:
        return jax.random.permutation(key, y)
    g = np.asarray(groups)
    if g.shape != y.shape or not np.issubdtype(g.dtype, np.integer) or (g.size and g.min() < 0):
        raise ValueError("`groups` must be (N,) non-negative integer ids like `y`.")
    return _group_permute(key, y, jnp.asarray(g), int(g.max()) + 1)


def selectivity(task_accuracy, control_accuracy):
    """``Sel = Acc(task) - Acc(control)`` (Hewitt & Liang 2019)."""
    return jnp.asarray(task_accuracy) - jnp.asarray(control_accuracy)


def redundant_layers(layer_accuracy, oracle_accuracy, threshold: float = 0.01,
                     relative: bool = False):
    """Layers (or neuron subsets) that come within ``threshold`` of the oracle.

    ``relative=False``: ``acc >= oracle - threshold``; ``relative=True``:
    ``acc >= (1 - threshold) * oracle`` (e.g. ``threshold=0.03`` for "97 % of the oracle").
    Two or more such layers are redundant with respect to the task.
    """
    acc = jnp.asarray(layer_accuracy)
    bound = (1.0 - threshold) * oracle_accuracy if relative else oracle_accuracy - threshold
    return acc >= bound


redundant_subsets = redundant_layers


def _corr_block(z, zb):
    return jnp.matmul(zb.T, z, precision=jax.lax.Precision.HIGHEST)


_corr_block_jit = jax.jit(_corr_block)


def neuron_correlation(x, block_size: int = 2048) -> np.ndarray:
    """``(D, D)`` Pearson correlation of the neurons (columns of ``x``), computed in row blocks.

    Returns a host array (float32 for float32 input) so that ``D`` up to ~20k fits in RAM.
    """
    x = as_array(x, "x")
    check_rank(x, 2, "x", "(n_samples, n_neurons)")
    check_finite(x, "x")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    n, d = x.shape
    z = x - x.mean(axis=0)
    nrm = jnp.sqrt((z * z).sum(axis=0))
    z = z / jnp.where(nrm > 0, nrm, 1.0)
    b = min(block_size, d)
    nblk = -(-d // b)
    zp = jnp.pad(z, ((0, 0), (0, nblk * b - d)))
    out = np.empty((d, d), dtype=np.dtype(z.dtype.name))
    for i in range(nblk):
        blk = np.asarray(_corr_block_jit(z, jax.lax.dynamic_slice_in_dim(zp, i * b, b, axis=1)))
        rows = min(b, d - i * b)
        out[i * b : i * b + rows] = blk[:rows]
    return out


def correlation_clusters(x, threshold: float = 0.5, block_size: int = 2048) -> np.ndarray:
    """Cluster neurons by correlation: distance ``1 - |rho|``, average linkage (UPGMA), cut at
    ``threshold`` (NeuroX ``create_correlation_clusters``; Dalvi et al. 2020).

    Returns:
        ``(D,)`` int cluster id per neuron (0-based).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    corr = neuron_correlation(x, block_size)
    dist = 1.0 - np.abs(corr.astype(np.float64))
    np.fill_diagonal(dist, 0.0)
    dist = np.clip((dist + dist.T) / 2, 0.0, None)
    z = linkage(squareform(dist, checks=False), method="average")
    return fcluster(z, t=threshold, criterion="distance") - 1


def independent_neurons(key, clusters) -> jax.Array:
    """One randomly chosen neuron per cluster (sorted ids), from :func:`correlation_clusters`."""
    c = np.asarray(clusters)
    u = np.asarray(jax.random.uniform(key, c.shape))
    # for each cluster the member with the smallest uniform draw
    order = np.lexsort((u, c))
    first = np.r_[True, c[order][1:] != c[order][:-1]]
    return jnp.asarray(np.sort(order[first]))
