"""Speaker verification: cosine scoring, equal error rate and minimum detection cost.

Trials are scored by the cosine of length-normalised embeddings (Chowdhury et al. 2023,
Sec. 4.2: "length-normalized embeddings ... cosine similarity between the pairs"). A trial is
accepted when its score is ``>= tau``.

**EER convention ("min-gap", the SpeechBrain convention).** The operating points are the
thresholds ``tau`` at every distinct score plus ``tau = +inf`` (accept nothing); for each,
``FRR(tau) = #{target < tau} / n_target`` and ``FAR(tau) = #{non-target >= tau} / n_nontarget``.
The EER is ``(FAR + FRR) / 2`` at the operating point that minimises ``|FAR - FRR|``; when two
points tie, the lower threshold wins. Tied scores are one operating point (they are accepted or
rejected together). Computed from one sort and cumulative counts: ``O(n log n)`` time and
``O(n)`` memory, never a thresholds x trials grid. Other conventions (ROC interpolation with
``brentq``; pyannote's first point with FPR > FNR) differ at the 0.1-point level on small trial
lists.

**minDCF** (NIST SRE): ``DCF(tau) = C_miss P_target FRR(tau) + C_fa (1 - P_target) FAR(tau)``,
normalised by ``min(C_miss P_target, C_fa (1 - P_target))`` and minimised over the same
operating points (``tau = min score`` accepts everything).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_finite
from geomjax._types import pytree_dataclass

__all__ = [
    "length_normalize",
    "cosine_scores",
    "operating_points",
    "VerificationResult",
    "eer",
    "min_dcf",
]


def length_normalize(emb, eps: float = 1e-12):
    """Rows scaled to unit Euclidean norm, ``(N, H)``."""
    emb = jnp.asarray(emb)
    nrm = jnp.linalg.norm(emb, axis=-1, keepdims=True)
    return emb / jnp.maximum(nrm, eps)


def cosine_scores(enrol, test):
    """Cosine score of each trial ``(enrol[i], test[i])``: ``<e_i, t_i> / (|e_i| |t_i|)``.

    Returns ``(N,)`` scores; embeddings are length-normalised first, so scale does not matter.
    """
    enrol = as_array(enrol, "enrol")
    test = as_array(test, "test")
    if enrol.shape != test.shape or enrol.ndim != 2:
        raise ValueError(
            f"`enrol` and `test` must be (N, H) arrays of the same shape; got {tuple(enrol.shape)} "
            f"and {tuple(test.shape)}."
        )
    return jnp.sum(length_normalize(enrol) * length_normalize(test), axis=-1)


@jax.jit
def _points(scores, labels):
    n = scores.shape[0]
    order = jnp.argsort(scores)
    s = scores[order]
    t = labels[order].astype(jnp.int32)
    n_t = t.sum()
    n_n = n - n_t
    t_below = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(t)])  # (n+1,)
    below = jnp.arange(n + 1)
    frr = t_below / n_t
    far = (n_n - (below - t_below)) / n_n
    valid = jnp.concatenate([jnp.array([True]), s[1:] != s[:-1], jnp.array([True])])
    thr = jnp.concatenate([s, jnp.array([jnp.inf], s.dtype)])
    return thr, far.astype(s.dtype), frr.astype(s.dtype), valid


def _check(scores, labels):
    scores = as_array(scores, "scores")
    labels = np.asarray(as_array(labels, "labels"))
    if scores.ndim != 1 or labels.shape != tuple(scores.shape):
        raise ValueError(
            f"`scores` and `labels` must be 1-D of the same length; got {tuple(scores.shape)} and "
            f"{labels.shape}."
        )
    check_finite(scores, "scores")
    if labels.dtype != bool:
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError("`labels` must be bool or 0/1 (1 = target trial).")
        labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("`labels` need both target (1) and non-target (0) trials.")
    scores = jnp.asarray(scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        scores = scores.astype(jnp.result_type(float))
    return scores, jnp.asarray(labels)


def operating_points(scores, labels):
    """All operating points of the threshold sweep.

    Returns:
        ``(thresholds (n+1,), far (n+1,), frr (n+1,), valid (n+1,))`` for thresholds at the
        sorted scores and ``+inf``; ``valid`` is false at positions inside a group of tied scores.
    """
    return _points(*_check(scores, labels))


@pytree_dataclass
class VerificationResult:
    """``value`` (EER or minDCF as a fraction), the ``threshold`` and the ``far``/``frr`` there."""

    value: jax.Array
    threshold: jax.Array
    far: jax.Array
    frr: jax.Array


@jax.jit
def _eer(scores, labels):
    thr, far, frr, valid = _points(scores, labels)
    gap = jnp.where(valid, jnp.abs(far - frr), jnp.inf)
    i = jnp.argmin(gap)
    return VerificationResult((far[i] + frr[i]) / 2, thr[i], far[i], frr[i])


def eer(scores, labels) -> VerificationResult:
    """Equal error rate, "min-gap" convention (module docstring).

    Args:
        scores: ``(n,)`` trial scores (higher = more likely target).
        labels: ``(n,)`` bool/0-1, true for target trials.
    """
    return _eer(*_check(scores, labels))


@jax.jit
def _dcf(scores, labels, p_target, c_miss, c_fa):
    thr, far, frr, valid = _points(scores, labels)
    dcf = c_miss * p_target * frr + c_fa * (1 - p_target) * far
    dcf = dcf / jnp.minimum(c_miss * p_target, c_fa * (1 - p_target))
    dcf = jnp.where(valid, dcf, jnp.inf)
    i = jnp.argmin(dcf)
    return VerificationResult(dcf[i], thr[i], far[i], frr[i])


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> VerificationResult:
    """Normalised minimum detection cost (defaults: VoxCeleb/NIST SRE ``P_target = 0.01``)."""
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise ValueError("`p_target` must be in (0, 1) and the costs positive.")
    s, lab = _check(scores, labels)
    return _dcf(s, lab, jnp.asarray(p_target, s.dtype), jnp.asarray(c_miss, s.dtype),
                jnp.asarray(c_fa, s.dtype))
