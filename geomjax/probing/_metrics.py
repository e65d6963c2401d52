"""Classification metrics from a confusion matrix (jit- and vmap-friendly).

All metrics take integer labels ``y_true``/``y_pred`` in ``0..C-1`` with a static ``n_classes``
and are computed from the confusion matrix ``M[i, j] = #{y_true = i, y_pred = j}``, so that a
batch of predictions (ablation masks, layers, seeds) is scored with one ``vmap``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from geomjax._types import pytree_dataclass

__all__ = ["confusion_matrix", "accuracy", "f1_scores", "macro_f1", "mcc", "Scores", "scores"]


@partial(jax.jit, static_argnames=("n_classes",))
def confusion_matrix(y_true, y_pred, n_classes: int, sample_weight=None):
    """``(C, C)`` float confusion matrix, rows = true class, columns = predicted class."""
    t = jax.nn.one_hot(y_true, n_classes, dtype=jnp.float32)
    p = jax.nn.one_hot(y_pred, n_classes, dtype=jnp.float32)
    if sample_weight is not None:
        t = t * sample_weight[:, None]
    return t.T @ p


def accuracy(cm):
    """Fraction correct, ``trace(M) / sum(M)``."""
    return jnp.trace(cm) / jnp.maximum(cm.sum(), 1.0)


def f1_scores(cm):
    """Per-class F1 ``2 TP / (2 TP + FP + FN)``; 0 where a class is neither true nor predicted."""
    tp = jnp.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2TP + FP + FN
    return jnp.where(denom > 0, 2 * tp / jnp.where(denom > 0, denom, 1.0), 0.0)


def macro_f1(cm):
    """Unweighted mean of the per-class F1 over all ``C`` classes."""
    return f1_scores(cm).mean()


def mcc(cm):
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004).

    ``MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2))`` with
    ``c = trace(M)``, ``s = sum(M)``, ``t_k``/``p_k`` the true/predicted counts of class k;
    0 when the denominator vanishes (as scikit-learn).
    """
    c = jnp.trace(cm)
    s = cm.sum()
    t = cm.sum(axis=1)
    p = cm.sum(axis=0)
    num = c * s - jnp.dot(p, t)
    den = jnp.sqrt((s**2 - jnp.dot(p, p)) * (s**2 - jnp.dot(t, t)))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


@pytree_dataclass
class Scores:
    """Accuracy, macro F1, MCC and per-class F1 of one (or a batch of) predictions."""

    accuracy: jax.Array
    f1: jax.Array
    mcc: jax.Array
    f1_per_class: jax.Array


@partial(jax.jit, static_argnames=("n_classes",))
def scores(y_true, y_pred, n_classes: int) -> Scores:
    """All metrics of ``y_pred`` against ``y_true`` (vmappable)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    return Scores(accuracy(cm), macro_f1(cm), mcc(cm), f1_scores(cm))
