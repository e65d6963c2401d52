"""Small Transformer encoder with Mockingjay-style masked reconstruction pretraining.

Mockingjay (Liu et al. 2020): ``R`` consecutive feature frames are stacked into one step, projected
to ``d_model``, summed with sinusoidal position encodings and layer-normalised; post-LN encoder
layers (self-attention, GELU feed-forward) follow, and a prediction head (Dense -> GELU ->
LayerNorm -> Dense) reconstructs the stacked frames. Pretraining masks ~15 % of the steps in spans
(:func:`mockingjay_mask`) and minimises the L1 error on the masked steps.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from geomjax.models._common import as_input, full_lengths, masked_zero, sequence_mask
from geomjax.models._config import TransformerConfig

__all__ = ["TransformerEncoder", "mockingjay_mask", "stack_frames", "sinusoidal_positions"]


def sinusoidal_positions(max_len: int, d: int) -> np.ndarray:
    """``(max_len, d)`` sinusoidal position encodings (Vaswani et al. 2017)."""
    pos = np.arange(max_len)[:, None]
    i = np.arange(d)[None, :]
    ang = pos / np.power(10000.0, (2 * (i // 2)) / d)
    return np.where(i % 2 == 0, np.sin(ang), np.cos(ang)).astype(np.float32)


def stack_frames(x, lengths, r: int):
    """Stack ``r`` frames: ``(B, T, F) -> (B, ceil(T/r), r F)``; lengths ``ceil(L/r)``."""
    B, T, F = x.shape
    Tr = -(-T // r)
    x = jnp.pad(x, ((0, 0), (0, Tr * r - T), (0, 0)))
    return x.reshape(B, Tr, r * F), (lengths + r - 1) // r


def mockingjay_mask(key, x, lengths, downsample: int = 1, mask_prob: float = 0.15, span: int = 7):
    """Mask spans of ``x`` for masked-reconstruction pretraining.

    Span starts are drawn per (downsampled) step with probability ``mask_prob / span``, each
    covering ``span`` steps (``span * downsample`` frames), so about ``mask_prob`` of the valid
    steps are selected. Per utterance, selected frames are zeroed (80 %), replaced by other frames
    of the same utterance (10 %) or left unchanged (10 %).

    Args:
        key: a ``jax.random.key``.
        x: ``(B, T, F)`` features.
        lengths: ``(B,)`` valid frames.
        downsample: the model's frame stacking ``R``; spans are aligned to it.
        mask_prob: target fraction of masked steps.
        span: steps per masked span.

    Returns:
        ``(x_masked, step_mask)``: the corrupted input ``(B, T, F)`` and the boolean ``(B, T_R)``
        mask of selected valid steps on which the reconstruction loss is computed.
    """
    B, T, F = x.shape
    Tr = -(-T // downsample)
    Lr = (lengths + downsample - 1) // downsample
    k1, k2, k3 = jax.random.split(key, 3)
    starts = jax.random.bernoulli(k1, mask_prob / span, (B, Tr))
    cs = jnp.cumsum(jnp.pad(starts.astype(jnp.int32), ((0, 0), (span, 0))), axis=1)
    sel = (cs[:, span:] - cs[:, :-span]) > 0
    sel = sel & sequence_mask(Lr, Tr)
    frame_sel = jnp.repeat(sel, downsample, axis=1)[:, :T]
    u = jax.random.uniform(k2, (B,))
    perm = jax.random.randint(k3, (B, T), 0, jnp.maximum(lengths, 1)[:, None])
    other = jnp.take_along_axis(x, perm[..., None], axis=1)
    zero = (u < 0.8)[:, None, None]
    repl = ((u >= 0.8) & (u < 0.9))[:, None, None]
    fs = frame_sel[..., None]
    xm = jnp.where(fs & zero, 0.0, jnp.where(fs & repl, other, x)).astype(x.dtype)
    return xm, sel


class TransformerEncoder(nn.Module):
    """Mockingjay-style encoder returning the reconstruction of the stacked input frames.

    Call: ``recon, acts = model.apply(variables, x, lengths, train=False)``;
    ``x`` is ``(B, T, F)``.
    ``recon`` is ``(B, T_R, R F)`` (compare with :func:`stack_frames` of the clean input);
    ``acts`` holds ``input`` (the normalised input embedding) and ``layer1``..``layerN``, each
    ``(B, T_R, d_model)`` with padded steps zeroed, and ``recon``. Training with dropout needs
    ``rngs={"dropout": key}``.
    """

    config: TransformerConfig

    def output_lengths(self, lengths):
        return (jnp.asarray(lengths) + self.config.downsample - 1) // self.config.downsample

    @nn.compact
    def __call__(self, x, lengths=None, train: bool = False):
        cfg = self.config
        pd = jnp.dtype(cfg.param_dtype)
        x = as_input(x, "x", (3,))
        L = full_lengths(x, lengths)
        x = masked_zero(x, sequence_mask(L, x.shape[1]))
        x, L = stack_frames(x, L, cfg.downsample)
        B, T, Fr = x.shape
        if T > cfg.max_len:
            raise ValueError(
                f"`x` has {T} steps after stacking but the model supports max_len={cfg.max_len}; "
                "raise `max_len` in the config."
            )
        mask = sequence_mask(L, T)
        det = not train
        h = nn.Dense(cfg.d_model, param_dtype=pd, name="input_proj")(x)
        h = h + jnp.asarray(sinusoidal_positions(cfg.max_len, cfg.d_model)[:T], h.dtype)
        h = nn.LayerNorm(param_dtype=pd, name="input_ln")(h)
        h = nn.Dropout(cfg.dropout, deterministic=det)(h)
        h = masked_zero(h, mask)
        acts = {"input": h}
        attn_mask = nn.make_attention_mask(mask, mask)
        for i in range(cfg.layers):
            a = nn.MultiHeadDotProductAttention(
                num_heads=cfg.heads,
                dropout_rate=cfg.dropout,
                deterministic=det,
                param_dtype=pd,
                name=f"layer{i + 1}_attn",
            )(h, h, mask=attn_mask)
            a = nn.Dropout(cfg.dropout, deterministic=det)(a)
            h = nn.LayerNorm(param_dtype=pd, name=f"layer{i + 1}_ln1")(h + a)
            f = nn.Dense(cfg.d_ff, param_dtype=pd, name=f"layer{i + 1}_ff1")(h)
            f = nn.Dense(cfg.d_model, param_dtype=pd, name=f"layer{i + 1}_ff2")(nn.gelu(f))
            f = nn.Dropout(cfg.dropout, deterministic=det)(f)
            h = nn.LayerNorm(param_dtype=pd, name=f"layer{i + 1}_ln2")(h + f)
            h = masked_zero(h, mask)
            acts[f"layer{i + 1}"] = h
        r = nn.gelu(nn.Dense(cfg.d_model, param_dtype=pd, name="head_dense")(h))
        r = nn.LayerNorm(param_dtype=pd, name="head_ln")(r)
        recon = masked_zero(nn.Dense(Fr, param_dtype=pd, name="head_out")(r), mask)
        acts["recon"] = recon
        return recon, acts
