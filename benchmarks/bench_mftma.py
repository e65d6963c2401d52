"""MFTMA: geomjax vs the reference procedure (per-sample cvxopt QPs) and an exact NNLS oracle.

Run from the repository root::

    python -m benchmarks.bench_mftma            # standard synthetic set, records results
    python -m benchmarks.bench_mftma --smoke --no-record
    python -m benchmarks.bench_mftma --sweep    # 700 analyses (P=50, M=20, N=2048), for GPUs
    python -m benchmarks.bench_mftma --sweep-public   # the same through mftma_sweep, auto K
    python -m benchmarks.bench_mftma --centres  # centre subspace alone, shared directions

The reference procedure is re-implemented here from the published algorithm
(``manifold_analysis_corr`` of the replica-MFT code): global centring, centre-correlation removal
(Stiefel optimisation with random restarts, K chosen by the residual correlation), projection,
normalisation, QR reduction, and one cvxopt QP per Gaussian sample with the reference's
tolerances (1e-12). The oracle replaces the QPs by ``scipy.optimize.nnls`` on the dual (exact
active-set NNLS). Accuracy is measured on the *same* reduced inputs and samples: geomjax's
anchor step is fed the reduced points and ``t`` that the oracle sees, and every per-manifold
capacity, radius and dimension must agree to 1e-6 relative before any speed is reported.
"""

from __future__ import annotations

if __name__ == "__main__":  # pin BLAS/XLA threads before numpy/jax are imported
    from benchmarks._common import single_thread_env

    single_thread_env()

import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Reference procedure (NumPy/SciPy/cvxopt), manifolds as (M, N) rows.


def ref_corr_cost_grad(V, X):
    """Centre-correlation cost of the reference and its Euclidean gradient."""
    C = X @ X.T
    c = X @ V
    c0 = np.diag(C) - np.sum(c * c, axis=1)
    D = C - c @ c.T
    den = np.outer(c0, c0)
    cost = 0.5 * np.sum(D * D / den)
    # d cost / d c: from D (via c c^T) and from c0.
    A = D / den
    B = (D * D) / (den * den)
    g_c = -2 * A @ c + 2 * (B @ c0)[:, None] * c
    return cost, X.T @ g_c


def ref_fit_V(X, k, rng, max_iter=1000, gtol=1e-6):
    """Riemannian gradient descent with Armijo steps and QR retraction from a random point."""
    n = X.shape[1]
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    f, G = ref_corr_cost_grad(V, X)
    tau = 1e-2
    for _ in range(max_iter):
        sym = V.T @ G
        xi = G - V @ ((sym + sym.T) / 2)
        gn = np.linalg.norm(xi)
        if gn <= gtol:
            break
        t = tau
        for _ in range(30):
            Y, _r = np.linalg.qr(V - t * xi)
            Y = Y * np.sign(np.diag(_r))
            fy, Gy = ref_corr_cost_grad(Y, X)
            if fy <= f - 1e-4 * t * gn * gn:
                break
            t *= 0.5
        else:
            break
        V, f, G = Y, fy, Gy
        tau = t * 2
    return V


def _mean_abs_cos(X):
    P = X.shape[0]
    n = np.linalg.norm(X, axis=1)
    C = (X @ X.T) / np.outer(n, n)
    return (np.sum(np.abs(C)) - P) / (P * (P - 1))


def ref_center_subspace(centers, rng, n_reps=10):
    """The reference's K search: maxK = K95 + 9 (capped at P-1 here), most stable restart, argmin
    of the residual correlation with the three-rises early stop. Returns (V11, K, rho0)."""
    P = centers.shape[0]
    Xb = centers - centers.mean(axis=0, keepdims=True)
    s = np.linalg.svd(Xb, compute_uv=False)
    tot = np.cumsum(s**2) / np.sum(s**2)
    maxK = min(int(np.argmax([t if t < 0.95 else 0 for t in tot])) + 11, P - 1)
    q, _ = np.linalg.qr(Xb.T)
    proj = q[:, : P - 1]
    X = Xb @ proj
    rho0 = _mean_abs_cos(X)
    Vs, res = [], []
    xn = np.linalg.norm(X, axis=1)
    for k in range(1, maxK + 1):
        best, best_stab = None, -1.0
        for _ in range(n_reps):
            V = ref_fit_V(X, k, rng)
            R = X - X @ V @ V.T
            stab = np.min(np.linalg.norm(R, axis=1) / xn)
            if stab > best_stab:
                best, best_stab = V, stab
        Vs.append(best)
        res.append(_mean_abs_cos(X - X @ best @ best.T))
        i = len(res)
        if i > 4 and res[i - 1] > res[i - 2] > res[i - 3] > res[i - 4]:
            break
    KK = int(np.argmin(res)) + 1
    return proj @ Vs[KK - 1], KK, rho0


def ref_reduce(manifolds, V11):
    """Centring, projection, normalisation and QR reduction: list of sD1 as (M, D+1) rows."""
    allp = np.concatenate(manifolds, axis=0)
    xbar = allp.mean(axis=0)
    out = []
    for x in manifolds:
        x0 = x - xbar
        xns = x0 - (x0 @ V11) @ V11.T
        c = xns.mean(axis=0)
        U = (xns - c) / np.linalg.norm(c)  # (M, N)
        M, N = U.shape
        S = np.linalg.qr(U.T, mode="r").T if N > M else U
        out.append(np.concatenate([S, np.ones((M, 1))], axis=1))
    return out


def anchors_cvxopt(S, t, kappa):
    """Anchor points with one cvxopt QP per sample, as the reference (tolerances 1e-12)."""
    from cvxopt import matrix, solvers

    solvers.options.update(show_progress=False, maxiters=1000000, abstol=1e-12, reltol=1e-12,
                           feastol=1e-12)
    M, D1 = S.shape
    out = np.empty_like(t)
    Pm = matrix(np.eye(D1))
    Gm = matrix(np.ascontiguousarray(S, dtype=np.double))
    h = matrix(-np.ones(M) * kappa)
    for k in range(t.shape[0]):
        tk = t[k]
        i0 = int(np.argmax(S[:, :-1] @ tk[:-1]))
        s0 = S[i0]
        if tk @ s0 + kappa < 0:
            out[k] = s0
            continue
        sol = solvers.qp(Pm, matrix(-tk), Gm, h)
        v = np.array(sol["x"])[:, 0]
        a = np.array(sol["z"])[:, 0]
        out[k] = s0 if np.linalg.norm(v - tk) < 1e-8 else (tk - v) / np.sum(a)
    return out


def anchors_nnls(S, t, kappa):
    """Exact anchors from ``scipy.optimize.nnls`` on the dual ``min ||S^T a - (t + kappa e)||``."""
    from scipy.optimize import nnls

    out = np.empty_like(t)
    A = np.ascontiguousarray(S.T)
    e = np.zeros(S.shape[1])
    e[-1] = kappa
    for k in range(t.shape[0]):
        tk = t[k]
        i0 = int(np.argmax(S[:, :-1] @ tk[:-1]))
        s0 = S[i0]
        if tk @ s0 + kappa < 0:
            out[k] = s0
            continue
        a, _ = nnls(A, tk + e, maxiter=50 * A.shape[1])
        w = A @ a
        out[k] = s0 if np.linalg.norm(w) < 1e-8 else w / np.sum(a)
    return out


def geometry_coded(s_all, t, kappa):
    """The reference's coded capacity, radius and dimension from anchors (rows)."""
    D = t.shape[1] - 1
    max_ts = np.maximum(np.sum(t * s_all, axis=1) + kappa, 0)
    s_sum = np.sum(s_all**2, axis=1)
    lamb = np.where(s_sum > 0, max_ts / np.where(s_sum > 0, s_sum, 1), 0)
    inv = np.mean(lamb**2 * s_sum)
    ds = (s_all - s_all.mean(axis=0))[:, :-1] / s_all[:, -1:]
    R = np.sqrt(np.mean(np.sum(ds**2, axis=1)))
    th = t[:, :D] / np.linalg.norm(t[:, :D], axis=1, keepdims=True)
    sh = s_all[:, :D] / np.sqrt(np.sum(s_all[:, :D] ** 2, axis=1, keepdims=True) + 1e-12)
    Dm = D * np.mean(np.sum(th * sh, axis=1)) ** 2
    return 1 / inv, R, Dm


def ref_mftma(manifolds, kappa, n_t, rng, n_reps=10, solver="cvxopt", V11=None, t_vecs=None):
    """The whole reference procedure. Returns per-manifold (alpha, R, D), rho0, K, sD1, t."""
    centers = np.stack([m.mean(axis=0) for m in manifolds])
    if V11 is None:
        V11, K, rho0 = ref_center_subspace(centers, rng, n_reps)
    else:
        K, rho0 = V11.shape[1], None
    sD1 = ref_reduce(manifolds, V11)
    if t_vecs is None:
        t_vecs = [rng.standard_normal((n_t, S.shape[1])) for S in sD1]
    anchors = anchors_cvxopt if solver == "cvxopt" else anchors_nnls
    res = np.array([geometry_coded(anchors(S, t, kappa), t, kappa)
                    for S, t in zip(sD1, t_vecs, strict=False)])
    return res, rho0, K, sD1, t_vecs


# ----------------------------------------------------------------------------------------------
# Benchmark


def _status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(field)


def call_peak_mb(fn):
    """Extra resident memory of one warm call: the RSS high-water mark during ``fn()`` minus the
    RSS before it (Linux: the mark is reset through ``/proc/self/clear_refs``); nan elsewhere."""
    import gc

    import jax

    gc.collect()
    try:
        before = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        jax.block_until_ready(fn())
        return _status_mb("VmHWM") - before
    except OSError:
        return float("nan")


def stage_times(X, kappa, n_t, seed, repeat):
    """CPU seconds of the pipeline's stages, called as :func:`geomjax.manifold.mftma` calls them
    (on CPU the data passes run on the host with NumPy's BLAS, elsewhere on the device)."""
    import jax
    import jax.numpy as jnp

    from benchmarks._common import time_call
    from geomjax._checks import check_manifolds
    from geomjax.manifold import fit_center_subspace
    from geomjax.manifold._mftma import (
        _anchors_all,
        _centres,
        _draw_samples,
        _host_centres,
        _host_grams,
        _host_pass,
        _points_from_grams,
        _solver_items,
        _to_device,
        reduce_manifolds,
    )

    P, M, N = X.shape
    key = jax.random.key(seed)
    k_fa, k_t = jax.random.split(key)
    mask = jnp.ones((P, M), bool)
    rows = []
    host = _host_pass(jax.default_backend(), "gram")
    # On the host pass the NaN/inf test rides on the centres (their sums), as mftma does it.
    mans, t_chk = time_call(lambda: check_manifolds(X, finite=not host), repeat=repeat)
    rows.append({"stage": "input checks (shapes" + ("" if host else ", NaN/inf") + ")",
                 "CPU-s": t_chk.cpu_s})
    if host:
        def centres_and_test():
            c, xb = _host_centres(mans, X.dtype)
            assert np.isfinite(c).all()
            return c, xb

        (centers, xbar), t_c = time_call(centres_and_test, repeat=repeat)
        rows.append({"stage": "centres (host, one read of the input; NaN/inf test on them)",
                     "CPU-s": t_c.cpu_s})
        centers = jnp.asarray(centers)
    else:
        Xd, t_in = time_call(lambda: _to_device(X), repeat=repeat)
        (centers, xbar), t_c = time_call(_centres, Xd, mask, repeat=repeat)
        rows += [{"stage": "input to device", "CPU-s": t_in.cpu_s},
                 {"stage": "centres", "CPU-s": t_c.cpu_s}]
    fa, t_fa = time_call(lambda: fit_center_subspace(k_fa, centers, None), repeat=repeat)
    rows.append({"stage": f"centre subspace (auto K = {fa['K']}, {fa['n_k_tried']} K fitted, "
                          "10 restarts each)", "CPU-s": t_fa.cpu_s})
    if host:
        G, t_g = time_call(lambda: _host_grams(mans, np.asarray(centers), xbar,
                                               np.asarray(fa["V"]), M, X.dtype), repeat=repeat)
        sD1, t_e = time_call(_points_from_grams, jnp.asarray(G), mask, min(M, N), repeat=repeat)
        rows += [{"stage": "projected Gram matrices (host, second read of the input)",
                  "CPU-s": t_g.cpu_s},
                 {"stage": "reduction (eigh of the M x M Grams)", "CPU-s": t_e.cpu_s}]
    else:
        (sD1, _), t_red = time_call(reduce_manifolds, Xd, mask, xbar, fa["V"], "gram", 1,
                                    repeat=repeat)
        rows.append({"stage": "reduction (Gram + eigh)", "CPU-s": t_red.cpu_s})
    items = _solver_items(None, 0.0, 10_000, 10, X.dtype)
    dims = jnp.full((P,), min(M, N))
    kap = jnp.asarray(kappa, X.dtype)
    _, t_an = time_call(lambda: _anchors_all(k_t, sD1, mask, dims, kap, n_t, "coded", None,
                                             items), repeat=repeat)
    rows.append({"stage": "samples + anchors + geometry", "CPU-s": t_an.cpu_s})
    # Its two parts, timed apart: the draw, and anchors + geometry on given samples.
    draw = jax.jit(_draw_samples, static_argnums=(1, 2, 3))
    keys = jax.random.split(k_t, P)
    t_all, t_dr = time_call(draw, keys, n_t, sD1.shape[2], sD1.dtype, repeat=repeat)
    _, t_so = time_call(lambda: _anchors_all(k_t, sD1, mask, dims, kap, n_t, "coded", None,
                                             items, t_all), repeat=repeat)
    rows += [{"stage": "... of which samples (one key per sample)", "CPU-s": t_dr.cpu_s},
             {"stage": "... of which anchors + geometry (samples given)", "CPU-s": t_so.cpu_s}]
    return rows


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-300)


def run_main(args):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from benchmarks._common import machine_line, md_table, peak_rss_mb, record, time_call
    from geomjax.data import synthetic_manifolds
    from geomjax.manifold import anchor_geometry, mftma
    from geomjax.manifold._mftma import _anchors_all, _solver_items

    P, M, N, n_t = (8, 12, 300, 40) if args.smoke else (args.P, args.M, args.N, args.n_t)
    X = synthetic_manifolds(args.seed, P, M, N, radius=0.5, dim=min(10, M - 1))
    rows = []
    print(machine_line())
    print(f"data: P={P} M={M} N={N} r=0.5 d=10 kappa={args.kappa} n_t={n_t} seed={args.seed}")
    rss0 = peak_rss_mb()
    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())

    # 0. Whole geomjax pipeline first, so the peak RSS after it is geomjax's own high-water mark.
    key = jax.random.key(args.seed)
    # The smoke run skips the automatic K search (its compilation dominates a tiny run).
    res_k0, t_k0 = time_call(lambda: mftma(key, X, args.kappa, n_t, K=0), repeat=args.repeat)
    if args.smoke:
        res, t_full = res_k0, t_k0
    else:
        res, t_full = time_call(lambda: mftma(key, X, args.kappa, n_t), repeat=args.repeat)
    peak_geomjax = peak_rss_mb()
    extra_auto = call_peak_mb(lambda: mftma(key, X, args.kappa, n_t))
    extra_k0 = call_peak_mb(lambda: mftma(key, X, args.kappa, n_t, K=0))
    stages = [] if args.smoke else stage_times(X, args.kappa, n_t, args.seed, args.repeat)
    print(f"geomjax mftma: alpha={float(res.capacity):.4f} R={float(res.radius):.4f} "
          f"D={float(res.dimension):.4f} rho={float(res.center_correlation):.4f} K={res.K} "
          f"unconverged={res.n_unconverged}")

    # 1. Reference procedure (cvxopt), timed once (it is the slow side).
    rng = np.random.default_rng(args.seed)
    c0 = time.process_time()
    t0 = time.perf_counter()
    ref, rho0, K_ref, sD1, t_vecs = ref_mftma(list(X), args.kappa, n_t, rng,
                                              n_reps=1 if args.smoke else 10)
    _ref_wall, ref_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"reference (cvxopt): {ref_cpu:.2f} CPU-s, K={K_ref}, rho={rho0:.4f}, "
          f"alpha={1 / np.mean(1 / ref[:, 0]):.4f} R={ref[:, 1].mean():.4f} "
          f"D={ref[:, 2].mean():.4f}")

    # 2. Exact oracle on the same reduced inputs and samples.
    c0 = time.process_time()
    ora = np.array([geometry_coded(anchors_nnls(S, t, args.kappa), t, args.kappa)
                    for S, t in zip(sD1, t_vecs, strict=False)])
    nnls_cpu = time.process_time() - c0

    # 3. geomjax anchor step on the same inputs, as mftma runs it (all P * n_t problems pooled;
    # equal shapes here), and the public single-manifold function on one of them.
    S_all = jnp.asarray(np.stack(sD1))
    T_all = jnp.asarray(np.stack(t_vecs))
    items = _solver_items(None, 0.0, 10_000, 10, S_all.dtype)
    mask_all = jnp.ones(S_all.shape[:2], bool)
    dims_all = jnp.full((S_all.shape[0],), S_all.shape[2] - 1)

    def anchors_all(S, T):
        return _anchors_all(key, S, mask_all, dims_all, jnp.asarray(args.kappa, S.dtype),
                            T.shape[1], "coded", None, items, T)

    (cap, _, rad, dim, _, _, sol), t_anchor = time_call(anchors_all, S_all, T_all,
                                                        repeat=args.repeat)
    one = anchor_geometry(S_all[0], T_all[0], args.kappa)
    ours = np.stack([np.asarray(cap), np.asarray(rad), np.asarray(dim)], axis=1)
    n_unconv = int(np.size(sol.converged) - np.sum(np.asarray(sol.converged)))
    if not np.allclose([float(one.capacity), float(one.radius), float(one.dimension)], ours[0],
                       rtol=1e-12):
        raise SystemExit("anchor_geometry and the pooled anchor step disagree.")
    err_or = _rel(ours, ora).max(axis=0)
    err_ref = _rel(ref, ora).max(axis=0)
    ok = bool((err_or <= 1e-6).all() and n_unconv == 0)
    print(f"anchor step vs exact NNLS (max rel per manifold): alpha {err_or[0]:.2e}, "
          f"R {err_or[1]:.2e}, D {err_or[2]:.2e}; unconverged {n_unconv}")
    print(f"cvxopt reference vs exact NNLS: alpha {err_ref[0]:.2e}, R {err_ref[1]:.2e}, "
          f"D {err_ref[2]:.2e}")
    if not ok:
        raise SystemExit("geomjax disagrees with the exact oracle; refusing to report speed.")

    rows.append({"step": "whole analysis (auto K, 10 restarts)", "reference CPU-s": ref_cpu,
                 "geomjax CPU-s": t_full.cpu_s, "geomjax wall-s": t_full.wall_s,
                 "compile+first s": t_full.first_call_s, "ratio (CPU)": ref_cpu / t_full.cpu_s})
    rows.append({"step": "whole analysis, K=0", "reference CPU-s": ref_cpu,
                 "geomjax CPU-s": t_k0.cpu_s, "geomjax wall-s": t_k0.wall_s,
                 "compile+first s": t_k0.first_call_s, "ratio (CPU)": ref_cpu / t_k0.cpu_s})
    rows.append({"step": "anchor step vs scipy nnls loop", "reference CPU-s": nnls_cpu,
                 "geomjax CPU-s": t_anchor.cpu_s, "geomjax wall-s": t_anchor.wall_s,
                 "compile+first s": t_anchor.first_call_s,
                 "ratio (CPU)": nnls_cpu / t_anchor.cpu_s})
    table = md_table(rows)
    input_mb = X.nbytes / 2**20
    acc = md_table([
        {"comparison": "geomjax anchors vs exact NNLS", "alpha": f"{err_or[0]:.1e}",
         "R": f"{err_or[1]:.1e}", "D": f"{err_or[2]:.1e}", "unconverged": n_unconv},
        {"comparison": "cvxopt reference vs exact NNLS", "alpha": f"{err_ref[0]:.1e}",
         "R": f"{err_ref[1]:.1e}", "D": f"{err_ref[2]:.1e}", "unconverged": "-"},
    ])
    summary = (
        f"P={P}, M={M}, N={N}, r=0.5, d=10, kappa={args.kappa}, n_t={n_t}, seed={args.seed}; "
        "single-threaded (BLAS and XLA pinned to one thread), 2-core machine shared with other "
        "work, so CPU seconds are the reliable measure (load average "
        f"{load0} before the run, {' / '.join(f'{x:.1f}' for x in os.getloadavg())} after it)."
        "\n\n"
        f"Reference procedure: K={K_ref}, rho={rho0:.4f}, alpha={1 / np.mean(1 / ref[:, 0]):.4f}, "
        f"R={ref[:, 1].mean():.4f}, D={ref[:, 2].mean():.4f}. geomjax (own keys): "
        f"alpha={float(res.capacity):.4f}, R={float(res.radius):.4f}, "
        f"D={float(res.dimension):.4f}, "
        f"rho={float(res.center_correlation):.4f}, K={res.K}.\n\n"
        f"Accuracy on the same reduced inputs (max relative error over manifolds):\n\n{acc}\n\n"
        f"Speed (best of {args.repeat}; compile+first is the first call):\n\n{table}\n\n"
        + (f"Stages of the whole call (CPU-s, best of {args.repeat}):\n\n{md_table(stages)}\n\n"
           if stages else "")
        + "Memory: one warm `mftma` call raises the resident set by "
        f"{extra_auto:.0f} MB (auto K) / {extra_k0:.0f} MB (K=0) above the RSS before it, for a "
        f"{input_mb:.0f} MB input "
        "(RSS high-water mark reset before the call; the input itself is already resident). "
        "On CPU the input is read in place (centres and projected Gram matrices with host BLAS, "
        "one (M, N) temporary per manifold); elsewhere it is put on the device once. "
        "Whole-process peak RSS: "
        f"{peak_geomjax:.0f} MB after the geomjax runs, compilation included (process with data "
        f"and imports before them: {rss0:.0f} MB); {peak_rss_mb():.0f} MB after the reference "
        "procedure.\n\n"
        "Reproduce: `python -m benchmarks.bench_mftma` (records this section).\n"
    )
    print(summary)
    record("MFTMA (bench_mftma)", summary, smoke=args.smoke or args.no_record)


def run_sweep(args):
    """700 analyses of P=50, M=20, N=2048 (7 layers x 100 time steps) with one vmapped call."""
    import jax

    from benchmarks._common import device_name, md_table, record, time_call
    from geomjax.manifold._mftma import _anchors_all, _solver_items, reduce_manifolds

    n_an, P, M, N, n_t = (6, 4, 8, 64, 16) if args.smoke else (700, 50, 20, 2048, 200)
    dt = jax.numpy.float32 if args.float32 else jax.numpy.float64
    if dt == jax.numpy.float64:
        jax.config.update("jax_enable_x64", True)
    from geomjax.data import synthetic_manifolds

    base = synthetic_manifolds(args.seed, P, M, N, dim=min(10, M - 1)).astype(dt)
    key = jax.random.key(args.seed)
    # Each analysis perturbs the base set (as time steps of a layer would), generated on device.
    noise = 0.05 * jax.random.normal(key, (n_an, 1, 1, N), dt)
    items = _solver_items(None, 0.0, 10_000, 10, dt)
    mask = jax.numpy.ones((P, M), bool)

    @jax.jit
    def one(x, k):
        xbar = x.reshape(-1, N).mean(0)
        sD1, _ = reduce_manifolds(x, mask, xbar, jax.numpy.zeros((N, 0), dt), "gram", P)
        cap, inv, rad, dim, _, _, sol = _anchors_all(
            k, sD1, mask, jax.numpy.full((P,), min(M, N)), jax.numpy.asarray(0.0, dt), n_t,
            "coded", None, items)
        return 1 / inv.mean(), rad.mean(), dim.mean(), sol.converged.all()

    @jax.jit
    def sweep(noise, keys):
        return jax.lax.map(lambda a: one(base + a[0], a[1]), (noise, keys),
                           batch_size=args.sweep_batch)

    keys = jax.random.split(key, n_an)
    out, tm = time_call(sweep, noise, keys, repeat=1 if args.smoke else args.repeat)
    conv = bool(np.asarray(out[3]).all())
    print(f"sweep: {n_an} analyses of P={P}, M={M}, N={N}, n_t={n_t} on {device_name()}: "
          f"{tm.wall_s:.2f} s (first call {tm.first_call_s:.2f} s), all converged: {conv}")
    rows = [{"analyses": n_an, "P": P, "M": M, "N": N, "n_t": n_t, "dtype": np.dtype(dt).name,
             "wall s": tm.wall_s, "first call s": tm.first_call_s, "all converged": conv}]
    record("MFTMA sweep (bench_mftma --sweep)", md_table(rows) + "\n",
           smoke=args.smoke or args.no_record)


def run_sweep_public(args):
    """The same 700 analyses through the public :func:`geomjax.distributed.mftma_sweep` with the
    automatic K search (10 restarts per K; on accelerators all analyses' centre subspaces are
    fitted together), i.e. what a user's layers x time steps sweep costs end to end."""
    import jax

    from benchmarks._common import device_name, md_table, record, time_call
    from geomjax.distributed import mftma_sweep

    n_an, P, M, N, n_t = (4, 4, 8, 64, 16) if args.smoke else (700, 50, 20, 2048, 200)
    dt = jax.numpy.float32 if args.float32 else jax.numpy.float64
    if dt == jax.numpy.float64:
        jax.config.update("jax_enable_x64", True)
    from geomjax.data import synthetic_manifolds

    base = jax.numpy.asarray(synthetic_manifolds(args.seed, P, M, N, dim=min(10, M - 1)), dt)
    key = jax.random.key(args.seed)
    noise = 0.05 * jax.random.normal(key, (n_an, 1, 1, N), dt)
    analyses = [base + noise[i] for i in range(n_an)]  # on the device
    out, tm = time_call(lambda: mftma_sweep(key, analyses, n_t=n_t),
                        repeat=1 if args.smoke else min(args.repeat, 2))
    Ks = np.array([r.K for r in out])
    unconv = sum(r.n_unconverged for r in out)
    print(f"public sweep (auto K): {n_an} analyses of P={P}, M={M}, N={N}, n_t={n_t} on "
          f"{device_name()}: {tm.wall_s:.2f} s (first call {tm.first_call_s:.2f} s), K from "
          f"{Ks.min()} to {Ks.max()}, unconverged anchor problems: {unconv}")
    rows = [{"analyses": n_an, "P": P, "M": M, "N": N, "n_t": n_t, "dtype": np.dtype(dt).name,
             "K": "auto", "wall s": tm.wall_s, "first call s": tm.first_call_s,
             "unconverged": unconv}]
    record("MFTMA public sweep, auto K (bench_mftma --sweep-public)", md_table(rows) + "\n",
           smoke=args.smoke or args.no_record)


def run_centres(args):
    """The centre-subspace step alone on centres with ``--shared`` strong shared directions
    (the case of real networks, where the K search runs past the shared rank into flat valleys
    and some restarts need the fallback solver), three data sets: geomjax's
    :func:`geomjax.manifold.fit_center_subspace` against the reference's K search
    (:func:`ref_center_subspace`, Riemannian gradient descent in NumPy), 10 restarts each."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from benchmarks._common import md_table, record, time_call
    from geomjax.manifold import fit_center_subspace

    P, N, sets = (12, 40, 1) if args.smoke else (args.P, args.N, 3)
    rows = []
    for seed in range(args.seed, args.seed + sets):
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((P, N)) + 0.5 * (rng.standard_normal((P, args.shared))
                                                 @ rng.standard_normal((args.shared, N)))
        key = jax.random.key(seed)
        out, tg = time_call(lambda c=c, key=key: fit_center_subspace(key, c),
                            repeat=1 if args.smoke else args.repeat)
        (V, K, _), tr = time_call(lambda c=c, seed=seed: ref_center_subspace(
            c, np.random.default_rng(seed)), repeat=1, warmup=False)
        ct = c - c.mean(axis=0)
        rho_ref = _mean_abs_cos(ct - ct @ V @ V.T)
        rows.append({"seed": seed, "reference CPU-s": tr.cpu_s, "geomjax CPU-s": tg.cpu_s,
                     "compile+first s": tg.first_call_s, "ratio (CPU)": tr.cpu_s / tg.cpu_s,
                     "K ref": K, "K geomjax": out["K"], "residual corr ref": rho_ref,
                     "residual corr geomjax": float(out["residual_correlation"]),
                     "ranks fitted": out["n_k_tried"], "chosen restart converged":
                     bool(out["converged"])})
        print(rows[-1])
    table = md_table(rows)
    print(table)
    record(f"MFTMA centre subspace, {args.shared} shared directions (bench_mftma --centres)",
           f"P={P} centres in N={N} dimensions: standard normal plus 0.5 x a rank-{args.shared} "
           f"shared part; 10 restarts per rank, automatic K; CPU seconds, geomjax best of "
           f"{args.repeat}, reference once.\n\n{table}\n\nReproduce: `python -m "
           f"benchmarks.bench_mftma --centres`.\n", smoke=args.smoke or args.no_record)


def main(argv=None):
    from benchmarks._common import base_parser

    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--P", type=int, default=50)
    p.add_argument("--M", type=int, default=50)
    p.add_argument("--N", type=int, default=5000)
    p.add_argument("--n-t", dest="n_t", type=int, default=200)
    p.add_argument("--kappa", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true", help="the 700-analysis sweep (GPU target)")
    p.add_argument("--sweep-public", action="store_true",
                   help="the same sweep through mftma_sweep with the automatic K search")
    p.add_argument("--sweep-batch", type=int, default=100, help="analyses per vmapped batch")
    p.add_argument("--float32", action="store_true", help="sweep in float32")
    p.add_argument("--centres", action="store_true",
                   help="the centre-subspace step alone, on centres with shared directions")
    p.add_argument("--shared", type=int, default=3, help="shared directions for --centres")
    args = p.parse_args(argv)
    if args.centres:
        run_centres(args)
    elif args.sweep_public:
        run_sweep_public(args)
    elif args.sweep:
        run_sweep(args)
    else:
        run_main(args)


if __name__ == "__main__":
    main()
