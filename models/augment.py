"""SpecAugment-style training augmentation of time-frequency inputs (Park et al. 2019).

:func:`spec_augment` draws, per example, ``freq_masks`` bands of up to ``freq_width`` bins and
``time_masks`` spans of up to ``time_width`` frames, sets them to zero (the inputs are
standardised, so zero is the mean), and optionally shifts every example circularly in time by up
to ``time_shift`` frames. It runs inside the jitted training step; evaluation never augments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["AUGMENT_KEYS", "check_augment", "spec_augment"]

AUGMENT_KEYS = ("freq_masks", "freq_width", "time_masks", "time_width", "time_shift")


def check_augment(augment: dict | None) -> dict | None:
    """Validate an augmentation spec (a dict over :data:`AUGMENT_KEYS`, ints >= 0) or None."""
    if augment is None:
        return None
    if not isinstance(augment, dict):
        raise TypeError(f"`augment` must be a dict or None; got {type(augment).__name__}.")
    bad = sorted(set(augment) - set(AUGMENT_KEYS))
    if bad:
        raise ValueError(f"unknown `augment` key(s) {bad}; valid keys: {list(AUGMENT_KEYS)}.")
    out = {}
    for k in AUGMENT_KEYS:
        v = augment.get(k, 0)
        if int(v) != v or v < 0:
            raise ValueError(f"`augment[{k!r}]` must be an integer >= 0; got {v!r}.")
        out[k] = int(v)
    return out


def _masks(key, B, n, size, width):
    """``(B, size)`` bool: True on ``n`` random spans of width ``0..width`` per row."""
    pos = jnp.arange(size)[None, :]
    keep = jnp.zeros((B, size), bool)
    for k in jax.random.split(key, n):
        kw, ks = jax.random.split(k)
        w = jax.random.randint(kw, (B, 1), 0, width + 1)
        s = jax.random.randint(ks, (B, 1), 0, jnp.maximum(size - w, 0) + 1)
        keep = keep | ((pos >= s) & (pos < s + w))
    return keep


def spec_augment(key, x, augment: dict, time_axis: int, freq_axis: int, lengths=None):
    """Mask frequency bands and time spans of ``x`` (``(B, ...)``) and shift it in time.

    Args:
        key: PRNG key.
        x: batch of inputs; axis 0 is the batch.
        augment: validated spec (see :func:`check_augment`).
        time_axis, freq_axis: axes of time and frequency in ``x``.
        lengths: ``(B,)`` valid frames (sequence inputs): time masks stay within them and no
            shift is applied (it would move padding into the utterance). None: full length.

    Returns:
        The augmented ``x`` (same shape and dtype).
    """
    a = augment
    B, T, F = x.shape[0], x.shape[time_axis], x.shape[freq_axis]
    k_f, k_t, k_s = jax.random.split(key, 3)

    def expand(m, axis):  # (B, n) mask -> broadcastable against x
        shape = [1] * x.ndim
        shape[0], shape[axis] = B, m.shape[1]
        return m.reshape(shape)

    if a["time_shift"] and lengths is None:
        sh = jax.random.randint(k_s, (B,), -a["time_shift"], a["time_shift"] + 1)
        idx = (jnp.arange(T)[None, :] - sh[:, None]) % T
        x = jnp.take_along_axis(x, expand(idx, time_axis), axis=time_axis)
    if a["freq_masks"] and a["freq_width"]:
        fm = _masks(k_f, B, a["freq_masks"], F, a["freq_width"])
        x = jnp.where(expand(fm, freq_axis), jnp.zeros((), x.dtype), x)
    if a["time_masks"] and a["time_width"]:
        tm = _masks(k_t, B, a["time_masks"], T, a["time_width"])
        if lengths is not None:
            tm = tm & (jnp.arange(T)[None, :] < jnp.asarray(lengths)[:, None])
        x = jnp.where(expand(tm, time_axis), jnp.zeros((), x.dtype), x)
    return x
