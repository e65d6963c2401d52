"""Minibatch (streaming) CKA: unbiased HSIC summed over batches, memory independent of N.

Nguyen, Raghu & Kornblith 2021 ("Do wide and deep networks learn the same things?", sec. 3.1,
``efficient_CKA.py``)::

    CKA_mb(X, Y) = sum_b HSIC_u(K_b, L_b) / sqrt(sum_b HSIC_u(K_b, K_b) * sum_b HSIC_u(L_b, L_b))

With one batch holding all N samples this is debiased CKA exactly; across batch sizes it
converges in probability (it is not biased CKA). Per batch, all L x L layer pairs come from one
matmul of the flattened U-centred Grams, (L, B^2) @ (B^2, L), or from feature-space
cross-products when those are cheaper. Sums are accumulated in float64 on the host, so float32
activations over millions of frames do not drift.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._kernels import center, debiased_dot, mm, u_center_gram
from ._validate import check_choice, prep_one

__all__ = ["MinibatchCKA", "minibatch_cka", "minibatch_cka_matrix"]

_MIN_BATCH = 4  # HSIC_u divides by N(N-3)


@partial(jax.jit, static_argnames=("method",))
def batch_hsic_u(xs: tuple, method: str = "gram"):
    """Unbiased HSIC of every pair of the L layers in one batch: an ``(L, L)`` array.

    Args:
        xs: tuple of L arrays ``(B, D_l)`` (widths may differ), B >= 4.
        method: ``"gram"`` (stacked U-centred Grams, one GEMM) or ``"feature"``
            (``||X_i^T X_j||_F^2`` per pair with the debiased correction).
    """
    b = xs[0].shape[0]
    xcs = [center(x) for x in xs]  # HSIC_u is translation invariant; centring helps float32
    scale = b * (b - 3)
    if method == "gram":
        flat = jnp.stack([u_center_gram(mm(xc, xc.T)).reshape(-1) for xc in xcs])
        return mm(flat, flat.T) / scale
    n_l = len(xcs)
    rows = [jnp.sum(xc * xc, axis=1) for xc in xcs]
    out = [[None] * n_l for _ in range(n_l)]
    for i in range(n_l):
        for j in range(i, n_l):
            a = jnp.sum(mm(xcs[i].T, xcs[j]) ** 2)
            out[i][j] = out[j][i] = debiased_dot(a, rows[i], rows[j], b) / scale
    return jnp.stack([jnp.stack(r) for r in out])


def _batch_method(b: int, widths: Sequence[int]) -> str:
    n_l = len(widths)
    gram = b * b * (sum(widths) + n_l * n_l)
    feature = b * sum(widths[i] * widths[j] for i in range(n_l) for j in range(i, n_l))
    return "feature" if feature < gram else "gram"


class MinibatchCKA:
    """Streaming accumulator of minibatch CKA between L representations (all pairs).

    Feed batches of the same samples seen by every layer; ``result()`` gives the L x L matrix
    ``S_ij / sqrt(S_ii S_jj)`` with ``S`` the float64 sum over batches of unbiased HSICs
    (Nguyen et al. 2021). Memory is O(L^2 + batch), independent of how many samples stream by.

    Batches with fewer than 4 samples cannot form an unbiased HSIC; they are skipped with a
    ``RuntimeWarning`` and counted in ``n_skipped``. NaN/inf in a batch raise ``ValueError``
    (naming the batch) when the accumulated sums are next read, so feeding stays asynchronous.

    Example::

        acc = MinibatchCKA()
        for xb, yb in loader:
            acc.update(xb, yb)
        acc.result()[0, 1]
    """

    def __init__(self, method: str = "auto", flush_every: int = 32):
        check_choice(method, "method", ("auto", "gram", "feature"))
        self.method = method
        self.flush_every = int(flush_every)
        self._sum: np.ndarray | None = None
        self._pending: list = []
        self._widths: tuple[int, ...] | None = None
        self._n_seen = 0
        self.n_samples = 0
        self.n_batches = 0
        self.n_skipped = 0

    def update(self, *layers) -> None:
        """Add one batch: ``update(x_b, y_b, ...)`` or ``update([x_b, y_b, ...])``, each
        ``(B, D_l)`` with the same B samples in the same order."""
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if len(layers) < 1:
            raise ValueError("`update` needs at least one layer's batch of activations.")
        # finiteness is checked on the per-batch HSICs when they reach the host (no sync here)
        first = prep_one(layers[0], "layers[0]", min_samples=1, finite=False)
        xs = [first] + [
            prep_one(a, f"layers[{i}]", min_samples=1, dtype=first.dtype, finite=False)
            for i, a in enumerate(layers[1:], start=1)
        ]
        b = xs[0].shape[0]
        for i, a in enumerate(xs):
            if a.shape[0] != b:
                raise ValueError(
                    f"batch sizes differ: `layers[0]` has {b} rows but `layers[{i}]` has "
                    f"{a.shape[0]}; every layer must see the same samples."
                )
        widths = tuple(a.shape[1] for a in xs)
        if self._widths is None:
            self._widths = widths
        elif len(widths) != len(self._widths):
            raise ValueError(
                f"got {len(widths)} layers but earlier batches had {len(self._widths)}."
            )
        if b < _MIN_BATCH:
            self.n_skipped += b
            warnings.warn(
                f"skipping a batch of {b} sample(s): unbiased HSIC needs at least {_MIN_BATCH}.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        method = _batch_method(b, widths) if self.method == "auto" else self.method
        self._pending.append((self._n_seen, batch_hsic_u(tuple(xs), method)))
        self._n_seen += 1
        self.n_samples += b
        self.n_batches += 1
        if len(self._pending) >= self.flush_every:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for idx, m in pending:
            m = np.asarray(m, dtype=np.float64)
            if not np.all(np.isfinite(m)):
                raise ValueError(
                    f"batch {idx} (0-based, counting accepted batches) gave a non-finite HSIC: "
                    "its activations contain NaN/inf (or overflow); clean them first."
                )
            self._sum = m if self._sum is None else self._sum + m

    @property
    def hsic_sum(self) -> np.ndarray:
        """The float64 ``(L, L)`` sum over batches of unbiased HSICs."""
        self._flush()
        if self._sum is None:
            raise ValueError("no batch with at least 4 samples has been added yet.")
        return self._sum.copy()

    def result(self) -> np.ndarray:
        """Minibatch CKA, a float64 ``(L, L)`` matrix (NaN where a self-HSIC sum is <= 0)."""
        s = self.hsic_sum
        d = np.diag(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = np.sqrt(np.where(d > 0, d, np.nan))
            out = s / denom[:, None] / denom[None, :]
        if np.isnan(out).any():
            warnings.warn(
                "minibatch CKA has NaN entries: a layer's summed self-HSIC is not positive "
                "(constant activations, or too few samples).",
                RuntimeWarning,
                stacklevel=2,
            )
        return out

    def reset(self) -> None:
        self.__init__(self.method, self.flush_every)


def _iterate(batches: Iterable, progress: bool, total: int | None, desc: str):
    if not progress:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, total=total, desc=desc, unit="batch")


def minibatch_cka_matrix(
    batches: Iterable,
    *,
    method: str = "auto",
    progress: bool = False,
    total: int | None = None,
) -> np.ndarray:
    """Minibatch CKA between L layers from an iterator of batches.

    Args:
        batches: iterable; each item a sequence of L arrays ``(B, D_l)`` for the same B samples
            (e.g. a generator that runs the network on one chunk of frames at a time, so the
            activations are never all in memory).
        method: per-batch evaluation, ``"auto"``, ``"gram"`` or ``"feature"``.
        progress: show a tqdm progress bar; ``total`` is its length if known.

    Returns:
        A float64 ``(L, L)`` NumPy matrix.
    """
    acc = MinibatchCKA(method=method)
    for item in _iterate(batches, progress, total, "minibatch CKA"):
        acc.update(*item)
    return acc.result()


def minibatch_cka(
    batches: Iterable,
    *,
    method: str = "auto",
    progress: bool = False,
    total: int | None = None,
) -> float:
    """Minibatch CKA between two representations from an iterator of ``(x_b, y_b)`` pairs.

    See :class:`MinibatchCKA`. Returns a Python float (float64 accumulation).
    """
    acc = MinibatchCKA(method=method)
    for item in _iterate(batches, progress, total, "minibatch CKA"):
        if len(item) != 2:
            raise ValueError(
                f"each batch must be a pair (x_b, y_b); got {len(item)} arrays. Use "
                "`minibatch_cka_matrix` for more layers."
            )
        acc.update(*item)
    return float(acc.result()[0, 1])
