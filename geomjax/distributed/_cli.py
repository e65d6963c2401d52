"""Command-line options for devices and hosts (``--devices``, ``--memory-budget``, multi-host)."""

from __future__ import annotations

import argparse

from geomjax.distributed._mesh import DEFAULT_AXIS, make_mesh

__all__ = ["add_device_args", "mesh_from_args"]


def _devices(s: str):
    if s == "all":
        return "all"  # every local device (not None, which means the option was not given)
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--devices must be 'all' or a positive int; got {s!r}") \
            from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--devices must be 'all' or a positive int; got {s!r}")
    return n


def add_device_args(
    parser: argparse.ArgumentParser, multi_host: bool = True, devices_help: str | None = None
) -> argparse.ArgumentParser:
    """Add ``--devices``, ``--mesh-axis``, ``--memory-budget`` and multi-host options.

    ``--coordinator/--num-processes/--process-id`` start :func:`jax.distributed.initialize`
    (``--multi-host`` alone detects the cluster from the environment, e.g. Slurm).

    Args:
        parser: the parser to extend.
        multi_host: also add the multi-host options (commands whose work is not split across
            processes leave them out).
        devices_help: help text of ``--devices`` (default: a generic one).

    Returns:
        The parser (an argument group "devices" is added).
    """
    g = parser.add_argument_group("devices")
    g.add_argument("--devices", type=_devices, default=None, metavar="N|all",
                   help=devices_help or "local devices to shard the work over (default: all)")
    g.add_argument("--mesh-axis", default=DEFAULT_AXIS, help="name of the mesh's batch axis")
    g.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="device memory per device for chunk planning, in GiB "
                        "(default: free memory where reported, else 4 GiB)")
    if not multi_host:
        return parser
    g.add_argument("--multi-host", action="store_true",
                   help="start jax.distributed (cluster detected from the environment)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="coordinator address of process 0 (implies --multi-host)")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)
    return parser


def mesh_from_args(args: argparse.Namespace):
    """The mesh the parsed options ask for, starting the multi-host runtime first if asked.

    Returns:
        :class:`jax.sharding.Mesh` over this process's local devices.
    """
    if getattr(args, "multi_host", False) or getattr(args, "coordinator", None):
        from geomjax.distributed._hosts import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)
    devices = getattr(args, "devices", None)
    return make_mesh(None if devices == "all" else devices,
                     axis=getattr(args, "mesh_axis", DEFAULT_AXIS))


def memory_budget_from_args(args: argparse.Namespace) -> int | None:
    """``--memory-budget`` in bytes (``None`` when not given)."""
    gib = getattr(args, "memory_budget", None)
    if gib is None:
        return None
    if gib <= 0:
        raise ValueError(f"--memory-budget must be positive; got {gib}.")
    return int(gib * 2**30)
