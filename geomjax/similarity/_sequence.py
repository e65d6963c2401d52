"""Sequence activations and width matching.

Sequence layers give ``(n_samples, T, n_features)``. The CCA/CKA analysis of end-to-end ASR
models either treats every frame as a data point (flatten time into samples) or compares
representations at each time step separately; layers of different widths can be linearly
interpolated to a common width for the CCA family (CKA needs no matching).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_finite

__all__ = ["flatten_time", "per_time_step", "interpolate_features"]


def flatten_time(x, mask=None):
    """Treat frames as samples: ``(n_samples, T, D) -> (n_samples * T, D)``.

    Args:
        x: ``(n_samples, T, D)`` activations.
        mask: optional ``(n_samples, T)`` booleans marking real (non-padded) frames; masked-out
            frames are dropped (the output then has ``mask.sum()`` rows, so this step runs on
            the host, outside jit).

    Returns:
        ``(n_samples * T, D)`` (or ``(mask.sum(), D)``) in the input dtype, frames in
        sample-major order, so two layers flattened the same way keep their rows aligned.
    """
    arr = as_array(x, "x")
    if arr.ndim != 3:
        raise ValueError(
            f"`x` must be (n_samples, T, n_features) sequence activations; got shape "
            f"{tuple(arr.shape)}."
        )
    flat = arr.reshape(arr.shape[0] * arr.shape[1], arr.shape[2])
    if mask is None:
        return flat
    m = np.asarray(mask)
    if m.shape != arr.shape[:2]:
        raise ValueError(
            f"`mask` must have shape (n_samples, T) = {tuple(arr.shape[:2])}; got {m.shape}."
        )
    if m.dtype != bool:
        raise TypeError(f"`mask` must be boolean; got dtype {m.dtype}.")
    idx = np.flatnonzero(m.reshape(-1))
    return flat[idx]


def per_time_step(fn: Callable, x, y, **kw):
    """Compare two sequence representations at every time step: ``fn(x[:, t], y[:, t])``.

    Args:
        fn: a similarity returning a scalar (e.g. :func:`geomjax.similarity.cka`) or a result
            dataclass; keyword arguments ``kw`` are passed through.
        x: ``(n_samples, T, Dx)``; y: ``(n_samples, T, Dy)`` with the same ``n_samples`` and T.

    Returns:
        A NumPy array ``(T,)`` of scalars, or a list of T results when ``fn`` returns a
        dataclass. Each time step is one call of the jitted kernel; all steps share the same
        shapes, so it compiles once.
    """
    xa, ya = as_array(x, "x"), as_array(y, "y")
    for name, a in (("x", xa), ("y", ya)):
        if a.ndim != 3:
            raise ValueError(
                f"`{name}` must be (n_samples, T, n_features); got shape {tuple(a.shape)}."
            )
    if xa.shape[:2] != ya.shape[:2]:
        raise ValueError(
            f"`x` is {tuple(xa.shape)} and `y` is {tuple(ya.shape)}: sample count and T must "
            "match."
        )
    out = [fn(xa[:, t], ya[:, t], **kw) for t in range(xa.shape[1])]
    if all(np.ndim(o) == 0 and not hasattr(o, "__dataclass_fields__") for o in out):
        return np.asarray([float(o) for o in out])
    return out


@jax.jit
def _interp(x, grid_src, grid_dst):
    return jax.vmap(lambda row: jnp.interp(grid_dst, grid_src, row))(x)


def interpolate_features(x, width: int):
    """Linearly interpolate the feature axis to ``width`` columns.

    Feature ``j`` of ``D`` sits at position ``j / (D - 1)`` on [0, 1]; the output samples that
    piecewise-linear profile at ``width`` equally spaced points. This is the option the ASR
    CCA/CKA study uses to bring a narrower layer to a wider one's dimensionality; it is needed
    only by methods that require equal widths (CKA and CCA here accept different widths).

    Args:
        x: ``(N, D)`` activations (``D >= 1``).
        width: target width, ``>= 1``.

    Returns:
        ``(N, width)`` in the input dtype.
    """
    arr = as_array(x, "x")
    if arr.ndim != 2:
        raise ValueError(f"`x` must be (n_samples, n_features); got shape {tuple(arr.shape)}.")
    check_finite(arr, "x")
    if int(width) < 1:
        raise ValueError(f"`width` must be >= 1; got {width!r}.")
    d = arr.shape[1]
    xa = jnp.asarray(arr)
    if not jnp.issubdtype(xa.dtype, jnp.floating):
        xa = xa.astype(jnp.result_type(float))
    if d == int(width):
        return xa
    if d == 1:
        return jnp.repeat(xa, int(width), axis=1)
    src = jnp.linspace(0, 1, d, dtype=xa.dtype)
    dst = jnp.linspace(0, 1, int(width), dtype=xa.dtype)
    return _interp(xa, src, dst)
