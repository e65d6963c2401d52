"""The ``geomjax`` command.

Subcommands live in a registry: each is a small ``add_<name>(subparsers)`` function registered with
:func:`subcommand`, which stores the handler as ``func`` on the parsed arguments. New subcommands
are added by registering another function (a later registration of the same name replaces the
earlier one).

* ``geomjax reproduce`` -- the main job: corpus, models and the papers' analyses with a report
  (:mod:`geomjax.experiments`); ``corpus``, ``train``, ``extract``, ``analyze`` and ``report``
  come from there too.
* ``geomjax mftma`` -- one MFTMA analysis of a synthetic set of chosen size (or of a ``.npy`` /
  ``.npz`` array of manifolds).

Every run folder (default ``./geomjax_runs/<UTC timestamp>/``, or ``--out``) receives CSV and
Parquet tables, ``settings.json`` (arguments, library versions, device) and ``figure.png``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["main", "subcommand", "SUBCOMMANDS", "build_parser"]

SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def subcommand(name: str):
    """Register ``add(subparsers)`` as the builder of subcommand ``name``."""

    def wrap(add):
        SUBCOMMANDS[name] = add
        return add

    return wrap


# ---- shared helpers ---------------------------------------------------------------------------


def _run_dir(out: str | None) -> Path:
    if out:
        path = Path(out)
    else:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        path = Path("geomjax_runs") / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


def _versions() -> dict:
    import importlib.metadata as md

    import jax

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
    }
    for pkg in ("geomjax", "jax", "jaxlib", "numpy", "scipy", "pandas", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _write_tables(run: Path, tables: dict) -> list[Path]:
    paths = []
    for name, df in tables.items():
        csv, pq = run / f"{name}.csv", run / f"{name}.parquet"
        df.to_csv(csv, index=False)
        df.to_parquet(pq, index=False)
        paths += [csv, pq]
    return paths


def _write_settings(run: Path, args: argparse.Namespace, extra: dict | None = None) -> Path:
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    settings.update(extra or {})
    path = run / "settings.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({"settings": settings, "versions": _versions()}, indent=2, default=str)
    )
    tmp.replace(path)
    return path


def _print_table(df, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), justify="right")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console = Console()
    if not console.is_terminal:  # files and pipes: do not squeeze the columns to 80 characters
        console = Console(width=160)
    console.print(table)


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=False,
    )


def _setup_precision(args) -> None:
    import jax

    # The command line is the application: it picks float64 for the analysis unless asked not to.
    if not getattr(args, "float32", False):
        jax.config.update("jax_enable_x64", True)


def _summary_row(res, **labels) -> dict:
    s = res.summary()
    row = dict(labels)
    row.update(
        {
            k: s[k]
            for k in (
                "capacity",
                "radius",
                "dimension",
                "center_correlation",
                "residual_center_correlation",
                "K",
                "lower_bound",
                "capacity_ratio",
                "dimension_ratio",
                "kappa",
                "n_t",
                "forms",
                "n_unconverged",
            )
        }
    )
    return row


def _load_manifolds(path: str):
    p = Path(path)
    if not p.exists():
        raise ValueError(f"--input {path}: no such file.")
    if p.suffix == ".npy":
        x = np.load(p, allow_pickle=False)
        return x
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = sorted(z.files)
            if len(keys) == 1 and z[keys[0]].ndim == 3:
                return z[keys[0]]
            return [z[k] for k in keys]
    raise ValueError(f"--input {path}: expected a .npy (P, M, N) array or a .npz of (M, N) arrays.")


# ---- mftma ------------------------------------------------------------------------------------


def _add_mftma_options(p) -> None:
    p.add_argument("--kappa", type=float, default=0.0, help="margin (default 0)")
    p.add_argument("--n-t", dest="n_t", type=int, default=200, help="Gaussian samples per manifold")
    p.add_argument(
        "--K",
        type=int,
        default=None,
        help="centre directions to remove (default: chosen automatically; 0 = none)",
    )
    p.add_argument(
        "--n-reps",
        dest="n_reps",
        type=int,
        default=10,
        help="random restarts of the centre-subspace search",
    )
    p.add_argument(
        "--forms",
        choices=["coded", "paper"],
        default="coded",
        help="radius/dimension formulas: the reference code's or the paper's",
    )
    p.add_argument("--seed", type=int, default=0, help="data and analysis seed")
    p.add_argument("--float32", action="store_true", help="analyse in float32 (default float64)")
    p.add_argument("--out", help="run folder (default ./geomjax_runs/<timestamp>)")
    from geomjax.distributed import add_device_args

    add_device_args(p)


def _figure_single(res, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = res.to_frame()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, col, agg in zip(
        axes,
        ("capacity", "radius", "dimension"),
        (float(res.capacity), float(res.radius), float(res.dimension)),
        strict=True,
    ):
        vals = df[col].to_numpy()
        ax.hist(vals[np.isfinite(vals)], bins=15, color="#4c72b0")
        ax.axvline(agg, color="k", ls="--", lw=1)
        ax.set_xlabel(f"{col} per manifold")
        ax.set_title(f"{col} = {agg:.4g}")
    axes[0].set_ylabel("manifolds")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cmd_mftma(args) -> int:
    _setup_precision(args)
    import jax

    from geomjax.data import synthetic_manifolds
    from geomjax.manifold import mftma

    dtype = np.float32 if args.float32 else np.float64
    if args.input:
        X = _load_manifolds(args.input)
        source = args.input
    else:
        X = synthetic_manifolds(
            args.seed,
            args.P,
            args.M,
            args.N,
            radius=args.radius,
            dim=args.dim,
            center_corr=args.center_corr,
            dtype=dtype,
        )
        source = (
            f"synthetic P={args.P} M={args.M} N={args.N} r={args.radius} d={args.dim} "
            f"centre-corr={args.center_corr}"
        )
    run = _run_dir(args.out)
    with _progress() as prog:
        task = prog.add_task("MFTMA", total=1)
        if (
            getattr(args, "devices", None) is None
            and not getattr(args, "multi_host", False)
            and not getattr(args, "coordinator", None)
        ):
            res = mftma(
                jax.random.key(args.seed),
                X,
                args.kappa,
                args.n_t,
                K=args.K,
                n_reps=args.n_reps,
                forms=args.forms,
            )
        else:
            # anchor problems sharded over the requested devices; the same key as the
            # single-device call, so the result is the same
            from geomjax.distributed import memory_budget_from_args, mesh_from_args, mftma_sweep

            res = mftma_sweep(
                jax.random.key(args.seed)[None],
                [X],
                args.kappa,
                args.n_t,
                K=args.K,
                n_reps=args.n_reps,
                forms=args.forms,
                mesh=mesh_from_args(args),
                memory_budget=memory_budget_from_args(args),
            )[0]
        prog.advance(task)
    summary = _summary_row(res, data=source)
    import pandas as pd

    tables = {"summary": pd.DataFrame([summary]), "manifolds": res.to_frame()}
    _write_tables(run, tables)
    _write_settings(run, args)
    _figure_single(res, run / "figure.png", source)
    _print_table(pd.DataFrame([summary]).drop(columns=["data"]), f"MFTMA: {source}")
    print(f"results: {run}")
    return 0


@subcommand("mftma")
def add_mftma(sub) -> None:
    p = sub.add_parser(
        "mftma",
        help="MFTMA capacity/radius/dimension of one manifold set",
        description="Mean-field manifold analysis (capacity, radius, dimension, "
        "centre correlation) of a synthetic set or of --input.",
    )
    p.add_argument("--input", help=".npy (P, M, N) array or .npz of (M, N) manifold arrays")
    p.add_argument("--P", type=int, default=50, help="manifolds (synthetic)")
    p.add_argument("--M", type=int, default=50, help="points per manifold (synthetic)")
    p.add_argument("--N", type=int, default=5000, help="features (synthetic)")
    p.add_argument("--radius", type=float, default=0.5, help="cloud radius / centre norm")
    p.add_argument("--dim", type=int, default=10, help="intrinsic dimension of each cloud")
    p.add_argument(
        "--center-corr",
        dest="center_corr",
        type=float,
        default=0.0,
        help="strength of a shared low-rank centre component",
    )
    _add_mftma_options(p)
    p.set_defaults(func=cmd_mftma)


# ---- the main job: data, models, analyses and the papers' reproduction ------------------------
# `corpus`, `train`, `extract`, `analyze`, `report` and `reproduce` (which replaces the
# synthetic-manifold `reproduce` above) live in geomjax.experiments.
from geomjax.experiments._commands import SUBCOMMANDS as _EXPERIMENT_COMMANDS  # noqa: E402

for _name, _add in _EXPERIMENT_COMMANDS.items():
    subcommand(_name)(_add)


# ---- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geomjax", description="How speech networks untangle information, layer by layer."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``geomjax`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # bad input the user can fix: one line, no traceback
        print(f"geomjax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
