"""Representational similarity: geomjax against float64 NumPy references and installed peers.

Sections (all in one process on the same data, except ``streaming`` which runs in a child
process so its peak memory is its own):

* ``pair``      one pair, N x (Dx, Dy): linear / debiased / RBF CKA, CCA, SVCCA-99 %, PWCCA.
* ``allpairs``  all pairs of L layers (N x D each): linear CKA matrix; minibatch CKA (B=500)
  against cka-pytorch's unbiased-HSIC kernel on the same batches.
* ``streaming`` minibatch CKA over N samples generated batch by batch (never materialised),
  peak RSS, and agreement with the in-memory estimators on a subset.
* ``epochs``    L layers x E epochs, within-layer across-epoch CKA matrices (the GPU target;
  runs by default only on a GPU).

Peers are used only if importable: rsatoolbox (``cosine_cov`` of Euclidean RDMs equals linear
CKA), cka-pytorch (its ``hsic1`` batched unbiased HSIC). Every speed is reported only after the
value agrees with the float64 NumPy reference; ratios are reference-or-peer CPU seconds divided
by geomjax CPU seconds (the machine may be shared, so CPU time is the fairer figure).

    python -m benchmarks.bench_similarity            # full run, records results/<device>.md
    python -m benchmarks.bench_similarity --smoke --no-record
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from functools import partial

from benchmarks._common import single_thread_env

single_thread_env()  # both sides of every ratio on one thread (before NumPy/JAX load BLAS)

import numpy as np  # noqa: E402

from benchmarks._common import (  # noqa: E402
    Timing,
    base_parser,
    md_table,
    peak_rss_mb,
    record,
    time_call,
)

SECTIONS = ("pair", "allpairs", "streaming", "epochs")
PAIR_MEASURES = ("linear", "debiased", "rbf", "cca", "svcca", "pwcca")


def _parser():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--sections", default=None, help=f"comma list of {SECTIONS}")
    p.add_argument("--measures", default=None,
                   help=f"pair section only: comma list of {PAIR_MEASURES} (default all); "
                   "'cca,svcca,pwcca' times the CCA family alone in a few minutes")
    p.add_argument("--n", type=int, default=5000, help="samples for pair/allpairs")
    p.add_argument("--peer-repeat", type=int, default=1,
                   help="pair section: best of this many runs of the reference and each peer")
    p.add_argument("--dx", type=int, default=1024)
    p.add_argument("--dy", type=int, default=2048)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--stream-n", type=int, default=1_000_000)
    p.add_argument("--stream-d", type=int, default=512)
    p.add_argument("--stream-batch", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--epoch-n", type=int, default=10_000)
    p.add_argument("--epoch-d", type=int, default=512)
    p.add_argument("--child-streaming", action="store_true", help=argparse_hidden())
    return p


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


# ------------------------------------------------------------------ float64 NumPy references


def np_linear_cka(x, y, debiased=False):
    """Feature-space linear CKA (Kornblith et al. 2019; google-research formula)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    a_xy = np.linalg.norm(x.T @ y) ** 2
    a_xx = np.linalg.norm(x.T @ x) ** 2
    a_yy = np.linalg.norm(y.T @ y) ** 2
    if not debiased:
        return a_xy / np.sqrt(a_xx * a_yy)
    n = x.shape[0]
    rx, ry = np.sum(x * x, 1), np.sum(y * y, 1)

    def dot(a, r1, r2):
        return a - n / (n - 2) * (r1 @ r2) + r1.sum() * r2.sum() / ((n - 1) * (n - 2))

    return dot(a_xy, rx, ry) / np.sqrt(dot(a_xx, rx, rx) * dot(a_yy, ry, ry))


def np_rbf_cka(x, y, threshold=0.5):
    def gram(a):
        d = a @ a.T
        s = np.diag(d)
        sq = -2 * d + s[:, None] + s[None, :]
        return np.exp(-sq / (2 * threshold**2 * np.median(sq)))

    def cen(g):
        m = g.mean(0)
        m -= m.mean() / 2
        return g - m[:, None] - m[None, :]

    k, l = cen(gram(x)), cen(gram(y))
    return float(k.ravel() @ l.ravel() / (np.linalg.norm(k) * np.linalg.norm(l)))


def np_stacked_grams(xs):
    """All pairs via stacked centred Grams: (L, N^2) @ (N^2, L)."""
    f = []
    for x in xs:
        xc = x - x.mean(0)
        g = xc @ xc.T
        f.append((g / np.linalg.norm(g)).ravel())
    f = np.stack(f)
    return f @ f.T


def np_feature_loop(xs):
    xcs = [x - x.mean(0) for x in xs]
    norms = [np.linalg.norm(x.T @ x) for x in xcs]
    m = np.eye(len(xs))
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            m[i, j] = m[j, i] = np.linalg.norm(xcs[i].T @ xcs[j]) ** 2 / (norms[i] * norms[j])
    return m


def np_svcca_cca(acts1, acts2):
    """google/svcca ``get_cca_similarity`` (epsilon=0) coefficients; acts (neurons, points)."""
    numx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy, syy = cov[:numx, :numx], cov[:numx, numx:], cov[numx:, numx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)

    def invsqrt(a):
        w, v = np.linalg.eigh(np.linalg.pinv(a))
        return v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T

    return np.abs(np.linalg.svd(invsqrt(sxx) @ sxy @ invsqrt(syy), compute_uv=False))


def np_svcca(x, y, threshold=0.99):
    red = []
    for a in (x, y):
        ac = a - a.mean(0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.argmax(frac >= threshold)) + 1
        red.append((u[:, :k] * s[:k]).T)
    return float(np_svcca_cca(*red).mean())


def np_svcca_svd(x, y, threshold=0.99):
    """SVCCA straight from thin SVDs: the kept left singular vectors are already orthonormal
    bases, so rho are the singular values of ``U_x,k^T U_y,k``."""
    us = []
    for a in (x, y):
        u, s, _ = np.linalg.svd(a - a.mean(0), full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        us.append(u[:, : int(np.argmax(frac >= threshold)) + 1])
    return float(np.linalg.svd(us[0].T @ us[1], compute_uv=False).mean())


def np_cca_qr(x, y):
    """Mean canonical correlation from thin QR bases of the centred data (anatome's route)."""
    qx = np.linalg.qr(x - x.mean(0))[0]
    qy = np.linalg.qr(y - y.mean(0))[0]
    return float(np.linalg.svd(qx.T @ qy, compute_uv=False).mean())


def np_pwcca(x, y):
    """Morcos et al. 2018 with weights from X's centred neurons."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    qx = np.linalg.qr(xc)[0]
    qy = np.linalg.qr(yc)[0]
    u, s, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    h = (qx @ u)[:, : len(s)]
    alpha = np.abs(h.T @ xc).sum(1)
    return float((alpha / alpha.sum()) @ s)


def np_cov_chol(x, y, weights=False):
    """CCA mean rho (or PWCCA with X's weights) from the centred cross-products with Cholesky
    whitening and no rank check: geomjax's CPU algorithm for full-rank data, written directly
    in NumPy/SciPy (``A.T @ A`` is NumPy's symmetric rank-k product)."""
    from scipy.linalg import cholesky, solve_triangular

    xc, yc = x - x.mean(0), y - y.mean(0)
    lx = cholesky(xc.T @ xc, lower=True)
    ly = cholesky(yc.T @ yc, lower=True)
    m = solve_triangular(lx, solve_triangular(ly, (xc.T @ yc).T, lower=True).T, lower=True)
    if not weights:
        return float(np.linalg.svd(m, compute_uv=False).mean())
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    alpha = np.abs(lx @ u).sum(0)  # X_c^T h_i is proportional to L_x u_i
    return float((alpha / alpha.sum()) @ s)


def np_cov_eigh_svcca(x, y, threshold=0.99):
    """SVCCA from the centred cross-products: full ``eigh`` of each side's Gram for the 99 %
    cut, then the singular values of the whitened kept cross-product."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    a = []
    for c in (xc, yc):
        lam, v = np.linalg.eigh(c.T @ c)
        lam, v = lam[::-1], v[:, ::-1]
        k = int(np.argmax(np.cumsum(lam) / lam.sum() >= threshold)) + 1
        a.append(v[:, :k] / np.sqrt(lam[:k]))
    return float(np.linalg.svd(a[0].T @ (xc.T @ yc) @ a[1], compute_uv=False).mean())


# ------------------------------------------------------------------ peers


def load_rsatoolbox():
    try:
        import rsatoolbox  # noqa: F401

        return rsatoolbox
    except Exception:
        return None


def load_ckapytorch_hsic():
    """cka-pytorch's batched unbiased HSIC kernel, loaded from its file: the package's
    ``__init__`` pulls in a training framework the kernel does not need."""
    try:
        import torch  # noqa: F401

        spec = importlib.util.find_spec("cka_pytorch")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = os.path.join(list(spec.submodule_search_locations)[0], "hsic.py")
        mspec = importlib.util.spec_from_file_location("_ckapytorch_hsic", path)
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
        return mod.hsic1
    except Exception:
        return None


def mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


# ------------------------------------------------------------------ helpers


def _row(measure, impl, dtype, value, ref, t: Timing | None, ref_cpu, tol, note=""):
    r = _row_dict(measure, impl, dtype, value, ref, t, ref_cpu, tol, note)
    print("  ", " | ".join(str(v) for v in r.values()), flush=True)  # progress on long runs
    return r


def _row_dict(measure, impl, dtype, value, ref, t: Timing | None, ref_cpu, tol, note=""):
    d = abs(float(value) - float(ref)) if value is not None else float("nan")
    ok = d <= tol
    r = {
        "measure": measure,
        "implementation": impl,
        "dtype": dtype,
        "value": f"{float(value):.6f}" if value is not None else "-",
        "max |d| vs f64 ref": f"{d:.1e}",
        "wall s": "-",
        "CPU s": "-",
        "compile s": "-",
        "ref CPU / CPU": "-",
    }
    if t is not None and ok:
        r["wall s"] = f"{t.wall_s:.3f}"
        r["CPU s"] = f"{t.cpu_s:.3f}"
        if t.compile_s is not None:
            r["compile s"] = f"{t.compile_s:.2f}"
        if ref_cpu is not None and t.cpu_s > 0:
            r["ref CPU / CPU"] = f"{ref_cpu / t.cpu_s:.2f}x"
    elif t is not None:
        r["wall s"] = "disagrees: speed not reported"
    if note:
        r["implementation"] += f" ({note})"
    return r


def _maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _data_pair(n, dx, dy, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 64))
    x = z @ rng.normal(size=(64, dx)) + 2.0 * rng.normal(size=(n, dx))
    y = np.tanh(x[:, : min(dx, dy)] @ rng.normal(size=(min(dx, dy), dy)) / np.sqrt(dx))
    y = y + 0.5 * rng.normal(size=(n, dy)) + z @ rng.normal(size=(64, dy)) * 0.3
    return x, y


# ------------------------------------------------------------------ sections


def bench_pair(args, sim, jnp):
    n, dx, dy = args.n, args.dx, args.dy
    x, y = _data_pair(n, dx, dy)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    jx64, jy64, jx32, jy32 = map(jnp.asarray, (x, y, x32, y32))
    rep = args.repeat
    rows = []
    want = set(PAIR_MEASURES if args.measures is None else args.measures.split(","))

    def run(measure, ref_fn, gj_fn, tol32, peers=(), f32=True):
        ref_val, tr = time_call(ref_fn, repeat=args.peer_repeat, warmup=False)
        rows.append(
            _row(measure, "NumPy float64 reference", "f64", ref_val, ref_val, tr, tr.cpu_s, 1)
        )
        variants = (("f64", (jx64, jy64), 1e-6), ("f32", (jx32, jy32), tol32))
        for dt, (a, b), tol in variants[:1] if args.smoke or not f32 else variants:
            v, t = time_call(gj_fn, a, b, repeat=rep)
            rows.append(_row(measure, "geomjax", dt, v, ref_val, t, tr.cpu_s, tol))
        for name, dt, fn, tol in peers:
            try:
                v, t = time_call(fn, repeat=args.peer_repeat, warmup=False)
            except Exception as e:  # a peer failing is reported, not fatal
                rows.append({"measure": measure, "implementation": f"{name}: {type(e).__name__}"})
                continue
            rows.append(_row(measure, name, dt, v, ref_val, t, tr.cpu_s, tol))

    rsa = load_rsatoolbox()
    hsic1 = load_ckapytorch_hsic()
    peers_lin = []
    if rsa is not None:
        def rsa_pair():
            rdms = rsa.rdm.calc_rdm([rsa.data.Dataset(x), rsa.data.Dataset(y)], method="euclidean")
            return float(rsa.rdm.compare(rdms[0], rdms[1], method="cosine_cov")[0, 0])

        peers_lin.append(("rsatoolbox cosine_cov of Euclidean RDMs", "f64", rsa_pair, 1e-6))
    if "linear" in want:
        run("linear CKA", lambda: np_linear_cka(x, y), lambda a, b: sim.cka(a, b), 1e-5,
            peers_lin)

    peers_deb = []
    if hsic1 is not None and n <= 6000:
        import torch

        def torch_debiased():
            tx = torch.from_numpy(x32 - x32.mean(0))
            ty = torch.from_numpy(y32 - y32.mean(0))
            k, l = (tx @ tx.T)[None], (ty @ ty.T)[None]
            return float(hsic1(k, l) / torch.sqrt(hsic1(k, k) * hsic1(l, l)))

        peers_deb.append(("cka-pytorch hsic1 (one batch of N)", "f32", torch_debiased, 1e-4))
    if "debiased" in want:
        run(
            "debiased linear CKA",
            lambda: np_linear_cka(x, y, debiased=True),
            lambda a, b: sim.cka(a, b, debiased=True),
            1e-5,
            peers_deb,
        )
    if "rbf" in want:
        run("RBF CKA (0.5 x median)", lambda: np_rbf_cka(x, y), lambda a, b: sim.rbf_cka(a, b),
            1e-5)
    # CCA family in float64 only: float32 takes the SVD route (the covariance routes square the
    # condition number), LAPACK-bound on CPU (see cca_method). float64 values must agree to 1e-6.
    # NumPy QR routes (anatome's CCA algorithm; Morcos PWCCA) in both dtypes as the fast peers:
    # no CCA-family library installs here. Held to the same 1e-6 as geomjax float64.
    qr_peers_cca = [(f"NumPy QR + SVD values, {dt}", dt, partial(np_cca_qr, a, b), 1e-6)
                    for dt, a, b in (("f64", x, y), ("f32", x32, y32))]
    qr_peers_pw = [("NumPy QR (Morcos), f32", "f32", partial(np_pwcca, x32, y32), 1e-6)]
    # The same cross-product algorithms written directly in NumPy/SciPy (float64: the
    # covariance routes square the condition number). Reported as peers, and the summary gives
    # the ratio both with and without them.
    cov = "NumPy covariance route"
    qr_peers_cca.append((f"{cov}: Cholesky whitening, f64", "f64", partial(np_cov_chol, x, y),
                         1e-6))
    qr_peers_pw.append((f"{cov}: Cholesky whitening, f64", "f64",
                        partial(np_cov_chol, x, y, True), 1e-6))
    if "cca" in want:
        run(
            "CCA mean rho",
            lambda: float(np_svcca_cca(x.T, y.T)[: min(dx, dy)].mean()),
            lambda a, b: sim.cca(a, b).mean,
            1e-6,
            qr_peers_cca,
            f32=False,
        )
    if "svcca" in want:
        svd_peers = [(f"NumPy thin SVD + SVD values, {dt}", dt, partial(np_svcca_svd, a, b), 1e-6)
                     for dt, a, b in (("f64", x, y), ("f32", x32, y32))]
        svd_peers.append((f"{cov}: eigh of both Grams, f64", "f64",
                          partial(np_cov_eigh_svcca, x, y), 1e-6))
        run("SVCCA-99 %", lambda: np_svcca(x, y), lambda a, b: sim.svcca(a, b).mean, 1e-6,
            svd_peers, f32=False)
    if "pwcca" in want:
        run("PWCCA (X side)", lambda: np_pwcca(x, y), lambda a, b: sim.pwcca(a, b).value, 1e-6,
            qr_peers_pw, f32=False)
    return rows


def bench_allpairs(args, sim, jnp, jax):
    n, d, nl = args.n, args.dx, args.layers
    rng = np.random.default_rng(1)
    xs32 = [rng.normal(size=(n, d)).astype(np.float32)]
    for _ in range(nl - 1):
        w = (rng.normal(size=(d, d)) / np.sqrt(d)).astype(np.float32)
        xs32.append(np.maximum(xs32[-1] @ w, 0) + 0.3 * rng.normal(size=(n, d)).astype(np.float32))
    xs64 = [a.astype(np.float64) for a in xs32]
    rep = args.repeat
    rows = []
    ref, tr = time_call(lambda: np_feature_loop(xs64), repeat=1, warmup=False)
    measure = f"linear CKA, {nl} layers all pairs"
    rows.append(_row(measure, "NumPy float64 feature-space loop (reference)", "f64", ref[0, 1],
                     ref[0, 1], tr, tr.cpu_s, 1))

    def add(impl, dt, fn, tol, repeat=1, warm=False):
        try:
            v, t = time_call(fn, repeat=repeat, warmup=warm)
        except Exception as e:
            rows.append({"measure": measure, "implementation": f"{impl}: {type(e).__name__}: {e}"})
            return None
        dlt = _maxdiff(v, ref)
        r = _row(measure, impl, dt, np.asarray(v)[0, 1], ref[0, 1], t, tr.cpu_s, tol)
        r["max |d| vs f64 ref"] = f"{dlt:.1e}"
        if dlt > tol:
            r["wall s"], r["CPU s"], r["ref CPU / CPU"] = "disagrees: speed not reported", "-", "-"
        rows.append(r)
        return t

    add("NumPy stacked centred Grams", "f32", lambda: np_stacked_grams(xs32), 1e-4)
    add("NumPy stacked centred Grams", "f64", lambda: np_stacked_grams(xs64), 1e-6)
    rsa = load_rsatoolbox()
    need_gb = nl * n * n * 8 * 3.5 / 2**30  # RDMs plus its comparison copies (~8.4 GB at 12 x 5000)
    if rsa is not None and mem_available_gb() > need_gb + 2:
        def rsa_all():
            rdms = rsa.rdm.calc_rdm([rsa.data.Dataset(a) for a in xs64], method="euclidean")
            return rsa.rdm.compare(rdms, rdms, method="cosine_cov")

        add("rsatoolbox cosine_cov of Euclidean RDMs", "f64", rsa_all, 1e-6)
    elif rsa is not None:
        rows.append({"measure": measure, "implementation":
                     f"rsatoolbox skipped: needs ~{need_gb:.0f} GB, {mem_available_gb():.0f} free"})
    j32 = [jnp.asarray(a) for a in xs32]
    j64 = [jnp.asarray(a) for a in xs64]
    t32 = None
    if not args.smoke:
        t32 = add("geomjax cka_matrix", "f32", lambda: sim.cka_matrix(j32).values, 1e-5, rep, True)
    t64 = add("geomjax cka_matrix", "f64", lambda: sim.cka_matrix(j64).values, 1e-6, rep, True)
    peer_cpu = [float(r["CPU s"]) for r in rows
                if r.get("CPU s", "-") not in ("-",) and "geomjax" not in r["implementation"]
                and "NumPy" not in r["implementation"]]
    summary = {"peer_best_cpu": min(peer_cpu) if peer_cpu else None,
               "gj32_cpu": t32.cpu_s if t32 else None, "gj64_cpu": t64.cpu_s if t64 else None}

    # minibatch estimator against cka-pytorch's kernel on the same batches
    mb_rows = []
    hsic1 = load_ckapytorch_hsic()
    b = min(500, n)
    batches32 = [[a[i : i + b] for a in xs32] for i in range(0, n - b + 1, b)]
    if hsic1 is not None:
        import torch

        def torch_mb():
            s = torch.zeros(nl, nl, dtype=torch.float64)
            for bt in batches32:
                g = torch.stack([(torch.from_numpy(a) @ torch.from_numpy(a).T) for a in bt])
                ii, jj = np.triu_indices(nl)
                h = hsic1(g[ii], g[jj]).double()
                s[ii, jj] += h
                s[jj, ii] = s[ii, jj]
            dg = torch.sqrt(torch.diag(s))
            return (s / dg[:, None] / dg[None, :]).numpy()

        mref, tm = time_call(torch_mb, repeat=1, warmup=False)
        mb_rows.append(_row(f"minibatch CKA B={b}", "cka-pytorch hsic1 (triu pairs)", "f32",
                            mref[0, 1], mref[0, 1], tm, tm.cpu_s, 1))
    else:
        mref, tm = None, None
    jb = [[jnp.asarray(a) for a in bt] for bt in batches32]
    v, t = time_call(lambda: sim.minibatch_cka_matrix(jb), repeat=rep)
    ref_mb = v if mref is None else mref
    r = _row(f"minibatch CKA B={b}", "geomjax minibatch_cka_matrix", "f32", v[0, 1], ref_mb[0, 1],
             t, tm.cpu_s if tm else None, 1e-4)
    r["max |d| vs f64 ref"] = f"{_maxdiff(v, ref_mb):.1e} (vs cka-pytorch)"
    mb_rows.append(r)
    return rows, mb_rows, summary


def streaming_child(args):
    """Runs in its own process: stream N samples through MinibatchCKA, report JSON."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import geomjax.similarity as sim

    n, d, b = args.stream_n, args.stream_d, args.stream_batch
    nb = n // b
    latent = 64
    key = jax.random.key(0)
    ka, kc, ke = jax.random.split(key, 3)
    a = jax.random.normal(ka, (latent, d), jnp.float32) / np.sqrt(latent)
    c = jax.random.normal(kc, (latent, d), jnp.float32) / np.sqrt(latent)
    e = jax.random.normal(ke, (d, d), jnp.float32) / np.sqrt(d)

    @jax.jit
    def batch(i):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
        z = jax.random.normal(k1, (b, latent), jnp.float32)
        x = z @ a + jax.random.normal(k2, (b, d), jnp.float32)
        y = jnp.tanh(z @ c) @ e + 0.5 * jax.random.normal(k3, (b, d), jnp.float32) + 10.0
        return x, y

    rss0 = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    acc = sim.MinibatchCKA()
    for i in range(nb):
        acc.update(*batch(i))
    value = float(acc.result()[0, 1])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = peak_rss_mb()
    # in-memory checks on a subset (the first m batches, materialised only here)
    m = min(20, nb)
    xs, ys = zip(*[batch(i) for i in range(m)], strict=True)
    xs = [np.asarray(v, np.float64) for v in xs]
    ys = [np.asarray(v, np.float64) for v in ys]
    hs = np.zeros(3)
    per_batch = []
    for xb, yb in zip(xs, ys, strict=True):
        # float64 NumPy U-statistic per batch (feature-space form)
        xc, yc = xb - xb.mean(0), yb - yb.mean(0)
        rx, ry = np.sum(xc * xc, 1), np.sum(yc * yc, 1)

        def dot(aa, r1, r2, nn=b):
            return aa - nn / (nn - 2) * (r1 @ r2) + r1.sum() * r2.sum() / ((nn - 1) * (nn - 2))

        h = np.array([dot(np.linalg.norm(xc.T @ yc) ** 2, rx, ry),
                      dot(np.linalg.norm(xc.T @ xc) ** 2, rx, rx),
                      dot(np.linalg.norm(yc.T @ yc) ** 2, ry, ry)])
        hs += h
        per_batch.append(h[0] / np.sqrt(h[1] * h[2]))
    exact_ref = hs[0] / np.sqrt(hs[1] * hs[2])
    acc_m = sim.MinibatchCKA()
    for i in range(m):
        acc_m.update(*batch(i))
    exact_got = float(acc_m.result()[0, 1])
    sub_x, sub_y = np.concatenate(xs), np.concatenate(ys)
    debiased_subset = float(np_linear_cka(sub_x, sub_y, debiased=True))
    se = float(np.std(per_batch, ddof=1) / np.sqrt(m))
    print(json.dumps(dict(
        n=n, d=d, batch=b, n_batches=nb, value=value, wall_s=wall, cpu_s=cpu, peak_rss_mb=rss,
        rss_before_mb=rss0, subset_batches=m, exact_ref=exact_ref, exact_got=exact_got,
        debiased_subset=debiased_subset, se=se)))


def _streaming_run(args, n):
    cmd = [sys.executable, "-m", "benchmarks.bench_similarity", "--child-streaming",
           "--stream-n", str(n), "--stream-d", str(args.stream_d),
           "--stream-batch", str(args.stream_batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_streaming(args):
    """Each size in its own process (clean peak RSS); a 10x smaller N shows RSS does not grow."""
    rows, good = [], True
    small = min(args.stream_n, max(args.stream_n // 10, 20 * args.stream_batch))
    sizes = sorted({small, args.stream_n})
    for n in sizes:
        res = _streaming_run(args, n)
        exact_ok = abs(res["exact_got"] - res["exact_ref"]) < 1e-6
        tol = 4 * res["se"] + 1e-4
        subset_ok = abs(res["value"] - res["debiased_subset"]) < tol
        ok = exact_ok and subset_ok
        good &= ok
        rows.append({
            "N x D": f"{res['n']:,} x {res['d']}",
            "batch": res["batch"],
            "minibatch CKA": f"{res['value']:.6f}",
            "peak RSS MB (whole process)": f"{res['peak_rss_mb']:.0f}",
            "same batches in memory (f64 NumPy)": f"{res['exact_ref']:.6f} (|d| "
            f"{abs(res['exact_got'] - res['exact_ref']):.1e})",
            f"debiased CKA, in-memory subset of {res['subset_batches'] * res['batch']:,}":
            f"{res['debiased_subset']:.6f} (|d| {abs(res['value'] - res['debiased_subset']):.1e}"
            f", tol {tol:.1e})",
            "wall s": f"{res['wall_s']:.1f}" if ok else "disagrees",
            "CPU s": f"{res['cpu_s']:.1f}" if ok else "-",
        })
    return rows, good


def bench_epochs(args, sim, jnp, jax):
    nl, ne, n, d = args.layers, args.epochs, args.epoch_n, args.epoch_d
    key = jax.random.key(2)

    @jax.jit
    def layer_reps(k):
        k1, k2 = jax.random.split(k)
        base = jax.random.normal(k1, (n, d), jnp.float32)
        drift = jax.random.normal(k2, (ne, n, d), jnp.float32)
        w = jnp.linspace(0.0, 1.0, ne, dtype=jnp.float32)[:, None, None]
        return base[None] + w * drift  # epochs converge towards... a drifting representation

    reps0 = layer_reps(jax.random.fold_in(key, 0))
    t0 = time.perf_counter()
    first = sim.cka_matrix(reps0)  # includes compilation
    t_first = time.perf_counter() - t0
    host = np.asarray(reps0[:3], np.float64)
    want = np.array([[np_linear_cka(a, b) for b in host] for a in host])
    agree = _maxdiff(first.values[:3, :3], want)
    total = 0.0
    for layer in range(nl):
        reps = jax.block_until_ready(layer_reps(jax.random.fold_in(key, layer)))
        t0 = time.perf_counter()
        sim.cka_matrix(reps)
        total += time.perf_counter() - t0
    return {
        "layers x epochs": f"{nl} x {ne}",
        "N x D": f"{n:,} x {d}",
        "CKA matrices": f"{nl} of {ne}x{ne}",
        "max |d| (3x3 corner vs f64 NumPy)": f"{agree:.1e}",
        "total wall s (excl. data generation)": f"{total:.2f}" if agree < 1e-5 else "disagrees",
        "first call s (incl. compile)": f"{t_first:.2f}",
    }


def _pair_summary(rows):
    """Per measure: geomjax's best CPU-s against the fastest other implementation that agreed
    (the float64 NumPy reference counts: for the CCA family no peer library is installed), and,
    where NumPy covariance-route rows are present, also against the fastest of the others."""
    out = []
    cov = "NumPy covariance route"

    def cpu(r):
        try:
            return float(r.get("CPU s", "-"))
        except ValueError:
            return None

    for m in dict.fromkeys(r["measure"] for r in rows):
        mine = [(cpu(r), r["dtype"]) for r in rows if r["measure"] == m
                and r["implementation"].startswith("geomjax") and cpu(r)]
        other = [(cpu(r), r["implementation"]) for r in rows if r["measure"] == m
                 and not r["implementation"].startswith("geomjax") and cpu(r)]
        if mine and other:
            (g, dt), (o, name) = min(mine), min(other)
            line = (f"- {m}: geomjax {g:.2f} CPU-s ({dt}) vs fastest other {o:.2f} CPU-s "
                    f"({name}): {o / g:.2f}x")
            rest = [t for t in other if not t[1].startswith(cov)]
            if rest and len(rest) < len(other):
                o2, name2 = min(rest)
                line += (f"; without the covariance-route rows, fastest {o2:.2f} CPU-s ({name2}): "
                         f"{o2 / g:.2f}x")
            out.append(line)
    return out


CCA_READING = (
    "CCA family: no CCA-family library installs here (anatome and netrep are not on the "
    "package index this machine reaches; `ultimate-anatome` needs a private utility package), "
    "so the comparators are NumPy: the float64 references (google/svcca's covariance CCA, its "
    "SVCCA driver, Morcos' QR PWCCA), faster data-matrix variants (QR bases, thin SVD; float32 "
    "and float64), and the same cross-product algorithms geomjax uses on CPU written directly "
    "in NumPy/SciPy ('NumPy covariance route': Cholesky whitening without rank checks for "
    "CCA/PWCCA, eigh of both Grams for SVCCA). The summary gives the ratio against the fastest "
    "of all and without the covariance-route rows. No float64 CPU algorithm that forms the "
    "cross-products can be 3x faster than the covariance-route rows: X^T X, Y^T Y and X^T Y "
    "(about 47 GFlop at N=5000, Dx=1024, Dy=2048, at BLAS peak) are more than a third of "
    "their time. geomjax on CPU for concrete float64 arrays: centred cross-products from the "
    "host BLAS (symmetric rank-k for X^T X), then host LAPACK: Cholesky whitening where both "
    "sides are certified full rank, else the rank-revealing eigen-route; SVCCA's eigen-route "
    "tridiagonalises each Gram (dsytrd), solves the tridiagonal by divide and conquer "
    "(dstevd), back-transforms only the kept eigenvectors of the side with fewer of them and "
    "applies the other side's Householder reflectors to the small kept cross-product, so the "
    "dropped directions are never formed. Under jit/vmap or on an accelerator the jitted XLA "
    "kernel runs; a test holds the two routes to 1e-10. Reproduce: `python -m "
    "benchmarks.bench_similarity --sections pair --measures cca,svcca,pwcca` (5-6 minutes)."
)


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.smoke:
        args.n, args.dx, args.dy, args.layers = 200, 16, 24, 3
        args.stream_n, args.stream_d, args.stream_batch = 4000, 16, 500
        args.epochs, args.epoch_n, args.epoch_d = 4, 64, 8
        args.repeat = 1
    if args.child_streaming:
        streaming_child(args)
        return 0
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # for the float64 rows; float32 rows stay float32
    import geomjax.similarity as sim

    on_gpu = jax.devices()[0].platform == "gpu"
    if args.sections:
        sections = [s.strip() for s in args.sections.split(",")]
        bad = [s for s in sections if s not in SECTIONS]
        if bad:
            raise SystemExit(f"unknown sections {bad}; choose from {SECTIONS}")
    else:
        sections = ["pair", "allpairs", "streaming"] + (["epochs"] if on_gpu or args.smoke else [])
    missing = [m for m in ("anatome", "netrep", "rsatoolbox", "cka_pytorch", "torch")
               if importlib.util.find_spec(m) is None]
    footer = (
        "Ratios: reference (or peer) CPU seconds / geomjax CPU seconds on the same data in the "
        "same process."
        + (f" Not importable here, skipped: {', '.join(missing)}." if missing else "")
    )
    quiet = args.smoke or args.no_record

    def save(title, lines):
        # each section is recorded as soon as it is done, so sections can run separately
        record(f"similarity: {title}", "\n".join(lines + [footer]), smoke=quiet)

    ok = True
    if "pair" in sections:
        rows = bench_pair(args, sim, jnp)
        summary = _pair_summary(rows)
        print(md_table(rows), "", *summary, sep="\n", flush=True)
        which = "" if args.measures is None else f" ({args.measures.replace(',', ', ')})"
        cca_family = bool({"cca", "svcca", "pwcca"} & set(
            PAIR_MEASURES if args.measures is None else args.measures.split(",")))
        save(f"one pair{which}, N={args.n}, Dx={args.dx}, Dy={args.dy}", [
            md_table(rows), "", *summary, "",
            f"One thread per side (OMP/OpenBLAS/XLA pinned); load average at the end "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine: CPU seconds, "
            "not wall, are compared). "
            + ("Reference and peers run once, without warm-up"
               if args.peer_repeat <= 1 else
               f"Reference and peers: best of {args.peer_repeat} runs (the first warms up)")
            + f"; geomjax best of {args.repeat} after one warm-up call.", "",
            *([CCA_READING, ""] if cca_family else [])])
    if "allpairs" in sections:
        rows, mb_rows, summ = bench_allpairs(args, sim, jnp, jax)
        md = [md_table(rows), "", md_table(mb_rows), ""]
        if summ["peer_best_cpu"] and summ["gj32_cpu"]:
            md += [(f"Fastest installed peer {summ['peer_best_cpu']:.2f} CPU-s; geomjax "
                    f"{summ['gj32_cpu']:.2f} (f32) / {summ['gj64_cpu']:.2f} (f64) CPU-s: "
                    f"{summ['peer_best_cpu'] / summ['gj32_cpu']:.1f}x / "
                    f"{summ['peer_best_cpu'] / summ['gj64_cpu']:.1f}x."), ""]
        print(md_table(rows), "\n", md_table(mb_rows), flush=True)
        save(f"all pairs of {args.layers} layers, N={args.n}, D={args.dx}", md)
    if "streaming" in sections:
        rows, good = bench_streaming(args)
        ok &= good
        print(md_table(rows), flush=True)
        save("streaming minibatch CKA (data generated batch by batch)", [
            md_table(rows), "",
            "Each size runs in its own process; data are drawn batch by batch from a seeded JAX "
            "generator and never held whole. 'same batches in memory' feeds the first "
            f"{20 * args.stream_batch:,} samples through the accumulator and through a float64 "
            "NumPy sum of per-batch U-statistics; the debiased CKA of that subset held in memory "
            "agrees with the full stream within 4 standard errors (the estimators converge in "
            f"probability, not exactly). Load during the run: {os.getloadavg()[0]:.1f}.", ""])
    if "epochs" in sections:
        row = bench_epochs(args, sim, jnp, jax)
        print(md_table([row]), flush=True)
        save("layers x epochs (within-layer across-epoch CKA)", [md_table([row]), ""])
    elif not on_gpu:
        save("layers x epochs (within-layer across-epoch CKA)", [
            "12 layers x 90 epochs, N=10,000: not measured (no GPU here; run "
            "`python -m benchmarks.bench_similarity --sections epochs` on a GPU).", ""])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
