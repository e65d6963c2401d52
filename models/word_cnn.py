"""Word CNN after Kell et al. (2018), with batch norm in place of LRN (Stephenson et al. 2019).

Input is a 2-D time-frequency image ``(B, F, T)`` (a 256 x 256 cochleagram at the paper size, or
e.g. a 40 x 198 log-Mel at the reduced size). Order of operations per block: conv -> ReLU ->
norm -> pool, every op with TF ``SAME`` padding; average pooling excludes padded cells.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from geomjax.models._common import as_input
from geomjax.models._config import WordCNNConfig

__all__ = ["WordCNN", "local_response_norm"]


def local_response_norm(
    x, depth_radius: int = 2, bias: float = 1.0, alpha: float = 1e-3, beta: float = 0.75
):
    """TensorFlow's ``tf.nn.local_response_normalization`` over the channel (last) axis.

    ``out[..., d] = x[..., d] / (bias + alpha * sum_{d'=d-r}^{d+r} x[..., d']**2) ** beta``.
    """
    sq = jnp.square(x)
    pad = [(0, 0)] * (x.ndim - 1) + [(depth_radius, depth_radius)]
    sqp = jnp.pad(sq, pad)
    C = x.shape[-1]
    s = sum(sqp[..., i : i + C] for i in range(2 * depth_radius + 1))
    return x / (bias + alpha * s) ** beta


class WordCNN(nn.Module):
    """Kell/Stephenson word (or speaker) CNN.

    Call: ``logits, acts = model.apply(variables, x, train=False)`` with ``x`` of shape
    ``(B, F, T)`` or ``(B, F, T, 1)``. ``acts`` holds ``conv{i}`` (after ReLU and norm),
    ``pool{i}`` (where a pool follows), ``fc{j}`` (hidden FC layers after ReLU, numbered from
    ``len(channels) + 1``, i.e. ``fc6`` at the paper size) and ``fctop`` (the logits), each
    ``(B, ...)``. Training with ``config.dropout > 0`` needs ``rngs={"dropout": key}``; the
    analysed activations are taken before dropout. Not a sequence model: ``lengths`` is
    accepted and ignored.
    """

    config: WordCNNConfig

    @nn.compact
    def __call__(self, x, lengths=None, train: bool = False):
        cfg = self.config
        pd = jnp.dtype(cfg.param_dtype)
        x = as_input(x, "x", (3, 4))
        if x.ndim == 3:
            x = x[..., None]
        acts = {}
        layers = zip(cfg.channels, cfg.kernels, cfg.strides, cfg.pools, strict=True)
        for i, (c, k, s, pool) in enumerate(layers):
            n = i + 1
            x = nn.Conv(c, (k, k), strides=(s, s), padding="SAME", param_dtype=pd, name=f"conv{n}")(
                x
            )
            use_norm = cfg.norm != "none" and i in cfg.norm_layers
            if use_norm and not cfg.norm_after_relu:
                x = self._norm(x, train, n)
            x = nn.relu(x)
            if use_norm and cfg.norm_after_relu:
                x = self._norm(x, train, n)
            acts[f"conv{n}"] = x
            if pool == "max":
                x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            elif pool == "avg":
                x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME", count_include_pad=False)
            if pool is not None:
                acts[f"pool{n}"] = x
        x = x.reshape(x.shape[0], -1)
        n0 = len(cfg.channels) + 1
        for j, w in enumerate(cfg.fc):
            x = nn.relu(nn.Dense(w, param_dtype=pd, name=f"fc{n0 + j}")(x))
            acts[f"fc{n0 + j}"] = x
            if cfg.dropout > 0:
                x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
        logits = nn.Dense(cfg.n_classes, param_dtype=pd, name="fctop")(x)
        acts["fctop"] = logits
        return logits, acts

    def _norm(self, x, train, n):
        if self.config.norm == "batch":
            return nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                param_dtype=jnp.dtype(self.config.param_dtype),
                name=f"norm{n}",
            )(x)
        return local_response_norm(x)
