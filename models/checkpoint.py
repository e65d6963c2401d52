"""Per-epoch checkpoints: Flax msgpack written atomically, listed and loaded without unpickling.

A run directory holds ``run.json`` (model name, config, input shape, optimiser settings, seed),
``metrics.csv`` (one row per epoch) and ``epoch_0000.msgpack`` ... (epoch 0 = the initial
weights). Files are written to a temporary name in the same directory, flushed and fsync'ed, then
renamed over the target (``os.replace``), so an interruption never leaves a truncated checkpoint.
msgpack holds only numbers, strings and arrays: loading executes no code.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import serialization
from geomjax.models._config import config_from_dict

__all__ = [
    "Checkpoint",
    "atomic_write_bytes",
    "save_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_run_info",
    "read_metrics",
]

_PAT = re.compile(r"^epoch_(\d{4,})\.msgpack$")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_path(ckpt_dir, epoch: int) -> Path:
    return Path(ckpt_dir) / f"epoch_{int(epoch):04d}.msgpack"


def save_checkpoint(ckpt_dir, epoch: int, state: dict[str, Any]) -> Path:
    """Serialise arrays/numbers with Flax msgpack to ``epoch_<NNNN>.msgpack`` (epoch zero-padded
    to 4 digits), atomically."""
    if int(epoch) < 0:
        raise ValueError(f"`epoch` must be >= 0; got {epoch}.")
    host = jax.tree_util.tree_map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, state)
    path = checkpoint_path(ckpt_dir, epoch)
    atomic_write_bytes(path, serialization.msgpack_serialize(host))
    return path


def list_checkpoints(ckpt_dir) -> list[tuple[int, Path]]:
    """``[(epoch, path), ...]`` of the checkpoints in ``ckpt_dir``, by epoch."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _PAT.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def read_run_info(ckpt_dir) -> dict[str, Any]:
    """The ``run.json`` of a run directory."""
    p = Path(ckpt_dir) / "run.json"
    if not p.exists():
        raise FileNotFoundError(
            f"no run.json in {ckpt_dir!s}; is it a directory written by `train`?"
        )
    return json.loads(p.read_text())


def read_metrics(ckpt_dir) -> pd.DataFrame:
    """The per-epoch metrics table of a run (empty when none was written yet)."""
    p = Path(ckpt_dir) / "metrics.csv"
    return pd.read_csv(p) if p.exists() else pd.DataFrame()


def _restore_raw(path: Path) -> dict:
    return serialization.msgpack_restore(path.read_bytes())


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        name: model name.
        model: the Flax module, rebuilt from ``run.json``.
        variables: ``{"params": ..., "batch_stats": ...}`` as JAX arrays.
        epoch: the epoch (0 = initial weights).
        step: optimiser steps taken.
        path: the file it came from.
        info: the run's ``run.json``.
    """

    name: str
    model: nn.Module
    variables: dict
    epoch: int
    step: int
    path: Path
    info: dict


def _target_variables(model, info):
    shape = tuple(info["input_shape"])
    dtype = jnp.dtype(info.get("input_dtype", "float32"))
    x = jnp.zeros((1,) + shape[1:], dtype)
    lengths = jnp.full((1,), shape[1], jnp.int32) if info.get("sequence") else None
    return jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.key(0), "dropout": jax.random.key(0)}, x, lengths, train=False
        )
    )


def load_checkpoint(ckpt_dir, epoch: int | None = None) -> Checkpoint:
    """Load the checkpoint of ``epoch`` (default: the latest) from a run directory.

    The model is rebuilt from ``run.json`` and the stored arrays are checked against its variable
    tree (names and shapes) before use.

    Args:
        ckpt_dir: a run directory written by :func:`geomjax.models.train`.
        epoch: which epoch; None for the latest.

    Returns:
        :class:`Checkpoint`.
    """
    from geomjax.models.zoo import MODEL_CLASSES

    ckpts = dict(list_checkpoints(ckpt_dir))
    if not ckpts:
        raise FileNotFoundError(f"no checkpoints (epoch_<NNNN>.msgpack files) in {ckpt_dir!s}.")
    if epoch is None:
        epoch = max(ckpts)
    if int(epoch) not in ckpts:
        raise ValueError(
            f"`epoch`={epoch} has no checkpoint in {ckpt_dir!s}; available: {sorted(ckpts)}."
        )
    info = read_run_info(ckpt_dir)
    name = info["model"]
    model = MODEL_CLASSES[name](config_from_dict(name, info["config"]))
    raw = _restore_raw(ckpts[int(epoch)])
    target = _target_variables(model, info)
    variables = restore_into(target, raw["variables"], "variables")
    return Checkpoint(
        name, model, variables, int(epoch), int(raw.get("step", 0)), ckpts[int(epoch)], info
    )


def restore_into(target, raw, what: str):
    """Restore a raw msgpack dict into the structure of ``target`` (checked), as JAX arrays."""
    try:
        restored = serialization.from_state_dict(target, raw)
    except (ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {what} do not match the model: {e}") from e
    flat_t = jax.tree_util.tree_leaves_with_path(target)
    flat_r = jax.tree_util.tree_leaves(restored)
    for (path, t), r in zip(flat_t, flat_r, strict=False):
        if tuple(np.shape(r)) != tuple(t.shape):
            raise ValueError(
                f"checkpoint {what} at {jax.tree_util.keystr(path)} has shape {np.shape(r)}, "
                f"the model expects {tuple(t.shape)}."
            )
    return jax.tree_util.tree_map(lambda r, t: jnp.asarray(r, dtype=t.dtype), restored, target)
