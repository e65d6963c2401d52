"""All-pairs similarity of many representations (layers x epochs), batched and chunked.

One pass centres every representation; then

* linear CKA in **Gram space** walks the upper-triangular pairs of row blocks of the N x N Gram
  matrices: for a block pair it forms every representation's ``(b, b)`` Gram block (one batched
  matmul), flattens them to ``(R, b^2)`` and adds one ``(R, b^2) @ (b^2, R)`` GEMM into the
  R x R matrix of HSICs (the stacked-Gram scheme of Nguyen et al. 2021, with memory ``R b^2``
  instead of ``R N^2``). Debiased CKA U-centres each block in place: for centred features the
  row sums of the zero-diagonal Gram are ``-||x_i||^2``, so no full Gram is ever needed;
* linear CKA in **feature space** evaluates ``||X_i^T X_j||_F^2`` for chunks of pairs
  (memory ``chunk * D^2``), cheaper when N is large compared with the widths;
* RBF CKA stores the R centred N x N Grams (memory ``R N^2``) and takes one GEMM;
* the CCA family takes each representation's thin SVD once and then vmaps the small
  ``K x K`` SVD over chunks of pairs.

Representations of different widths are zero-padded to the widest, which changes none of these
measures (zero features add nothing to linear Grams or distances, and have zero variance for
CCA); ``match_width="interpolate"`` instead interpolates narrower layers as the ASR study did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from geomjax._checks import as_array
from geomjax._types import result_dtype

from ._cca import _basis, _default_rtol, cca_method
from ._cka import _check_rbf_size, _rbf_sigmas
from ._kernels import HI, _gram_rbf, center, debiased_dot, mm
from ._sequence import interpolate_features
from ._validate import check_choice, prep_one, warn_if_nan

__all__ = ["SimilarityMatrix", "cka_matrix", "similarity_matrix"]

MEASURES = ("cka", "debiased_cka", "rbf_cka", "cca", "cca_sq", "svcca", "pwcca")


@dataclass
class SimilarityMatrix:
    """An all-pairs similarity matrix with names, convertible to tidy tables.

    Attributes:
        values: ``(R_x, R_y)`` float NumPy array; ``values[i, j]`` compares ``xs[i]`` with
            ``ys[j]`` (``ys = xs`` when not given).
        row_names, col_names: labels of the representations (keys of a dict input, or
            ``"0"``, ``"1"``, ...).
        measure: the named variant, e.g. ``"cka"``, ``"svcca"``.
        settings: the options it ran with.
    """

    values: np.ndarray
    row_names: list
    col_names: list
    measure: str
    settings: dict = field(default_factory=dict)

    def to_frame(self):
        """Tidy pandas DataFrame: one row per pair with columns ``x``, ``y``, ``measure``,
        ``value``."""
        import pandas as pd

        rows, cols = np.meshgrid(np.arange(len(self.row_names)), np.arange(len(self.col_names)),
                                 indexing="ij")
        return pd.DataFrame(
            {
                "x": [self.row_names[i] for i in rows.ravel()],
                "y": [self.col_names[j] for j in cols.ravel()],
                "measure": self.measure,
                "value": self.values.ravel(),
            }
        )

    def to_wide(self):
        """The matrix as a pandas DataFrame indexed by row names with one column per name."""
        import pandas as pd

        return pd.DataFrame(self.values, index=list(self.row_names), columns=list(self.col_names))

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def _as_list(xs, name):
    """Representations as (names, list of arrays). Accepts a dict, a sequence of (N, D) arrays
    or one (R, N, D) array."""
    if isinstance(xs, Mapping):
        names = list(xs.keys())
        arrs = [as_array(v, f"{name}[{k!r}]") for k, v in xs.items()]
    elif isinstance(xs, (list, tuple)):
        arrs = [as_array(v, f"{name}[{i}]") for i, v in enumerate(xs)]
        names = [str(i) for i in range(len(arrs))]
    else:
        a = as_array(xs, name)
        if a.ndim != 3:
            raise ValueError(
                f"`{name}` must be a list/dict of (N, D) arrays or one (R, N, D) array; got shape "
                f"{tuple(a.shape)}."
            )
        arrs = [a[i] for i in range(a.shape[0])]
        names = [str(i) for i in range(len(arrs))]
    if not arrs:
        raise ValueError(f"`{name}` holds no representations.")
    return names, arrs


def _prepare(xs, ys, min_samples):
    xn, xl = _as_list(xs, "xs")
    if ys is None:
        yn, yl = xn, []
    else:
        yn, yl = _as_list(ys, "ys")
    allr = xl + yl
    dt = result_dtype(*allr)
    names_all = [f"xs[{i}]" for i in range(len(xl))] + [f"ys[{i}]" for i in range(len(yl))]
    reps = [
        prep_one(a, nm, min_samples=min_samples, dtype=dt)
        for a, nm in zip(allr, names_all, strict=True)
    ]
    n = reps[0].shape[0]
    for nm, r in zip(names_all, reps, strict=True):
        if r.shape[0] != n:
            raise ValueError(
                f"sample counts differ: `{names_all[0]}` has {n} rows but `{nm}` has "
                f"{r.shape[0]}; every representation must hold the same samples in the same order."
            )
    return xn, yn, reps, len(xl), ys is None


def _stack_padded(reps):
    dmax = max(r.shape[1] for r in reps)
    return jnp.stack([jnp.pad(r, ((0, 0), (0, dmax - r.shape[1]))) for r in reps])


@jax.jit
def _center_normalise(z):
    def one(x):
        xc = center(x)
        return xc / jnp.linalg.norm(xc)

    return jax.vmap(one)(z)


@partial(jax.jit, static_argnames=("block", "debiased", "n"))
def _linear_gram_blocked(z, block: int, debiased: bool, n: int):
    """R x R matrix of <G_i, G_j> (biased: centred Grams; debiased: U-centred) by row blocks."""
    r, n_pad, _ = z.shape
    nb = n_pad // block
    pairs = [(p, q) for p in range(nb) for q in range(p, nb)]
    pp = jnp.asarray([p for p, _ in pairs], dtype=jnp.int32)
    qq = jnp.asarray([q for _, q in pairs], dtype=jnp.int32)
    ww = jnp.asarray([1.0 if p == q else 2.0 for p, q in pairs], dtype=z.dtype)
    rn = jnp.sum(z * z, axis=2)  # (R, n_pad) squared row norms = -(row sums of K~)
    tot = jnp.sum(rn, axis=1)
    ar = jnp.arange(block)

    def body(acc, pqw):
        p, q, w = pqw
        a = lax.dynamic_slice_in_dim(z, p * block, block, axis=1)
        b = lax.dynamic_slice_in_dim(z, q * block, block, axis=1)
        k = jnp.einsum("rnd,rmd->rnm", a, b, precision=HI)
        if debiased:
            ra = lax.dynamic_slice_in_dim(rn, p * block, block, axis=1)
            rb = lax.dynamic_slice_in_dim(rn, q * block, block, axis=1)
            k = (
                k
                + ra[:, :, None] / (n - 2)
                + rb[:, None, :] / (n - 2)
                - tot[:, None, None] / ((n - 1) * (n - 2))
            )
            gi = p * block + ar
            gj = q * block + ar
            ok = (gi[:, None] != gj[None, :]) & (gi[:, None] < n) & (gj[None, :] < n)
            k = jnp.where(ok[None], k, 0)
        f = k.reshape(r, -1)
        return acc + w * mm(f, f.T), None

    acc, _ = lax.scan(body, jnp.zeros((r, r), z.dtype), (pp, qq, ww))
    return acc


@partial(jax.jit, static_argnames=("chunk", "debiased", "n"))
def _linear_feature_pairs(z, ii, jj, chunk: int, debiased: bool, n: int):
    """``||X_i^T X_j||_F^2`` (debiased: the feature-space U-statistic) for the listed pairs."""
    rn = jnp.sum(z * z, axis=2)

    def one(ij):
        i, j = ij
        a = jnp.sum(mm(z[i].T, z[j]) ** 2)
        if debiased:
            a = debiased_dot(a, rn[i], rn[j], n)
        return a

    return lax.map(one, (ii, jj), batch_size=chunk)


def _pairs_needed(r_total, n_x, symmetric):
    if symmetric:
        return [(i, j) for i in range(n_x) for j in range(i, n_x)]
    pairs = [(i, i) for i in range(r_total)]
    pairs += [(i, j) for i in range(n_x) for j in range(n_x, r_total)]
    return pairs


def _normalise(m):
    d = np.sqrt(np.diag(m))
    with np.errstate(invalid="ignore", divide="ignore"):
        return m / d[:, None] / d[None, :]


def _linear_method(n, widths, n_pairs):
    r = len(widths)
    d = max(widths)
    gram = r * n * n * d / 2 + r * r * n * n / 2
    feature = n_pairs * n * d * d
    return "feature" if feature <= gram else "gram"


def _auto_block(n, r, max_block_elements, max_block):
    # Many smaller blocks skip more of the symmetric lower triangle ((nb + 1) / (2 nb) of the
    # full work); ~1000-row blocks keep every matmul large enough to run at full speed.
    b = int(math.sqrt(max_block_elements / max(r, 1)))
    b = max(min(b, n, max_block), 1)
    nb = math.ceil(n / b)
    return math.ceil(n / nb)  # equal blocks, least padding


def cka_matrix(
    xs,
    ys=None,
    *,
    kernel: str = "linear",
    debiased: bool = False,
    sigma=None,
    bandwidth_factor: float = 0.5,
    median_include_diagonal: bool = True,
    method: str = "auto",
    block_size: int | None = None,
    max_block_elements: int = 2**26,
    max_block: int = 1024,
    pair_chunk: int = 8,
) -> SimilarityMatrix:
    """CKA between all pairs of many representations, e.g. every layer x every epoch.

    ``values[i, j] = CKA(xs[i], ys[j])`` (``ys = xs`` by default, giving a symmetric matrix with
    unit diagonal that is positive semi-definite: it is the Gram matrix of the unit-norm
    centred Grams, also when debiased). Widths may differ; samples must match.

    Args:
        xs: list or dict of ``(N, D_i)`` arrays, or one ``(R, N, D)`` array.
        ys: optional second collection (same N); ``None`` compares ``xs`` with itself.
        kernel: ``"linear"`` or ``"rbf"``.
        debiased: unbiased HSIC estimator (needs N >= 4).
        sigma, bandwidth_factor, median_include_diagonal: RBF bandwidth per representation, as
            in :func:`geomjax.similarity.cka`.
        method: linear kernel: ``"auto"``, ``"gram"`` (blocked stacked Grams) or ``"feature"``
            (chunked pairwise cross-products).
        block_size: Gram row-block size (default: the largest with ``R * b^2`` at most
            ``max_block_elements`` and ``b <= max_block``).
        pair_chunk: pairs evaluated at once on the feature-space path (memory ``chunk * D^2``).

    Returns:
        :class:`SimilarityMatrix` (float values in the input dtype's precision).
    """
    check_choice(kernel, "kernel", ("linear", "rbf"))
    check_choice(method, "method", ("auto", "gram", "feature"))
    xn, yn, reps, n_x, symmetric = _prepare(xs, ys, 4 if debiased else 2)
    n = reps[0].shape[0]
    r_total = len(reps)
    settings = dict(kernel=kernel, debiased=bool(debiased))
    if kernel == "linear":
        z = _center_normalise(_stack_padded(reps))
        pairs = _pairs_needed(r_total, n_x, symmetric)
        m_used = method
        if method == "auto":
            m_used = _linear_method(n, [r.shape[1] for r in reps], len(pairs))
        settings["method"] = m_used
        if m_used == "gram":
            b = block_size or _auto_block(n, r_total, max_block_elements, max_block)
            n_pad = math.ceil(n / b) * b
            if n_pad != n:
                z = jnp.pad(z, ((0, 0), (0, n_pad - n), (0, 0)))
            full = np.asarray(_linear_gram_blocked(z, int(b), bool(debiased), n), np.float64)
            settings["block_size"] = int(b)
        else:
            ii = jnp.asarray([p[0] for p in pairs], jnp.int32)
            jj = jnp.asarray([p[1] for p in pairs], jnp.int32)
            vals = np.asarray(
                _linear_feature_pairs(z, ii, jj, int(pair_chunk), bool(debiased), n), np.float64
            )
            full = np.full((r_total, r_total), np.nan)
            for (i, j), v in zip(pairs, vals, strict=True):
                full[i, j] = full[j, i] = v
        cka_all = _normalise(full)
    else:
        _check_rbf_size(n)
        sx, _ = _rbf_sigmas(sigma)
        grams = []
        for rep in reps:
            k, _ = _gram_rbf(rep, sx, bandwidth_factor, bool(median_include_diagonal))
            grams.append(k)
        g = jnp.stack(grams)
        full = np.asarray(_rbf_inner(g, bool(debiased)), np.float64)
        cka_all = _normalise(full)
        settings.update(bandwidth_factor=bandwidth_factor, sigma=sigma)
    if symmetric:
        out = cka_all[:n_x, :n_x]
    else:
        out = cka_all[:n_x, n_x:]
    out = np.asarray(warn_if_nan(out, "CKA matrix"))
    measure = ("debiased_" if debiased else "") + ("cka" if kernel == "linear" else "rbf_cka")
    return SimilarityMatrix(out, xn, yn, measure, settings)


@partial(jax.jit, static_argnames=("debiased",))
def _rbf_inner(g, debiased: bool):
    from ._kernels import center_gram, u_center_gram

    cen = u_center_gram if debiased else center_gram
    f = jax.vmap(lambda k: cen(k).reshape(-1))(g)
    return mm(f, f.T)


@partial(jax.jit, static_argnames=("use_threshold", "method"))
def _bases(z, rtols, epsilon, threshold, use_threshold: bool, method: str):
    thr = threshold if use_threshold else None

    def one(x, rt):
        u, s, vt, f, rank, kept = _basis(x, epsilon, rt, thr, method)
        return u * f[None, :], f, f * s, vt, kept

    return jax.vmap(one)(z, rtols)


@partial(jax.jit, static_argnames=("chunk", "pw"))
def _pair_cca(uf, ff, fs, vt, kept, ii, jj, chunk: int, pw: bool):
    def one(ij):
        i, j = ij
        m = mm(uf[i].T, uf[j])
        w, rho, _ = jnp.linalg.svd(m, full_matrices=False)
        ncomp = jnp.minimum(kept[i], kept[j])
        valid = jnp.arange(rho.shape[0]) < ncomp
        rho = jnp.where(valid, jnp.clip(rho, 0, 1), 0)
        cnt = jnp.maximum(ncomp, 1)
        if pw:
            proj = mm(w.T * fs[i][None, :], vt[i])
            hn = jnp.sqrt(jnp.sum((w * ff[i][:, None]) ** 2, axis=0))
            alpha = jnp.sum(jnp.abs(proj), axis=1) / jnp.where(hn > 0, hn, 1)
            alpha = jnp.where(valid, alpha, 0)
            alpha = alpha / jnp.sum(alpha)
            return jnp.sum(alpha * rho), jnp.sum(rho * rho) / cnt
        return jnp.sum(rho) / cnt, jnp.sum(rho * rho) / cnt

    return lax.map(one, (ii, jj), batch_size=chunk)


def similarity_matrix(
    xs,
    ys=None,
    *,
    measure: str = "cka",
    epsilon: float = 0.0,
    threshold: float = 0.99,
    match_width: str = "pad",
    pair_chunk: int = 4,
    cca_factorization: str = "auto",
    **cka_kw,
) -> SimilarityMatrix:
    """All pairs of representations under a named measure.

    Args:
        xs, ys: as in :func:`cka_matrix`.
        measure: ``"cka"``, ``"debiased_cka"``, ``"rbf_cka"`` (see :func:`cka_matrix`),
            ``"cca"`` (mean rho), ``"cca_sq"`` (mean rho^2), ``"svcca"`` (mean rho after the
            ``threshold`` variance truncation) or ``"pwcca"`` (weights from the row
            representation, ``side="x"``; the matrix is not symmetric).
        epsilon: CCA ridge, as in :func:`geomjax.similarity.cca`.
        threshold: SVCCA variance fraction.
        match_width: ``"pad"`` (zero-pad to the widest: exact for every measure here) or
            ``"interpolate"`` (linearly interpolate narrower layers to the widest, the option
            the ASR CCA/CKA study used; it changes the values).
        pair_chunk: pairs per vmapped chunk (memory).
        cca_factorization: CCA-family factorisation, ``"auto"``, ``"svd"`` or ``"cov"`` (see
            :func:`geomjax.similarity.cca`).
        **cka_kw: passed to :func:`cka_matrix` for the CKA measures.

    Returns:
        :class:`SimilarityMatrix`.
    """
    check_choice(measure, "measure", MEASURES)
    check_choice(match_width, "match_width", ("pad", "interpolate"))
    if match_width == "interpolate":
        xn, xl = _as_list(xs, "xs")
        lists = [xl] + ([] if ys is None else [_as_list(ys, "ys")[1]])
        width = max(a.shape[1] for lst in lists for a in lst if a.ndim == 2)
        xs = dict(zip(xn, [interpolate_features(a, width) for a in xl], strict=True))
        if ys is not None:
            yn, yl = _as_list(ys, "ys")
            ys = dict(zip(yn, [interpolate_features(a, width) for a in yl], strict=True))
    if measure in ("cka", "debiased_cka", "rbf_cka"):
        res = cka_matrix(
            xs,
            ys,
            kernel="rbf" if measure == "rbf_cka" else "linear",
            debiased=measure == "debiased_cka",
            **cka_kw,
        )
        res.settings["match_width"] = match_width
        return res
    if cka_kw:
        raise TypeError(f"unexpected options for measure={measure!r}: {sorted(cka_kw)}.")
    res = cca_family_matrix(xs, ys, measure=measure, epsilon=epsilon, threshold=threshold,
                            pair_chunk=pair_chunk, cca_factorization=cca_factorization)
    res.settings["match_width"] = match_width
    return res


def _local_bases(z, rtols, epsilon, threshold, use_threshold, method):
    return _bases(z, rtols, epsilon, threshold, use_threshold, method)


def _local_pairs(ii, jj, uf, ff, fs, vt, kept, chunk, pw):
    return _pair_cca(uf, ff, fs, vt, kept, ii, jj, chunk, pw)


def cca_family_matrix(xs, ys=None, *, measure, epsilon=0.0, threshold=0.99, pair_chunk=4,
                      cca_factorization="auto", bases_fn=_local_bases, pairs_fn=_local_pairs,
                      extra_settings=None) -> SimilarityMatrix:
    """CCA-family matrix (``"cca"``, ``"cca_sq"``, ``"svcca"``, ``"pwcca"``) of zero-padded
    representations: one factorisation per representation (``bases_fn``), then the canonical
    correlations of every needed pair (``pairs_fn``). :func:`similarity_matrix` runs both on
    the default device; :func:`geomjax.distributed.similarity_matrix_sharded` passes sharded
    ones, so both build and fill the matrix the same way."""
    check_choice(measure, "measure", ("cca", "cca_sq", "svcca", "pwcca"))
    if not isinstance(pair_chunk, (int, np.integer)) or pair_chunk < 1:
        raise ValueError(f"`pair_chunk` must be a positive int; got {pair_chunk!r}.")
    xn, yn, reps, n_x, symmetric = _prepare(xs, ys, 2)
    n = reps[0].shape[0]
    dmax = max(r.shape[1] for r in reps)
    check_choice(cca_factorization, "cca_factorization", ("auto", "svd", "cov"))
    cm = cca_factorization
    if cm == "auto":
        cm = cca_method(n, dmax, dmax, reps[0].dtype)
    rtols = jnp.asarray(
        [_default_rtol(n, r.shape[1], r.dtype, cm) for r in reps], dtype=reps[0].dtype
    )
    use_thr = measure == "svcca"
    thr = float(threshold)
    if use_thr and not 0 < thr <= 1:
        raise ValueError(f"`threshold` must be in (0, 1]; got {threshold!r}.")
    if not float(epsilon) >= 0:
        raise ValueError(f"`epsilon` (ridge) must be >= 0; got {epsilon!r}.")
    uf, ff, fs, vt, kept = bases_fn(_stack_padded(reps), rtols, float(epsilon), thr, use_thr, cm)
    if symmetric and measure != "pwcca":
        pairs = [(i, j) for i in range(n_x) for j in range(i, n_x)]
    elif symmetric:
        pairs = [(i, j) for i in range(n_x) for j in range(n_x)]
    else:
        pairs = [(i, j) for i in range(n_x) for j in range(n_x, len(reps))]
    ii = jnp.asarray([p[0] for p in pairs], jnp.int32)
    jj = jnp.asarray([p[1] for p in pairs], jnp.int32)
    mean, mean_sq = pairs_fn(ii, jj, uf, ff, fs, vt, kept, int(pair_chunk), measure == "pwcca")
    vals = np.asarray(mean_sq if measure == "cca_sq" else mean, np.float64)
    out = np.full((n_x, len(yn)), np.nan)
    off = 0 if symmetric else n_x
    for (i, j), v in zip(pairs, vals, strict=True):
        out[i, j - off] = v
        if symmetric and measure != "pwcca":
            out[j, i] = v
    settings = dict(epsilon=float(epsilon), match_width="pad", cca_method=cm)
    if use_thr:
        settings["threshold"] = thr
    settings.update(extra_settings or {})
    return SimilarityMatrix(out, xn, yn, measure, settings)
