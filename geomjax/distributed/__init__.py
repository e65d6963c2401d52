"""geomjax.distributed: shard batched analyses over devices and hosts.

* meshes -- :func:`make_mesh`, :func:`mesh_size`; :func:`sharded_vmap` (alias
  :func:`shard_batch`) maps a single-instance kernel over a leading batch axis split across the
  mesh with ``jax.shard_map``, padding uneven batches and streaming chunks planned from device
  memory; results equal the unsharded ``vmap`` whatever the device count;
* memory -- :func:`plan_chunk`, :func:`device_memory_budget`, :func:`item_bytes`,
  :class:`DoesNotFitError`;
* analyses -- :func:`mftma_sweep` (many MFTMA analyses; anchor problems sharded;
  :func:`sweep_frame` tabulates them),
  :func:`empirical_capacity_sharded` (dichotomies),
  :func:`cka_matrix_sharded` (pair list; RBF: Gram row blocks),
  :func:`similarity_matrix_sharded` (CCA/SVCCA/PWCCA: representations and pairs),
  :func:`fit_probes_sharded` (probe grids), :func:`slt_spectra_sharded` (frames, Grams summed
  with ``psum``);
* hosts -- :func:`initialize` (``jax.distributed``), :func:`process_slice`,
  :func:`write_shard` / :func:`merge_shards` (per-host Parquet shards into one table);
* command line -- :func:`add_device_args`, :func:`mesh_from_args`,
  :func:`memory_budget_from_args`.
"""

from geomjax.distributed._cli import add_device_args, memory_budget_from_args, mesh_from_args
from geomjax.distributed._empirical import empirical_capacity_sharded
from geomjax.distributed._hosts import initialize, merge_shards, process_slice, write_shard
from geomjax.distributed._jacobian import slt_spectra_sharded
from geomjax.distributed._memory import (
    DoesNotFitError,
    device_memory_budget,
    item_bytes,
    plan_chunk,
)
from geomjax.distributed._mesh import make_mesh, mesh_size, shard_batch, sharded_vmap
from geomjax.distributed._mftma import mftma_sweep, sweep_frame, sweep_keys
from geomjax.distributed._probing import fit_probes_sharded, paper_pipeline_sharded
from geomjax.distributed._similarity import cka_matrix_sharded, similarity_matrix_sharded

__all__ = [
    "make_mesh",
    "mesh_size",
    "sharded_vmap",
    "shard_batch",
    "plan_chunk",
    "device_memory_budget",
    "item_bytes",
    "DoesNotFitError",
    "mftma_sweep",
    "sweep_keys",
    "sweep_frame",
    "empirical_capacity_sharded",
    "cka_matrix_sharded",
    "similarity_matrix_sharded",
    "fit_probes_sharded",
    "paper_pipeline_sharded",
    "slt_spectra_sharded",
    "initialize",
    "process_slice",
    "write_shard",
    "merge_shards",
    "add_device_args",
    "mesh_from_args",
    "memory_budget_from_args",
]
