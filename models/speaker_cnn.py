"""x-vector-like speaker CNN: 1-D temporal convolutions, statistics pooling, two FC layers.

A widened version of the end-to-end dialect/speaker network of Shon, Ali & Glass (2018): temporal
conv layers over MFCC frames (ReLU, optional batch norm), mean || standard deviation over the valid
frames, then FC layers (ReLU) and the class logits.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from geomjax.models._common import as_input, conv_out_len, full_lengths, masked_zero, sequence_mask
from geomjax.models._config import SpeakerCNNConfig

__all__ = ["SpeakerCNN"]


class SpeakerCNN(nn.Module):
    """Speaker (or gender/accent/channel) classifier on ``(B, T, n_mfcc)`` frames.

    Call: ``logits, acts = model.apply(variables, x, lengths, train=False)``. ``acts`` holds
    ``conv1``..``convK`` (``(B, T_k, C_k)``, padded frames zeroed; a stride-s layer keeps
    ``ceil(T / s)`` frames, see :meth:`layer_lengths`), ``pool`` (mean || std over
    valid frames, ``(B, 2 C_K)``), ``fc1``.. (after ReLU) and ``out`` (the logits).
    """

    config: SpeakerCNNConfig

    def layer_lengths(self, lengths) -> dict:
        """Valid frames of every conv layer for input ``lengths``."""
        out, L = {}, jnp.asarray(lengths)
        for i, (k, s) in enumerate(zip(self.config.kernels, self.config.strides, strict=False)):
            L = conv_out_len(L, k, s, "SAME")
            out[f"conv{i + 1}"] = L
        return out

    @nn.compact
    def __call__(self, x, lengths=None, train: bool = False):
        cfg = self.config
        pd = jnp.dtype(cfg.param_dtype)
        x = as_input(x, "x", (3,))
        L = full_lengths(x, lengths)
        mask = sequence_mask(L, x.shape[1])
        x = masked_zero(x, mask)
        acts = {}
        for i, (c, k, s) in enumerate(zip(cfg.channels, cfg.kernels, cfg.strides, strict=False)):
            # explicit ((k-1)//2, k//2) padding: ceil(T/s) frames like SAME, but aligned to the
            # first frame whatever T is, so results do not depend on the padded batch length
            pad = [((k - 1) // 2, k // 2)]
            x = nn.Conv(c, (k,), strides=(s,), padding=pad, param_dtype=pd, name=f"conv{i + 1}")(x)
            L = conv_out_len(L, k, s, "SAME")
            mask = sequence_mask(L, x.shape[1])
            x = nn.relu(x)
            if cfg.batch_norm:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    param_dtype=pd,
                    name=f"bn{i + 1}",
                )(x, mask=mask[:, :, None])
            x = masked_zero(x, mask)
            acts[f"conv{i + 1}"] = x
        m = mask[:, :, None].astype(x.dtype)
        n = jnp.maximum(m.sum(axis=1), 1.0)
        mean = (x * m).sum(axis=1) / n
        var = (jnp.square(x - mean[:, None, :]) * m).sum(axis=1) / n
        x = jnp.concatenate([mean, jnp.sqrt(var + 1e-5)], axis=-1)
        acts["pool"] = x
        for j, w in enumerate(cfg.fc):
            x = nn.relu(nn.Dense(w, param_dtype=pd, name=f"fc{j + 1}")(x))
            acts[f"fc{j + 1}"] = x
        logits = nn.Dense(cfg.n_classes, param_dtype=pd, name="out")(x)
        acts["out"] = logits
        return logits, acts
