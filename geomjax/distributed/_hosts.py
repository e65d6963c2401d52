"""Several hosts: start JAX's distributed runtime, split work across processes, and merge the
per-host result tables.

Each process runs its share of a sweep on its own local devices (a mesh from
:func:`~geomjax.distributed.make_mesh`) and writes its rows as one Parquet shard
(``part-<process>-of-<count>.parquet``); :func:`merge_shards` concatenates the shards into one
table. Work items are split by index, so the merged table does not depend on the process count
when each item's key is derived from its index.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax
import numpy as np

__all__ = ["initialize", "process_slice", "write_shard", "merge_shards"]

_SHARD = re.compile(r"^part-(\d+)-of-(\d+)\.parquet$")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_device_ids=None,
               timeout_s: int | None = None) -> tuple[int, int]:
    """Start JAX's multi-process runtime (:func:`jax.distributed.initialize`).

    With no arguments the cluster is detected from the environment (Slurm, Open MPI, TPU pods);
    ``GEOMJAX_COORDINATOR``, ``GEOMJAX_NUM_PROCESSES`` and ``GEOMJAX_PROCESS_ID`` override it.
    Call it once per process, before any other JAX call.

    Args:
        coordinator: ``host:port`` of process 0's coordination service.
        num_processes: total number of processes.
        process_id: this process's index in ``[0, num_processes)``.
        local_device_ids: restrict this process to some local devices (e.g. one GPU each).
        timeout_s: seconds to wait for the other processes.

    Returns:
        ``(process_index, process_count)``.

    Raises:
        ValueError: inconsistent arguments.
    """
    coordinator = coordinator or os.environ.get("GEOMJAX_COORDINATOR")
    if num_processes is None and os.environ.get("GEOMJAX_NUM_PROCESSES"):
        num_processes = int(os.environ["GEOMJAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("GEOMJAX_PROCESS_ID"):
        process_id = int(os.environ["GEOMJAX_PROCESS_ID"])
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"`num_processes` must be >= 1; got {num_processes}.")
    if process_id is not None and num_processes is not None and not (
            0 <= process_id < num_processes):
        raise ValueError(f"`process_id` must be in [0, {num_processes}); got {process_id}.")
    if coordinator is not None and ":" not in coordinator:
        raise ValueError(f"`coordinator` must be 'host:port'; got {coordinator!r}.")
    kw = {}
    if local_device_ids is not None:
        kw["local_device_ids"] = local_device_ids
    if timeout_s is not None:
        kw["initialization_timeout"] = int(timeout_s)
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, **kw)
    return jax.process_index(), jax.process_count()


def process_slice(n_items: int, process_index: int | None = None,
                  process_count: int | None = None) -> slice:
    """This process's contiguous share of ``n_items`` work items (sizes differ by at most one).

    Args:
        n_items: total number of items (analyses, pairs, probes...).
        process_index, process_count: default: this process's (``jax.process_index()``,
            ``jax.process_count()``).

    Returns:
        A ``slice`` into ``range(n_items)``.
    """
    if n_items < 0:
        raise ValueError(f"`n_items` must be >= 0; got {n_items}.")
    i = jax.process_index() if process_index is None else int(process_index)
    n = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= i < n:
        raise ValueError(f"`process_index` must be in [0, {n}); got {i}.")
    bounds = np.linspace(0, n_items, n + 1).round().astype(int)
    return slice(int(bounds[i]), int(bounds[i + 1]))


def write_shard(table, folder, process_index: int | None = None,
                process_count: int | None = None) -> Path:
    """Write this process's rows as ``<folder>/part-<i>-of-<n>.parquet`` (atomically).

    Args:
        table: a pandas DataFrame or a pyarrow Table.
        folder: output folder (created if missing), shared by all processes.
        process_index, process_count: default: this process's.

    Returns:
        The path written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    i = jax.process_index() if process_index is None else int(process_index)
    n = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= i < n:
        raise ValueError(f"`process_index` must be in [0, {n}); got {i}.")
    if not isinstance(table, pa.Table):
        try:
            table = pa.Table.from_pandas(table, preserve_index=False)
        except Exception as e:
            raise TypeError(f"`table` must be a pandas DataFrame or pyarrow Table; got "
                            f"{type(table).__name__}.") from e
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{i:05d}-of-{n:05d}.parquet"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def merge_shards(folder, output=None, *, require_complete: bool = True):
    """Concatenate the per-process Parquet shards of ``folder`` into one table.

    Args:
        folder: the folder given to :func:`write_shard`.
        output: optional path; the merged table is also written there (Parquet, atomically).
        require_complete: raise if some process's shard is missing.

    Returns:
        pandas DataFrame, rows in process order.

    Raises:
        FileNotFoundError: no shards in ``folder``.
        ValueError: shards from runs with different process counts, or missing shards.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    found = {}
    for p in sorted(folder.glob("part-*-of-*.parquet")):
        m = _SHARD.match(p.name)
        if m:
            found[(int(m.group(2)), int(m.group(1)))] = p
    if not found:
        raise FileNotFoundError(f"no shards part-<i>-of-<n>.parquet in {str(folder)!r}.")
    counts = {n for n, _ in found}
    if len(counts) != 1:
        raise ValueError(f"{folder} holds shards of runs with different process counts "
                         f"{sorted(counts)}; remove the stale ones.")
    n = counts.pop()
    have = sorted(i for _, i in found)
    if require_complete and have != list(range(n)):
        missing = sorted(set(range(n)) - set(have))
        raise ValueError(f"shards of processes {missing} (of {n}) are missing in {folder}.")
    table = pa.concat_tables([pq.read_table(found[(n, i)]) for i in have],
                             promote_options="default")
    if output is not None:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    df = table.to_pandas()
    return df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
