"""The AUC score of a normalised singular-value spectrum (Nagamine & Mesgarani 2017, eq. 5)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .._checks import as_array
from .._types import result_dtype

__all__ = ["spectrum_auc"]


@partial(jax.jit, static_argnames=("n_sigma", "abscissa"))
def _auc_kernel(sigma, n_sigma, abscissa):
    s1 = jnp.max(sigma, axis=-1, keepdims=True)
    safe = jnp.where(s1 > 0, s1, 1)
    s = sigma[..., :n_sigma] / safe
    area = jnp.sum(s[..., 1:] + s[..., :-1], axis=-1) / 2
    if abscissa == "unit":
        area = area / (n_sigma - 1)
    return jnp.where(s1[..., 0] > 0, area, jnp.nan)


def spectrum_auc(sigma, n_sigma: int | None = None, abscissa: str = "index") -> jax.Array:
    """Area under the normalised singular-value spectrum (eq. 5).

    With ``s_i = sigma_i / max(sigma)`` for ``i = 1..n_sigma`` (``sigma`` sorted in descending
    order, so the maximum is ``sigma_1``), eq. 5 is the composite trapezoidal rule over the first
    ``n_sigma`` values:

    * ``abscissa="index"`` (default): unit spacing on the singular-value index,
      ``AUC = sum_{i=1}^{n_sigma-1} (s_i + s_{i+1}) / 2`` (``numpy.trapezoid(s)``), from 0.5 for a
      rank-1 spectrum up to ``n_sigma - 1`` for a flat one;
    * ``abscissa="unit"``: the index axis rescaled to [0, 1], ``AUC_index / (n_sigma - 1)``, in
      (0, 1].

    Larger values mean a more uniform spectrum (more independent directions). The AUC is
    scale-invariant and grows with ``n_sigma`` under ``"index"``, so compare AUCs only at equal
    ``n_sigma``. A spectrum whose maximum is 0 (e.g. a dead node) has no AUC: NaN is returned.

    Args:
        sigma: ``(..., n)`` non-negative singular values, descending along the last axis.
        n_sigma: how many leading values enter (``2 <= n_sigma <= n``); default all ``n``.
        abscissa: ``"index"`` or ``"unit"``.

    Returns:
        ``(...)`` AUCs (NaN where ``max(sigma) == 0``).
    """
    if abscissa not in ("index", "unit"):
        raise ValueError(f"`abscissa` must be 'index' or 'unit'; got {abscissa!r}.")
    s = as_array(sigma, "sigma")
    if s.ndim < 1:
        raise ValueError("`sigma` must have at least one axis of singular values; got a scalar.")
    n = s.shape[-1]
    n_sigma = n if n_sigma is None else int(n_sigma)
    if not 2 <= n_sigma <= n:
        raise ValueError(f"`n_sigma` must be between 2 and the spectrum length {n}; got {n_sigma}.")
    s = jnp.asarray(s, result_dtype(s))
    return _auc_kernel(s, n_sigma, abscissa)
