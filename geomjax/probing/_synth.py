"""Synthetic utterance vectors with planted informative neurons (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["planted_probing_data"]


def planted_probing_data(
    seed: int = 0,
    n_samples: int = 10_000,
    widths: Sequence[int] = (1850,) * 6,
    priors: Sequence[float] = (0.30, 0.25, 0.20, 0.15, 0.10),
    planted_per_layer: Sequence[int] = (2, 4, 6, 10, 16, 22),
    signal: float = 0.6,
    nuisance_rank: int = 16,
    nuisance_scale: float = 0.3,
    dtype=np.float32,
):
    """Gaussian "layer activations" where a few neurons carry the class.

    ``x = noise + F G + s * mu[y, planted]``: i.i.d. ``N(0, 1)`` noise, a rank-``nuisance_rank``
    shared nuisance ``F G`` with loadings ``N(0, nuisance_scale^2)``, and, on the planted neurons
    only, a class mean ``mu[c, d] ~ N(0, 1)`` scaled by ``signal``. Labels follow ``priors``.

    Returns:
        ``(x (N, D), y (N,), planted (P,) neuron ids, layer_widths)`` with ``D = sum(widths)``.
    """
    if len(planted_per_layer) != len(widths):
        raise ValueError("`planted_per_layer` needs one count per layer (same length as `widths`).")
    rng = np.random.default_rng(seed)
    priors = np.asarray(priors, float)
    priors = priors / priors.sum()
    n_classes = priors.size
    d = int(sum(widths))
    y = rng.choice(n_classes, size=n_samples, p=priors)
    off = np.concatenate([[0], np.cumsum(widths)])
    planted = np.concatenate([
        off[i] + rng.choice(w, size=k, replace=False)
        for i, (w, k) in enumerate(zip(widths, planted_per_layer, strict=False))
    ]).astype(np.int64)
    x = rng.standard_normal((n_samples, d), dtype=np.float32).astype(dtype, copy=False)
    if nuisance_rank:
        f = rng.standard_normal((n_samples, nuisance_rank), dtype=np.float32)
        g = rng.standard_normal((nuisance_rank, d), dtype=np.float32) * nuisance_scale
        x += (f @ g).astype(dtype)
    mu = rng.standard_normal((n_classes, planted.size)).astype(dtype)
    x[:, planted] += signal * mu[y]
    return x, y.astype(np.int32), np.sort(planted), tuple(int(w) for w in widths)
