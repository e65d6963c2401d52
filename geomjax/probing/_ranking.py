"""Neuron rankings from probe weights (NeuroX semantics, vectorised).

All rankings are pure functions of ``|W|`` with ``W`` the probe weights ``(D, C)``
(Dalvi et al., AAAI 2019; Chowdhury et al., CSL 2023, Algorithm 1):

* **top neurons at mass p** -- for every class ``c`` sort ``|W[:, c]|`` in descending order and
  keep the shortest prefix whose cumulative sum reaches ``p * sum_d |W[d, c]|`` (the prefix
  always holds at least one neuron); the selection is the union over classes. Exactly NeuroX's
  ``get_top_neurons``; ``bottom`` is the same on the ascending sort.
* **ordering** -- NeuroX's ``get_neuron_ordering`` calls ``get_top_neurons`` for
  ``p = 0, 1/stride, ..., 1`` and appends the newly selected neurons at each step. Here each
  neuron's *entry step* (the first ``p`` that selects it, minimum over classes) comes from one sort
  and one cumulative sum per class plus a ``searchsorted``; sorting the entry steps gives the same
  chunks and cutoffs at any stride in ``O(C D log D)``. Inside a chunk NeuroX's order is set
  iteration order; here it is by decreasing ``max_c |W[d, c]| / sum_d |W[d, c]|``. Neurons that
  no step selects (e.g. all-zero rows, which NeuroX leaves out) come last, entry step
  ``stride + 1``. Equal weights are sorted as NeuroX's ``argsort(...)[::-1]`` does with a
  stable sort (higher neuron id first).
* **hard threshold** -- ``|W[d, c]| > max_d |W[d, c]| / fraction`` for some class (NeuroX's
  ``get_top_neurons_hard_threshold``: ``fraction=10`` keeps weights above 10 % of the max).
* **random** -- a seeded Bernoulli(``prob``) mask, or exactly ``k`` neurons drawn without
  replacement.

Selections are boolean masks ``(D,)`` (per class ``(C, D)``), so they batch and feed
:func:`~geomjax.probing.fit_probes` and the ablation kernels directly.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._types import pytree_dataclass

__all__ = [
    "NeuronOrdering",
    "neuron_ordering",
    "top_neurons",
    "bottom_neurons",
    "top_neurons_hard_threshold",
    "random_neurons",
    "random_k_neurons",
    "mask_from_indices",
    "layer_distribution",
]


@pytree_dataclass(meta=("stride",))
class NeuronOrdering:
    """Neurons by decreasing importance.

    Attributes:
        order: ``(D,)`` neuron ids, most important first.
        cutoffs: ``(stride + 1,)`` number of neurons selected up to step ``s`` (NeuroX's cutoffs:
            neurons ``order[cutoffs[s-1]:cutoffs[s]]`` enter at mass ``s / stride``).
        entry_step: ``(D,)`` step at which each neuron enters (``stride + 1``: never).
        rank: ``(D,)`` position of each neuron in ``order`` (inverse permutation).
        stride: number of mass steps (1000 = the papers' 0.1 % steps).
    """

    order: jax.Array
    cutoffs: jax.Array
    entry_step: jax.Array
    rank: jax.Array
    stride: int

    def top_mask(self, k) -> jax.Array:
        """``(D,)`` mask of the first ``k`` neurons of the ordering (``k`` may be traced)."""
        return self.rank < k

    def bottom_mask(self, k) -> jax.Array:
        """``(D,)`` mask of the last ``k`` neurons of the ordering."""
        return self.rank >= self.rank.shape[0] - k


def _abs_w(weights):
    w = jnp.abs(jnp.asarray(weights))
    if w.ndim != 2:
        raise ValueError(f"`weights` must be (D, C) probe weights; got shape {w.shape}.")
    return w


def _per_class_counts(w_sorted, p):
    """Neurons NeuroX selects per class at mass ``p``: first index with cumsum >= p * total, +1."""
    cums = jnp.cumsum(w_sorted, axis=0)  # (D, C)
    total = jnp.sum(w_sorted, axis=0)
    d = w_sorted.shape[0]
    first = jax.vmap(lambda cs, t: jnp.searchsorted(cs, t, side="left"), in_axes=(1, 0))(
        cums, total * p
    )
    return jnp.minimum(first + 1, d)


@jax.jit
def _select_sorted(w, p, descending):
    d = w.shape[0]
    asc = jnp.argsort(w, axis=0, stable=True)
    order = jnp.where(descending, jnp.flip(asc, axis=0), asc)  # (D, C)
    ws = jnp.take_along_axis(w, order, axis=0)
    counts = _per_class_counts(ws, p)  # (C,)
    rank = jnp.argsort(order, axis=0)  # rank of each neuron per class
    per_class = (rank < counts[None, :]).T  # (C, D)
    del d
    return per_class.any(axis=0), per_class


def top_neurons(weights, p):
    """Top neurons holding a fraction ``p`` of each class's weight mass (NeuroX semantics).

    Args:
        weights: ``(D, C)`` probe weights.
        p: mass fraction in ``[0, 1]``.

    Returns:
        ``(union (D,) bool, per_class (C, D) bool)``.
    """
    return _select_sorted(_abs_w(weights), jnp.asarray(p, jnp.result_type(float)), True)


def bottom_neurons(weights, p):
    """Bottom neurons: the same rule on the ascending sort (NeuroX ``get_bottom_neurons``)."""
    return _select_sorted(_abs_w(weights), jnp.asarray(p, jnp.result_type(float)), False)


@jax.jit
def _hard(w, fraction):
    per_class = (w > w.max(axis=0, keepdims=True) / fraction).T
    return per_class.any(axis=0), per_class


def top_neurons_hard_threshold(weights, fraction):
    """Neurons with ``|w_dc| > max_d |w_dc| / fraction`` for some class; ``(union, per_class)``."""
    return _hard(_abs_w(weights), fraction)


def random_neurons(key, n_neurons: int, prob):
    """Seeded Bernoulli(``prob``) neuron mask ``(D,)`` (NeuroX ``get_random_neurons``)."""
    return jax.random.bernoulli(key, prob, (n_neurons,))


def random_k_neurons(key, n_neurons: int, k):
    """Mask of exactly ``k`` neurons drawn uniformly without replacement (``k`` may be traced)."""
    rank = jnp.argsort(jax.random.uniform(key, (n_neurons,)))
    return jnp.zeros((n_neurons,), bool).at[rank].set(jnp.arange(n_neurons) < k)


def mask_from_indices(indices, n_neurons: int):
    """``(D,)`` bool mask from a list of neuron ids."""
    return jnp.zeros((n_neurons,), bool).at[jnp.asarray(indices, jnp.int32)].set(True)


@partial(jax.jit, static_argnames=("stride",))
def _ordering(w, stride):
    d, c = w.shape
    # descending per class as NeuroX (argsort(...)[::-1]): equal weights, higher id first
    order_c = jnp.flip(jnp.argsort(w, axis=0, stable=True), axis=0)  # (D, C)
    ws = jnp.take_along_axis(w, order_c, axis=0)
    cums = jnp.cumsum(ws, axis=0)
    total = w.sum(axis=0)
    # NeuroX's thresholds, computed as it does: total * (s / stride).
    steps = jnp.arange(stride + 1, dtype=w.dtype) / stride  # (S,)
    thr = total[None, :] * steps[:, None]  # (S, C)
    # Sorted position r (r >= 1) enters at the first step s with thr[s] > cums[r-1]; r = 0 at s=0.
    prev = jnp.concatenate([jnp.full((1, c), -jnp.inf, w.dtype), cums[:-1]], axis=0)
    entry_sorted = jax.vmap(lambda t, v: jnp.searchsorted(t, v, side="right"), in_axes=(1, 1),
                            out_axes=1)(thr, prev)  # (D, C) in [0, stride + 1]
    entry_sorted = jnp.where(jnp.arange(d)[:, None] == 0, 0, entry_sorted)
    entry_c = jnp.zeros((d, c), entry_sorted.dtype).at[order_c, jnp.arange(c)[None, :]].set(
        entry_sorted)
    entry = entry_c.min(axis=1)  # (D,)
    share = (w / jnp.where(total > 0, total, 1.0)[None, :]).max(axis=1)
    order = jnp.lexsort((-share, entry))  # by entry step, then by weight share
    rank = jnp.zeros((d,), jnp.int32).at[order].set(jnp.arange(d, dtype=jnp.int32))
    cutoffs = jnp.searchsorted(jnp.sort(entry), jnp.arange(stride + 1), side="right")
    return NeuronOrdering(order.astype(jnp.int32), cutoffs.astype(jnp.int32),
                          entry.astype(jnp.int32), rank, stride)


def neuron_ordering(weights, stride: int = 1000) -> NeuronOrdering:
    """Order all neurons by importance, NeuroX ``get_neuron_ordering`` at mass steps ``1/stride``.

    ``stride=1000`` is the papers' 0.1 % steps. Cost is one sort and one cumulative sum per class
    whatever the stride (NeuroX re-sorts at every step).

    Args:
        weights: ``(D, C)`` probe weights (``Probe.weights``).
        stride: number of mass steps (static).
    """
    if int(stride) < 1:
        raise ValueError(f"`stride` must be >= 1; got {stride}.")
    return _ordering(_abs_w(weights), int(stride))


@partial(jax.jit, static_argnames=("n_layers",))
def _layer_counts(mask, layer_of_neuron, n_layers):
    return jax.ops.segment_sum(mask.astype(jnp.int32), layer_of_neuron, num_segments=n_layers)


def layer_distribution(mask, layer_of_neuron, n_layers: int | None = None):
    """Number of selected neurons in each layer, ``(..., L)`` int (mask ``(..., D)``).

    Args:
        mask: ``(D,)`` or ``(B, D)`` selected neurons.
        layer_of_neuron: ``(D,)`` layer id per neuron (``LayerIndex.layer_of_neuron``).
        n_layers: ``L``; inferred from ``layer_of_neuron`` when omitted.
    """
    lon = jnp.asarray(layer_of_neuron)
    mask = jnp.asarray(mask)
    if mask.shape[-1] != lon.shape[0]:
        raise ValueError(
            f"`mask` has {mask.shape[-1]} neurons but `layer_of_neuron` has {lon.shape[0]}."
        )
    if n_layers is None:
        n_layers = int(np.asarray(lon).max()) + 1
    fn = partial(_layer_counts, layer_of_neuron=lon, n_layers=n_layers)
    for _ in range(mask.ndim - 1):
        fn = jax.vmap(fn)
    return fn(mask)
