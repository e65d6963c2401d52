"""Streaming SVD spectra of SLTs over a data set, per node, per input dimension and per group.

For node ``m`` of layer ``l`` the SLT matrix over the data is ``SLT^l_m = [A^l(x_i)[m, :]]_i`` of
shape ``(N, F)``; its singular values are ``sigma_j = sqrt(lambda_j(G^l_m))`` with the ``F x F``
Gram matrix ``G^l_m = sum_i A^l(x_i)[m, :]^T A^l(x_i)[m, :]`` (uncentred, like the paper's
``M = U Sigma V*``). The Gram matrices are accumulated batch by batch, so memory is
``O(groups * nodes * F^2)`` instead of ``O(N * nodes * F)``, and group-restricted spectra (per
class, COR/INC) come from the same pass through 0/1 sample weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._checks import as_array, check_finite, check_labels
from .._types import pytree_dataclass, result_dtype
from ._auc import _auc_kernel
from ._slt import _layer_indices, _pick, _relu_slt_hbf, mlp_layers

__all__ = [
    "SLTSpectra",
    "slt_spectra",
    "gram_spectrum",
    "default_rcond",
    "SLTClassSpectra",
    "slt_class_spectra",
]

_HI = jax.lax.Precision.HIGHEST


def default_rcond(dtype) -> float:
    """The Gram noise floor used by default: ``4 sqrt(eps)`` of ``dtype`` (1.4e-3 in float32,
    6e-8 in float64)."""
    return float(4 * np.sqrt(np.finfo(np.dtype(dtype)).eps))


def gram_spectrum(gram, rcond: float | None = None) -> np.ndarray:
    """Singular values from Gram matrices: ``sigma = sqrt(max(eigvalsh(G), 0))``, descending.

    Forming ``G = M^T M`` squares the condition number: rounding in ``G`` is about
    ``eps * sigma_1^2``, so singular values below about ``sqrt(eps) * sigma_1`` are noise (3e-4 in
    float32, 1.5e-8 in float64). Values below ``rcond * sigma_1`` are therefore set to zero; left
    in, the noise floor of a rank-deficient matrix would add up to ``n_sigma * sqrt(eps)`` to its
    AUC.

    Args:
        gram: ``(..., F, F)`` symmetric positive semi-definite matrices.
        rcond: relative cut-off; default :func:`default_rcond` of the Gram dtype; 0 keeps all.

    Returns:
        ``(..., F)`` singular values in descending order.
    """
    g = jnp.asarray(gram)
    if g.ndim < 2 or g.shape[-1] != g.shape[-2]:
        raise ValueError(f"`gram` must be (..., F, F) square matrices; got shape {tuple(g.shape)}.")
    return _gram_spectrum(g, default_rcond(g.dtype) if rcond is None else float(rcond))


@jax.jit
def _eig_device(g):
    return jnp.linalg.eigvalsh(g)


def _host_eigvalsh(g: np.ndarray) -> np.ndarray:
    """Batched eigenvalues on the host: LAPACK ``syevd`` without eigenvectors, in float64, one BLAS
    thread per call and the batch split over CPU threads (multi-threaded BLAS on many small
    matrices oversubscribes the cores and is an order of magnitude slower)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    shape = g.shape
    flat = g.reshape(-1, shape[-2], shape[-1])
    n_workers = max(1, min(os.cpu_count() or 1, flat.shape[0]))
    chunks = np.array_split(np.arange(flat.shape[0]), n_workers)
    with threadpool_limits(1):
        if n_workers == 1:
            lam = np.linalg.eigvalsh(flat.astype(np.float64))
        else:
            with ThreadPoolExecutor(n_workers) as ex:
                parts = ex.map(lambda c: np.linalg.eigvalsh(flat[c].astype(np.float64)), chunks)
                lam = np.concatenate(list(parts))
    return lam.reshape(shape[:-1])


def _gram_spectrum(g, rcond):
    """Singular values from Gram matrices, descending, with the ``rcond`` noise floor zeroed.

    On CPU the eigenvalues come from LAPACK without eigenvectors (:func:`_host_eigvalsh`), several
    times faster than ``jnp.linalg.eigvalsh``, which also forms the eigenvectors; on accelerators
    the batched device solver is used."""
    dtype = np.dtype(g.dtype)
    if isinstance(g, np.ndarray) or jax.default_backend() == "cpu":
        lam = _host_eigvalsh(np.asarray(g))
    else:
        lam = np.asarray(_eig_device(g))
    s = np.sqrt(np.clip(lam, 0, None))[..., ::-1]
    return np.where(s >= rcond * s[..., :1], s, 0).astype(dtype)


@pytree_dataclass(meta=("layer_names", "group_names", "abscissa"))
class SLTSpectra:
    """Per-node (and optionally per-input) SLT spectra of several layers and sample groups.

    Attributes:
        sigma: list over layers of ``(G, H_l, F)`` singular values of each node's ``N_g x F`` SLT
            matrix, descending (``F`` values; those past ``min(N_g, F)`` are zero up to round-off).
        auc: list over layers of ``(G, H_l)`` AUCs (eq. 5) at ``n_sigma[g]``; NaN for dead nodes
            (``sigma_1 = 0``) and groups with fewer than 2 samples.
        n_sigma: ``(G,)`` the number of singular values each group's AUCs use.
        counts: ``(G,)`` samples per group.
        sigma_inputs: ``None`` or a list over layers of ``(G, F, H_l)`` spectra of the per-input
            slices ``A[:, :, f]`` (``N_g x H_l``).
        auc_inputs: ``None`` or a list of ``(G, F)`` AUCs of those.
        gram: ``None`` or the list of ``(G, H_l, F, F)`` Gram matrices (``keep_gram=True``).
        layer_names, group_names: labels; abscissa: the eq. 5 reading used.
    """

    sigma: list
    auc: list
    n_sigma: Any
    counts: Any
    sigma_inputs: Any
    auc_inputs: Any
    gram: Any
    layer_names: tuple
    group_names: tuple
    abscissa: str

    def auc_at(self, n_sigma: int) -> list:
        """Per-node AUCs of every layer recomputed at one common ``n_sigma`` (for comparisons
        between groups of different size)."""
        return [
            np.asarray(_auc_kernel(jnp.asarray(s), int(n_sigma), self.abscissa)) for s in self.sigma
        ]

    def mean_spectrum(self, layer: int = 0, group: int = 0) -> np.ndarray:
        """Normalised spectra ``sigma / sigma_1`` averaged over the live nodes of a layer/group."""
        s = np.asarray(self.sigma[layer][group])
        s1 = s[:, :1]
        live = s1[:, 0] > 0
        return (s[live] / s1[live]).mean(axis=0) if live.any() else np.full(s.shape[1], np.nan)

    def table(self) -> pd.DataFrame:
        """Tidy table, one row per (layer, group, node): AUC, sigma_1, dead flag, n_sigma."""
        rows = []
        for li, name in enumerate(self.layer_names):
            auc = np.asarray(self.auc[li])
            s1 = np.asarray(self.sigma[li])[..., 0]
            for gi, g in enumerate(self.group_names):
                n = auc.shape[1]
                rows.append(
                    pd.DataFrame(
                        {
                            "layer": name,
                            "group": g,
                            "node": np.arange(n),
                            "auc": auc[gi],
                            "sigma_1": s1[gi],
                            "dead": s1[gi] <= 0,
                            "n_sigma": int(np.asarray(self.n_sigma)[gi]),
                            "n_samples": int(np.asarray(self.counts)[gi]),
                        }
                    )
                )
        return pd.concat(rows, ignore_index=True)

    def summary(self) -> pd.DataFrame:
        """One row per (layer, group): mean and std of the node AUCs over live nodes, dead count."""
        t = self.table()
        live = t[~t["dead"]]
        g = live.groupby(["layer", "group"], sort=False)["auc"]
        out = pd.DataFrame({"mean_auc": g.mean(), "std_auc": g.std(), "n_live": g.size()})
        dead = t.groupby(["layer", "group"], sort=False)["dead"].sum().rename("n_dead")
        meta = t.groupby(["layer", "group"], sort=False)[["n_sigma", "n_samples"]].first()
        return out.join(dead, how="right").join(meta).reset_index()


# ----------------------------------------------------------------------------------------------
# group handling
# ----------------------------------------------------------------------------------------------


def _group_weights(groups, n: int, group_names=None):
    """Return ((n, G) 0/1 float64 weights, names)."""
    if groups is None:
        return np.ones((n, 1)), ("all",)
    if isinstance(groups, Mapping):
        names = tuple(str(k) for k in groups)
        if not names:
            raise ValueError("`groups` is an empty mapping; give at least one boolean mask.")
        cols = []
        for k, v in groups.items():
            v = np.asarray(v)
            if v.shape != (n,) or v.dtype != bool:
                raise ValueError(
                    f"`groups[{k!r}]` must be a boolean mask of shape ({n},); got dtype {v.dtype} "
                    f"and shape {v.shape}."
                )
            cols.append(v)
        return np.stack(cols, 1).astype(np.float64), names
    g = np.asarray(groups)
    if g.dtype == bool and g.ndim == 1:
        if g.shape[0] != n:
            raise ValueError(f"`groups` has {g.shape[0]} entries but there are {n} samples.")
        return np.stack([g, ~g], 1).astype(np.float64), ("true", "false")
    if g.ndim == 2 and g.dtype == bool:
        if g.shape[0] != n:
            raise ValueError(f"`groups` has {g.shape[0]} rows but there are {n} samples.")
        names = group_names or tuple(str(i) for i in range(g.shape[1]))
        return g.astype(np.float64), tuple(names)
    n_groups = len(group_names) if group_names is not None else None
    g = check_labels(g, n, "groups", n_groups)
    n_groups = n_groups or (int(g.max()) + 1 if g.size else 1)
    names = (
        tuple(group_names) if group_names is not None else tuple(str(i) for i in range(n_groups))
    )
    w = np.zeros((n, n_groups))
    w[np.arange(n), g] = 1.0
    return w, names


# ----------------------------------------------------------------------------------------------
# Jacobian producers in the (H, B, F) layout
# ----------------------------------------------------------------------------------------------


class _Producer:
    """Hashable maker of SLT batches in the (H, B, F) layout (a static jit argument, so repeated
    calls with the same network structure reuse the compiled program)."""

    def __init__(self, fn, selectors):
        self.fn = fn  # None: ReLU MLP masked product; selectors are then layer indices
        self.selectors = tuple(selectors)

    def _key(self):
        return (self.fn, self.selectors)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Producer) and self._key() == other._key()

    def __call__(self, params, x, sample_mask=None):
        if self.fn is None:
            As, _ = _relu_slt_hbf(params, x, False, sample_mask)
            return [As[i] for i in self.selectors]

        def f_all(xi):
            out = self.fn(params, xi)
            return tuple(_pick(out, s) for s in self.selectors)

        jac = jax.vmap(jax.jacfwd(f_all))(x)  # tuple of (B, *out, F)
        return [jnp.transpose(j.reshape(j.shape[0], -1, x.shape[1]), (1, 0, 2)) for j in jac]


def _relu_producer(layers_idx):
    return _Producer(None, layers_idx)


def _fn_producer(fn, selectors):
    return _Producer(fn, selectors)


@partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _gram_step(produce, inputs, grams, grams_in, params, x, w):
    """One batch: G[g, m] += sum_b w[b, g] A[m, b]^T A[m, b]  (and the per-input analogue).

    Weights are 0/1, so with one group and the ReLU product they are folded into the unit masks
    (w^2 = w) and no weighted copy of A is made."""
    n_groups = grams[0].shape[0]
    fold = produce.fn is None and n_groups == 1
    As = produce(params, x, w[:, 0]) if fold else produce(params, x)
    dt = grams[0].dtype
    new, new_in = [], []
    for li, A in enumerate(As):
        A = A.astype(dt)
        G = grams[li]
        for g in range(n_groups):
            Aw = A if fold else A * w[:, g].astype(dt)[None, :, None]
            G = G.at[g].add(jnp.einsum("hbf,hbk->hfk", Aw, A, precision=_HI))
        new.append(G)
        if inputs:
            Gi = grams_in[li]
            for g in range(n_groups):
                Aw = A if fold else A * w[:, g].astype(dt)[None, :, None]
                Gi = Gi.at[g].add(jnp.einsum("hbf,kbf->fhk", Aw, A, precision=_HI))
            new_in.append(Gi)
    return tuple(new), tuple(new_in)


def _batches(x, groups, batch_size, group_names):
    """Yield (x_b, w_b) host batches from an array or an iterable."""
    if isinstance(x, (np.ndarray, jax.Array)) or hasattr(x, "__array__"):
        xa = as_array(x, "x")
        if xa.ndim != 2:
            raise ValueError(
                f"`x` must be (N, F) with samples as rows; got shape {tuple(xa.shape)}."
            )
        if xa.shape[0] == 0:
            raise ValueError("`x` has no samples (N=0).")
        check_finite(xa, "x")
        w, names = _group_weights(groups, xa.shape[0], group_names)

        def gen():
            for s in range(0, xa.shape[0], batch_size):
                yield xa[s : s + batch_size], w[s : s + batch_size]

        return gen(), names, xa.dtype
    if not isinstance(x, Iterable):
        raise TypeError(
            f"`x` must be an (N, F) array or an iterable of batches; got {type(x).__name__}."
        )
    if groups is not None:
        raise ValueError(
            "with an iterable `x`, give each batch's groups in the batch itself: yield "
            "(x_b, labels_b) or (x_b, masks_b) and pass `group_names`."
        )

    it = iter(x)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("`x` is an empty iterable; it must yield at least one batch.") from None

    def split(item):
        if isinstance(item, tuple) and len(item) == 2:
            xb, gb = item
            xb = as_array(xb, "x batch")
            if group_names is None:
                raise ValueError("batches carry groups: pass `group_names` to fix the group count.")
            wb, _ = _group_weights(gb, xb.shape[0], group_names)
            return xb, wb
        xb = as_array(item, "x batch")
        return xb, np.ones((xb.shape[0], 1))

    xb0, wb0 = split(first)
    names = tuple(group_names) if isinstance(first, tuple) else ("all",)
    dt = xb0.dtype

    def gen():
        yield xb0, wb0
        for item in it:
            xb, wb = split(item)
            if xb.ndim != 2 or xb.shape[1] != xb0.shape[1]:
                raise ValueError(
                    f"every batch of `x` must be (B, {xb0.shape[1]}); got shape {tuple(xb.shape)}."
                )
            if xb.shape[0] > batch_size:
                raise ValueError(
                    f"a batch of `x` has {xb.shape[0]} rows, more than batch_size={batch_size}."
                )
            check_finite(xb, "x batch")
            yield xb, wb

    return gen(), names, dt



def _producer_setup(params, fn, layers, dt):
    """What the spectra accumulate and how: ``(produce, params, layer_names, widths, F)``.

    For a ReLU MLP (``fn is None``) the widths and the input size come from the weights; for a
    user ``fn`` they are ``None`` (found from the first batch)."""
    if fn is None:
        lay = mlp_layers(params)
        n_lay = len(lay)
        idx = _layer_indices(lay, layers, n_lay)
        widths = [lay[i][0].shape[1] for i in idx]
        F = lay[0][0].shape[0]
        lnames = tuple("output" if i == n_lay - 1 else f"hidden_{i + 1}" for i in idx)
        params = [(k.astype(dt), b.astype(dt)) for k, b in lay]
        return _relu_producer(idx), params, lnames, widths, F
    if not callable(fn):
        raise TypeError(f"`fn` must be callable fn(params, x_i); got {type(fn).__name__}.")
    sels = (None,) if layers is None else tuple(layers)
    lnames = tuple("output" if s is None else str(s) for s in sels)
    return _fn_producer(fn, sels), params, lnames, None, None


def slt_spectra(
    params: Any,
    x,
    *,
    fn: Callable | None = None,
    layers=None,
    groups=None,
    group_names: Sequence[str] | None = None,
    batch_size: int = 1024,
    n_sigma: int | None = None,
    abscissa: str = "index",
    inputs: bool = False,
    accum_dtype=None,
    rcond: float | None = None,
    keep_gram: bool = False,
    progress: bool = False,
) -> SLTSpectra:
    """SVD spectra and AUCs of every node's SLT over a data set, streamed batch by batch.

    For each requested layer and group ``g`` the Gram matrices
    ``G[g, m] = sum_{i in g} A(x_i)[m, :]^T A(x_i)[m, :]`` (``F x F`` per node) are accumulated over
    batches of ``batch_size`` samples; the singular values of node ``m``'s ``N_g x F`` SLT matrix
    are ``sqrt(eigvalsh(G[g, m]))`` (paper Fig. 7A, Sigma_NODES). With ``inputs=True`` the per-input
    slices ``A[:, :, f]`` (``N_g x H``) are streamed the same way (Sigma_INPUTS, ``F x H x H`` per
    group). AUCs follow eq. 5 (:func:`spectrum_auc`) at ``n_sigma`` values.

    Args:
        params: network parameters. Without ``fn``, a ReLU MLP (see :func:`mlp_layers`) and the
            exact masked-weight product is used.
        x: ``(N, F)`` inputs, or an iterable of ``(B, F)`` batches (``B <= batch_size``), each
            optionally paired with its groups: ``(x_b, labels_b)`` with ``group_names`` given.
        fn: optional ``fn(params, x_i)`` for one sample; Jacobians then come from ``vmap(jacfwd)``
            of all requested layers at once (any differentiable network, eq. 1).
        layers: without ``fn``: indices into ``[hidden_1, ..., hidden_L, output]`` (default: all);
            with ``fn``: a list of layer selectors (see :func:`select_layer`; default: the output).
        groups: ``None`` (one group ``"all"``), a mapping ``name -> (N,) bool mask`` (groups may
            overlap, e.g. ALL/COR/INC), a ``(N,)`` bool array (groups ``"true"``/``"false"``),
            ``(N,)`` integer labels (one group per label, e.g. classes) or a ``(N, G)`` bool matrix.
        group_names: names for integer-label or matrix groups (fixes the group count).
        batch_size: samples per streamed batch (the last one is zero-padded with weight 0, so
            only one program is compiled).
        n_sigma: the number of singular values entering the AUC; default ``min(N_g, F)`` per group.
        abscissa: eq. 5 reading, ``"index"`` (default) or ``"unit"``.
        inputs: also stream per-input spectra.
        accum_dtype: Gram accumulation dtype (default: the input dtype; pass ``jnp.float64`` with
            x64 enabled for spectra accurate below ``sqrt(eps_32) * sigma_1``).
        rcond: singular values below ``rcond * sigma_1`` (the Gram's round-off floor) are set to
            zero; default ``4 sqrt(eps)`` of the accumulation dtype (see :func:`gram_spectrum`).
        keep_gram: keep the Gram matrices in the result.
        progress: show a progress bar.

    Returns:
        :class:`SLTSpectra`.

    Raises:
        ValueError/TypeError: on bad shapes, NaN/inf inputs, bad groups or layer indices.
    """
    if abscissa not in ("index", "unit"):
        raise ValueError(f"`abscissa` must be 'index' or 'unit'; got {abscissa!r}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be positive; got {batch_size}.")
    gen, names, in_dtype = _batches(x, groups, batch_size, group_names)
    dt = result_dtype(np.zeros((), in_dtype))
    acc = jnp.dtype(accum_dtype) if accum_dtype is not None else dt

    produce, params, lnames, widths, F = _producer_setup(params, fn, layers, dt)

    G = len(names)
    grams = grams_in = None
    counts = np.zeros(G)
    it = gen
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(gen, desc="SLT spectra", unit="batch")
    for xb, wb in it:
        xb = np.asarray(xb)
        if F is not None and xb.shape[1] != F:
            raise ValueError(f"`x` has {xb.shape[1]} features but the network expects F={F}.")
        nb = xb.shape[0]
        counts += wb.sum(0)
        if nb < batch_size:  # pad so every batch has the same shape (one compilation)
            xb = np.concatenate([xb, np.zeros((batch_size - nb, xb.shape[1]), xb.dtype)])
            wb = np.concatenate([wb, np.zeros((batch_size - nb, G))])
        xj = jnp.asarray(xb, dt)
        wj = jnp.asarray(wb, dt)
        if grams is None:
            if widths is None:
                shapes = jax.eval_shape(lambda p, xx: produce(p, xx), params, xj)
                widths = [s.shape[0] for s in shapes]
                F = xb.shape[1]
            grams = tuple(jnp.zeros((G, h, F, F), acc) for h in widths)
            grams_in = tuple(jnp.zeros((G, F, h, h), acc) for h in widths) if inputs else ()
        grams, grams_in = _gram_step(produce, bool(inputs), grams, grams_in, params, xj, wj)

    counts = counts.astype(np.int64)
    if n_sigma is None:
        ns = np.minimum(counts, F)
    else:
        if not 2 <= int(n_sigma) <= F:
            raise ValueError(f"`n_sigma` must be between 2 and F={F}; got {n_sigma}.")
        # spectra past min(N_g, F) are zero up to round-off: a fixed n_sigma suits any N_g
        ns = np.full(G, int(n_sigma))

    rc = default_rcond(acc) if rcond is None else float(rcond)

    def spectra_and_auc(gram_list, length):
        sig, aucs = [], []
        for Gm in gram_list:
            s = _gram_spectrum(Gm, rc)
            a = []
            for g in range(G):
                n_g = int(min(ns[g], length))
                if n_g < 2:
                    a.append(jnp.full(s.shape[1], jnp.nan, s.dtype))
                else:
                    a.append(_auc_kernel(s[g], n_g, abscissa))
            sig.append(np.asarray(s))
            aucs.append(np.asarray(jnp.stack(a)))
        return sig, aucs

    sigma, auc = spectra_and_auc(grams, F)
    sig_in = auc_in = None
    if inputs:
        sig_in, auc_in = spectra_and_auc(grams_in, max(widths))
    return SLTSpectra(
        sigma=sigma,
        auc=auc,
        n_sigma=ns,
        counts=counts,
        sigma_inputs=sig_in,
        auc_inputs=auc_in,
        gram=[np.asarray(g) for g in grams] if keep_gram else None,
        layer_names=lnames,
        group_names=tuple(names),
        abscissa=abscissa,
    )


# ----------------------------------------------------------------------------------------------
# per-class, all-node spectra (sample-side Gram)
# ----------------------------------------------------------------------------------------------


@pytree_dataclass(meta=("layer_name", "abscissa"))
class SLTClassSpectra:
    """Per-class spectra of the all-node SLT matrix ``A[y = k]`` reshaped to ``N_k x (H F)``.

    Attributes:
        classes: ``(C,)`` class labels.
        counts: ``(C,)`` samples used per class (after the ``max_per_class`` cap).
        sigma: ``(C, n_max)`` singular values (zero-padded past ``N_k``).
        auc: ``(C,)`` AUCs at ``n_sigma``; mean_auc: their mean over classes with an AUC.
        n_sigma: the common number of singular values used.
        layer_name, abscissa: labels.
    """

    classes: Any
    counts: Any
    sigma: Any
    auc: Any
    mean_auc: Any
    n_sigma: int
    layer_name: str
    abscissa: str

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "layer": self.layer_name,
                "class": np.asarray(self.classes),
                "n_samples": np.asarray(self.counts),
                "auc": np.asarray(self.auc),
                "n_sigma": self.n_sigma,
            }
        )


@partial(jax.jit, static_argnums=(0,))
def _sample_gram(produce, params, x):
    A = produce(params, x)[0]  # (H, B, F)
    return jnp.einsum("hbf,hcf->bc", A, A, precision=_HI)


@partial(jax.jit, static_argnums=(0,))
def _sample_gram_cross(produce, params, xa, xb):
    A = produce(params, xa)[0]
    B = produce(params, xb)[0]
    return jnp.einsum("hbf,hcf->bc", A, B, precision=_HI)


def slt_class_spectra(
    key,
    params: Any,
    x,
    y,
    *,
    layer=-1,
    fn: Callable | None = None,
    max_per_class: int | None = 500,
    n_sigma: int | None = None,
    abscissa: str = "index",
    block_size: int = 256,
    rcond: float | None = None,
) -> SLTClassSpectra:
    """Per-class spectra of all-node SLTs of one layer (paper Fig. 7B) through sample-side Grams.

    For class ``k`` the matrix ``A^l[y = k]`` reshaped to ``N_k x (H_l F)`` is too wide for an SVD
    per class, so its singular values come from the ``N_k x N_k`` Gram matrix
    ``K_k[i, j] = <A(x_i), A(x_j)>_F`` (Frobenius inner products), built blockwise:
    ``sigma = sqrt(eigvalsh(K_k))``. Each class is capped at ``max_per_class`` samples drawn without
    replacement with ``key`` (the paper does not say how class size is handled).

    Args:
        key: ``jax.random.key`` for the per-class subsampling (ignored when no class is capped).
        params, fn, layer: as in :func:`slt_spectra` (one layer; default the output).
        x: ``(N, F)`` inputs; y: ``(N,)`` integer class labels.
        max_per_class: cap on samples per class (``None``: no cap).
        n_sigma: values entering the AUC; default the smallest ``min(N_k, H F)`` over classes, so
            every class is compared at the same length.
        abscissa: eq. 5 reading.
        block_size: samples per Jacobian block.
        rcond: relative noise floor of the Gram spectra (see :func:`gram_spectrum`).

    Returns:
        :class:`SLTClassSpectra`.
    """
    xa = as_array(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"`x` must be (N, F) with samples as rows; got shape {tuple(xa.shape)}.")
    check_finite(xa, "x")
    y = check_labels(y, xa.shape[0], "y")
    if abscissa not in ("index", "unit"):
        raise ValueError(f"`abscissa` must be 'index' or 'unit'; got {abscissa!r}.")
    dt = result_dtype(xa)
    if fn is None:
        lay = mlp_layers(params)
        n_lay = len(lay)
        (li,) = _layer_indices(lay, layer, n_lay)
        produce = _relu_producer((li,))
        params = [(k.astype(dt), b.astype(dt)) for k, b in lay]
        lname = "output" if li == n_lay - 1 else f"hidden_{li + 1}"
    else:
        produce = _fn_producer(fn, (layer,))
        lname = str(layer)
    classes = np.unique(y)
    keys = jax.random.split(key, len(classes)) if key is not None else [None] * len(classes)
    grams = []
    counts = []
    for k, kk in zip(classes, keys, strict=False):
        idx = np.flatnonzero(y == k)
        if max_per_class is not None and idx.size > max_per_class:
            if kk is None:
                raise ValueError("`key` is None but a class exceeds max_per_class; pass a key.")
            perm = np.asarray(jax.random.permutation(kk, idx.size))[:max_per_class]
            idx = np.sort(idx[perm])
        xs = jnp.asarray(xa[idx], dt)
        n = idx.size
        bs = min(block_size, n)
        pad = (-n) % bs
        xs = jnp.concatenate([xs, jnp.zeros((pad, xs.shape[1]), dt)]) if pad else xs
        blocks = [xs[s : s + bs] for s in range(0, n + pad, bs)]
        K = np.zeros((n + pad, n + pad))
        for a, xa_b in enumerate(blocks):
            for b in range(a, len(blocks)):
                Kab = np.asarray(
                    _sample_gram(produce, params, xa_b)
                    if a == b
                    else _sample_gram_cross(produce, params, xa_b, blocks[b])
                )
                K[a * bs : (a + 1) * bs, b * bs : (b + 1) * bs] = Kab
                K[b * bs : (b + 1) * bs, a * bs : (a + 1) * bs] = Kab.T
        grams.append(K[:n, :n])
        counts.append(n)
    counts = np.asarray(counts)
    shape = jax.eval_shape(produce, params, jnp.zeros((1, xa.shape[1]), dt))[0].shape
    width = int(shape[0] * shape[2])  # H * F
    n_max = int(counts.max())
    sig = np.zeros((len(classes), n_max))
    for i, K in enumerate(grams):
        rc = default_rcond(dt) if rcond is None else float(rcond)
        s = _gram_spectrum(np.asarray(K, dtype=dt), rc)
        sig[i, : s.size] = s
    ns = int(min(np.minimum(counts, width).min(), n_max)) if n_sigma is None else int(n_sigma)
    if ns < 2:
        raise ValueError(
            f"the smallest class has {counts.min()} sample(s); per-class spectra need n_sigma >= 2."
        )
    if ns > n_max:
        raise ValueError(f"`n_sigma`={ns} exceeds the largest class size {n_max}.")
    auc = np.asarray(_auc_kernel(jnp.asarray(sig, dt), ns, abscissa))
    return SLTClassSpectra(
        classes=classes,
        counts=counts,
        sigma=sig,
        auc=auc,
        mean_auc=float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"),
        n_sigma=ns,
        layer_name=lname,
        abscissa=abscissa,
    )
