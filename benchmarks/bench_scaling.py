"""Scaling of the sharded analyses (geomjax.distributed).

Run from the repository root::

    python -m benchmarks.bench_scaling          # weak scaling on 1, 2, 4 simulated CPU devices
    python -m benchmarks.bench_scaling --smoke --no-record
    python -m benchmarks.bench_scaling --gpu    # 700-analysis MFTMA sweep, 12x90 CKA matrix:
                                                # accelerator vs CPU

Weak scaling: each device count runs in its own process (JAX fixes the device count when it
starts, ``--xla_force_host_platform_device_count``) with a fixed amount of work per device (an
MFTMA sweep of ``analyses-per-device x devices`` analyses and an all-pairs CKA over a pair list
that grows with the device count). Efficiency is ``t(1) / t(n)``; ideal is 1. Simulated devices
share the machine's cores, so on a machine with fewer cores than devices this measures the
sharding overhead, not a speed-up. Before any time is reported, the sharded results are checked
against the single-device functions (``geomjax.manifold.mftma`` and
``geomjax.similarity.cka_matrix``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _problems(n_analyses, P, M, N, R, D, n_samples, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    sets = [(rng.normal(size=(P, 1, N)) + 0.5 * rng.normal(size=(P, M, N))).astype(np.float32)
            for _ in range(n_analyses)]
    reps = [rng.normal(size=(n_samples, D)).astype(np.float32) for _ in range(R)]
    return sets, reps


def _timed(fn, repeat):
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return out, first, best


def _check_sweep(key, sets, results, settings, n_check):
    import jax
    import numpy as np

    from geomjax.manifold import mftma

    keys = jax.random.split(key, len(sets))
    worst = 0.0
    for i in range(min(n_check, len(sets))):
        ref = mftma(keys[i], sets[i], **settings)
        for f in ("capacity", "radius", "dimension"):
            a, b = float(getattr(results[i], f)), float(getattr(ref, f))
            worst = max(worst, abs(a - b) / max(abs(b), 1e-30))
    if not np.isfinite(worst) or worst > 1e-4:
        raise SystemExit(f"sharded MFTMA sweep disagrees with mftma (max rel {worst:.2e}); no "
                         "timing reported.")
    return worst


def _check_cka(xs, ys, got):
    import numpy as np

    from geomjax.similarity import cka_matrix

    ref = cka_matrix(xs, ys, method="feature").values
    worst = float(np.max(np.abs(np.asarray(got.values) - ref)))
    if not np.isfinite(worst) or worst > 1e-4:
        raise SystemExit(f"sharded CKA disagrees with cka_matrix (max abs {worst:.2e}); no timing "
                         "reported.")
    return worst


def worker(n_dev, args):
    """One device count, in a fresh process; prints a JSON line."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={n_dev}").strip()
    import jax

    import geomjax.distributed as gd

    mesh = gd.make_mesh(n_dev)
    B = args.analyses_per_device * n_dev
    R = args.reps_per_device * n_dev
    sets, reps = _problems(B, args.P, args.M, args.N, R, args.D, args.samples)
    settings = dict(n_t=args.n_t, n_reps=2, stiefel_steps=100)
    key = jax.random.key(0)
    res, first_m, best_m = _timed(
        lambda: gd.mftma_sweep(key, sets, mesh=mesh, **settings), args.repeat)
    err_m = _check_sweep(key, sets, res, settings, 2)
    # CKA: the first rep against all others: R - 1 cross pairs + R diagonal terms, ~ linear in R.
    xs, ys = reps[:1], reps[1:]
    cka, first_c, best_c = _timed(lambda: gd.cka_matrix_sharded(xs, ys, mesh=mesh),
                                  args.repeat)
    err_c = _check_cka(xs, ys, cka)
    print("RESULT " + json.dumps(dict(
        devices=n_dev, analyses=B, mftma_s=best_m, mftma_first_s=first_m, mftma_err=err_m,
        reps=R, cka_s=best_c, cka_first_s=first_c, cka_err=err_c)), flush=True)


def weak_scaling(args):
    from benchmarks._common import md_table, record

    rows = []
    for n in args.devices:
        env = dict(os.environ)
        env.pop("XLA_FLAGS", None)
        cmd = [sys.executable, "-m", "benchmarks.bench_scaling", "--worker", str(n),
               "--analyses-per-device", str(args.analyses_per_device), "--P", str(args.P),
               "--M", str(args.M), "--N", str(args.N), "--n-t", str(args.n_t),
               "--reps-per-device", str(args.reps_per_device), "--D", str(args.D),
               "--samples", str(args.samples), "--repeat", str(args.repeat)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"worker for {n} devices failed:\n{p.stdout[-2000:]}\n"
                             f"{p.stderr[-2000:]}")
        r = json.loads(lines[-1][7:])
        r["process_s"] = time.perf_counter() - t0
        rows.append(r)
    base = rows[0]
    table = []
    for r in rows:
        table.append(dict(
            devices=r["devices"], analyses=r["analyses"], mftma_s=r["mftma_s"],
            mftma_eff=base["mftma_s"] * 1.0 / r["mftma_s"] if r["mftma_s"] else float("nan"),
            mftma_compile_s=max(r["mftma_first_s"] - r["mftma_s"], 0.0),
            cka_reps=r["reps"], cka_s=r["cka_s"],
            cka_eff=base["cka_s"] * 1.0 / r["cka_s"] if r["cka_s"] else float("nan"),
            max_rel_err=max(r["mftma_err"], r["cka_err"])))
    md = md_table(table)
    print(md)
    note = (f"Weak scaling on simulated CPU devices (`--xla_force_host_platform_device_count`): "
            f"per device {args.analyses_per_device} MFTMA analyses (P={args.P}, M={args.M}, "
            f"N={args.N}, n_t={args.n_t}) and {args.reps_per_device} CKA representations "
            f"({args.samples} x {args.D}); efficiency t(1)/t(n). Simulated devices share "
            f"{os.cpu_count()} cores (and this machine was shared with other jobs), so "
            "efficiency below 1 is the cost of running n devices' work on the same cores, not a "
            "scaling limit of the sharding. Errors: sharded vs single-device functions.\n\n")
    record("Scaling: weak scaling on simulated CPU devices", note + md, smoke=args.no_record)


def gpu_mode(args):
    import jax

    from benchmarks._common import md_table, record

    accel = [d for d in jax.devices() if d.platform != "cpu"]
    if not accel:
        print("no accelerator: GPU strong scaling not measured")
        return
    import geomjax.distributed as gd

    B = 4 if args.smoke else 700
    P, M, N = (5, 6, 32) if args.smoke else (50, 20, 2048)
    sets, _ = _problems(B, P, M, N, 0, 1, 2)
    settings = dict(n_t=20 if args.smoke else 200, n_reps=2 if args.smoke else 10)
    key = jax.random.key(0)
    rows = []
    mesh = gd.make_mesh()
    res, first, best = _timed(lambda: gd.mftma_sweep(key, sets, mesh=mesh, **settings), 1)
    err = _check_sweep(key, sets, res, settings, 2)
    rows.append(dict(task=f"MFTMA sweep {B} analyses", device=accel[0].device_kind, wall_s=best,
                     compile_s=max(first - best, 0.0), max_rel_err=err))
    n_cpu = max(1, min(B, args.cpu_analyses))
    cpu_mesh = gd.make_mesh(jax.devices("cpu")[:1])
    with jax.default_device(jax.devices("cpu")[0]):
        _, f_c, b_c = _timed(lambda: gd.mftma_sweep(key, sets[:n_cpu], mesh=cpu_mesh,
                                                    **settings), 0)
    rows.append(dict(task=f"MFTMA sweep {n_cpu} analyses (per-analysis x{B / n_cpu:.0f})",
                     device="cpu", wall_s=b_c, compile_s=max(f_c - b_c, 0.0), max_rel_err=0.0))
    n_s, D = (64, 16) if args.smoke else (2000, 512)
    _, reps = _problems(0, 1, 1, 1, 12 + 90, D, n_s)
    xs, ys = reps[:12], reps[12:]
    cka, first, best = _timed(lambda: gd.cka_matrix_sharded(xs, ys, mesh=mesh), 1)
    err = _check_cka(xs, ys, cka)
    rows.append(dict(task=f"CKA 12x90 ({n_s} x {D})", device=accel[0].device_kind, wall_s=best,
                     compile_s=max(first - best, 0.0), max_rel_err=err))
    with jax.default_device(jax.devices("cpu")[0]):
        _, f_c, b_c = _timed(lambda: gd.cka_matrix_sharded(xs, ys, mesh=cpu_mesh), 0)
    rows.append(dict(task=f"CKA 12x90 ({n_s} x {D})", device="cpu", wall_s=b_c,
                     compile_s=max(f_c - b_c, 0.0), max_rel_err=0.0))
    md = md_table(rows)
    print(md)
    record("Scaling: MFTMA sweep and CKA matrix, accelerator vs CPU", md,
           smoke=args.smoke or args.no_record)


def main(argv=None):
    from benchmarks._common import base_parser

    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="accelerator vs CPU at full size")
    p.add_argument("--worker", type=int, default=None, help=argparse_hidden())
    p.add_argument("--devices", type=int, nargs="+", default=None)
    p.add_argument("--analyses-per-device", type=int, default=None)
    p.add_argument("--P", type=int, default=None)
    p.add_argument("--M", type=int, default=None)
    p.add_argument("--N", type=int, default=None)
    p.add_argument("--n-t", type=int, default=None)
    p.add_argument("--reps-per-device", type=int, default=None)
    p.add_argument("--D", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--cpu-analyses", type=int, default=35,
                   help="analyses timed on the CPU in --gpu mode")
    args = p.parse_args(argv)
    small = dict(devices=[1, 2], analyses_per_device=1, P=4, M=5, N=12, n_t=8,
                 reps_per_device=2, D=6, samples=20)
    full = dict(devices=[1, 2, 4], analyses_per_device=4, P=10, M=20, N=64, n_t=50,
                reps_per_device=16, D=64, samples=500)
    for k, v in (small if args.smoke else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.smoke:
        args.repeat = 1
        args.no_record = True
    if args.worker is not None:
        worker(args.worker, args)
    elif args.gpu:
        gpu_mode(args)
    else:
        weak_scaling(args)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
