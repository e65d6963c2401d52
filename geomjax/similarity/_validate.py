"""Input preparation shared by the similarity measures (host side, before tracing)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from geomjax._checks import as_array, check_finite, check_same_samples
from geomjax._types import result_dtype

_LAYOUT = "(n_samples, n_features)"


def _check_finite(arr, name: str) -> None:
    """NaN/inf check; device arrays are reduced on the device (no host copy)."""
    if isinstance(arr, jax.core.Tracer):
        return
    if isinstance(arr, jax.Array):
        if arr.size and not bool(jnp.all(jnp.isfinite(arr))):
            n_bad = int(arr.size - jnp.sum(jnp.isfinite(arr)))
            raise ValueError(
                f"`{name}` contains {n_bad} NaN/inf value(s); clean or mask them first."
            )
        return
    check_finite(arr, name)


def prep_one(x, name: str, *, min_samples: int = 2, dtype=None, finite: bool = True):
    """One representation as a floating JAX array of shape ``(n_samples, n_features)``."""
    arr = as_array(x, name)
    if arr.ndim == 3:
        raise ValueError(
            f"`{name}` has shape {tuple(arr.shape)}: sequence activations (n_samples, T, "
            "n_features) must be reduced first; use `flatten_time` to treat frames as samples or "
            "`per_time_step` to compare each time step."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must have rank 2 with layout {_LAYOUT}; got shape {tuple(arr.shape)}."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} sample(s); this estimator needs at least {min_samples}."
        )
    if arr.shape[1] == 0:
        raise ValueError(f"`{name}` has no features (shape {tuple(arr.shape)}).")
    if finite:
        _check_finite(arr, name)
    dt = dtype if dtype is not None else result_dtype(arr)
    return jnp.asarray(arr, dtype=dt)


def prep_pair(x, y, names=("x", "y"), *, min_samples: int = 2):
    """Two representations with equal sample counts, cast to their common floating dtype."""
    ax, ay = as_array(x, names[0]), as_array(y, names[1])
    dt = result_dtype(ax, ay)
    xa = prep_one(ax, names[0], min_samples=min_samples, dtype=dt)
    ya = prep_one(ay, names[1], min_samples=min_samples, dtype=dt)
    check_same_samples([xa, ya], names)
    return xa, ya


def prep_square(k, name: str, *, min_samples: int = 2, dtype=None):
    """A Gram (kernel) matrix: square ``(n_samples, n_samples)``, finite."""
    arr = as_array(k, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(
            f"`{name}` must be a square Gram matrix (n_samples, n_samples); got shape "
            f"{tuple(arr.shape)}."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"`{name}` is {arr.shape[0]}x{arr.shape[0]}; this estimator needs at least "
            f"{min_samples} samples."
        )
    _check_finite(arr, name)
    dt = dtype if dtype is not None else result_dtype(arr)
    return jnp.asarray(arr, dtype=dt)


def check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}; got {value!r}.")


def warn_if_nan(value, what: str):
    """Constant (zero-variance) representations make CKA 0/0: return NaN and say why."""
    if isinstance(value, jax.core.Tracer):
        return value
    v = np.asarray(value)
    if v.size and np.isnan(v).any():
        warnings.warn(
            f"{what} is NaN for {int(np.isnan(v).sum())} entr(y/ies): a representation is constant "
            "(zero variance after centring) or its self-HSIC is not positive, so the normalisation "
            "is 0/0.",
            RuntimeWarning,
            stacklevel=3,
        )
    return value
