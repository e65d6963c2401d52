"""Helpers shared by the model modules: masks, dtypes, input checks."""

from __future__ import annotations

import jax.numpy as jnp


def sequence_mask(lengths, T: int):
    """Boolean ``(B, T)`` mask, True on the first ``lengths[b]`` frames of row ``b``."""
    return jnp.arange(T)[None, :] < jnp.asarray(lengths)[:, None]


def full_lengths(x, lengths):
    """``lengths`` or, when None, every row at full length ``x.shape[1]``."""
    if lengths is None:
        return jnp.full((x.shape[0],), x.shape[1], dtype=jnp.int32)
    return jnp.asarray(lengths).astype(jnp.int32)


def conv_out_len(lengths, kernel: int, stride: int, pad: int | str):
    """Output length of a 1-D convolution along time (``pad`` frames each side or ``"SAME"``)."""
    if pad == "SAME":
        return (lengths + stride - 1) // stride
    return (lengths + 2 * pad - kernel) // stride + 1


def as_input(x, name: str = "inputs", ndim: tuple[int, ...] = (2, 3)):
    """A float JAX array of allowed rank; integer input is cast to the default float dtype."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = jnp.asarray(x)
    if x.ndim not in ndim:
        raise ValueError(
            f"`{name}` must have rank {' or '.join(map(str, ndim))}; got shape {tuple(x.shape)}."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def masked_zero(x, mask):
    """Zero the padded frames of a ``(B, T, ...)`` array given a ``(B, T)`` mask."""
    m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return jnp.where(m, x, jnp.zeros((), x.dtype))
