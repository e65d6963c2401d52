"""Probing pipeline: geomjax vs NeuroX (papers' protocol) and scikit-learn (converged optimum).

Data: utterance vectors from ``planted_probing_data`` (default 10,000 x 11,100 = 6 layers x 1,850,
5 classes with priors .30/.25/.20/.15/.10, 60 planted neurons 2/4/6/10/16/22 per layer, N(0, 1)
noise plus a rank-16 nuisance), 80/20 split, standardised on the train split. Everyone gets the
same float32 arrays.

The pipeline (Chowdhury et al., CSL 2023): ALL probe (elastic net, lam1 = lam2 = 1e-5, Adam
lr 1e-3, 20 epochs, batch 128), neuron ordering at 0.1 % mass steps, ablation keeping the
top / bottom / random 20 %, minimal-set search over {1,5,10,15,20,25,50,75} % with delta = 1
point, control task, 6 layer-wise probes.

* NeuroX (``pip install --no-deps neurox``; skipped when it does not import): its functions step
  by step, one probe per call, as the papers describe.
* geomjax: ``paper_pipeline``, the whole protocol in three compiled stages (one user call).
* Converged optimum: geomjax's converged mode (FISTA) against scikit-learn's saga (elastic net)
  and lbfgs (L2) on the same objective, compared by test accuracy.

Agreement is checked before any speed is reported. Usage::

    python -m benchmarks.bench_probing            # full size, records results/<device>.md
    python -m benchmarks.bench_probing --smoke    # tiny, nothing recorded
    python -m benchmarks.bench_probing --tasks 4 --seeds 5   # GPU target: tasks x seeds batched
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import types

from benchmarks._common import (
    Timing,
    _cpu,
    base_parser,
    md_table,
    peak_rss_mb,
    record,
    single_thread_env,
    time_call,
)

os.environ.setdefault("TQDM_DISABLE", "1")


def _import_neurox():
    """NeuroX 1.0.9 imports imblearn for optional under-sampling only; stand in for it if absent."""
    try:
        import imblearn.under_sampling  # noqa: F401
    except Exception:
        stub = types.ModuleType("imblearn")
        sub = types.ModuleType("imblearn.under_sampling")
        sub.RandomUnderSampler = None
        stub.under_sampling = sub
        sys.modules.setdefault("imblearn", stub)
        sys.modules.setdefault("imblearn.under_sampling", sub)
    try:
        from neurox.interpretation import ablation, linear_probe

        return linear_probe, ablation
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        print(f"NeuroX not available ({type(e).__name__}: {e}); skipping it.")
        return None


def _timed(fn, *args, **kw):
    c0, t0 = _cpu(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = fn(*args, **kw)
    return out, Timing(time.perf_counter() - t0, _cpu() - c0)


def run_neurox(mods, xtr, ytr, xte, yte, widths, args, seed=0):
    """The papers' pipeline with NeuroX, step by step. Returns (results, timings)."""
    import numpy as np
    import torch

    lp, abl = mods
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    c2i = {str(c): c for c in range(n_classes)}
    i2c = {c: str(c) for c in range(n_classes)}
    d = xtr.shape[1]
    kw = dict(lambda_l1=args.lam, lambda_l2=args.lam, num_epochs=args.epochs, batch_size=128,
              learning_rate=args.lr)

    def acc(probe, x, y):
        with contextlib.redirect_stdout(io.StringIO()):
            return lp.evaluate_probe(probe, x, y, idx_to_class=i2c, batch_size=1024)["__OVERALL__"]

    t, res = {}, {}
    probe, t["ALL probe"] = _timed(lp.train_logistic_regression_probe, xtr, ytr, **kw)
    res["acc_all"], te = _timed(acc, probe, xte, yte)
    t["ALL probe"] = Timing(t["ALL probe"].wall_s + te.wall_s, t["ALL probe"].cpu_s + te.cpu_s)
    (order, cutoffs), t["ordering 0.1%"] = _timed(lp.get_neuron_ordering, probe, c2i,
                                                  search_stride=1000)
    order = np.asarray(order)
    res["order"] = order

    def ablations():
        k = int(round(0.2 * d))
        out = []
        for keep in (order[:k], order[-k:], rng.choice(d, k, replace=False)):
            out.append(acc(probe, abl.zero_out_activations_keep_neurons(xte, keep), yte))
        return out

    res["ablation"], t["ablation x3"] = _timed(ablations)

    def minimal():
        accs = []
        for f in args.fractions:
            keep = order[: max(int(round(f * d)), 1)]
            xf = abl.filter_activations_keep_neurons(xtr, keep)
            with contextlib.redirect_stdout(io.StringIO()):
                p = lp.train_logistic_regression_probe(xf, ytr, **kw)
            accs.append(acc(p, abl.filter_activations_keep_neurons(xte, keep), yte))
        return accs

    res["minimal"], t["minimal set x8"] = _timed(minimal)

    def control():
        yc_tr, yc_te = rng.permutation(ytr), rng.permutation(yte)
        with contextlib.redirect_stdout(io.StringIO()):
            p = lp.train_logistic_regression_probe(xtr, yc_tr, **kw)
        return acc(p, xte, yc_te)

    res["acc_control"], t["control probe"] = _timed(control)

    def layers():
        accs = []
        off = np.concatenate([[0], np.cumsum(widths)])
        for i in range(len(widths)):
            xl = np.ascontiguousarray(xtr[:, off[i] : off[i + 1]])
            with contextlib.redirect_stdout(io.StringIO()):
                p = lp.train_logistic_regression_probe(xl, ytr, **kw)
            accs.append(acc(p, np.ascontiguousarray(xte[:, off[i] : off[i + 1]]), yte))
        return accs

    res["layers"], t["6 layer probes"] = _timed(layers)
    t["pipeline total"] = Timing(sum(v.wall_s for v in t.values()),
                                 sum(v.cpu_s for v in t.values()))
    return res, t


def _sklearn_converged(xtr, ytr, xte, yte, lam1, lam2, solver, max_iter):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    n = len(ytr)
    m = LogisticRegression(C=1.0 / (n * (lam1 + 2 * lam2)), l1_ratio=lam1 / (lam1 + 2 * lam2),
                           solver=solver, tol=1e-4, max_iter=max_iter)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(xtr, ytr)
    return float(np.mean(m.predict(xte) == yte)), int(np.max(m.n_iter_))


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=10_000)
    p.add_argument("--width", type=int, default=1850, help="neurons per layer (6 layers)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (papers: 1e-3)")
    p.add_argument("--lam", type=float, default=1e-5, help="lam1 = lam2 of the papers' protocol")
    p.add_argument("--conv-lam1", type=float, default=1e-3, help="converged comparison: lam1")
    p.add_argument("--conv-lam2", type=float, default=1e-3, help="converged comparison: lam2")
    p.add_argument("--conv-layer", default="5",
                   help="features of the converged comparison: a layer index or 'all'")
    p.add_argument("--tasks", type=int, default=1, help="label sets batched in one call")
    p.add_argument("--seeds", type=int, default=1, help="seeds batched in one call")
    p.add_argument("--breakdown", action="store_true",
                   help="also time geomjax's pipeline stage by stage (extra warm calls)")
    p.add_argument("--device-inputs", action="store_true",
                   help="give geomjax its features as device arrays made before timing (as its "
                        "standardizer returns them) instead of the NumPy arrays NeuroX gets")
    p.add_argument("--no-neurox", action="store_true")
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the process to one CPU core (CPU runs pin by default)")
    args = p.parse_args(argv)
    # both sides single-threaded: BLAS/XLA/torch intra-op threads = 1 and, on CPU, the whole
    # process pinned to one core (XLA's CPU client otherwise runs independent thunks on a second
    # thread, whose spinning adds ~40 % CPU-s without making anything faster on 2 loaded cores)
    single_thread_env()
    pinned = None
    if not args.no_pin and hasattr(os, "sched_setaffinity") and not args.smoke:
        pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {pinned})
    args.fractions = (0.01, 0.05, 0.10, 0.15, 0.20, 0.25, 0.50, 0.75)
    if args.smoke:
        # few steps on tiny data: a larger step size so that the probes still learn
        args.n_samples, args.width, args.repeat, args.epochs, args.lr = 400, 30, 1, 4, 3e-2

    import jax
    import numpy as np

    import geomjax.probing as gp

    widths = (args.width,) * 6
    planted_per_layer = (2, 4, 6, 10, 16, 22) if args.width >= 100 else (1, 1, 1, 1, 2, 2)
    x, y, planted, widths = gp.planted_probing_data(
        0, args.n_samples, widths, planted_per_layer=planted_per_layer,
        signal=0.6 if not args.smoke else 2.0)
    ntr = int(0.8 * args.n_samples)
    st = gp.fit_standardizer(x[:ntr])
    # writable C-ordered float32 copies (torch refuses read-only buffers)
    xtr = np.array(st(x[:ntr]), dtype=np.float32, order="C")
    xte = np.array(st(x[ntr:]), dtype=np.float32, order="C")
    ytr, yte = y[:ntr].astype(np.int64), y[ntr:].astype(np.int64)
    del x
    d = xtr.shape[1]
    _, index = gp.concat_layers([xtr[:1, :w] for w in widths])
    # "top 1 %" (111 neurons at full size); at smoke size at least as many as are planted
    top1 = max(int(round(0.01 * d)), len(planted))
    print(f"data: {ntr} train / {len(yte)} test utterances x {d} neurons ({len(widths)} layers), "
          f"{len(planted)} planted; device {jax.devices()[0].device_kind}")

    # ---------------- geomjax: whole pipeline in one call ----------------
    if args.tasks > 1:
        # extra label sets on the same features: coarser groupings of the classes
        extra = [ytr % 2, ytr // 2, (ytr + 1) % 5 // 2, ytr >= 3]
        ytr_b = np.stack([ytr] + [e.astype(np.int64) for e in extra][: args.tasks - 1])
        yte_b = np.stack([yte] + [e.astype(np.int64) for e in
                                  [yte % 2, yte // 2, (yte + 1) % 5 // 2, yte >= 3]]
                         [: args.tasks - 1])
    else:
        ytr_b, yte_b = ytr, yte
    key = jax.random.key(0) if args.seeds == 1 else jax.random.split(jax.random.key(0), args.seeds)

    def gj(timings=None, xs=(xtr, xte)):
        return gp.paper_pipeline(key, xs[0], ytr_b, xs[1], yte_b, index, n_classes=5,
                                 lam1=args.lam, lam2=args.lam, epochs=args.epochs,
                                 learning_rate=args.lr, timings=timings)

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda ev, secs, **kw: compiles.append(secs)
        if ev == "/jax/core/compile/backend_compile_duration" else None)
    t0 = time.perf_counter()
    res = jax.block_until_ready(gj())
    first_s = time.perf_counter() - t0
    n_first, s_first = len(compiles), sum(compiles)
    res, t_gj = time_call(gj, repeat=args.repeat, warmup=False)
    t_gj.first_call_s = first_s
    n_steady = len(compiles) - n_first
    t_dev = None
    if args.device_inputs:
        # the same pipeline on device arrays made before timing (geomjax's own standardizer
        # returns them): no host-to-device copy of the features inside the timed call
        dev = (jax.device_put(xtr), jax.device_put(xte))
        jax.block_until_ready(gj(xs=dev))
        _, t_dev = time_call(gj, repeat=args.repeat, warmup=False, xs=dev)
        print(f"geomjax pipeline on device inputs: {t_dev.cpu_s:.2f} CPU-s / {t_dev.wall_s:.2f} s")
    stage_rows = []
    if args.breakdown:
        # one more warm call that waits for each stage: where geomjax's time goes
        best = {}
        for _ in range(min(max(args.repeat, 1), 2)):
            tm = {}
            jax.block_until_ready(gj(timings=tm))
            for k, v in tm.items():
                if k not in best or v["cpu_s"] < best[k]["cpu_s"]:
                    best[k] = v
        stage_rows = [{"geomjax stage": k, "CPU-s": v["cpu_s"], "wall-s": v["wall_s"]}
                      for k, v in best.items()]
        stage_rows.append({"geomjax stage": "sum of stages",
                           "CPU-s": sum(v["cpu_s"] for v in best.values()),
                           "wall-s": sum(v["wall_s"] for v in best.values())})
        print(md_table(stage_rows, ".3g"))
    sel = (0,) * (np.ndim(res.all_scores.accuracy))
    pick = lambda a: np.asarray(a)[sel]  # noqa: E731  first task, first seed
    g_order = pick(res.order)
    g = dict(
        acc_all=float(pick(res.all_scores.accuracy)),
        acc_control=float(pick(res.control_scores.accuracy)),
        majority=float(pick(res.majority)),
        ablation=[float(a) for a in pick(res.ablation_scores.accuracy)],
        minimal=[float(a) for a in pick(res.minimal_scores.accuracy)],
        layers=[float(a) for a in pick(res.layer_scores.accuracy)],
        planted_top1=int(np.isin(planted, g_order[:top1]).sum()),
        chosen=args.fractions[int(pick(res.minimal_chosen))],
    )
    print(f"geomjax pipeline: {t_gj.cpu_s:.2f} CPU-s / {t_gj.wall_s:.2f} s steady, first call "
          f"{t_gj.first_call_s:.2f} s ({n_first} compilations, {s_first:.1f} s; {n_steady} in "
          f"the {args.repeat} warm calls); ALL acc {g['acc_all']:.3f}")

    # ---------------- NeuroX ----------------
    mods = None if args.no_neurox else _import_neurox()
    nx = t_nx = None
    if mods is not None:
        nx, t_nx = run_neurox(mods, xtr, ytr, xte, yte, widths, args)
        nx["planted_top1"] = int(np.isin(planted, nx["order"][:top1]).sum())
        print(f"NeuroX pipeline: {t_nx['pipeline total'].cpu_s:.2f} CPU-s / "
              f"{t_nx['pipeline total'].wall_s:.2f} s; ALL acc {nx['acc_all']:.3f}")

    # ---------------- converged optimum vs scikit-learn ----------------
    conv_rows = []
    if args.conv_layer == "all":
        cx_tr, cx_te, conv_feats = xtr, xte, f"ALL ({d} neurons)"
    else:
        li = int(args.conv_layer)
        a, b = int(index.offsets[li]), int(index.offsets[li + 1])
        cx_tr, cx_te = np.ascontiguousarray(xtr[:, a:b]), np.ascontiguousarray(xte[:, a:b])
        conv_feats = f"layer {li} ({b - a} neurons)"
    if not args.no_sklearn:
        for name, l1, l2, solver, it in (
            ("elastic net", args.conv_lam1, args.conv_lam2, "saga", 300),
            ("L2", 0.0, args.conv_lam2, "lbfgs", 2000),
        ):
            (sk_acc, sk_it), t_sk = time_call(
                _sklearn_converged, cx_tr, ytr, cx_te, yte, l1, l2, solver, it, repeat=1,
                warmup=False)
            sol, t_c = time_call(
                lambda l1=l1, l2=l2: gp.fit_probes(jax.random.key(0), cx_tr, ytr, lam1=l1,
                                                   lam2=l2, mode="converged", rtol=1e-3,
                                                   max_steps=3000),
                repeat=1)
            c_acc = float(np.mean(np.asarray(gp.predict(sol.value, cx_te)) == yte))
            conv_rows.append({
                "objective": f"{name} (lam1={l1:g}, lam2={l2:g}) on {conv_feats}",
                "sklearn solver": f"{solver} ({sk_it} it)",
                "sklearn acc": sk_acc, "sklearn CPU-s": t_sk.cpu_s, "sklearn wall-s": t_sk.wall_s,
                "geomjax acc": c_acc, "geomjax converged": bool(sol.converged),
                "geomjax steps": int(sol.num_steps), "geomjax CPU-s": t_c.cpu_s,
                "geomjax wall-s": t_c.wall_s, "|acc diff| (points)": 100 * abs(c_acc - sk_acc),
            })
            print(conv_rows[-1])

    # ---------------- agreement checks ----------------
    problems = []
    if g["planted_top1"] != len(planted):
        problems.append(f"geomjax: only {g['planted_top1']}/{len(planted)} planted in top 1%")
    if g["acc_all"] < g["majority"] + 0.2 and not args.smoke:
        problems.append("geomjax ALL probe barely beats the majority baseline")
    if nx is not None:
        tol = 0.05 if not args.smoke else 0.15
        if abs(nx["acc_all"] - g["acc_all"]) > tol:
            problems.append(
                f"ALL accuracy differs: NeuroX {nx['acc_all']:.3f} vs {g['acc_all']:.3f}")
        for i, (a, b) in enumerate(zip(nx["layers"], g["layers"], strict=False)):
            if abs(a - b) > tol + 0.03:
                problems.append(f"layer {i} accuracy differs: NeuroX {a:.3f} vs geomjax {b:.3f}")
    for r in conv_rows:
        if not args.smoke and r["|acc diff| (points)"] > 1.0:
            problems.append(f"converged accuracy differs by {r['|acc diff| (points)']:.2f} points")
    ok = not problems
    for pr in problems:
        print("DISAGREEMENT:", pr)

    # ---------------- report ----------------
    acc_rows = [
        {"result": "test acc ALL", "NeuroX": nx and nx["acc_all"], "geomjax": g["acc_all"]},
        {"result": "majority baseline", "NeuroX": "-", "geomjax": g["majority"]},
        {"result": "control acc", "NeuroX": nx and nx["acc_control"], "geomjax": g["acc_control"]},
        {"result": "selectivity", "NeuroX": nx and nx["acc_all"] - nx["acc_control"],
         "geomjax": g["acc_all"] - g["acc_control"]},
        {"result": "keep top/bottom/random 20%",
         "NeuroX": nx and " / ".join(f"{a:.3f}" for a in nx["ablation"]),
         "geomjax": " / ".join(f"{a:.3f}" for a in g["ablation"])},
        {"result": "minimal set acc (1..75%)",
         "NeuroX": nx and " ".join(f"{a:.3f}" for a in nx["minimal"]),
         "geomjax": " ".join(f"{a:.3f}" for a in g["minimal"])},
        {"result": "layer-wise acc L0..L5",
         "NeuroX": nx and " ".join(f"{a:.2f}" for a in nx["layers"]),
         "geomjax": " ".join(f"{a:.2f}" for a in g["layers"])},
        {"result": f"planted in top 1% (of {len(planted)})",
         "NeuroX": nx and nx["planted_top1"], "geomjax": g["planted_top1"]},
    ]
    for r in acc_rows:
        r["NeuroX"] = "not run" if r["NeuroX"] is None else r["NeuroX"]
    speed_rows = []
    if t_nx is not None:
        for step, tm in t_nx.items():
            speed_rows.append({"step": step, "NeuroX CPU-s": tm.cpu_s, "NeuroX wall-s": tm.wall_s})
        tot = t_nx["pipeline total"]
        speed_rows.append({
            "step": "geomjax paper_pipeline (steady)", "NeuroX CPU-s": t_gj.cpu_s,
            "NeuroX wall-s": t_gj.wall_s})
        ratio_rows = [{
            "pipeline": f"{args.tasks} task(s) x {args.seeds} seed(s)",
            "NeuroX CPU-s": tot.cpu_s, "NeuroX wall-s": tot.wall_s,
            "geomjax CPU-s": t_gj.cpu_s, "geomjax wall-s": t_gj.wall_s,
            "geomjax first call s": t_gj.first_call_s,
            "ratio CPU": tot.cpu_s / t_gj.cpu_s if ok else float("nan"),
            "ratio wall": tot.wall_s / t_gj.wall_s if ok else float("nan"),
            "ratio wall incl. compile": tot.wall_s / t_gj.first_call_s if ok else float("nan"),
        }]
        if t_dev is not None:
            ratio_rows.append({
                "pipeline": "same, geomjax inputs already on device",
                "NeuroX CPU-s": tot.cpu_s, "NeuroX wall-s": tot.wall_s,
                "geomjax CPU-s": t_dev.cpu_s, "geomjax wall-s": t_dev.wall_s,
                "geomjax first call s": float("nan"),
                "ratio CPU": tot.cpu_s / t_dev.cpu_s if ok else float("nan"),
                "ratio wall": tot.wall_s / t_dev.wall_s if ok else float("nan"),
                "ratio wall incl. compile": float("nan"),
            })
    else:
        ratio_rows = [{"pipeline": f"{args.tasks} task(s) x {args.seeds} seed(s)",
                       "geomjax CPU-s": t_gj.cpu_s, "geomjax wall-s": t_gj.wall_s,
                       "geomjax first call s": t_gj.first_call_s, "NeuroX": "not run"}]
    cmd = " ".join(["python -m benchmarks.bench_probing"] + list(argv if argv is not None
                                                                    else sys.argv[1:]))
    md = "\n\n".join(filter(None, [
        f"Reproduce: `{cmd}` (pins itself to one core; NeuroX installed with "
        "`pip install --no-deps neurox`). Times are process CPU seconds (user + system) and wall "
        "seconds; the ratio is measured side by side in one process.",
        f"{ntr} train / {len(yte)} test utterances x {d} neurons (6 layers x {widths[0]}), 5 "
        f"classes, {len(planted)} planted neurons; lam1 = lam2 = {args.lam:g}, "
        f"Adam lr {args.lr:g}, "
        f"{args.epochs} epochs, batch 128; NeuroX run once (step by step), geomjax best of "
        f"{args.repeat} after a warm-up; "
        + (f"process pinned to CPU {pinned}, " if pinned is not None else "")
        + "one thread per framework. geomjax first call: "
        f"{n_first} compilations ({s_first:.1f} s of backend compile); warm calls: {n_steady} "
        f"compilations. Load average at the end: {os.getloadavg()[0]:.1f}. "
        f"Peak RSS {peak_rss_mb():.0f} MB. Agreement: "
        + ("ok" if ok else "FAILED (" + "; ".join(problems) + "), ratios withheld"),
        md_table(ratio_rows, ".3g"),
        md_table(speed_rows, ".3g") if speed_rows else "",
        ("geomjax per stage (best of the breakdown calls, each stage waited for; "
         "`--breakdown`):\n\n" + md_table(stage_rows, ".3g")) if stage_rows else "",
        md_table(acc_rows, ".3f"),
        md_table(conv_rows, ".3g") if conv_rows else "",
    ]))
    print(md)
    if not args.no_record:
        path = record(f"probing pipeline ({args.tasks} task(s) x {args.seeds} seed(s))", md,
                      smoke=args.smoke)
        if path:
            print(f"recorded in {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
