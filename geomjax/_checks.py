"""Input validation with clear messages.

All checks run on concrete (host) values before tracing, so bad input fails with a
``ValueError``/``TypeError`` naming the argument, what was expected and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_array",
    "check_finite",
    "check_rank",
    "check_manifolds",
    "check_labels",
    "check_same_samples",
]


def as_array(x, name: str, dtype=None) -> np.ndarray | object:
    """Accept NumPy, JAX, anything ``np.asarray`` takes (torch via ``.numpy()``/DLPack)."""
    import jax

    if isinstance(x, jax.Array):
        if dtype is not None and x.dtype != dtype:
            return x.astype(dtype)
        return x
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{name}` must be array-like (NumPy/JAX/torch); got {type(x).__name__}: {e}")
    if arr.dtype == object:
        raise TypeError(
            f"`{name}` is a ragged or object array; pass a list of arrays where ragged input is allowed."
        )
    return arr


def check_rank(x, ndim: int | tuple[int, ...], name: str, layout: str) -> None:
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in dims:
        raise ValueError(
            f"`{name}` must have rank {' or '.join(map(str, dims))} with layout {layout}; "
            f"got shape {tuple(x.shape)}."
        )


def check_finite(x, name: str) -> None:
    """NaN/inf check on concrete arrays (skipped for tracers)."""
    import jax

    if isinstance(x, jax.core.Tracer):
        return
    a = np.asarray(x)
    if a.size and not np.all(np.isfinite(a)):
        n_bad = int(a.size - np.isfinite(a).sum())
        raise ValueError(f"`{name}` contains {n_bad} NaN/inf value(s); clean or mask them first.")


def check_manifolds(manifolds, name: str = "manifolds", min_points: int = 2,
                    finite: bool = True) -> list:
    """Validate P manifolds given as a list of ``(M_i, N)`` arrays or one ``(P, M, N)`` array.

    Returns a list of arrays (unchanged dtype). Raises on: empty input, P < 2, a manifold with
    fewer than ``min_points`` points, mismatched feature counts, wrong rank, NaN/inf (unless
    ``finite=False``: for callers that read every value anyway and call
    :func:`check_finite` on a manifold whose sums come out non-finite).
    """
    if manifolds is None:
        raise ValueError(f"`{name}` is None; pass P >= 2 arrays of shape (M, N).")
    if not isinstance(manifolds, (list, tuple)):
        arr = as_array(manifolds, name)
        if arr.ndim != 3:
            raise ValueError(
                f"`{name}` must be a list of (M, N) arrays or one (P, M, N) array; got an array "
                f"of shape {tuple(arr.shape)}."
            )
        manifolds = [arr[i] for i in range(arr.shape[0])]
    mans = [as_array(m, f"{name}[{i}]") for i, m in enumerate(manifolds)]
    if len(mans) < 2:
        raise ValueError(f"`{name}` needs at least 2 manifolds (P >= 2); got P={len(mans)}.")
    n_feat = None
    for i, m in enumerate(mans):
        if m.ndim != 2:
            raise ValueError(
                f"`{name}[{i}]` must be (M, N) with rows as points; got shape {tuple(m.shape)}."
            )
        if m.shape[0] < min_points:
            raise ValueError(
                f"`{name}[{i}]` has {m.shape[0]} point(s); each manifold needs at least "
                f"{min_points} points (M >= {min_points})."
            )
        if m.shape[1] == 0:
            raise ValueError(f"`{name}[{i}]` has no features (N=0).")
        if n_feat is None:
            n_feat = m.shape[1]
        elif m.shape[1] != n_feat:
            raise ValueError(
                f"`{name}[{i}]` has {m.shape[1]} features but `{name}[0]` has {n_feat}; all "
                "manifolds must share the feature count N."
            )
        if finite:
            check_finite(m, f"{name}[{i}]")
    return mans


def check_labels(y, n_samples: int, name: str = "labels", n_classes: int | None = None):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D integer class labels; got shape {y.shape}.")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"`{name}` has {y.shape[0]} entries but there are {n_samples} samples; they must match."
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"`{name}` must be integers 0..C-1; got dtype {y.dtype}.")
    if y.size and y.min() < 0:
        raise ValueError(f"`{name}` has negative entries (min {y.min()}); use 0..C-1.")
    if n_classes is not None and y.size and y.max() >= n_classes:
        raise ValueError(
            f"`{name}` has label {y.max()} but n_classes={n_classes}; labels must be < n_classes."
        )
    return y


def check_same_samples(arrays: Sequence, names: Sequence[str]) -> None:
    ns = [a.shape[0] for a in arrays]
    if len(set(ns)) > 1:
        desc = ", ".join(f"`{n}` has {k}" for n, k in zip(names, ns))
        raise ValueError(f"sample counts differ ({desc}); rows are samples and must match.")
