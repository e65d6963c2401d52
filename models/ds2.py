"""Deep Speech 2 as in deepspeech.pytorch (v1.1-v2.0: 2 conv2d + 5 x BiGRU-800, CTC over 29 labels).

Input: a ``(B, T, F)`` spectrogram (``log1p|STFT|``, 161 bins at 16 kHz) and the valid lengths.
conv1 (41 freq x 11 time, stride 2 x 2) and conv2 (21 x 11, stride 2 x 1), each followed by batch
norm and Hardtanh(0, 20), padded frames zeroed after every module (deepspeech.pytorch's
``MaskConv``); then bidirectional recurrent layers with forward and backward outputs summed
(batch norm on the input of every layer but the first); then batch norm and a bias-free linear map
to the characters. Frames are halved in time by conv1: ``T' = (T + 2*5 - 11) // 2 + 1``.

The recurrent layers hoist the input projection of both directions out of the time loop into one
matmul and run both directions in the same ``lax.scan`` (the backward direction on each sequence
reversed within its own valid length), which is exact for padded batches.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from geomjax.models._common import as_input, full_lengths, masked_zero, sequence_mask
from geomjax.models._config import DS2Config

__all__ = ["DeepSpeech2", "BiRNN", "ds2_output_lengths"]


def ds2_output_lengths(lengths):
    """Valid output frames: ``(L + 2*5 - 11) // 2 + 1`` (only conv1 strides in time)."""
    return (jnp.asarray(lengths) + 10 - 11) // 2 + 1


def _reverse_within(x, lengths):
    """Reverse every row of ``x`` ``(B, T, ...)`` within its first ``lengths[b]`` frames."""
    B, T = x.shape[:2]
    t = jnp.arange(T)[None, :]
    L = lengths[:, None]
    idx = jnp.where(t < L, L - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


class BiRNN(nn.Module):
    """Bidirectional GRU or LSTM layer, forward and backward outputs summed, padding-exact.

    Parameters per direction match ``flax.linen.GRUCell`` (input biases on all gates, a hidden
    bias only on the candidate gate) or a one-bias LSTM.
    """

    hidden: int
    cell: str = "gru"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, lengths):
        H = self.hidden
        G = 3 if self.cell == "gru" else 4
        pd = jnp.dtype(self.param_dtype)
        I = x.shape[-1]
        wi = self.param("input_kernel", nn.initializers.lecun_normal(), (I, 2 * G * H), pd)
        bi = self.param("input_bias", nn.initializers.zeros_init(), (2 * G * H,), pd)
        wh = self.param("hidden_kernel", nn.initializers.orthogonal(), (2, H, G * H), pd)
        bhn = (
            self.param("hidden_bias", nn.initializers.zeros_init(), (2, H), pd)
            if self.cell == "gru"
            else None
        )
        dt = jnp.promote_types(x.dtype, pd)
        x = x.astype(dt)
        wi, bi, wh = wi.astype(dt), bi.astype(dt), wh.astype(dt)
        proj = x @ wi + bi  # (B, T, 2GH): one matmul for every step and both directions
        B, T = x.shape[:2]
        pf = proj[..., : G * H]
        pb = _reverse_within(proj[..., G * H :], lengths)
        xs = jnp.stack([pf, pb], axis=0).transpose(2, 0, 1, 3)  # (T, 2, B, GH)

        if self.cell == "gru":
            bhn_ = bhn.astype(dt)[:, None, :]

            def step(h, xp):
                hh = jnp.einsum("dbh,dhg->dbg", h, wh)
                xr, xz, xn = jnp.split(xp, 3, axis=-1)
                hr, hz, hn = jnp.split(hh, 3, axis=-1)
                r = jax.nn.sigmoid(xr + hr)
                z = jax.nn.sigmoid(xz + hz)
                n = jnp.tanh(xn + r * (hn + bhn_))
                h = (1.0 - z) * n + z * h
                return h, h

            init = jnp.zeros((2, B, H), dt)
        else:

            def step(carry, xp):
                h, c = carry
                g = xp + jnp.einsum("dbh,dhg->dbg", h, wh)
                i, f, gg, o = jnp.split(g, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h

            init = (jnp.zeros((2, B, H), dt), jnp.zeros((2, B, H), dt))
        _, ys = jax.lax.scan(step, init, xs)  # (T, 2, B, H)
        fwd = ys[:, 0].transpose(1, 0, 2)
        bwd = _reverse_within(ys[:, 1].transpose(1, 0, 2), lengths)
        return masked_zero(fwd + bwd, sequence_mask(lengths, T))


class DeepSpeech2(nn.Module):
    """Deep Speech 2 acoustic model returning per-frame character logits.

    Call: ``logits, acts = model.apply(variables, x, lengths, train=False)`` with ``x`` of shape
    ``(B, T, F)`` and ``lengths`` ``(B,)`` (None: all full length). ``logits`` is
    ``(B, T', n_classes)``; ``acts`` holds ``conv1``, ``conv2`` (frequency x channel flattened per
    frame), ``rnn1``..``rnnN`` and ``fc`` (the logits), each ``(B, T', features)`` with padded
    frames zeroed; :func:`ds2_output_lengths` gives the valid ``T'`` of every row.
    """

    config: DS2Config

    @staticmethod
    def output_lengths(lengths):
        return ds2_output_lengths(lengths)

    @nn.compact
    def __call__(self, x, lengths=None, train: bool = False):
        cfg = self.config
        pd = jnp.dtype(cfg.param_dtype)
        x = as_input(x, "x", (3,))
        lengths = full_lengths(x, lengths)
        x = masked_zero(x, sequence_mask(lengths, x.shape[1]))[..., None]  # (B, T, F, 1)
        L = ds2_output_lengths(lengths)
        acts = {}

        def bn(h, m, name):
            return nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, param_dtype=pd, name=name
            )(h, mask=m)

        specs = [((11, 41), (2, 2), ((5, 5), (20, 20))), ((11, 21), (1, 2), ((5, 5), (10, 10)))]
        for i, (c, (k, s, p)) in enumerate(zip(cfg.conv_channels, specs, strict=False)):
            x = nn.Conv(c, k, strides=s, padding=p, param_dtype=pd, name=f"conv{i + 1}")(x)
            mask = sequence_mask(L, x.shape[1])
            m4 = mask[:, :, None, None]
            x = masked_zero(x, mask)
            x = masked_zero(bn(x, m4, f"conv{i + 1}_bn"), mask)
            x = jnp.clip(x, 0.0, 20.0)
            acts[f"conv{i + 1}"] = x.reshape(x.shape[0], x.shape[1], -1)
        x = x.reshape(x.shape[0], x.shape[1], -1)  # (B, T', F' * C)
        m3 = mask[:, :, None]
        for j in range(cfg.rnn_layers):
            if j > 0:
                x = masked_zero(bn(x, m3, f"rnn{j + 1}_bn"), mask)
            x = BiRNN(cfg.rnn_hidden, cfg.cell, cfg.param_dtype, name=f"rnn{j + 1}")(x, L)
            acts[f"rnn{j + 1}"] = x
        x = masked_zero(bn(x, m3, "fc_bn"), mask)
        logits = nn.Dense(cfg.n_classes, use_bias=False, param_dtype=pd, name="fc")(x)
        logits = masked_zero(logits, mask)
        acts["fc"] = logits
        return logits, acts
