"""Per-sample Jacobians (SLT) and streamed SLT spectra of a ReLU MLP: geomjax vs references.

Network: the phone-MLP shape (5 ReLU hidden layers of 256 units, 253 inputs, 40 linear outputs;
He-initialised, seeded) on standard-normal input frames.

1. SLT spectra + AUC of all 5*256 + 40 = 1,320 nodes over N frames (``slt_spectra``, streamed
   F x F Grams): wall time, achieved GFLOP/s against the machine's own GEMM rate, peak RSS. The
   answer is checked first: for a few nodes per layer the full N x F SLT matrix is stacked and its
   SVD AUC compared with the streamed one.
2. All-layer per-sample Jacobians of a batch of frames: the exact masked-weight product against
   ``jax.vmap(jax.jacrev)``, ``jax.vmap(jax.jacfwd)``, a naive per-sample ``jax.jacrev`` loop and
   ``torch.func.vmap(jacrev)`` (when torch is importable), after an agreement check.

    python -m benchmarks.bench_jacobian              # CPU defaults: 10,000 frames
    python -m benchmarks.bench_jacobian --smoke --no-record
    python -m benchmarks.bench_jacobian --part jacobians    # only part 2, not recorded
    python -m benchmarks.bench_jacobian --n-frames 1000000 --batch-size 4096   # GPU mode
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._common import _cpu, base_parser, block, md_table, peak_rss_mb, record, time_call

F, WIDTH, DEPTH, K = 253, 256, 5, 40


def _parser():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n-frames", type=int, default=10_000, help="frames for the spectra run")
    p.add_argument("--batch-size", type=int, default=1024, help="streamed batch size")
    p.add_argument("--jac-frames", type=int, default=256, help="frames for the Jacobian comparison")
    p.add_argument(
        "--loop-frames", type=int, default=16, help="frames for the naive per-sample loop"
    )
    p.add_argument("--check-frames", type=int, default=2_000, help="frames in the agreement check")
    p.add_argument("--n-inputs", type=int, default=F, help="input features F")
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--depth", type=int, default=DEPTH)
    p.add_argument(
        "--part",
        choices=("all", "spectra", "jacobians"),
        default="all",
        help="run only one part (printed, never recorded: results are recorded for 'all' only)",
    )
    return p


def _gemm_gflops(jax, jnp, width, cols, repeat):
    """The machine's rate on the SLT recursion's own GEMM shape (width x width) @ (width x cols)."""
    a = jnp.ones((width, width), jnp.float32)
    b = jnp.ones((width, cols), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    _, t = time_call(f, a, b, repeat=repeat)
    return 2 * width * width * cols / t.wall_s / 1e9


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.smoke:
        args.n_frames, args.batch_size, args.jac_frames = 200, 128, 16
        args.loop_frames, args.check_frames, args.repeat = 4, 300, 1
        args.width, args.depth, args.n_inputs = 32, 3, 23

    import jax
    import jax.numpy as jnp

    import geomjax.jacobian as gj

    width, depth, F = args.width, args.depth, args.n_inputs
    sizes = (F,) + (width,) * depth + (K,)
    n_nodes = width * depth + K
    params = gj.init_relu_mlp(jax.random.key(0), sizes, dtype=jnp.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n_frames, F), dtype=np.float32)
    print(
        f"net {sizes}, {n_nodes} nodes; {args.n_frames} frames, batch {args.batch_size}; "
        f"device {jax.devices()[0].device_kind}"
    )

    spec_rows, rows = None, None
    if args.part in ("all", "spectra"):
        spec_rows, spec_md = _spectra_part(args, jax, jnp, gj, params, x, rng, sizes)
    if args.part in ("all", "jacobians"):
        rows, table = _jacobian_part(args, jax, jnp, gj, params, x, depth)
    if args.part != "all":
        return rows, spec_rows
    md = (
        spec_md + "\n\n**All-layer per-sample Jacobians** (best of "
        f"{args.repeat}; slowdown = wall time per frame / geomjax's; cpu_slowdown the same in "
        "process CPU time):\n\n"
        + table
        + "\n\nGFLOP/s is the SLT recursion plus Gram flops over wall time; the GEMM rate is the "
        "machine's own rate on the recursion's (width x width)(width x batch*F) product, measured "
        "in the same process. The machine is shared with other jobs, so absolute times vary "
        "between runs (process CPU seconds are less sensitive to that).\n"
    )
    record(
        f"jacobian: SLT spectra and per-sample Jacobians ({n_nodes} nodes)",
        md,
        smoke=args.smoke or args.no_record,
    )
    return rows, spec_rows


def _spectra_part(args, jax, jnp, gj, params, x, rng, sizes):
    width, depth, F = args.width, args.depth, args.n_inputs
    n_nodes = width * depth + K
    # ---------------------------------------------------------------- 1. spectra timing -------
    warm = gj.slt_spectra(params, x[: args.batch_size], batch_size=args.batch_size)  # compile
    del warm
    c0, t0 = _cpu(), time.perf_counter()
    res = gj.slt_spectra(params, x, batch_size=args.batch_size)
    t_spec = time.perf_counter() - t0
    c_spec = _cpu() - c0
    rss = peak_rss_mb()
    flops_per = (
        2 * F * sum(a * b for a, b in zip(sizes[1:-1], sizes[2:], strict=False))
        + 2 * F * F * n_nodes
    )
    total_flops = flops_per * args.n_frames
    gemm = _gemm_gflops(jax, jnp, width, args.batch_size * F, args.repeat)
    # ------------------------------------ 1. agreement check (before anything is reported) --
    n_check = min(args.check_frames, args.n_frames)
    check = (
        res
        if n_check == args.n_frames
        else gj.slt_spectra(params, x[:n_check], batch_size=args.batch_size)
    )
    pick = rng.choice(width, 3, replace=False)
    nodes = [pick] * depth + [np.array([0, 1, 2])]
    rows = [[[] for _ in range(3)] for _ in range(depth + 1)]
    for s in range(0, n_check, args.batch_size):
        for li, A in enumerate(gj.relu_mlp_slt(params, x[s : s + args.batch_size])):
            A = np.asarray(A, np.float64)
            for j, m in enumerate(nodes[li]):
                rows[li][j].append(A[:, m, :])
    worst = 0.0
    for li in range(depth + 1):
        for j, m in enumerate(nodes[li]):
            sv = np.linalg.svd(np.concatenate(rows[li][j]), compute_uv=False)
            if sv[0] == 0:
                continue
            ref = np.trapezoid(sv[: min(n_check, F)] / sv[0])
            worst = max(worst, abs(float(check.auc[li][0][m]) - ref) / max(ref, 1e-12))
    # float32 Grams: sigma below ~sqrt(eps) sigma_1 is noise, bounding the AUC error (see docs)
    tol = 5e-3
    print(
        f"streamed vs stacked-SVD AUC ({n_check} frames, {3 * (depth + 1)} nodes): "
        f"max rel. diff {worst:.2e}"
    )
    if not worst <= tol:
        raise SystemExit(
            f"streamed spectra disagree with the stacked SVD ({worst:.2e} > {tol}); "
            "no timing reported."
        )

    mean_auc = {n: float(np.nanmean(a[0])) for n, a in zip(res.layer_names, res.auc, strict=False)}
    print(
        f"SLT spectra + AUC, {n_nodes} nodes x {args.n_frames} frames: {t_spec:.1f} s, "
        f"(process CPU {c_spec:.1f} s), {total_flops / t_spec / 1e9:.0f} GFLOP/s "
        f"(GEMM {gemm:.0f} GFLOP/s), peak RSS {rss:.0f} MB"
    )
    print("mean node AUC per layer:", {k: round(v, 2) for k, v in mean_auc.items()})

    spec_rows = [
        {
            "nodes": n_nodes,
            "frames": args.n_frames,
            "batch": args.batch_size,
            "dtype": "float32",
            "wall_s": t_spec,
            "process_cpu_s": c_spec,
            "GFLOP/s": total_flops / t_spec / 1e9,
            "GEMM GFLOP/s": gemm,
            "peak_RSS_MB": rss,
            "AUC check max rel diff": worst,
        }
    ]
    md = (
        f"ReLU MLP {'x'.join(map(str, sizes))} (float32, random He init, "
        "standard-normal frames).\n\n"
        "**SLT spectra + AUC of every node, streamed F x F Grams** (`slt_spectra`; timed after a "
        f"one-batch compile; {total_flops / 1e12:.2f} TFLOP; AUCs of {3 * (depth + 1)} nodes "
        "checked "
        f"against the SVD of their stacked {n_check} x {F} SLT matrices):\n\n"
        + md_table(spec_rows, ".4g")
    )
    return spec_rows, md


def _jacobian_part(args, jax, jnp, gj, params, x, depth):
    # ---------------------------------------------------------------- 2. Jacobians ------------
    xb = jnp.asarray(x[: args.jac_frames])

    def all_layers(p, xi):
        logits, acts = gj.relu_mlp_apply(p, xi)
        return tuple(acts) + (logits,)

    def masked(p, xb):
        return gj.relu_mlp_slt(p, xb)

    vrev = jax.jit(lambda p, xb: jax.vmap(jax.jacrev(lambda xi: all_layers(p, xi)))(xb))
    vfwd = jax.jit(lambda p, xb: jax.vmap(jax.jacfwd(lambda xi: all_layers(p, xi)))(xb))
    one_rev = jax.jit(lambda p, xi: jax.jacrev(lambda v: all_layers(p, v))(xi))

    def naive(p, xb):
        return [one_rev(p, xb[i]) for i in range(xb.shape[0])]

    t0 = time.perf_counter()
    ref = [np.asarray(a) for a in block(masked(params, xb))]
    t_first_m = time.perf_counter() - t0

    def agree(out, n=None):
        out = [np.asarray(o)[:n] for o in out]
        return max(
            float(np.max(np.abs(o - r[: o.shape[0]])) / (np.max(np.abs(r)) + 1e-30))
            for o, r in zip(out, ref, strict=False)
        )

    def first_call(f, *a):
        t0 = time.perf_counter()
        out = block(f(*a))
        return out, time.perf_counter() - t0

    rows = []
    _, t_m = time_call(masked, params, xb, repeat=args.repeat)
    per_m = t_m.wall_s / args.jac_frames
    cpu_m = t_m.cpu_s / args.jac_frames
    rows.append(
        {
            "method": "geomjax relu_mlp_slt (active-unit masked product)",
            "frames": args.jac_frames,
            "ms/frame": 1e3 * per_m,
            "cpu_ms/frame": 1e3 * cpu_m,
            "compile_s": max(t_first_m - t_m.wall_s, 0.0),
            "max_rel_err": 0.0,
            "slowdown_vs_geomjax": 1.0,
            "cpu_slowdown": 1.0,
        }
    )
    for name, f, n in [
        ("jax vmap(jacrev)", vrev, args.jac_frames),
        ("jax vmap(jacfwd)", vfwd, args.jac_frames),
        ("naive per-sample jax.jacrev loop", naive, args.loop_frames),
    ]:
        xin = xb[:n]
        out, t_first = first_call(f, params, xin)
        if name.startswith("naive"):
            out = [np.stack([np.asarray(o[li]) for o in out]) for li in range(depth + 1)]
        err = agree(out, n)
        if err > 1e-4:
            raise SystemExit(f"{name} disagrees with the masked product (rel. err {err:.1e}).")
        _, t = time_call(f, params, xin, repeat=args.repeat, warmup=False)
        rows.append(
            {
                "method": name,
                "frames": n,
                "ms/frame": 1e3 * t.wall_s / n,
                "cpu_ms/frame": 1e3 * t.cpu_s / n,
                "compile_s": max(t_first - t.wall_s, 0.0),
                "max_rel_err": err,
                "slowdown_vs_geomjax": t.wall_s / n / per_m,
                "cpu_slowdown": t.cpu_s / n / cpu_m,
            }
        )
    try:
        import torch
        from torch.func import jacrev as tjacrev
        from torch.func import vmap as tvmap
    except ImportError:
        torch = None
        print("torch not importable: torch.func reference skipped")
    if torch is not None:
        tw = [(torch.tensor(np.asarray(k)), torch.tensor(np.asarray(b))) for k, b in params]

        def tall(xi):
            h, outs = xi, []
            for k, b in tw[:-1]:
                h = torch.relu(h @ k + b)
                outs.append(h)
            outs.append(h @ tw[-1][0] + tw[-1][1])
            return tuple(outs)

        tx = torch.tensor(np.asarray(xb))
        tfun = tvmap(tjacrev(tall))
        with torch.no_grad():
            out = [o.numpy() for o in tfun(tx)]
        err = agree(out)
        if err > 1e-4:
            raise SystemExit(f"torch.func disagrees with the masked product (rel. err {err:.1e}).")
        _, t = time_call(tfun, tx, repeat=args.repeat)
        rows.append(
            {
                "method": f"torch.func vmap(jacrev) (torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads)",
                "frames": args.jac_frames,
                "ms/frame": 1e3 * t.wall_s / args.jac_frames,
                "cpu_ms/frame": 1e3 * t.cpu_s / args.jac_frames,
                "compile_s": None,
                "max_rel_err": err,
                "slowdown_vs_geomjax": t.wall_s / args.jac_frames / per_m,
                "cpu_slowdown": t.cpu_s / args.jac_frames / cpu_m,
            }
        )
    for r in rows:
        r["compile_s"] = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
    table = md_table(rows, ".3g")
    print(table)
    return rows, table


if __name__ == "__main__":
    main()
