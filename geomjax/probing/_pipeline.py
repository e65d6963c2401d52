"""The papers' neuron-analysis pipeline in a few compiled calls, plus tidy result tables.

Chowdhury, Durrani & Ali (CSL 2023), Secs. 3-6, on utterance-level features:

1. probe on ALL neurons and, in the same vmapped call, on control labels (selectivity);
2. neuron ordering from the ALL probe's weights at 0.1 % mass steps;
3. ablation of the trained probe keeping the top / bottom / random 20 %;
4. minimal neuron set: retrain on the top 1 ... 75 % (one vmapped call), smallest set within
   ``delta`` of the oracle;
5. layer-wise probes (one vmapped call over the ``(L, N, H_max)`` layout);
6. majority baseline and the distribution of the selected neurons across layers.

``paper_pipeline`` vmaps the whole thing over label sets (tasks) and seeds.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from geomjax._checks import as_array, check_labels, check_rank
from geomjax._types import pytree_dataclass
from geomjax.probing._ablation import PAPER_FRACTIONS, select_minimal
from geomjax.probing._features import LayerIndex
from geomjax.probing._host import check_finite_fast, compute_dtype
from geomjax.probing._metrics import Scores, scores
from geomjax.probing._probe import Probe, _adam_loop, _ce, _init, probe_kkt_residual
from geomjax.probing._ranking import _ordering, random_k_neurons

__all__ = ["PipelineResult", "paper_pipeline"]

_HI = jax.lax.Precision.HIGHEST


@pytree_dataclass(meta=("fractions", "widths", "stride", "ablation_fraction", "batch_axes"))
class PipelineResult:
    """Everything the pipeline measures (leading axes ``(tasks, seeds)`` when batched).

    Attributes:
        all_scores, control_scores: test scores of the ALL probe on the task / control labels.
        selectivity: ``acc(task) - acc(control)``.
        majority: majority-class test accuracy.
        probe: the ALL probe; ``order``: neuron ordering (most important first) and
            ``cutoffs`` at each mass step.
        ablation_scores: ``(3,)`` scores keeping top / bottom / random ``ablation_fraction``.
        minimal_scores, minimal_n: ``(F,)`` retrained scores and set sizes; ``minimal_chosen``
            and ``minimal_reached`` the selection.
        minimal_layers: ``(L,)`` neurons of the chosen minimal set per layer;
            ``top_layers``: the same for the ablation's top set.
        layer_scores: ``(L,)`` layer-wise probe scores.
        residual: KKT residual of the ALL probe on the training set (how far 20-epoch Adam
            stopped from the optimum of its objective; see :func:`fit_probes`).
        batch_axes: names of the leading batch axes, a sub-sequence of ``("task", "seed")``
            (``()`` for one task and one key).
    """

    all_scores: Scores
    control_scores: Scores
    selectivity: jax.Array
    majority: jax.Array
    probe: Probe
    residual: jax.Array
    order: jax.Array
    cutoffs: jax.Array
    ablation_scores: Scores
    minimal_scores: Scores
    minimal_n: jax.Array
    minimal_chosen: jax.Array
    minimal_reached: jax.Array
    minimal_layers: jax.Array
    top_layers: jax.Array
    layer_scores: Scores
    fractions: tuple[float, ...]
    widths: tuple[int, ...]
    stride: int
    ablation_fraction: float
    batch_axes: tuple[str, ...] = ()

    def _batch_index(self):
        """``(index into the leading axes, task, seed)`` for every run of a batched result."""
        shape = np.shape(self.majority)
        axes = self.batch_axes or (("task", "seed")[: len(shape)])
        if len(axes) != len(shape):
            raise ValueError(f"batch_axes {axes} do not match the result's batch shape {shape}.")
        for idx in np.ndindex(*shape):
            pos = dict(zip(axes, idx, strict=True))
            yield idx, pos.get("task", 0), pos.get("seed", 0)

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (task, seed, analysis, subset) with accuracy, F1, MCC and the
        number of neurons."""
        rows = []
        n_layers = len(self.widths)
        d = int(sum(self.widths))
        k_abl = int(round(self.ablation_fraction * d))
        for idx, task, seed in self._batch_index():

            def add(analysis, subset, sc, j, n_neurons, idx=idx, task=task, seed=seed):
                def get(a):
                    v = np.asarray(a)[idx]
                    return float(v if j is None else v[j])

                rows.append(dict(task=task, seed=seed, analysis=analysis, subset=subset,
                                 n_neurons=int(n_neurons), accuracy=get(sc.accuracy),
                                 f1=get(sc.f1), mcc=get(sc.mcc)))

            add("oracle", "ALL", self.all_scores, None, d)
            add("control", "ALL", self.control_scores, None, d)
            rows.append(dict(task=task, seed=seed, analysis="selectivity", subset="ALL",
                             n_neurons=d, accuracy=float(np.asarray(self.selectivity)[idx]),
                             f1=np.nan, mcc=np.nan))
            rows.append(dict(task=task, seed=seed, analysis="majority", subset="-", n_neurons=0,
                             accuracy=float(np.asarray(self.majority)[idx]), f1=np.nan,
                             mcc=np.nan))
            for j, nm in enumerate(("top", "bottom", "random")):
                add("ablation", f"{nm} {self.ablation_fraction:.0%}", self.ablation_scores, j,
                    k_abl)
            chosen = int(np.asarray(self.minimal_chosen)[idx])
            for j, f in enumerate(self.fractions):
                add("minimal_set" + (" (chosen)" if j == chosen else ""), f"top {f:.0%}",
                    self.minimal_scores, j, np.asarray(self.minimal_n)[idx][j])
            for j in range(n_layers):
                add("layer", f"L{j}", self.layer_scores, j, self.widths[j])
        return pd.DataFrame(rows)

    def layer_distribution_frame(self) -> pd.DataFrame:
        """Tidy table of the selected neurons per layer (minimal set and ablation top set)."""
        rows = []
        mins = np.asarray(self.minimal_layers)
        tops = np.asarray(self.top_layers)
        for idx, task, seed in self._batch_index():
            for j, w in enumerate(self.widths):
                for sel, arr in (("minimal", mins), ("top", tops)):
                    rows.append(dict(task=task, seed=seed, selection=sel, layer=j,
                                     n_selected=int(arr[idx][j]), layer_width=w,
                                     fraction_of_layer=float(arr[idx][j]) / w))
        return pd.DataFrame(rows)


def _chunked_adam(key, x, labels, chunks, users, init_full, lam1, lam2, lr, *, n_classes, ps):
    """Several probes on column chunks of ``x``, trained in one Adam loop.

    Probe ``p`` sees the chunks ``j`` with ``p in users[j]``; its logits are the sum over its
    chunks. Each minibatch is gathered once and each chunk is read once per pass, by one matmul
    that serves all its users (``(n, w_j) x (w_j, |users_j| C)``), so probes that share columns
    share the memory traffic. The losses are separable and Adam is elementwise, so every probe
    follows exactly the trajectory it would follow alone.

    Args:
        labels: ``(P, N)`` labels per probe.
        chunks: static ``((start, end), ...)`` column ranges.
        users: static tuple per chunk of the probe ids using it.
        init_full: ``init_full(p, j) -> (C, w_j)`` initial weights of probe ``p`` on chunk ``j``.

    Returns:
        ``(weights per chunk (|users_j|, C, w_j), biases (P, C))``.
    """
    n_probes = labels.shape[0]
    k_init, k_shuf = jax.random.split(key)
    ws = tuple(jnp.stack([init_full(k_init, p, j) for p in u]) for j, u in enumerate(users))
    bias = jnp.stack([init_full(k_init, p, None) for p in range(n_probes)])
    l2 = ps["l2"]
    sel = [[(j, r) for j, u in enumerate(users) for r, q in enumerate(u) if q == p]
           for p in range(n_probes)]

    def loss_fn(params, ib, vb):
        ws, bias = params
        yb = labels[:, ib]
        z = [bias[p] for p in range(n_probes)]
        for j, ((s, e), u) in enumerate(zip(chunks, users, strict=True)):
            # gather each chunk's rows directly: no full-row copy that is then sliced
            wj = ws[j].reshape(-1, ws[j].shape[-1])
            zj = jnp.einsum("nd,kd->nk", x[ib, s:e], wj, precision=_HI).reshape(
                -1, len(u), n_classes)
            for r, p in enumerate(u):
                z[p] = z[p] + zj[:, r]
        loss = jax.vmap(_ce, in_axes=(1, 0, None))(jnp.stack(z, 1), yb, vb).sum()
        loss += lam1 * sum(jnp.abs(w).sum() for w in ws)
        if l2 == "squared":
            return loss + lam2 * sum(jnp.sum(w * w) for w in ws)
        for p in range(n_probes):  # unsquared: one Frobenius norm per probe over its chunks
            sq = sum(jnp.sum(ws[j][r] ** 2) for j, r in sel[p])
            pos = sq > 0
            loss += lam2 * jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)
        return loss

    params, _ = _adam_loop(k_shuf, x.shape[0], (ws, bias), loss_fn, lr, epochs=ps["epochs"],
                           batch_size=ps["batch_size"], shuffle=ps["shuffle"], dtype=x.dtype)
    return params


def _train_all_and_layers(key, x, ys, lam1, lam2, lr, *, widths, n_classes, ps):
    """ALL probes for every label set in ``ys`` (K, N) and the layer-wise probes on ``ys[0]``
    in one loop (chunks = layers; chunk ``l`` serves the K ALL probes and layer probe ``l``).
    Each probe follows the trajectory of ``fit_probes`` with the same key (layer probes as on
    the padded ``(L, N, H_max)`` layout)."""
    d = x.shape[1]
    n_lab = ys.shape[0]
    n_layers, hmax = len(widths), max(widths)
    off = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    chunks = tuple((int(off[i]), int(off[i + 1])) for i in range(n_layers))
    users = tuple(tuple(range(n_lab)) + (n_lab + i,) for i in range(n_layers))
    labels = jnp.concatenate([ys, jnp.broadcast_to(ys[0], (n_layers, ys.shape[1]))])

    def init_full(k, p, j):
        full = _init(k, d if p < n_lab else hmax, n_classes, x.dtype, ps["init"])
        if j is None:
            return full.bias
        w = full.weights.T  # (C, D_p)
        return w[:, off[j] : off[j + 1]] if p < n_lab else w[:, : widths[j]]

    ws, bias = _chunked_adam(key, x, labels, chunks, users, init_full, lam1, lam2, lr,
                             n_classes=n_classes, ps=ps)
    wa = jnp.concatenate([w[:n_lab] for w in ws], axis=2)  # (K, C, D)
    probes = Probe(jnp.swapaxes(wa, 1, 2), bias[:n_lab])
    wl = jnp.stack([jnp.pad(w[n_lab].T, ((0, hmax - w.shape[2]), (0, 0))) for w in ws])
    return probes, Probe(wl, bias[n_lab:])


def _train_prefixes(key, x_ord, y, counts, lam1, lam2, lr, *, n_classes, ps):
    """Probes on the first ``counts[f]`` columns of the ordered features (nested prefixes), one
    loop: chunk ``j`` = columns ``counts[j-1]:counts[j]`` serves probes ``f >= j``. Same
    trajectories as ``fit_probes`` with the matching feature masks (zero init); the columns are
    read once per pass instead of once per probe. With ``init="torch"`` a probe on ``n_f``
    neurons starts from ``U(+-1/sqrt(n_f))``, like NeuroX retraining on the filtered columns."""
    bounds = (0,) + tuple(int(c) for c in counts)
    chunks = tuple((bounds[j], bounds[j + 1]) for j in range(len(counts)))
    users = tuple(tuple(range(j, len(counts))) for j in range(len(counts)))
    labels = jnp.broadcast_to(y, (len(counts), y.shape[0]))

    def init_full(k, p, j):
        full = _init(k, int(counts[p]), n_classes, x_ord.dtype, ps["init"])
        if j is None:
            return full.bias
        return full.weights.T[:, bounds[j] : bounds[j + 1]]

    ws, bias = _chunked_adam(key, x_ord, labels, chunks, users, init_full, lam1, lam2, lr,
                             n_classes=n_classes, ps=ps)
    # probe f: concatenate its pieces from chunks 0..f
    return tuple((jnp.concatenate([ws[j][f - j] for j in range(f + 1)], axis=1), bias[f])
                 for f in range(len(counts)))


def _stage_probes(key, x_tr, y_tr, x_te, y_te, lam1, lam2, lr, *, n_classes, widths, stride,
                  ablation_fraction, probe_static):
    """Steps 1-3 and 5 for one run: ALL, control and layer-wise probes (one training loop),
    the ordering and the ablations of the ALL probe."""
    d = x_tr.shape[1]
    ps = probe_static
    k_probe, k_ctrl, k_ctrl_te, k_abl, _ = jax.random.split(key, 5)

    yc_tr = jax.random.permutation(k_ctrl, y_tr)
    yc_te = jax.random.permutation(k_ctrl_te, y_te)
    p2, pl = _train_all_and_layers(k_probe, x_tr, jnp.stack([y_tr, yc_tr]), lam1, lam2, lr,
                                   widths=widths, n_classes=n_classes, ps=ps)
    p_all = jax.tree_util.tree_map(lambda a: a[0], p2)
    p_ctl = jax.tree_util.tree_map(lambda a: a[1], p2)
    resid = probe_kkt_residual(p_all, x_tr, y_tr, lam1, lam2, l2=ps["l2"])

    ordering = _ordering(jnp.abs(p_all.weights), stride)
    k = int(round(ablation_fraction * d))
    abl = jnp.stack([ordering.top_mask(k), ordering.bottom_mask(k), random_k_neurons(k_abl, d, k)])
    # every test score of this stage from one product x_te (D, 11 C): ALL, control, the three
    # ablations (W * mask) and the layer probes as zero-padded (D, C) blocks; x_te is read once
    # (a layer-major view of it would be an extra copy of the test features)
    w_abl = [p_all.weights * m[:, None].astype(p_all.weights.dtype) for m in abl]
    off = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    w_lay = [jnp.zeros_like(p_all.weights).at[off[i] : off[i + 1]].set(pl.weights[i, : widths[i]])
             for i in range(len(widths))]
    w_cat = jnp.concatenate([p_all.weights, p_ctl.weights, *w_abl, *w_lay], axis=1)
    logits = jnp.matmul(x_te, w_cat, precision=_HI).reshape(x_te.shape[0], -1, n_classes)
    bias = jnp.concatenate([jnp.stack([p_all.bias, p_ctl.bias]),
                            jnp.broadcast_to(p_all.bias, (len(abl), n_classes)), pl.bias])
    pred = jnp.argmax(logits + bias, -1)  # (N_test, 2 + 3 + L)
    labels = jnp.concatenate([jnp.stack([y_te, yc_te]),
                              jnp.broadcast_to(y_te, (pred.shape[1] - 2, y_te.shape[0]))])
    s = jax.vmap(lambda y, pr: scores(y, pr, n_classes))(labels, pred.T)
    pick = lambda a, b: jax.tree_util.tree_map(lambda v: v[a:b], s)  # noqa: E731
    s_all = jax.tree_util.tree_map(lambda v: v[0], s)
    s_ctl = jax.tree_util.tree_map(lambda v: v[1], s)
    s_abl, s_lay = pick(2, 2 + len(abl)), pick(2 + len(abl), pred.shape[1])
    counts_tr = jnp.bincount(y_tr, length=n_classes)
    maj = jnp.mean(y_te == jnp.argmax(counts_tr))
    return dict(all_scores=s_all, control_scores=s_ctl, layer_scores=s_lay, residual=resid,
                probe=p_all, order=ordering.order, cutoffs=ordering.cutoffs, rank=ordering.rank,
                ablation_scores=s_abl, top_mask=abl[0], majority=maj)


def _stage_minimal(key, xo_tr, y_tr, x_te, order, y_te, oracle, lam1, lam2, lr, *, n_classes,
                   counts, delta, probe_static):
    """Step 4 for one run: retrain on the nested prefixes of the ordered columns ``xo_tr``
    (``xo_tr[:, j] = x_tr[:, order[j]]`` for ``j < max(counts)``); test scores on the original
    columns with each probe's weights put back at ``order[:count]`` (no ordered test copy)."""
    k_min = jax.random.split(key, 5)[4]
    pm = _train_prefixes(k_min, xo_tr, y_tr, counts, lam1, lam2, lr, n_classes=n_classes,
                         ps=probe_static)
    d = x_te.shape[1]
    w_full = jnp.stack([jnp.zeros((n_classes, d), w.dtype).at[:, order[:c]].set(w)
                        for (w, _), c in zip(pm, counts, strict=True)])  # (F, C, D)
    logits = jnp.einsum("nd,fcd->fnc", x_te, w_full, precision=_HI) + jnp.stack(
        [b for _, b in pm])[:, None, :]
    s_min = jax.vmap(lambda lg: scores(y_te, jnp.argmax(lg, -1), n_classes))(logits)
    chosen, reached = select_minimal(s_min.accuracy, oracle, delta)
    return s_min, chosen, reached


def _over_runs(fn, kinds, batch_key, batch_y):
    """vmap ``fn`` over the runs: arguments of kind ``"seed"`` carry the seed axis, ``"task"``
    the task axis, ``"run"`` both (task first), ``None`` none; results get ``(T, S)`` axes."""
    if batch_key:
        fn = jax.vmap(fn, in_axes=tuple(0 if k in ("seed", "run") else None for k in kinds))
    if batch_y:
        fn = jax.vmap(fn, in_axes=tuple(0 if k in ("task", "run") else None for k in kinds))
    return fn


_RUN_STATIC = ("n_classes", "batch_key", "batch_y")


@partial(jax.jit, static_argnames=_RUN_STATIC + ("widths", "stride", "ablation_fraction",
                                                 "probe_items"))
def _run_probes(key, x_tr, y_tr, x_te, y_te, lam1, lam2, lr, *, n_classes, widths, stride,
                ablation_fraction, probe_items, batch_key, batch_y):
    fn = partial(_stage_probes, lam1=lam1, lam2=lam2, lr=lr, n_classes=n_classes, widths=widths,
                 stride=stride, ablation_fraction=ablation_fraction,
                 probe_static=dict(probe_items))
    return _over_runs(fn, ("seed", None, "task", None, "task"), batch_key, batch_y)(
        key, x_tr, y_tr, x_te, y_te)


@partial(jax.jit, static_argnames=("n_cols", "batch_key", "batch_y"))
def _ordered_columns(x, order, *, n_cols, batch_key, batch_y):
    # A jit of its own so that the copy comes back row-major: gathered inside the training
    # program, XLA may lay it out column-major and every minibatch gather of the retraining loop
    # then reads strided memory (measured ~10x slower on CPU).
    return _over_runs(lambda x, o: x[:, o[:n_cols]], (None, "run"), batch_key, batch_y)(x, order)


# row blocks of the in-place column permutation: ~0.5 MB, so that each block is gathered within
# the core's L2 cache (measured 2x faster than 11 MB blocks at 8000 x 11100)
_PERMUTE_BLOCK_BYTES = 1 << 19


@partial(jax.jit, static_argnames=("n_cols",), donate_argnums=(0,))
def _permute_columns_inplace(x, order, *, n_cols):
    """``x[:, order[:n_cols]]`` written over the first ``n_cols`` columns of ``x`` (donated), one
    block of rows at a time: the ordered copy of the training features costs no new full-size
    buffer (a fresh 0.3 GB buffer costs more in page faults than the gather itself). The
    columns from ``n_cols`` on are left as they were (the retraining reads only the first
    ``n_cols``), which spares a quarter of the writes at the paper's 75 % largest subset."""
    n, d = x.shape
    rows = int(min(n, max(1, _PERMUTE_BLOCK_BYTES // (d * x.dtype.itemsize))))
    n_full = n // rows
    cols = order[:n_cols]

    def body(i, x):
        blk = jax.lax.dynamic_slice_in_dim(x, i * rows, rows, 0)
        return jax.lax.dynamic_update_slice(x, blk[:, cols], (i * rows, 0))

    x = jax.lax.fori_loop(0, n_full, body, x)
    if n % rows:
        tail = x[n_full * rows:]
        x = x.at[n_full * rows:, :n_cols].set(tail[:, cols])
    return x


@partial(jax.jit, static_argnames=_RUN_STATIC + ("counts", "delta", "probe_items"))
def _run_minimal(key, xo_tr, y_tr, x_te, order, y_te, oracle, lam1, lam2, lr, *, n_classes,
                 counts, delta, probe_items, batch_key, batch_y):
    fn = partial(_stage_minimal, lam1=lam1, lam2=lam2, lr=lr, n_classes=n_classes, counts=counts,
                 delta=delta, probe_static=dict(probe_items))
    return _over_runs(fn, ("seed", "run", "task", None, "run", "task", "run"), batch_key,
                      batch_y)(key, xo_tr, y_tr, x_te, order, y_te, oracle)


@partial(jax.jit, static_argnames=("n_layers", "batch_key", "batch_y"))
def _layer_counts(rank, top_mask, chosen, counts, layer_of_neuron, *, n_layers, batch_key,
                  batch_y):
    def one(rank, top, c):
        seg = partial(jax.ops.segment_sum, segment_ids=layer_of_neuron, num_segments=n_layers)
        return seg((rank < counts[c]).astype(jnp.int32)), seg(top.astype(jnp.int32))

    return _over_runs(one, ("run", "run", "run"), batch_key, batch_y)(rank, top_mask, chosen)


class _Laps:
    """Opt-in per-stage timing: with a dict, each call blocks on ``out`` and stores the wall and
    process-CPU seconds since the previous call under ``name``; with ``None`` it does nothing (the
    stages then run asynchronously, as usual)."""

    def __init__(self, timings, t0=None):
        self.timings = timings
        self.t = t0 or (time.perf_counter(), time.process_time())

    def __call__(self, name, out):
        if self.timings is None:
            return
        jax.block_until_ready(out)
        t = (time.perf_counter(), time.process_time())
        self.timings[name] = dict(wall_s=t[0] - self.t[0], cpu_s=t[1] - self.t[1])
        self.t = t


def _run(key, x_tr, y_tr, x_te, y_te, layer_of_neuron, lam1, lam2, lr, *, n_classes, widths,
         stride, ablation_fraction, fractions, delta, probe_items, batch_key, batch_y,
         own_x_train=False, timings=None, t0=None):
    """The pipeline as three compiled stages (probes and ordering; ordered columns of the
    training features; minimal-set retraining), each vmapped over the runs. ``own_x_train``:
    ``x_tr`` is a private copy that may be overwritten (donated)."""
    d = x_tr.shape[1]
    counts = tuple(max(int(round(f * d)), 1) for f in fractions)
    runs = dict(batch_key=batch_key, batch_y=batch_y)
    lap = _Laps(timings, t0)
    lap("input checks, copies to the device", (x_tr, x_te))
    st = _run_probes(key, x_tr, y_tr, x_te, y_te, lam1, lam2, lr, n_classes=n_classes,
                     widths=widths, stride=stride, ablation_fraction=ablation_fraction,
                     probe_items=probe_items, **runs)
    lap("probes: ALL + control + layer-wise (one loop), KKT residual, ordering, ablation", st)
    if own_x_train and not (batch_key or batch_y):
        # one run and a private copy of the features: order its columns in place
        xo_tr = _permute_columns_inplace(x_tr, st["order"], n_cols=max(counts))
        del x_tr
    else:
        xo_tr = _ordered_columns(x_tr, st["order"], n_cols=max(counts), **runs)
    lap("ordered training columns", xo_tr)
    s_min, chosen, reached = _run_minimal(
        key, xo_tr, y_tr, x_te, st["order"], y_te, st["all_scores"].accuracy, lam1, lam2, lr,
        n_classes=n_classes, counts=counts, delta=delta, probe_items=probe_items, **runs)
    del xo_tr
    lap(f"minimal set: {len(counts)} retrained probes (one loop), scores", s_min)
    min_layers, top_layers = _layer_counts(
        st["rank"], st["top_mask"], chosen, jnp.asarray(counts), layer_of_neuron,
        n_layers=len(widths), **runs)
    lap("selected neurons per layer", min_layers)
    return _result(st, s_min, chosen, reached, min_layers, top_layers, counts=counts,
                   fractions=fractions, widths=widths, stride=stride,
                   ablation_fraction=ablation_fraction)


def _result(st, s_min, chosen, reached, min_layers, top_layers, *, counts, fractions, widths,
            stride, ablation_fraction):
    s_all, s_ctl = st["all_scores"], st["control_scores"]
    return PipelineResult(
        all_scores=s_all, control_scores=s_ctl, selectivity=s_all.accuracy - s_ctl.accuracy,
        majority=st["majority"], probe=st["probe"], residual=st["residual"], order=st["order"],
        cutoffs=st["cutoffs"], ablation_scores=st["ablation_scores"], minimal_scores=s_min,
        minimal_n=jnp.broadcast_to(jnp.asarray(counts), s_min.accuracy.shape),
        minimal_chosen=chosen, minimal_reached=reached, minimal_layers=min_layers,
        top_layers=top_layers, layer_scores=st["layer_scores"], fractions=tuple(fractions),
        widths=tuple(widths), stride=stride, ablation_fraction=ablation_fraction,
    )


def _one_run(key, x_tr, y_tr, x_te, y_te, layer_of_neuron, lam1, lam2, lr, *, n_classes, widths,
             stride, ablation_fraction, counts, delta, probe_items):
    """The whole pipeline for one run (one key, one label set) as one traceable function: the
    stages of :func:`_run` without the run axes (the sharded form maps it over runs)."""
    ps = dict(probe_items)
    st = _stage_probes(key, x_tr, y_tr, x_te, y_te, lam1, lam2, lr, n_classes=n_classes,
                       widths=widths, stride=stride, ablation_fraction=ablation_fraction,
                       probe_static=ps)
    xo_tr = x_tr[:, st["order"][: max(counts)]]
    s_min, chosen, reached = _stage_minimal(
        key, xo_tr, y_tr, x_te, st["order"], y_te, st["all_scores"].accuracy, lam1, lam2, lr,
        n_classes=n_classes, counts=counts, delta=delta, probe_static=ps)
    seg = partial(jax.ops.segment_sum, segment_ids=layer_of_neuron, num_segments=len(widths))
    min_layers = seg((st["rank"] < jnp.asarray(counts)[chosen]).astype(jnp.int32))
    top_layers = seg(st["top_mask"].astype(jnp.int32))
    out = dict(st, s_min=s_min, chosen=chosen, reached=reached, min_layers=min_layers,
               top_layers=top_layers)
    out.pop("rank")
    out.pop("top_mask")
    return out


def _validated(key, x_train, y_train, x_test, y_test, index, *, n_classes, l2, init, epochs,
               batch_size, shuffle):
    """Checks shared by :func:`paper_pipeline` and its sharded form; normalised arguments."""
    x_train = as_array(x_train, "x_train")
    x_test = as_array(x_test, "x_test")
    for nm, a in (("x_train", x_train), ("x_test", x_test)):
        check_rank(a, 2, nm, "(n_samples, n_neurons)")
        check_finite_fast(a, nm)
    d = x_train.shape[1]
    if x_test.shape[1] != d:
        raise ValueError(f"`x_test` has {x_test.shape[1]} neurons but `x_train` has {d}.")
    if sum(index.widths) != d:
        raise ValueError(f"`index` covers {sum(index.widths)} neurons but the features have {d}.")
    y_train = np.asarray(y_train)
    y_test = np.asarray(y_test)
    batch_y = y_train.ndim == 2
    if y_test.ndim != y_train.ndim or (batch_y and y_test.shape[0] != y_train.shape[0]):
        raise ValueError("`y_train` and `y_test` must both be (N,) or both (T, N) with equal T.")
    if n_classes is None:
        n_classes = int(max(y_train.max(), y_test.max())) + 1
    for row in y_train.reshape(-1, y_train.shape[-1]):
        check_labels(row, x_train.shape[0], "y_train", n_classes)
        if np.unique(row).size < 2:
            raise ValueError("`y_train` has a single class; a probe needs at least 2 classes.")
    for row in y_test.reshape(-1, y_test.shape[-1]):
        check_labels(row, x_test.shape[0], "y_test", n_classes)
    if l2 not in ("squared", "unsquared"):
        raise ValueError(f"`l2` must be 'squared' or 'unsquared'; got {l2!r}.")
    init = init or ("zeros" if l2 == "squared" else "torch")
    key = jnp.asarray(key)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    batch_key = key.ndim == (1 if typed else 2)
    dt = compute_dtype(x_train)  # dtype only: no throw-away device copy of host features
    probe_items = tuple(sorted(dict(
        l2=l2, epochs=int(epochs), batch_size=int(min(batch_size, x_train.shape[0])),
        shuffle=bool(shuffle), init=init).items()))
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, key=key, dt=dt,
                n_classes=int(n_classes), batch_key=bool(batch_key), batch_y=bool(batch_y),
                probe_items=probe_items)


def paper_pipeline(
    key,
    x_train,
    y_train,
    x_test,
    y_test,
    index: LayerIndex,
    *,
    n_classes: int | None = None,
    lam1: float = 1e-5,
    lam2: float = 1e-5,
    l2: str = "squared",
    stride: int = 1000,
    ablation_fraction: float = 0.2,
    fractions=PAPER_FRACTIONS,
    delta: float = 0.01,
    epochs: int = 20,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    shuffle: bool = True,
    init: str | None = None,
    timings: dict | None = None,
) -> PipelineResult:
    """Run the papers' whole neuron-analysis protocol in one compiled call.

    Args:
        key: ``jax.random.key`` or a batch ``(S,)`` of keys (seeds).
        x_train, x_test: ``(N, D)`` standardised ALL features (see :func:`concat_layers`).
        y_train, y_test: ``(N,)`` labels, or ``(T, N)`` for ``T`` tasks on the same features.
        index: the :class:`LayerIndex` of the concatenation.
        n_classes: number of classes (all tasks share it; inferred when omitted).
        lam1, lam2, l2, epochs, batch_size, learning_rate, shuffle, init: probe settings
            (Adam protocol, see :func:`fit_probes`).
        stride: ordering mass steps (1000 = 0.1 %); ablation_fraction: kept share (0.2).
        fractions, delta: minimal-set grid and tolerance (fraction of accuracy).
        timings: optional dict that receives a per-stage breakdown ``{stage: {"wall_s": ...,
            "cpu_s": ...}}`` (process CPU seconds, so other threads of the process count too).
            Each stage is then waited for before the next one is launched; without it the
            stages are queued asynchronously.

    All probes of one call share the minibatch order of their loop; the ALL, control and
    layer-wise probes are trained in one loop and the minimal-set probes in a second one, each
    probe exactly as :func:`fit_probes` would train it alone (the tests check this). The work
    runs as a few compiled programs (probes and ordering; the training columns in the ordering's
    order; the minimal-set retraining), compiled once per shape and settings: later calls with
    the same shapes do not recompile. For one run on host (NumPy) features, the columns are
    reordered in place in the pipeline's own device copy; a ``jax.Array`` input is never
    modified (a reordered copy is made instead). See
    :func:`geomjax.distributed.paper_pipeline_sharded` to spread tasks x seeds over devices.

    Returns:
        :class:`PipelineResult`; leading axes ``(T, S)`` for batched tasks/seeds. ``.to_frame()``
        gives the tidy table.
    """
    t0 = (time.perf_counter(), time.process_time())
    v = _validated(key, x_train, y_train, x_test, y_test, index, n_classes=n_classes, l2=l2,
                   init=init, epochs=epochs, batch_size=batch_size, shuffle=shuffle)
    x_train, y_train, x_test, y_test, key, dt = (v[k] for k in (
        "x_train", "y_train", "x_test", "y_test", "key", "dt"))
    n_classes, batch_key, batch_y, probe_items = (v[k] for k in (
        "n_classes", "batch_key", "batch_y", "probe_items"))
    # a NumPy (or other host) input is copied to the device anyway: that copy is private, and
    # the pipeline may reorder its columns in place (jax.Array inputs are never modified)
    own_x_train = not isinstance(x_train, jax.Array)
    # (device_put of the host array: one copy; jnp.array(..., copy=True) measured ~1.6x slower)
    x_tr = (jax.device_put(np.asarray(x_train, dt), may_alias=False) if own_x_train
            else jnp.asarray(x_train, dt))
    res = _run(key, x_tr, jnp.asarray(y_train, jnp.int32),
                jnp.asarray(x_test, dt), jnp.asarray(y_test, jnp.int32),
                jnp.asarray(index.layer_of_neuron), jnp.asarray(lam1, dt), jnp.asarray(lam2, dt),
                jnp.asarray(learning_rate, dt), n_classes=int(n_classes),
                widths=tuple(int(w) for w in index.widths), stride=int(stride),
                ablation_fraction=float(ablation_fraction),
                fractions=tuple(float(f) for f in fractions), delta=float(delta),
                probe_items=probe_items, batch_key=bool(batch_key), batch_y=bool(batch_y),
                own_x_train=own_x_train, timings=timings, t0=t0)
    del x_tr
    axes = ("task",) * batch_y + ("seed",) * batch_key
    return dataclasses.replace(res, batch_axes=axes)
