"""Linear discriminant analysis (SVD solver) in JAX, matching scikit-learn's ``solver="svd"``.

Algorithm (``LinearDiscriminantAnalysis._solve_svd``), with static shapes and the rank cuts
replaced by masks (masked directions get zero scalings, which change neither distances nor
predictions):

1. class means ``mu_k``, priors ``pi_k = N_k / N``, ``xbar = sum_k pi_k mu_k``;
2. within-class centred data ``Xc``; per-feature population std of ``Xc`` (0 replaced by 1;
   features constant within every class, std at round-off level, are treated as exactly constant);
3. SVD of ``sqrt(1/N) Xc / std = U S V^T``; ``rank_w = #{S > tol}``;
   ``scalings = (V^T[:rank_w] / std)^T / S[:rank_w]``;
4. ``B = (sqrt(N pi_k / (K - 1)) (mu_k - xbar))_k @ scalings``, SVD ``B = U_b S_b V_b^T``;
   ``explained_variance_ratio = S_b^2 / sum S_b^2`` (first ``min(K - 1, D)`` entries);
   ``scalings_ = scalings @ V_b[:, :rank_b]`` with ``rank_b = #{S_b > tol S_b[0]}``;
5. ``transform(X) = (X - xbar) @ scalings_``; the decision function is
   ``X @ coef^T + intercept`` with ``coef = (mu - xbar) scalings_ scalings_^T`` and
   ``intercept = -1/2 ||(mu - xbar) scalings_||^2 + log pi - xbar coef^T``.

In LDA space the pooled within-class covariance (normalised by ``N``) is the identity, so distances
are in units of within-class standard deviation and comparable across layers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import as_array, check_finite, check_labels, check_same_samples
from .._types import pytree_dataclass, result_dtype

__all__ = ["LDA", "fit_lda", "lda_transform", "lda_predict"]

_HI = jax.lax.Precision.HIGHEST


@pytree_dataclass(meta=("n_components",))
class LDA:
    """A fitted LDA (scikit-learn ``solver="svd"`` semantics).

    Attributes:
        classes: ``(K,)`` the class labels seen in fitting, sorted.
        means: ``(K, D)`` class means; priors: ``(K,)`` class proportions; xbar: ``(D,)``.
        scalings: ``(D, n_dir)`` projection onto the discriminant directions (columns beyond the
            between-class rank are zero).
        explained_variance_ratio: ``(n_components,)``.
        coef: ``(K, D)``, intercept: ``(K,)`` of the linear decision function.
        rank: ``()`` the between-class rank (number of non-zero scaling columns).
        n_components: ``min(K - 1, D)``.
    """

    classes: Any
    means: Any
    priors: Any
    xbar: Any
    scalings: Any
    explained_variance_ratio: Any
    coef: Any
    intercept: Any
    rank: Any
    n_components: int


@partial(jax.jit, static_argnames=("n_classes", "method"))
def _fit_kernel(X, yi, tol, n_classes, method):
    n, D = X.shape
    K = n_classes
    onehot = jax.nn.one_hot(yi, K, dtype=X.dtype)
    counts = onehot.sum(0)
    means = jnp.matmul(onehot.T, X, precision=_HI) / counts[:, None]
    priors = counts / n
    xbar = jnp.matmul(priors, means, precision=_HI)
    Xc = X - means[yi]
    std = jnp.std(Xc, axis=0)
    # A feature constant within every class has std 0 in exact arithmetic; XLA may round the class
    # means (division by reciprocal), so treat std at round-off level as 0 and zero the column.
    scale = jnp.max(jnp.abs(X), axis=0)
    const = std <= 16 * jnp.finfo(X.dtype).eps * scale
    Xc = jnp.where(const[None, :], 0.0, Xc)
    std = jnp.where(const, 1.0, std)
    Xs = jnp.sqrt(1.0 / n) * (Xc / std)
    if method == "svd":
        _, S, Vt = jnp.linalg.svd(Xs, full_matrices=False)
    else:  # eigendecomposition of the within scatter: squares the condition number
        lam, V = jnp.linalg.eigh(jnp.matmul(Xs.T, Xs, precision=_HI))
        S = jnp.sqrt(jnp.clip(lam[::-1], 0, None))
        Vt = V[:, ::-1].T
    keep = S > tol
    scalings = jnp.where(keep[None, :], (Vt / std).T / jnp.where(keep, S, 1.0)[None, :], 0.0)
    fac = 1.0 if K == 1 else 1.0 / (K - 1)
    Bm = (jnp.sqrt(n * priors * fac) * (means - xbar).T).T
    Bm = jnp.matmul(Bm, scalings, precision=_HI)
    _, Sb, Vbt = jnp.linalg.svd(Bm, full_matrices=False)
    n_comp = min(K - 1, D)
    evr = (Sb**2 / jnp.sum(Sb**2))[:n_comp]
    keep_b = Sb > tol * Sb[0]
    Vb = jnp.where(keep_b[None, :], Vbt.T, 0.0)
    scal = jnp.matmul(scalings, Vb, precision=_HI)
    coef = jnp.matmul(means - xbar, scal, precision=_HI)
    intercept = -0.5 * jnp.sum(coef**2, axis=1) + jnp.log(priors)
    coef_ = jnp.matmul(coef, scal.T, precision=_HI)
    intercept = intercept - jnp.matmul(xbar, coef_.T, precision=_HI)
    return means, priors, xbar, scal, evr, coef_, intercept, keep_b.sum()


def fit_lda(X, y, *, tol: float = 1e-4, method: str = "svd") -> LDA:
    """Fit an LDA with scikit-learn's SVD-solver algorithm (see the module docstring).

    Args:
        X: ``(N, D)`` features (rows are samples), e.g. a layer's activations on the dev split.
        y: ``(N,)`` integer class labels; at least 2 classes and ``N > K``.
        tol: rank threshold on the within-class singular values (and ``tol * S_b[0]`` between).
        method: ``"svd"`` (exact reference) or ``"scatter"`` (eigendecomposition of the ``D x D``
            within scatter; cheaper for ``N >> D`` but squares the condition number: use float64).

    Returns:
        :class:`LDA` (its ``scalings`` may have more columns than ``n_components``; the extra ones
        are zero or beyond ``n_components`` and ignored by :func:`lda_transform`).
    """
    if method not in ("svd", "scatter"):
        raise ValueError(f"`method` must be 'svd' or 'scatter'; got {method!r}.")
    X = as_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"`X` must be (N, D) with samples as rows; got shape {tuple(X.shape)}.")
    check_finite(X, "X")
    y = check_labels(y, X.shape[0], "y")
    classes, yi = np.unique(y, return_inverse=True)
    K = len(classes)
    if K < 2:
        raise ValueError(f"`y` has {K} class; LDA needs at least 2 classes.")
    if X.shape[0] <= K:
        raise ValueError(f"LDA needs more samples ({X.shape[0]}) than classes ({K}).")
    Xj = jnp.asarray(X, result_dtype(X))
    out = _fit_kernel(Xj, jnp.asarray(yi), float(tol), K, method)
    means, priors, xbar, scal, evr, coef, intercept, rank = out
    return LDA(
        classes=jnp.asarray(classes),
        means=means,
        priors=priors,
        xbar=xbar,
        scalings=scal,
        explained_variance_ratio=evr,
        coef=coef,
        intercept=intercept,
        rank=rank,
        n_components=min(K - 1, X.shape[1]),
    )


def _check_apply(lda, X, name="X"):
    if not isinstance(lda, LDA):
        raise TypeError(f"`lda` must be a fitted LDA from fit_lda; got {type(lda).__name__}.")
    X = as_array(X, name)
    D = lda.means.shape[1]
    if X.ndim != 2 or X.shape[1] != D:
        raise ValueError(
            f"`{name}` must be (N, {D}) like the fitting data; got shape {tuple(X.shape)}."
        )
    check_finite(X, name)
    return jnp.asarray(X, lda.means.dtype)


@jax.jit
def _transform(lda, X):
    return jnp.matmul(X - lda.xbar, lda.scalings, precision=_HI)[:, : lda.n_components]


@jax.jit
def _decision(lda, X):
    return jnp.matmul(X, lda.coef.T, precision=_HI) + lda.intercept


def lda_transform(lda: LDA, X) -> jax.Array:
    """Project onto the discriminant directions: ``(X - xbar) @ scalings[:, :n_components]``.

    Returns:
        ``(N, n_components)``; equal to scikit-learn's ``transform`` up to the sign of each column
        (columns beyond the between-class rank, which scikit-learn drops, are zero here).
    """
    return _transform(lda, _check_apply(lda, X))


def lda_predict(lda: LDA, X) -> jax.Array:
    """Class predictions ``classes[argmax_k (X coef^T + intercept)_k]``."""
    return lda.classes[jnp.argmax(_decision(lda, _check_apply(lda, X)), axis=1)]


def lda_accuracy(lda: LDA, X, y) -> float:
    """Fraction of rows of ``X`` whose prediction equals ``y``."""
    Xj = _check_apply(lda, X)
    y = check_labels(y, Xj.shape[0], "y")
    check_same_samples([Xj, y], ["X", "y"])
    return float(np.mean(np.asarray(lda_predict(lda, Xj)) == y))
