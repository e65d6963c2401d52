"""Seeded optax training loops with per-epoch atomic checkpoints, metrics tables and resumption.

One loop serves every model; the task follows from the model: classification (word CNN, speaker
CNN, phone MLP: softmax cross-entropy, accuracy), CTC (DS2: per-utterance CTC loss, greedy CER and
WER) and masked reconstruction (Transformer: Mockingjay L1 on masked steps).

Determinism and resumption: the shuffling order of epoch ``e`` and the dropout/masking keys of
step ``s`` are ``fold_in`` of the run key, so a run interrupted after epoch ``e`` and resumed from
its checkpoint continues exactly as if it had not stopped. Epoch 0 is the initial weights.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import serialization
from geomjax.models._config import config_to_dict
from geomjax.models.augment import check_augment, spec_augment
from geomjax.models.checkpoint import (
    _restore_raw,
    atomic_write_bytes,
    list_checkpoints,
    read_metrics,
    restore_into,
    save_checkpoint,
)
from geomjax.models.ctc import ALPHABET, BLANK, cer, ctc_loss, decode_labels, wer
from geomjax.models.ds2 import ds2_output_lengths
from geomjax.models.transformer import mockingjay_mask, stack_frames
from geomjax.models.zoo import SEQUENCE_MODELS, _as_key, build_model, init_variables, model_name
from tqdm.auto import tqdm

__all__ = [
    "TaskData",
    "TrainResult",
    "TASKS",
    "train",
    "evaluate",
    "make_optimizer",
    "make_schedule",
]

TASKS = {
    "word_cnn": "classify",
    "speaker_cnn": "classify",
    "phone_mlp": "classify",
    "ds2": "ctc",
    "transformer": "reconstruct",
}


@dataclass
class TaskData:
    """Inputs and targets of one split.

    Attributes:
        inputs: ``(N, ...)`` features; sequence models take padded ``(N, T, F)``.
        labels: ``(N,)`` int classes, or ``(N, S)`` padded character labels for CTC; None for
            reconstruction.
        lengths: ``(N,)`` valid frames (sequence models; None: full length).
        label_lengths: ``(N,)`` valid labels (CTC).
        meta: optional per-sample table (speaker, word, ...) carried along, not used in training.
    """

    inputs: Any
    labels: Any = None
    lengths: Any = None
    label_lengths: Any = None
    meta: pd.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self):
        self.inputs = np.asarray(self.inputs)
        n = self.inputs.shape[0] if self.inputs.ndim else 0
        if self.inputs.ndim < 2 or n == 0:
            raise ValueError(
                f"`inputs` must be a non-empty (N, ...) array; got shape {self.inputs.shape}."
            )
        if not np.all(np.isfinite(self.inputs)):
            raise ValueError("`inputs` contains NaN/inf values.")
        for nm in ("labels", "lengths", "label_lengths"):
            v = getattr(self, nm)
            if v is None:
                continue
            v = np.asarray(v)
            if v.shape[:1] != (n,):
                raise ValueError(
                    f"`{nm}` has {v.shape[:1]} rows but `inputs` has {n}; they must match."
                )
            if not np.issubdtype(v.dtype, np.integer):
                raise TypeError(f"`{nm}` must be integers; got dtype {v.dtype}.")
            setattr(self, nm, v.astype(np.int32))
        if self.lengths is not None:
            if self.inputs.ndim != 3:
                raise ValueError("`lengths` applies to (N, T, F) sequence inputs only.")
            if self.lengths.min() < 1 or self.lengths.max() > self.inputs.shape[1]:
                raise ValueError(
                    f"`lengths` must lie in 1..{self.inputs.shape[1]} (the padded length)."
                )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def take(self, idx) -> TaskData:
        """The rows ``idx``."""
        idx = np.asarray(idx)
        g = lambda a: None if a is None else a[idx]  # noqa: E731
        meta = None if self.meta is None else self.meta.iloc[idx].reset_index(drop=True)
        return TaskData(
            self.inputs[idx], g(self.labels), g(self.lengths), g(self.label_lengths), meta
        )


def _check_data(task: str, data: TaskData, what: str, n_classes: int | None, seq: bool):
    if not isinstance(data, TaskData):
        raise TypeError(f"`{what}` must be a TaskData; got {type(data).__name__}.")
    if task == "classify":
        if data.labels is None or data.labels.ndim != 1:
            raise ValueError(f"`{what}.labels` must be (N,) integer classes for classification.")
        if data.labels.min() < 0 or (n_classes is not None and data.labels.max() >= n_classes):
            raise ValueError(
                f"`{what}.labels` must lie in 0..{n_classes - 1 if n_classes else 'C-1'}."
            )
    elif task == "ctc":
        if data.labels is None or data.labels.ndim != 2 or data.label_lengths is None:
            raise ValueError(f"`{what}` needs (N, S) `labels` and `label_lengths` for CTC.")
    if seq and data.inputs.ndim != 3:
        raise ValueError(
            f"`{what}.inputs` must be (N, T, F) for a sequence model; got {data.inputs.shape}."
        )


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the Flax module.
        variables: final variables.
        metrics: one row per epoch (epoch 0 = initial weights): losses, accuracy or CER/WER, time.
        ckpt_dir: the run directory.
        checkpoints: ``[(epoch, path), ...]``.
    """

    model: nn.Module
    variables: dict
    metrics: pd.DataFrame
    ckpt_dir: Path
    checkpoints: list


SCHEDULES = ("exponential", "cosine")


def make_schedule(
    learning_rate: float,
    steps_per_epoch: int,
    lr_decay: float = 1.0,
    schedule: str = "exponential",
    total_epochs: int | None = None,
    warmup_steps: int = 0,
) -> optax.Schedule:
    """Learning-rate schedule of :func:`make_optimizer`.

    ``"exponential"``: ``learning_rate`` multiplied by ``lr_decay`` after every epoch.
    ``"cosine"``: linear warm-up from 0 over ``warmup_steps``, then cosine decay to 0 at the end
    of ``total_epochs`` epochs (``lr_decay`` is ignored).
    """
    spe = max(int(steps_per_epoch), 1)
    if schedule == "exponential":
        sched = optax.exponential_decay(learning_rate, spe, lr_decay, staircase=True)
        if warmup_steps:
            warm = optax.linear_schedule(0.0, learning_rate, int(warmup_steps))
            sched = optax.join_schedules([warm, sched], [int(warmup_steps)])
        return sched
    if schedule == "cosine":
        if not total_epochs or total_epochs < 1:
            raise ValueError("the cosine schedule needs `total_epochs` >= 1.")
        total = spe * int(total_epochs)
        return optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, min(int(warmup_steps), total - 1), total, end_value=0.0
        )
    raise ValueError(f"`schedule` must be one of {list(SCHEDULES)}; got {schedule!r}.")


def make_optimizer(
    optimizer: str,
    learning_rate: float,
    steps_per_epoch: int,
    lr_decay: float = 1.0,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    schedule: str = "exponential",
    total_epochs: int | None = None,
    warmup_steps: int = 0,
) -> optax.GradientTransformation:
    """optax optimiser: ``"adam"``, ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9, as DS2 v2.0),
    learning rate following :func:`make_schedule` (by default multiplied by ``lr_decay`` after
    every epoch; ``schedule="cosine"``: warm-up then cosine decay over ``total_epochs``), optional
    global-norm clipping."""
    sched = make_schedule(
        learning_rate, steps_per_epoch, lr_decay, schedule, total_epochs, warmup_steps
    )
    if optimizer == "adam":
        tx = optax.adam(sched)
    elif optimizer == "adamw":
        tx = optax.adamw(sched, weight_decay=weight_decay)
    elif optimizer == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(weight_decay), optax.sgd(sched, momentum=0.9, nesterov=True)
        )
    else:
        raise ValueError(f"`optimizer` must be 'adam', 'adamw' or 'sgd'; got {optimizer!r}.")
    if grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return tx


def _batch_stats_of(variables):
    return variables.get("batch_stats", {})


def _loss_and_stats(model, task, variables, batch, key, train, augment=None):
    x, L = batch["x"], batch.get("lengths")
    w = batch["w"]
    k_mask, k_drop = jax.random.split(key)
    inp = x
    if task == "reconstruct":
        inp, sel = mockingjay_mask(k_mask, x, L, model.config.downsample)
    elif train and augment:
        # (B, F, T) images (word CNN) or (B, T, F) sequences; (B, D) frames are not augmented
        if x.ndim == 3:
            seq = L is not None
            inp = spec_augment(
                k_mask,
                x,
                augment,
                time_axis=1 if seq else 2,
                freq_axis=2 if seq else 1,
                lengths=L,
            )
    has_bn = "batch_stats" in variables
    if train:
        kw = {"rngs": {"dropout": k_drop}}
        if has_bn:
            (out, _), upd = model.apply(
                variables, inp, L, train=True, mutable=["batch_stats"], **kw
            )
            new_bs = upd["batch_stats"]
        else:
            out, _ = model.apply(variables, inp, L, train=True, **kw)
            new_bs = {}
    else:
        out, _ = model.apply(variables, inp, L, train=False)
        new_bs = _batch_stats_of(variables)
    stats = {}
    if task == "classify":
        per = optax.softmax_cross_entropy_with_integer_labels(out, batch["y"])
        stats["correct"] = jnp.sum((jnp.argmax(out, -1) == batch["y"]) * w)
        n = jnp.sum(w)
        lsum = jnp.sum(per * w)
    elif task == "ctc":
        per = ctc_loss(out, ds2_output_lengths(L), batch["y"], batch["yl"])
        n = jnp.sum(w)
        lsum = jnp.sum(per * w)
        stats["best"] = jnp.argmax(out, -1)
    else:
        target, _ = stack_frames(x, L, model.config.downsample)
        diff = jnp.abs(out - target).mean(-1)
        m = sel * w[:, None]
        n = jnp.sum(m)
        lsum = jnp.sum(diff * m)
    stats["loss_sum"], stats["n"] = lsum, n
    return lsum / jnp.maximum(n, 1.0), (stats, new_bs)


def _make_steps(model, task, tx, augment=None):
    def train_step(state, batch, key):
        def lf(params):
            v = {"params": params}
            if state["batch_stats"]:
                v["batch_stats"] = state["batch_stats"]
            return _loss_and_stats(model, task, v, batch, key, True, augment)

        (loss, (stats, bs)), g = jax.value_and_grad(lf, has_aux=True)(state["params"])
        updates, opt_state = tx.update(g, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        stats.pop("best", None)
        return {
            "params": params,
            "batch_stats": bs,
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }, stats

    def eval_step(variables, batch, key):
        return _loss_and_stats(model, task, variables, batch, key, False)[1][0]

    return jax.jit(train_step, donate_argnums=(0,)), jax.jit(eval_step)


def _batch(data: TaskData, idx, seq: bool, bucket: int | None, n_pad: int = 0):
    x = data.inputs[idx]
    b = {"x": x}
    w = np.ones(len(idx), np.float32)
    if seq:
        L = (
            data.lengths[idx]
            if data.lengths is not None
            else np.full(len(idx), x.shape[1], np.int32)
        )
        if bucket:
            Tb = min(x.shape[1], int(math.ceil(L.max() / bucket) * bucket))
            b["x"] = x[:, :Tb]
        b["lengths"] = L
    if data.labels is not None:
        b["y"] = data.labels[idx]
    if data.label_lengths is not None:
        b["yl"] = data.label_lengths[idx]
    if n_pad:
        b = {k: np.concatenate([v, np.repeat(v[-1:], n_pad, axis=0)]) for k, v in b.items()}
        w = np.concatenate([w, np.zeros(n_pad, np.float32)])
    b["w"] = w
    return {k: jnp.asarray(v) for k, v in b.items()}


def evaluate(
    model: nn.Module,
    variables,
    data: TaskData,
    *,
    batch_size: int = 256,
    key=0,
    bucket: int | None = None,
) -> dict[str, float]:
    """Eval-mode metrics of ``model`` on ``data``.

    Returns ``loss`` plus ``accuracy`` (classification), ``cer``/``wer`` (CTC, greedy decoding) or
    the masked L1 ``loss`` only (reconstruction, masks drawn from ``key``).
    """
    name = model_name(model)
    return _evaluate(
        model,
        TASKS[name],
        _make_eval(model, TASKS[name]),
        variables,
        data,
        batch_size,
        _as_key(key),
        name in SEQUENCE_MODELS,
        bucket,
    )


_EVAL_CACHE: dict = {}


def _make_eval(model, task):
    k = (model, task)
    if k not in _EVAL_CACHE:
        _EVAL_CACHE[k] = _make_steps(model, task, optax.identity())[1]
    return _EVAL_CACHE[k]


def _evaluate(model, task, eval_step, variables, data, batch_size, key, seq, bucket):
    N = len(data)
    bs = min(batch_size, N)
    tot = {"loss_sum": 0.0, "n": 0.0, "correct": 0.0}
    hyps, refs = [], []
    for i, s in enumerate(range(0, N, bs)):
        idx = np.arange(s, min(s + bs, N))
        batch = _batch(data, idx, seq, bucket, n_pad=bs - len(idx))
        st = eval_step(variables, batch, jax.random.fold_in(key, i))
        for k in tot:
            if k in st:
                tot[k] += float(st[k])
        if task == "ctc":
            best = np.asarray(st["best"])[: len(idx)]
            Lo = np.asarray(ds2_output_lengths(data.lengths[idx]))
            for row, n in zip(best, Lo, strict=False):
                row = row[:n]
                keep = np.ones(len(row), bool)
                keep[1:] = row[1:] != row[:-1]
                hyps.append("".join(ALPHABET[k] for k in row[keep] if k != BLANK))
            refs += decode_labels(data.labels[idx], data.label_lengths[idx])
    out = {"loss": tot["loss_sum"] / max(tot["n"], 1.0)}
    if task == "classify":
        out["accuracy"] = tot["correct"] / max(tot["n"], 1.0)
    elif task == "ctc":
        out["cer"], out["wer"] = cer(refs, hyps), wer(refs, hyps)
    return out


def _lengths_of(data: TaskData) -> np.ndarray:
    if data.lengths is not None:
        return data.lengths
    return np.full(len(data), data.inputs.shape[1], np.int32)


def _length_order(perm, lengths, batch_size, ascending: bool, key, group: int = 32):
    """Sample order with batches of similar length: all in increasing length (``ascending``,
    SortaGrad) or sorted within groups of ``group`` batches of the random ``perm``, with the
    batches then visited in a random order. Ties keep the order of ``perm``."""
    perm = np.asarray(perm)
    if ascending:
        return perm[np.argsort(lengths[perm], kind="stable")]
    G = group * batch_size
    chunks = [perm[i : i + G] for i in range(0, len(perm), G)]
    chunks = [c[np.argsort(lengths[c], kind="stable")] for c in chunks]
    order = np.concatenate(chunks)
    nb = len(order) // batch_size
    batches = order[: nb * batch_size].reshape(nb, batch_size)
    shuffle = np.asarray(jax.random.permutation(jax.random.fold_in(key, 7), nb))
    return np.concatenate([batches[shuffle].ravel(), order[nb * batch_size :]])


def _stalled(metrics: pd.DataFrame, task: str, patience: int) -> bool:
    """True when the validation metric has not improved in the last ``patience`` epochs."""
    col, higher = {"classify": ("val_accuracy", True), "ctc": ("val_cer", False)}.get(
        task, ("val_loss", False)
    )
    if col not in metrics or len(metrics) <= patience + 1:
        return False
    v = metrics[col].to_numpy(float)[1:]  # epoch 0 (initial weights) does not count
    if len(v) <= patience:
        return False
    best_before = np.nanmax(v[:-patience]) if higher else np.nanmin(v[:-patience])
    recent = v[-patience:]
    improved = np.nanmax(recent) > best_before if higher else np.nanmin(recent) < best_before
    return not improved


def _key_data(key) -> list[int]:
    return [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]


def train(
    key,
    model_name: str,
    train_data: TaskData,
    val_data: TaskData | None = None,
    *,
    epochs: int,
    ckpt_dir,
    preset: str = "cpu",
    n_classes: int | None = None,
    config: dict | None = None,
    batch_size: int = 64,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    lr_decay: float = 1.0,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    length_bucket: int | None = None,
    eval_batch_size: int = 256,
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    time_budget_s: float | None = None,
    schedule: str = "exponential",
    warmup_steps: int = 0,
    augment: dict | None = None,
    sortagrad: bool = False,
    length_grouped: bool = False,
    patience: int | None = None,
) -> TrainResult:
    """Train a zoo model with optax, checkpointing every epoch (epoch 0 = initial weights).

    Re-running with the same arguments and ``ckpt_dir`` resumes from the latest checkpoint and
    continues the same run (same data order and random keys); asking for more ``epochs`` extends
    it. A different model, config, optimiser, batch size, key or training-set size in an existing
    run directory is refused.

    Args:
        key: ``jax.random.key`` or int seed: initialisation, shuffling, dropout and masking.
        model_name: ``"word_cnn"``, ``"ds2"``, ``"speaker_cnn"``, ``"phone_mlp"`` or
            ``"transformer"``.
        train_data: training split.
        val_data: validation split, evaluated after every epoch (and at epoch 0).
        epochs: total epochs of the run.
        ckpt_dir: run directory (created).
        preset: config preset (``"paper"``, ``"cpu"``, ``"tiny"``, ...).
        n_classes: output classes (default: ``max(label) + 1`` for classification, 29 for CTC).
        config: further config overrides, e.g. ``{"rnn_layers": 3}``.
        batch_size: training batch size (the last partial batch of an epoch is dropped; the data
            are reshuffled every epoch).
        optimizer, learning_rate, lr_decay, weight_decay, grad_clip: see :func:`make_optimizer`.
        schedule, warmup_steps: learning-rate schedule (:func:`make_schedule`); ``"cosine"``
            decays to 0 at the end of ``epochs``, so extending such a run with more ``epochs``
            is refused (it would change the schedule).
        augment: SpecAugment-style masking/time shift of the training inputs
            (:func:`geomjax.models.augment.spec_augment`), e.g. ``{"freq_masks": 1,
            "freq_width": 8, "time_masks": 2, "time_width": 20, "time_shift": 10}``; for
            ``(B, F, T)`` images and ``(B, T, F)`` sequences (no shift there). None: off.
        sortagrad: sequence models: the first epoch visits batches in increasing length
            (SortaGrad, Amodei et al. 2016).
        length_grouped: sequence models: every (other) epoch forms batches of similar length
            (sorted within random groups of 32 batches), visited in random order: less padding
            with ``length_bucket``.
        patience: stop once the validation metric (accuracy, CER or loss) has not improved for
            this many epochs (needs ``val_data``). None: run all epochs.
        length_bucket: for sequence models, trim each batch to the longest row rounded up to a
            multiple of this many frames (fewer padded frames, a bounded number of compilations).
        eval_batch_size: validation batch size.
        progress: show progress bars.
        max_steps_per_epoch: cap on steps per epoch (quick runs).
        time_budget_s: stop after the first epoch that ends past this many seconds of this call
            (the run stays resumable: call again to continue).

    Returns:
        :class:`TrainResult`.
    """
    from geomjax.models._config import MODEL_NAMES

    if model_name not in MODEL_NAMES:
        raise ValueError(f"`model_name` must be one of {list(MODEL_NAMES)}; got {model_name!r}.")
    if int(epochs) < 0:
        raise ValueError(f"`epochs` must be >= 0; got {epochs}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    key = _as_key(key)
    task = TASKS[model_name]
    seq = model_name in SEQUENCE_MODELS
    if not isinstance(train_data, TaskData):
        raise TypeError(f"`train_data` must be a TaskData; got {type(train_data).__name__}.")
    if n_classes is None and task == "classify":
        n_classes = int(train_data.labels.max()) + 1 if train_data.labels is not None else None
    _check_data(task, train_data, "train_data", n_classes, seq)
    if val_data is not None:
        _check_data(task, val_data, "val_data", n_classes, seq)
    if len(train_data) < batch_size:
        raise ValueError(
            f"`batch_size`={batch_size} exceeds the {len(train_data)} training samples."
        )
    augment = check_augment(augment)
    if patience is not None and (val_data is None or int(patience) < 1):
        raise ValueError("`patience` needs `val_data` and must be >= 1.")
    if (sortagrad or length_grouped) and not seq:
        raise ValueError("`sortagrad` and `length_grouped` apply to sequence models only.")
    model = build_model(
        model_name, preset, n_classes=n_classes if task != "reconstruct" else None, **(config or {})
    )
    steps_per_epoch = len(train_data) // batch_size
    if max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(max_steps_per_epoch))
    sched = make_schedule(
        learning_rate, steps_per_epoch, lr_decay, schedule, int(epochs), int(warmup_steps)
    )
    tx = make_optimizer(
        optimizer,
        learning_rate,
        steps_per_epoch,
        lr_decay,
        weight_decay,
        grad_clip,
        schedule,
        int(epochs),
        int(warmup_steps),
    )
    k_init, k_run = jax.random.split(key)

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "model": model_name,
        "preset": preset,
        "config": config_to_dict(model.config),
        "task": task,
        "input_shape": [None, *train_data.inputs.shape[1:]],
        "input_dtype": str(train_data.inputs.dtype),
        "sequence": seq,
        "optimizer": {
            "name": optimizer,
            "learning_rate": learning_rate,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            # recorded only when used, so that runs from before these options still resume
            **({"schedule": schedule} if schedule != "exponential" else {}),
            **({"total_epochs": int(epochs)} if schedule == "cosine" else {}),
            **({"warmup_steps": int(warmup_steps)} if warmup_steps else {}),
        },
        **({"augment": augment} if augment else {}),
        **({"sortagrad": True} if sortagrad else {}),
        **({"length_grouped": True} if length_grouped else {}),
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "length_bucket": length_bucket,
        "key_data": _key_data(key),
        "n_train": len(train_data),
        "versions": {
            "jax": jax.__version__,
            "flax": __import__("flax").__version__,
            "optax": optax.__version__,
        },
    }
    info_path = ckpt_dir / "run.json"
    existing = list_checkpoints(ckpt_dir)
    if existing and info_path.exists():
        old = json.loads(info_path.read_text())
        diff = [
            k for k in info if k != "versions" and old.get(k) != json.loads(json.dumps(info[k]))
        ]
        if diff:
            raise ValueError(
                f"`ckpt_dir` {ckpt_dir!s} holds a different run (differs in {diff}); "
                "use a new directory or the same settings to resume."
            )
    elif existing:
        raise ValueError(
            f"`ckpt_dir` {ckpt_dir!s} has checkpoints but no run.json; use a new directory."
        )
    atomic_write_bytes(info_path, json.dumps(info, indent=1).encode())

    x0 = jnp.asarray(train_data.inputs[:1])
    l0 = jnp.asarray(train_data.lengths[:1]) if (seq and train_data.lengths is not None) else None
    variables = init_variables(k_init, model, x0, l0)
    state = {
        "params": variables["params"],
        "batch_stats": variables.get("batch_stats", {}),
        "opt_state": tx.init(variables["params"]),
        "step": jnp.zeros((), jnp.int32),
    }
    train_step, eval_step = _make_steps(model, task, tx, augment)
    metrics = read_metrics(ckpt_dir)
    start = 0
    if existing:
        last, path = existing[-1]
        raw = _restore_raw(path)
        state["params"] = restore_into(state["params"], raw["variables"]["params"], "params")
        if state["batch_stats"]:
            state["batch_stats"] = restore_into(
                state["batch_stats"], raw["variables"]["batch_stats"], "batch_stats"
            )
        state["opt_state"] = restore_into(state["opt_state"], raw["opt_state"], "optimiser state")
        state["step"] = jnp.asarray(int(raw["step"]), jnp.int32)
        start = last + 1
        if len(metrics):
            metrics = metrics[metrics["epoch"] <= last].reset_index(drop=True)
    k_eval = jax.random.fold_in(k_run, 10**6)

    def variables_of(st):
        v = {"params": st["params"]}
        if st["batch_stats"]:
            v["batch_stats"] = st["batch_stats"]
        return v

    def finish_epoch(epoch, train_stats, seconds):
        nonlocal metrics
        row = {
            "epoch": epoch,
            "step": int(state["step"]),
            "lr": float(sched(max(int(state["step"]) - 1, 0))) if epoch else float("nan"),
        }
        row["train_loss"] = train_stats.get("loss", float("nan"))
        if task == "classify":
            row["train_accuracy"] = train_stats.get("accuracy", float("nan"))
        if val_data is not None:
            ev = _evaluate(
                model,
                task,
                eval_step,
                variables_of(state),
                val_data,
                eval_batch_size,
                k_eval,
                seq,
                length_bucket,
            )
            row.update({f"val_{k}": v for k, v in ev.items()})
        row["epoch_seconds"] = seconds
        metrics = pd.concat([metrics, pd.DataFrame([row])], ignore_index=True)
        # metrics first, then the checkpoint: a crash in between only repeats this epoch on resume
        atomic_write_bytes(ckpt_dir / "metrics.csv", metrics.to_csv(index=False).encode())
        save_checkpoint(
            ckpt_dir,
            epoch,
            {
                "epoch": epoch,
                "step": int(state["step"]),
                "variables": variables_of(state),
                "opt_state": serialization.to_state_dict(state["opt_state"]),
            },
        )

    if start == 0:
        finish_epoch(0, {}, 0.0)
        start = 1
    N = len(train_data)
    t_call = time.perf_counter()
    for epoch in range(start, int(epochs) + 1):
        if time_budget_s is not None and time.perf_counter() - t_call > time_budget_s:
            break
        if patience is not None and _stalled(metrics, task, int(patience)):
            break
        t0 = time.perf_counter()
        k_ep = jax.random.fold_in(k_run, epoch)
        perm = np.asarray(jax.random.permutation(k_ep, N))
        if seq and (sortagrad or length_grouped):
            perm = _length_order(
                perm, _lengths_of(train_data), batch_size, sortagrad and epoch == 1, k_ep
            )
        tot = {"loss_sum": 0.0, "n": 0.0, "correct": 0.0}
        bar = tqdm(
            range(steps_per_epoch),
            disable=not progress,
            desc=f"{model_name} epoch {epoch}/{epochs}",
            leave=False,
        )
        for s in bar:
            idx = perm[s * batch_size : (s + 1) * batch_size]
            batch = _batch(train_data, idx, seq, length_bucket)
            state, st = train_step(state, batch, jax.random.fold_in(k_ep, s + 1))
            for k in tot:
                if k in st:
                    tot[k] += float(st[k])
            if progress:
                bar.set_postfix(loss=f"{tot['loss_sum'] / max(tot['n'], 1):.4g}", refresh=False)
        ts = {"loss": tot["loss_sum"] / max(tot["n"], 1.0)}
        if task == "classify":
            ts["accuracy"] = tot["correct"] / max(tot["n"], 1.0)
        finish_epoch(epoch, ts, time.perf_counter() - t0)
    return TrainResult(model, variables_of(state), metrics, ckpt_dir, list_checkpoints(ckpt_dir))
