"""Utterance-level features for probing: masked pooling, standardisation and layer layouts.

Frame activations of a layer are ``(n_utterances, T, H)`` padded to a common ``T`` with a
``(n_utterances, T)`` mask (or per-utterance lengths). Pooling turns them into utterance vectors
``R_l = phi(R''_l)`` (Chowdhury, Durrani & Ali, CSL 2023, Sec. 3.1): the masked mean, or the
statistics pooling ``[mean, std]`` used by x-vector style models.

"ALL" is the concatenation of the layers' utterance vectors; :class:`LayerIndex` maps every
column of the concatenation back to ``(layer, unit)`` for layers of different widths.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_finite, check_rank
from geomjax._types import pytree_dataclass, result_dtype
from geomjax.probing._host import compute_dtype

__all__ = [
    "pool_frames",
    "Standardizer",
    "fit_standardizer",
    "standardize",
    "LayerIndex",
    "concat_layers",
    "stack_layers",
]


@partial(jax.jit, static_argnames=("method",))
def _pool(frames, mask, method):
    m = mask.astype(frames.dtype)[..., None]  # (N, T, 1)
    count = jnp.maximum(m.sum(axis=1), 1.0)  # (N, 1)
    mean = (frames * m).sum(axis=1) / count
    if method == "mean":
        return mean
    # Two-pass variance (numerically safer than E[x^2] - E[x]^2).
    var = (((frames - mean[:, None, :]) ** 2) * m).sum(axis=1) / count
    return jnp.concatenate([mean, jnp.sqrt(var)], axis=-1)


def pool_frames(frames, mask=None, *, lengths=None, method: str = "mean"):
    """Pool frame activations into utterance vectors, ignoring padded frames.

    For utterance ``i`` with valid frames ``t`` (``mask[i, t]`` true):

    * ``method="mean"``: ``r_i = (1/T_i) sum_t x_{it}``, shape ``(N, H)``;
    * ``method="stats"``: statistics pooling ``r_i = [mean_i, std_i]`` with the population
      standard deviation ``std_i = sqrt((1/T_i) sum_t (x_{it} - mean_i)^2)``, shape ``(N, 2H)``.

    Args:
        frames: ``(N, T, H)`` frame activations padded to a common length ``T``.
        mask: ``(N, T)`` bool, true for real frames. Give either ``mask`` or ``lengths``;
            with neither, every frame counts.
        lengths: ``(N,)`` integer number of valid (leading) frames per utterance.
        method: ``"mean"`` or ``"stats"``.

    Returns:
        ``(N, H)`` or ``(N, 2H)`` utterance vectors in the input's floating dtype.

    Raises:
        ValueError: wrong rank, mask shape mismatch, an utterance with no valid frame, an
            unknown ``method`` or NaN/inf frames.
    """
    if method not in ("mean", "stats"):
        raise ValueError(f"`method` must be 'mean' or 'stats'; got {method!r}.")
    frames = as_array(frames, "frames")
    check_rank(frames, 3, "frames", "(n_utterances, T, H)")
    check_finite(frames, "frames")
    n, t = frames.shape[:2]
    if mask is not None and lengths is not None:
        raise ValueError("give either `mask` or `lengths`, not both.")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,):
            raise ValueError(f"`lengths` must have shape ({n},); got {lengths.shape}.")
        mask = np.arange(t)[None, :] < lengths[:, None]
    elif mask is None:
        mask = np.ones((n, t), dtype=bool)
    mask = as_array(mask, "mask")
    if tuple(mask.shape) != (n, t):
        raise ValueError(
            f"`mask` must have shape ({n}, {t}) like `frames`; got {tuple(mask.shape)}."
        )
    if not isinstance(mask, jax.core.Tracer):
        empty = np.flatnonzero(~np.asarray(mask, dtype=bool).any(axis=1))
        if empty.size:
            raise ValueError(
                f"`mask` leaves utterance(s) {empty[:5].tolist()} with no valid frame; drop them."
            )
    dt = result_dtype(frames)
    return _pool(jnp.asarray(frames, dt), jnp.asarray(mask, bool), method)


@pytree_dataclass
class Standardizer:
    """Per-feature affine map ``z = (x - mean) / scale`` fitted on a training split."""

    mean: jax.Array
    scale: jax.Array

    def __call__(self, x):
        return standardize(x, self)


def fit_standardizer(x, eps: float = 1e-8) -> Standardizer:
    """Fit per-feature mean and standard deviation on ``x`` ``(n_samples, n_features)``.

    Constant features get scale 1 (they standardise to 0 rather than to NaN).

    Args:
        x: training features; fit on the train split only and apply to every split.
        eps: standard deviations below ``eps`` count as constant.
    """
    x = as_array(x, "x")
    check_rank(x, 2, "x", "(n_samples, n_features)")
    check_finite(x, "x")
    if x.shape[0] < 2:
        raise ValueError(f"`x` needs at least 2 samples to fit a standardiser; got {x.shape[0]}.")
    x = jnp.asarray(x, compute_dtype(x))
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return Standardizer(mean=mean, scale=jnp.where(std > eps, std, 1.0).astype(x.dtype))


def standardize(x, standardizer: Standardizer):
    """Apply a fitted :class:`Standardizer` to ``x`` ``(..., n_features)``."""
    x = jnp.asarray(as_array(x, "x"))
    d = standardizer.mean.shape[-1]
    if x.shape[-1] != d:
        raise ValueError(f"`x` has {x.shape[-1]} features but the standardiser was fitted on {d}.")
    return ((x - standardizer.mean) / standardizer.scale).astype(result_dtype(x))


@pytree_dataclass(meta=("widths",))
class LayerIndex:
    """Maps columns of a layer concatenation ("ALL") back to ``(layer, unit)``.

    Attributes:
        layer_of_neuron: ``(D,)`` int32 layer id of every column.
        unit_of_neuron: ``(D,)`` int32 unit index inside its layer.
        widths: tuple of layer widths ``H_l`` (static).
    """

    layer_of_neuron: jax.Array
    unit_of_neuron: jax.Array
    widths: tuple[int, ...]

    @property
    def n_layers(self) -> int:
        return len(self.widths)

    @property
    def offsets(self) -> np.ndarray:
        """Start column of each layer in the concatenation, ``(L + 1,)``."""
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(np.int64)

    def neuron_id(self, layer, unit):
        """Column of ``(layer, unit)`` in the concatenation (inverse of the two maps)."""
        return jnp.asarray(self.offsets)[jnp.asarray(layer)] + jnp.asarray(unit)

    def layer_masks(self) -> jax.Array:
        """``(L, D)`` bool: column ``d`` belongs to layer ``l``."""
        return self.layer_of_neuron[None, :] == jnp.arange(self.n_layers)[:, None]


def _check_layers(layers: Sequence, name: str) -> list:
    if isinstance(layers, (np.ndarray, jax.Array)) and np.ndim(layers) == 3:
        layers = [layers[i] for i in range(layers.shape[0])]
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        raise ValueError(f"`{name}` must be a non-empty list of (n_samples, H_l) arrays.")
    out = []
    for i, a in enumerate(layers):
        a = as_array(a, f"{name}[{i}]")
        check_rank(a, 2, f"{name}[{i}]", "(n_samples, H_l)")
        out.append(a)
    n = {a.shape[0] for a in out}
    if len(n) > 1:
        raise ValueError(
            f"`{name}` layers have different sample counts {[a.shape[0] for a in out]}; "
            "every layer must hold the same utterances."
        )
    return out


def concat_layers(layers: Sequence) -> tuple[jax.Array, LayerIndex]:
    """Concatenate per-layer utterance vectors into the "ALL" representation.

    ``ALL = [R_1, R_2, ..., R_L]`` (Chowdhury et al. 2023, Sec. 3.1); column ``d`` of the result
    is unit ``unit_of_neuron[d]`` of layer ``layer_of_neuron[d]``.

    Args:
        layers: list of ``(N, H_l)`` arrays (widths may differ), or one ``(L, N, H)`` array.

    Returns:
        ``(X_all (N, sum H_l), LayerIndex)``.
    """
    layers = _check_layers(layers, "layers")
    widths = tuple(int(a.shape[1]) for a in layers)
    dt = compute_dtype(*layers)
    x = jnp.concatenate([jnp.asarray(a, dt) for a in layers], axis=1)
    lid = np.repeat(np.arange(len(widths)), widths).astype(np.int32)
    uid = np.concatenate([np.arange(w) for w in widths]).astype(np.int32)
    return x, LayerIndex(jnp.asarray(lid), jnp.asarray(uid), widths)


def stack_layers(layers: Sequence) -> tuple[jax.Array, jax.Array]:
    """Layer-major layout ``(L, N, H_max)`` with zero padding and a ``(L, H_max)`` unit mask.

    This is the layout for vmapping layer-wise probes: layer ``l`` occupies
    ``[l, :, :H_l]`` and the padded units are masked out of the probe.

    Args:
        layers: list of ``(N, H_l)`` arrays, or a concatenation ``X_all`` with its
            :class:`LayerIndex` passed as ``(X_all, index)``.
    """
    if isinstance(layers, tuple) and len(layers) == 2 and isinstance(layers[1], LayerIndex):
        x_all, index = layers
        off = index.offsets
        layers = [x_all[:, off[i] : off[i + 1]] for i in range(index.n_layers)]
    layers = _check_layers(layers, "layers")
    dt = compute_dtype(*layers)
    hmax = max(a.shape[1] for a in layers)
    stacked = jnp.stack(
        [jnp.pad(jnp.asarray(a, dt), ((0, 0), (0, hmax - a.shape[1]))) for a in layers]
    )
    mask = jnp.asarray(np.arange(hmax)[None, :] < np.array([a.shape[1] for a in layers])[:, None])
    return stacked, mask
