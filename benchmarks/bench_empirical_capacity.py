"""Empirical manifold capacity alpha_SIM: geomjax vs the reference cvxopt procedure.

Reference procedure (the Chung-lab ``manifold_simcap_analysis``): global centring; for each
``n`` re-seed NumPy's global RNG, then ``n_rep`` times draw a balanced dichotomy and a Gaussian
``N x n`` projection with unit-norm columns, and solve a hard-margin SVM with bias by cvxopt
(tolerances 1e-8); separable iff every point's sign matches. ``n`` is bisected on ``p(n) - 1/2``
over ``[2, N]`` starting with ``p(N)``, midpoint ``int((lo + hi)/2 + 0.5)``, stopping when
``|p - 1/2| <= 0.05`` or the bracket closes; ``n_rep`` drops to 5 above ``n = 1500``; the
crossing is linearly interpolated between the last ``p < 1/2`` and the first ``p >= 1/2``.

Its cost is dominated by the few QPs at the largest ``n`` (the QP cost grows about as ``n^3``).
On a loaded machine the benchmark therefore runs every QP at ``n <= --full-below`` and only
``--sample-qps`` QPs at each larger ``n``, extrapolating that step's time from their mean; the
sampled QPs at those ``n`` must all be separable (``p = 1``, which is what steers the bisection
down), and geomjax's largest critical size must lie below them. ``--full-reference`` runs every
QP. Every reference QP at ``n <= --full-below`` is re-decided by ``geomjax.solvers.separability``
and the verdicts must agree before any speed is reported.

geomjax: ``empirical_capacity`` (nested projections, per-dichotomy certified bisection) on the
same data, default settings (bracket ``2 P`` features; projections sampled exactly from the
data's row-space factor when its numerical rank is low, as here: rank ``P (d + 1) - 1 = 549``
of ``N = 5000``, found through the manifolds' 11-dimensional spans; bisection splits guided by
8 pilot dichotomies; each check's first Newton step from the dichotomy's point moments), plus
the stage cost of that factor (and of the randomised range finder it replaces), plus the
mean-field capacity
(``geomjax.manifold.mftma``) of the same data as the agreement target. Both sides run
single-threaded (BLAS and XLA pinned to one thread), so process CPU seconds compare fairly on
a loaded machine; the load average is recorded with the figures.

Run: ``python -m benchmarks.bench_empirical_capacity`` (``--smoke`` for tiny sizes). On a GPU
machine geomjax runs on the GPU (all dichotomies vmapped); the reference always runs on the CPU.
"""

from __future__ import annotations

import time

from benchmarks._common import (
    _cpu,
    base_parser,
    block,
    device_name,
    md_table,
    peak_rss_mb,
    record,
    time_call,
)


def _svm_separable(Xs, y):
    """Reference check: hard-margin SVM with bias by cvxopt; separable iff all signs match."""
    import numpy as np
    from cvxopt import matrix, solvers

    K, n = Xs.shape
    Pm = np.zeros((n + 1, n + 1))
    Pm[:n, :n] = np.eye(n)
    G = -(y[:, None] * np.hstack([Xs, np.ones((K, 1))]))
    solvers.options.update(show_progress=False, abstol=1e-8, reltol=1e-8, feastol=1e-8)
    try:
        sol = solvers.qp(matrix(Pm), matrix(np.zeros(n + 1)), matrix(G), matrix(-np.ones(K)))
    except ValueError:
        return False
    wb = np.asarray(sol["x"]).ravel()
    return bool(np.all(np.sign(Xs @ wb[:n] + wb[n]) == y))


def _reference_problems(X0, P, M, n, n_rep, seed):
    """The reference's draws for one ``n``: re-seeded global RNG, then labels and projection."""
    import numpy as np

    np.random.seed(seed)
    N = X0.shape[1]
    for _ in range(n_rep):
        pos = np.random.choice(P, P // 2, replace=False)
        lab = -np.ones(P)
        lab[pos] = 1.0
        W = np.random.randn(N, n)
        W /= np.linalg.norm(W, axis=0, keepdims=True)
        yield X0 @ W, np.repeat(lab, M)


def reference_simcap(X, n_rep, seed, full_below, sample_qps, full, log):
    """Run the reference bisection; returns alpha, n_c, timings, QP counts and the QPs run."""
    import numpy as np

    P, M, N = X.shape
    X0 = X.reshape(P * M, N)
    X0 = X0 - X0.mean(axis=0)
    pairs, steps, kept = [], [], []
    cpu_meas = wall_meas = cpu_extra = 0.0
    n_qp = 0

    def p_of(n):
        nonlocal cpu_meas, wall_meas, cpu_extra, n_qp
        reps = 5 if n > 1500 else n_rep
        limit = reps if (full or n <= full_below) else min(sample_qps, reps)
        verdicts, cpus = [], []
        for i, (Xs, y) in enumerate(_reference_problems(X0, P, M, n, reps, seed)):
            if i >= limit:
                break
            c0, t0 = _cpu(), time.perf_counter()
            v = _svm_separable(Xs, y)
            cpus.append(_cpu() - c0)
            wall_meas += time.perf_counter() - t0
            verdicts.append(v)
            if n <= full_below:
                kept.append((Xs, y, v))
        cpu_meas += sum(cpus)
        n_qp += reps
        if limit < reps:
            if not all(verdicts):
                raise RuntimeError(
                    f"sampled reference QPs at n={n} were not all separable; rerun with "
                    "--full-reference (the extrapolation assumes p(n) = 1 there)"
                )
            cpu_extra += (reps - limit) * float(np.mean(cpus))
        p = float(np.mean(verdicts))
        steps.append({"n": n, "reps": reps, "qps_run": limit, "p": p,
                      "cpu_s_per_qp": float(np.mean(cpus))})
        log(f"  reference n={n}: p={p:.2f} ({limit}/{reps} QPs, {np.mean(cpus):.3f} CPU-s each)")
        return p

    lo, hi = 2, N
    pairs.append((hi, p_of(hi)))
    for _ in range(100):
        if hi - lo <= 1:
            break
        mid = int((lo + hi) / 2 + 0.5)
        p = p_of(mid)
        pairs.append((mid, p))
        if abs(p - 0.5) <= 0.05:
            break
        if p > 0.5:
            hi = mid
        else:
            lo = mid
    pairs.sort()
    ns = np.array([a for a, _ in pairs], float)
    ps = np.array([b for _, b in pairs])
    below = np.nonzero(ps < 0.5)[0]
    above = np.nonzero(ps >= 0.5)[0]
    if below.size and above.size:
        ia, ib = below[-1], above[0]
        n_c = ns[ia] + (0.5 - ps[ia]) * (ns[ib] - ns[ia]) / (ps[ib] - ps[ia])
    else:  # the search stopped (|p - 1/2| <= 0.05) before any p < 1/2 was seen
        n_c = ns[above[0]] if above.size else float("nan")
    return dict(alpha=P / n_c, n_c=n_c, cpu_measured=cpu_meas, cpu_extrapolated=cpu_extra,
                wall_measured=wall_meas, n_qp=n_qp, steps=steps, kept=kept)


def main(argv=None):
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--dichotomies", type=int, default=64, help="geomjax dichotomies")
    ap.add_argument("--n-rep", type=int, default=20, help="reference dichotomies per n")
    ap.add_argument("--full-below", type=int, default=400,
                    help="run every reference QP at n <= this; sample above")
    ap.add_argument("--sample-qps", type=int, default=1, help="reference QPs timed per large n")
    ap.add_argument("--full-reference", action="store_true", help="run every reference QP")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from benchmarks._common import single_thread_env

    single_thread_env()  # before numpy/jax are imported (no effect if they already are)
    import os

    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from geomjax.data import synthetic_manifolds
    from geomjax.manifold import empirical_capacity, mftma
    from geomjax.solvers import separability

    if args.smoke:
        P, M, N, D, n_rep = 10, 10, 200, 8, 4
        args.full_below = min(args.full_below, 60)
    else:
        P, M, N, D, n_rep = 50, 50, 5000, args.dichotomies, args.n_rep
    X = synthetic_manifolds(args.seed, P, M, N, radius=0.5, dim=10)
    log = print

    # geomjax: the default number of dichotomies, and as many as the reference draws per n.
    key = jax.random.key(args.seed)
    runs = {}
    for d in dict.fromkeys([D] if args.smoke else [D, n_rep]):
        c0 = _cpu()
        res_d, t_d = time_call(lambda d=d: empirical_capacity(key, X, d),
                               repeat=1 if args.smoke else args.repeat)
        g_d = res_d.summary()
        runs[d] = (res_d, t_d, g_d, _cpu() - c0)
        log(f"geomjax D={d}: alpha_SIM={g_d['alpha_sim']:.4f} CI=[{g_d['alpha_ci_low']:.4f}, "
            f"{g_d['alpha_ci_high']:.4f}] n_c={g_d['n_critical']:.2f} ({g_d['n_checks']} checks, "
            f"{g_d['n_undecided']} undecided) {t_d.wall_s:.2f} s wall, {t_d.cpu_s:.2f} CPU-s, "
            f"first call {t_d.first_call_s:.1f} s")
    res, tg, g, cpu_total = runs[D]
    rss_geomjax = peak_rss_mb()
    stages = ""
    if not args.smoke:
        # Stage cost of the row-space factor: through the spans (used) vs the range finder.
        from geomjax.manifold._empirical import _manifold_factor, _row_space_factor

        Xc = jnp.asarray(X.reshape(P * M, N))
        Xc = Xc - jnp.mean(Xc, axis=0, keepdims=True)
        kf = jax.random.key(1)
        fac, t_span = time_call(lambda: _manifold_factor(kf, Xc, [M] * P, P * M // 2), repeat=1)
        _, t_rf = time_call(lambda: _row_space_factor(kf, Xc, P * M // 2), repeat=1)
        rank = "-" if fac is None else int(fac[1].shape[1])
        stages = (f"Stage cost of the row-space factor (rank {rank}, warm): through the spans "
                  f"{t_span.cpu_s:.2f} CPU-s; the randomised range finder it replaces "
                  f"{t_rf.cpu_s:.2f} CPU-s. ")
        log(stages)
        del Xc
    if args.smoke:  # keep CI fast: the mean-field comparison is for full runs
        alpha_mft, tm = float("nan"), None
    else:
        mres, tm = time_call(lambda: mftma(jax.random.key(args.seed + 1), X), repeat=1)
        alpha_mft = float(mres.capacity)
    if tm is not None:
        log(f"MFTMA capacity of the same data: {alpha_mft:.4f} ({tm.wall_s:.2f} s)")

    # reference
    ref = reference_simcap(X, n_rep, args.seed, args.full_below, args.sample_qps,
                           args.full_reference, log)
    ref_cpu = ref["cpu_measured"] + ref["cpu_extrapolated"]
    log(f"reference: alpha_SIM={ref['alpha']:.4f} n_c={ref['n_c']:.2f}, {ref['n_qp']} QPs, "
        f"{ref['cpu_measured']:.1f} CPU-s measured + {ref['cpu_extrapolated']:.1f} extrapolated")

    # Agreement of verdicts on every reference QP that was run in full (padded to one shape).
    kept = ref["kept"]
    width = max(Xs.shape[1] for Xs, _, _ in kept)
    Xb = np.zeros((len(kept), kept[0][0].shape[0], width))
    for i, (Xs, _, _) in enumerate(kept):
        Xb[i, :, : Xs.shape[1]] = Xs
    Yb = np.stack([y for _, y, _ in kept])
    # Batches of 10 bound the memory of the padded problems.
    sol = jax.jit(lambda A, B: jax.lax.map(lambda ab: separability(*ab), (A, B), batch_size=10))(
        jnp.asarray(Xb), jnp.asarray(Yb)
    )
    block(sol)
    ours = np.asarray(sol.value.separable)
    theirs = np.array([v for _, _, v in kept])
    mismatch = int(np.sum(ours != theirs))
    undecided = int(np.sum(~np.asarray(sol.converged)))
    log(f"verdicts on {len(kept)} reference QPs: {mismatch} disagreements, {undecided} undecided")
    big = [s["n"] for s in ref["steps"] if s["qps_run"] < s["reps"]]
    censor_ok = not big or all(int(np.max(r[0].n_star)) < min(big) for r in runs.values())
    agree = (mismatch == 0 and undecided == 0 and censor_ok
             and all(r[2]["n_undecided"] == 0 for r in runs.values()))

    rel_mft = g["alpha_sim"] / alpha_mft - 1
    rel_ref = g["alpha_sim"] / ref["alpha"] - 1
    on_cpu = jax.devices()[0].platform == "cpu"
    # CPU: process CPU seconds (reliable under load); accelerators: geomjax wall time.
    speed = ref_cpu / (tg.cpu_s if on_cpu else tg.wall_s) if agree else float("nan")
    ref_wall = ref["wall_measured"] + ref["cpu_extrapolated"]
    speed_wall = ref_wall / tg.wall_s if agree else float("nan")
    rows = [
        {"method": f"reference cvxopt SVM (n_rep={n_rep}, bisection from N)",
         "alpha_SIM": ref["alpha"], "CI": "-", "n_c": ref["n_c"],
         "solves": f"{ref['n_qp']} QPs",
         "CPU s": f"{ref_cpu:.1f} ({ref['cpu_extrapolated']:.1f} extrapolated)",
         "wall s": f"{ref['wall_measured']:.1f} (measured part)",
         "vs MFT": ref["alpha"] / alpha_mft - 1, "speed-up": "1"},
    ]
    for d, (_, t_d, g_d, _) in runs.items():
        sp = ref_cpu / (t_d.cpu_s if on_cpu else t_d.wall_s) if agree else float("nan")
        rows.append(
            {"method": f"geomjax empirical_capacity ({d} dichotomies, {device_name()})",
             "alpha_SIM": g_d["alpha_sim"],
             "CI": f"[{g_d['alpha_ci_low']:.3f}, {g_d['alpha_ci_high']:.3f}]",
             "n_c": g_d["n_critical"], "solves": f"{g_d['n_checks']} checks",
             "CPU s": f"{t_d.cpu_s:.2f}",
             "wall s": f"{t_d.wall_s:.2f} (compile+first {t_d.first_call_s:.1f})",
             "vs MFT": g_d["alpha_sim"] / alpha_mft - 1, "speed-up": f"{sp:.1f}x"})
    rows.append(
        {"method": "geomjax mftma (mean-field capacity, same data)", "alpha_SIM": alpha_mft,
         "CI": "-", "n_c": P / alpha_mft, "solves": "-", "CPU s": "-",
         "wall s": f"{tm.wall_s:.2f}" if tm else "-", "vs MFT": 0.0, "speed-up": "-"})
    steps_tbl = md_table([
        {"n": s["n"], "QPs run / reps": f"{s['qps_run']}/{s['reps']}", "p(n)": s["p"],
         "CPU s per QP": s["cpu_s_per_qp"]} for s in ref["steps"]
    ])
    sampled = ("all run" if args.full_reference else
               f"sampled ({args.sample_qps} per n) and the rest extrapolated from their mean "
               "CPU time")
    summary = (
        f"P={P}, M={M}, N={N}, r=0.5, d=10 (synthetic_manifolds seed {args.seed}). "
        f"Agreement: alpha_SIM(geomjax)/alpha_MFT - 1 = {rel_mft:+.1%} (target within 5%), "
        f"vs reference alpha_SIM {rel_ref:+.1%}; {len(kept)} reference QP verdicts re-decided, "
        f"{mismatch} disagreements. Speed with {D} dichotomies (reference CPU-s / geomjax "
        f"{'CPU-s' if on_cpu else 'wall s'}, warm): "
        f"**{speed:.1f}x**; wall (reference measured wall + extrapolated CPU) / geomjax wall: "
        f"{speed_wall:.1f}x. Reference QPs at n > {args.full_below} were "
        f"{sampled}. "
        f"{stages}"
        f"Peak RSS after the geomjax runs {rss_geomjax:.0f} MB (data and imports included). "
        f"CPU total for geomjax incl. compile: {cpu_total:.1f} s. "
        f"Load average (1, 5, 15 min) at the end: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs."
    )
    table = md_table(rows)
    print(table)
    print(steps_tbl)
    print(summary)
    if not agree:
        print("AGREEMENT CHECK FAILED: no speed reported.")
    if not (args.smoke or args.no_record):
        record("empirical capacity (alpha_SIM)", table + "\n\nReference bisection path:\n\n"
               + steps_tbl + "\n\n" + summary)
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
