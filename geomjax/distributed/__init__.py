"""geomjax.distributed: shard batched analyses over devices and hosts.

* meshes -- :func:`make_mesh`, :func:`mesh_size`; :func:`sharded_vmap` / :func:`shard_batch`
  map a single-instance kernel over a leading batch axis split across the mesh (padding uneven
  batches, streaming chunks planned from device memory);
* memory -- :func:`plan_chunk`, :func:`device_memory_budget`, :class:`DoesNotFitError`;
* analyses -- :func:`mftma_sweep` (many MFTMA analyses, anchor problems sharded);
"""

from geomjax.distributed._memory import (
    DoesNotFitError,
    device_memory_budget,
    item_bytes,
    plan_chunk,
)
from geomjax.distributed._mesh import make_mesh, mesh_size, shard_batch, sharded_vmap
from geomjax.distributed._mftma import mftma_sweep, sweep_keys

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
]
