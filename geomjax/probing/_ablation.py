"""Ablation and minimal neuron sets (Chowdhury et al., CSL 2023, Secs. 3.3.1-3.3.2).

* **Ablation** keeps the top / bottom / random ``k`` % of the ordering and zeroes the other
  activations, then re-evaluates the *trained* probe. Zeroing neuron ``d`` of ``x`` is the same as
  zeroing row ``d`` of ``W``, so ``K`` masks are scored as ``x (W * M_k) + b`` in one batched
  matmul -- the data are never copied.
* **Minimal neuron set**: retrain the probe on the top 1, 5, 10, 15, 20, 25, 50, 75 % of the
  ordering (masks, one vmapped :func:`fit_probes` call) and return the smallest set whose accuracy
  reaches ``oracle - delta`` (the oracle being the probe on all neurons).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._types import pytree_dataclass
from geomjax.probing._metrics import Scores, scores
from geomjax.probing._probe import Probe, fit_probes
from geomjax.probing._ranking import NeuronOrdering, random_k_neurons

__all__ = [
    "PAPER_FRACTIONS",
    "ablation_masks",
    "evaluate_masks",
    "MinimalSet",
    "minimal_neuron_set",
    "select_minimal",
]

#: Fractions of the ordering retrained in the minimal-set search (the papers' grid).
PAPER_FRACTIONS = (0.01, 0.05, 0.10, 0.15, 0.20, 0.25, 0.50, 0.75)


def _count(fraction, d):
    return int(round(float(fraction) * d))


def ablation_masks(key, ordering: NeuronOrdering, fraction: float = 0.2):
    """``(3, D)`` masks keeping the top, bottom and a random ``fraction`` of the neurons.

    Top/bottom are the head/tail of the ordering (bottom = NeuroX's
    ``get_fixed_number_of_bottom_neurons``); the random set has exactly the same size.
    """
    d = ordering.order.shape[0]
    k = _count(fraction, d)
    return jnp.stack(
        [ordering.top_mask(k), ordering.bottom_mask(k), random_k_neurons(key, d, k)]
    )


@partial(jax.jit, static_argnames=("n_classes",))
def _eval_masks(probe, x, y, masks, n_classes):
    w = probe.weights[None] * masks[:, :, None].astype(probe.weights.dtype)  # (K, D, C)
    logits = jnp.einsum("nd,kdc->knc", x, w, precision=jax.lax.Precision.HIGHEST) + probe.bias
    pred = jnp.argmax(logits, axis=-1)
    return jax.vmap(lambda p: scores(y, p, n_classes))(pred)


def evaluate_masks(probe: Probe, x, y, masks, n_classes: int | None = None) -> Scores:
    """Scores of a trained probe with the activations outside each mask set to zero.

    Args:
        probe: trained probe (weights ``(D, C)``).
        x: ``(N, D)`` evaluation features; ``y``: ``(N,)`` labels.
        masks: ``(K, D)`` bool, true = neuron kept.

    Returns:
        :class:`Scores` with a leading axis ``K``.
    """
    masks = jnp.asarray(masks)
    if masks.ndim == 1:
        masks = masks[None]
    d, c = probe.weights.shape[-2:]
    if masks.shape[-1] != d or jnp.shape(x)[-1] != d:
        raise ValueError(
            f"`masks` ({masks.shape}) and `x` ({jnp.shape(x)}) must have D={d} neurons like the "
            "probe."
        )
    n_classes = c if n_classes is None else n_classes
    return _eval_masks(probe, jnp.asarray(x), jnp.asarray(y, jnp.int32), masks, int(n_classes))


@pytree_dataclass(meta=("fractions",))
class MinimalSet:
    """Result of the minimal-set search.

    Attributes:
        accuracy: ``(F,)`` test accuracy of the probe retrained on each fraction.
        scores: :class:`Scores` for each fraction.
        n_neurons: ``(F,)`` neurons in each set.
        chosen: index of the smallest set within ``delta`` of the oracle (the largest set when
            none reaches it: ``reached`` is then false).
        reached: whether some set reached ``oracle - delta``.
        mask: ``(D,)`` the chosen set.
        probes: the retrained probes (leading axis ``F``).
        fractions: the fractions tried.
    """

    accuracy: jax.Array
    scores: Scores
    n_neurons: jax.Array
    chosen: jax.Array
    reached: jax.Array
    mask: jax.Array
    probes: Probe
    fractions: tuple[float, ...]


def select_minimal(accuracy, oracle_accuracy, delta: float = 0.01):
    """Index of the first (smallest) set with ``accuracy >= oracle - delta`` and whether any does.

    ``accuracy`` is ordered by increasing set size; ``delta`` is a fraction (0.01 = 1 point).
    """
    ok = jnp.asarray(accuracy) >= jnp.asarray(oracle_accuracy) - delta
    return jnp.where(ok.any(), jnp.argmax(ok), ok.shape[-1] - 1), ok.any()


def minimal_neuron_set(
    key,
    ordering: NeuronOrdering,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    oracle_accuracy,
    fractions: Sequence[float] = PAPER_FRACTIONS,
    delta: float = 0.01,
    n_classes: int | None = None,
    **probe_kwargs,
) -> MinimalSet:
    """Retrain on the top ``fractions`` of the ordering in one vmapped call; pick the smallest set.

    Args:
        key: probe key (shared by the retrains, so they share minibatches).
        ordering: the ALL probe's :class:`NeuronOrdering`.
        x_train, y_train, x_test, y_test: ``(N, D)`` features and labels.
        oracle_accuracy: test accuracy of the probe on all neurons.
        fractions: increasing fractions of ``D`` to try.
        delta: allowed accuracy loss (fraction, 0.01 = the papers' 1 point).
        **probe_kwargs: passed to :func:`fit_probes` (``lam1``, ``mode``, ...).
    """
    fr = tuple(float(f) for f in fractions)
    if not fr or any(not 0 < f <= 1 for f in fr) or list(fr) != sorted(fr):
        raise ValueError(f"`fractions` must be increasing values in (0, 1]; got {fractions}.")
    d = ordering.order.shape[0]
    counts = np.array([max(_count(f, d), 1) for f in fr])
    masks = ordering.rank[None, :] < jnp.asarray(counts)[:, None]
    if n_classes is None:
        n_classes = int(max(np.max(y_train), np.max(y_test))) + 1
    sol = fit_probes(key, x_train, y_train, feature_mask=masks, n_classes=n_classes,
                     **probe_kwargs)
    sc = _scores_batched(sol.value, jnp.asarray(x_test), jnp.asarray(y_test, jnp.int32), masks,
                         n_classes)
    chosen, reached = select_minimal(sc.accuracy, oracle_accuracy, delta)
    return MinimalSet(sc.accuracy, sc, jnp.asarray(counts), chosen, reached, masks[chosen],
                      sol.value, fr)


@partial(jax.jit, static_argnames=("n_classes",))
def _scores_batched(probes: Probe, x, y, masks, n_classes):
    def one(p, m):
        w = p.weights * m[:, None].astype(p.weights.dtype)
        logits = jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST) + p.bias
        return scores(y, jnp.argmax(logits, -1), n_classes)

    return jax.vmap(one)(probes, masks)
