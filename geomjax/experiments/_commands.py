"""Subcommands of the ``geomjax`` command: ``corpus``, ``train``, ``extract``, ``analyze``,
``report`` and ``reproduce``.

Each ``add_<name>(subparsers)`` registers one subcommand whose handler is stored as ``func``;
:func:`register` adds them all, and :func:`main` is a complete command line on its own. Errors a
user can fix (unknown model or analysis, missing checkpoint, unreadable arrays, bad sizes) are
reported as one line on stderr with a non-zero exit status, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["register", "main", "ANALYSES", "UserError", "load_arrays", "run_command", "SUBCOMMANDS"]

ANALYSES = (
    "mftma",
    "capacity",
    "dimension",
    "cka",
    "rbf_cka",
    "svcca",
    "cca",
    "pwcca",
    "probe",
    "slt",
)
# all-pairs similarity analyses: the `measure` of geomjax.similarity.similarity_matrix
_SIMILARITY = ("cka", "rbf_cka", "svcca", "cca", "pwcca")
# analyses `--devices` shards (the others run on one device)
SHARDED_ANALYSES = ("mftma", "capacity", *_SIMILARITY, "probe", "slt")


class UserError(ValueError):
    """An error caused by the command line or its files; printed without a traceback."""


def _guard(cmd):
    """Wrap a handler so user errors print one line and return exit status 2, whichever parser
    dispatches it (this module's :func:`main` or :mod:`geomjax.cli`)."""

    def run(args):
        try:
            return int(cmd(args) or 0)
        except (ValueError, FileNotFoundError, KeyError, TypeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"geomjax {args.command}: error: {msg}", file=sys.stderr)
            return 2

    run.__name__ = cmd.__name__
    run.__doc__ = cmd.__doc__
    return run


# ---- shared helpers -----------------------------------------------------------------------
def _model_names():
    from geomjax.models import MODEL_NAMES

    return list(MODEL_NAMES)


def load_arrays(path) -> dict[str, np.ndarray]:
    """Arrays from ``.npy`` (one array, named after the file), ``.npz`` (every array) or
    ``.parquet`` / ``.csv`` (numeric columns form ``features``; a ``label`` column, when
    present, becomes ``labels``). Loading never unpickles objects."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"input file {p} does not exist.")
    suf = p.suffix.lower()
    try:
        if suf == ".npy":
            return {p.stem: np.load(p, allow_pickle=False)}
        if suf == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suf in (".parquet", ".csv"):
            import pandas as pd

            df = pd.read_parquet(p) if suf == ".parquet" else pd.read_csv(p)
            out = {}
            if "label" in df:
                out["labels"] = df.pop("label").to_numpy()
            num = df.select_dtypes("number")
            if num.shape[1] == 0:
                raise UserError(f"{p} has no numeric feature columns.")
            out["features"] = num.to_numpy(np.float32)
            return out
    except UserError:
        raise
    except Exception as e:  # corrupt or foreign files: say which file and why
        raise UserError(f"cannot read arrays from {p}: {type(e).__name__}: {e}") from e
    raise UserError(f"unsupported array file {p}: use .npy, .npz, .parquet or .csv.")


def _write_table(df, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / f"{name}.parquet", index=False)
    df.to_csv(out / f"{name}.csv", index=False)
    return out / f"{name}.parquet"


def _corpus(size: str, seed: int, cache):
    from geomjax.data import default_cache_dir, synthesize_corpus

    return synthesize_corpus(size, seed=seed, cache_dir=cache or default_cache_dir())


# ---- corpus -------------------------------------------------------------------------------
def cmd_corpus(a) -> int:
    from geomjax.data import save_corpus

    c = _corpus(a.size, a.seed, a.cache_dir)
    u = c.utterances
    desc = {
        "size": a.size,
        "seed": a.seed,
        "utterances": len(u),
        "duration_s": round(float(u["n_samples"].sum()) / c.sample_rate, 1),
        "speakers": int(u["speaker"].nunique()),
        "word_tokens": len(c.words),
        "word_types": int(c.words["word"].nunique()),
        "phone_types": int(c.phones["phone"].nunique()),
        "accents": sorted(u["accent"].unique().tolist()),
        "channels": int(u["channel"].nunique()),
        "splits": {k: int(v) for k, v in u["split"].value_counts().items()},
    }
    print(json.dumps(desc, indent=2))
    if a.out:
        p = save_corpus(c, a.out)
        print(f"corpus written to {p}")
    return 0


def add_corpus(sub) -> None:
    p = sub.add_parser("corpus", help="synthesise (or load from the cache) and describe the corpus")
    p.add_argument("--size", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the corpus to this folder (audio + Parquet tables)")
    p.add_argument(
        "--cache-dir", help="corpus cache (default: $GEOMJAX_CACHE_DIR or ~/.cache/geomjax)"
    )
    p.set_defaults(func=_guard(cmd_corpus))


# ---- train --------------------------------------------------------------------------------
_DEFAULT_TASK = {
    "word_cnn": "word",
    "ds2": "ctc",
    "speaker_cnn": "speaker",
    "phone_mlp": "phone",
    "transformer": "reconstruction",
}


def cmd_train(a) -> int:
    from geomjax import models
    from geomjax.experiments._inputs import task_splits

    if a.model not in _model_names():
        raise UserError(f"unknown model {a.model!r}; choose one of {_model_names()}.")
    task = a.task or _DEFAULT_TASK[a.model]
    c = _corpus(a.corpus, a.seed, a.cache_dir)
    sp = task_splits(c, task, seed=a.seed)
    n_classes = len(sp.classes) if task not in ("ctc", "reconstruction") else None
    res = models.train(
        a.seed,
        a.model,
        sp.train,
        sp.valid,
        epochs=a.epochs,
        ckpt_dir=a.out,
        preset=a.preset,
        n_classes=n_classes,
        batch_size=min(a.batch_size, len(sp.train)),
        learning_rate=a.lr,
        max_steps_per_epoch=a.max_steps,
    )
    print(res.metrics.to_string(index=False))
    print(f"checkpoints (epoch 0 = initial weights) in {res.ckpt_dir}")
    return 0


def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model on the synthesised corpus, a checkpoint per epoch"
    )
    p.add_argument("model", help="word_cnn, ds2, speaker_cnn, phone_mlp or transformer")
    p.add_argument("--out", required=True, help="checkpoint folder (reused: training resumes)")
    p.add_argument(
        "--task",
        choices=["word", "speaker_windows", "speaker", "phone", "ctc", "reconstruction"],
        help="what to learn (default: the model's own task)",
    )
    p.add_argument(
        "--preset",
        default="cpu",
        help="paper, cpu or tiny (model-specific: paper-2048, paper-lstm)",
    )
    p.add_argument("--corpus", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir")
    p.set_defaults(func=_guard(cmd_train))


# ---- extract ------------------------------------------------------------------------------
def _load_ckpt(path, epoch):
    from geomjax.models import list_checkpoints, load_checkpoint

    d = Path(path)
    if not d.is_dir():
        raise UserError(f"checkpoint folder {d} does not exist.")
    eps = [e for e, _ in list_checkpoints(d)]
    if not eps:
        raise UserError(f"no checkpoints (epoch_<NNNN>.msgpack files) in {d}.")
    if epoch is not None and epoch not in eps:
        raise UserError(f"no checkpoint for epoch {epoch} in {d}; available epochs: {eps}.")
    return load_checkpoint(d, epoch)


def cmd_extract(a) -> int:
    import jax

    from geomjax.data import sample_manifolds
    from geomjax.experiments._geometry import layer_matrix
    from geomjax.experiments._inputs import model_inputs
    from geomjax.models import activations, model_name

    ck = _load_ckpt(a.checkpoint, a.epoch)
    name = model_name(ck.model)
    if name == "phone_mlp":
        raise UserError(
            "extract cuts 2-s windows; the phone MLP reads spliced frames "
            "(use the Python API: geomjax.experiments task_splits + activations)."
        )
    c = _corpus(a.corpus, a.seed, a.cache_dir)
    ms = sample_manifolds(
        jax.random.key(a.seed),
        c,
        a.label_type,
        n_classes=a.classes,
        n_examples=a.examples,
        window=2.0,
    )
    audio, labels = ms.flat()
    x, L = model_inputs(name, audio, ds2_bins=a.ds2_bins)
    layers = a.layers.split(",") if a.layers else None
    acts = activations(ck.model, ck.variables, x, L, layers=layers, batch_size=64, progress=True)
    P, M = ms.shape[:2]
    how = "flatten" if name == "word_cnn" else a.time
    arrays = {
        k: layer_matrix(v, acts.lengths.get(k), how=how).reshape(P, M, -1)
        for k, v in acts.layers.items()
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out, **arrays, _labels=labels.reshape(P, M), _classes=np.asarray(ms.classes, dtype=str)
    )
    print(f"{len(arrays)} layers of {P} {a.label_type} manifolds x {M} examples -> {out}")
    for k, v in arrays.items():
        print(f"  {k}: {v.shape}")
    return 0


def add_extract(sub) -> None:
    p = sub.add_parser(
        "extract", help="activations of chosen layers for a manifold data set (.npz)"
    )
    p.add_argument("--checkpoint", required=True, help="a training folder (geomjax train --out)")
    p.add_argument("--epoch", type=int, default=None, help="epoch (default: the last; 0 = initial)")
    p.add_argument(
        "--label-type",
        default="word",
        help="word, speaker, phoneme, character, pos, gender, accent or channel",
    )
    p.add_argument("--classes", type=int, default=50, help="P manifolds")
    p.add_argument("--examples", type=int, default=50, help="M examples per manifold")
    p.add_argument("--layers", help="comma-separated layer names (default: all)")
    p.add_argument(
        "--time",
        default="centre",
        choices=["centre", "mean", "flatten"],
        help="sequence layers: the centre step, the mean over steps, or all steps",
    )
    p.add_argument("--corpus", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--ds2-bins", type=int, default=81)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir")
    p.add_argument("--out", required=True, help="output .npz: one (P, M, N) array per layer")
    p.set_defaults(func=_guard(cmd_extract))


# ---- analyze ------------------------------------------------------------------------------
def _manifold_arrays(arrays, labels_key):
    """``{name: (P, M, N)}`` from (P, M, N) arrays or from (n, N) arrays plus labels."""
    labels = arrays.get(labels_key)
    out = {}
    for k, v in arrays.items():
        if k.startswith("_") or k == labels_key:
            continue
        v = np.asarray(v)
        if not np.issubdtype(v.dtype, np.number):
            continue
        if v.ndim == 3:
            out[k] = v.astype(np.float32)
        elif v.ndim == 2:
            if labels is None:
                raise UserError(
                    f"array {k!r} is (n, N); manifold analyses need (P, M, N) arrays or "
                    f"a {labels_key!r} array of per-row labels."
                )
            lab = np.asarray(labels).reshape(-1)
            if lab.shape[0] != v.shape[0]:
                raise UserError(
                    f"{labels_key!r} has {lab.shape[0]} rows but {k!r} has {v.shape[0]}."
                )
            cls, counts = np.unique(lab, return_counts=True)
            m = int(counts.min())
            out[k] = np.stack([v[lab == c][:m] for c in cls]).astype(np.float32)
        else:
            raise UserError(f"array {k!r} has shape {v.shape}; expected (P, M, N) or (n, N).")
    if not out:
        raise UserError("the input holds no numeric layer arrays.")
    return out


def _flat_arrays(arrays, labels_key):
    out = {}
    for k, v in arrays.items():
        if k.startswith("_") or k == labels_key:
            continue
        v = np.asarray(v)
        if not np.issubdtype(v.dtype, np.number):
            continue
        out[k] = v.reshape(-1, v.shape[-1]).astype(np.float32) if v.ndim >= 2 else None
        if out[k] is None:
            raise UserError(f"array {k!r} has shape {v.shape}; expected (n, N) or (P, M, N).")
    if not out:
        raise UserError("the input holds no numeric layer arrays.")
    return out


def _labels(arrays, labels_key, n):
    if labels_key in arrays:
        lab = np.asarray(arrays[labels_key]).reshape(-1)
    else:
        v = next(
            np.asarray(v)
            for k, v in arrays.items()
            if not k.startswith("_") and np.asarray(v).ndim == 3
        )
        lab = np.repeat(np.arange(v.shape[0]), v.shape[1])
    if lab.shape[0] != n:
        raise UserError(f"labels have {lab.shape[0]} rows but the features have {n}.")
    _, y = np.unique(lab, return_inverse=True)
    return y.astype(np.int32)


def cmd_analyze(a) -> int:
    import jax
    import pandas as pd

    from geomjax.experiments import _geometry as g

    if a.analysis not in ANALYSES:
        raise UserError(f"unknown analysis {a.analysis!r}; choose one of {list(ANALYSES)}.")
    arrays = load_arrays(a.input)
    out = Path(a.out)
    key = jax.random.key(a.seed)
    rows = []
    mesh = budget = None
    if (
        getattr(a, "devices", None) is not None
        or getattr(a, "multi_host", False)
        or getattr(a, "coordinator", None)
    ):
        from geomjax.distributed import memory_budget_from_args, mesh_from_args

        if a.analysis not in SHARDED_ANALYSES:
            raise UserError(
                f"--devices shards the analyses {', '.join(SHARDED_ANALYSES)}; "
                f"{a.analysis!r} runs on one device (drop --devices)."
            )
        mesh, budget = mesh_from_args(a), memory_budget_from_args(a)
    if a.analysis in ("mftma", "capacity", "dimension"):
        mans = _manifold_arrays(arrays, a.labels_key)
        for name in mans:
            X = mans[name]
            if a.project and X.shape[2] > a.project:
                P, M, N = X.shape
                mans[name] = g.project_features(
                    X.reshape(P * M, N), a.project, seed=a.seed
                ).reshape(P, M, -1)
        swept = None
        if a.analysis == "mftma" and mesh is not None:
            # every layer's anchor problems in one sweep over the mesh (same key, same numbers)
            swept = dict(
                zip(
                    mans,
                    g.manifold_metrics_sharded(key, list(mans.values()), a.n_t, mesh, budget),
                    strict=True,
                )
            )
        for name, X in mans.items():
            row = {"layer": name, "P": X.shape[0], "M": X.shape[1], "N": X.shape[2]}
            if a.analysis == "mftma":
                row.update(swept[name] if swept is not None else g.manifold_metrics(key, X, a.n_t))
            elif a.analysis == "dimension":
                pts = X.reshape(-1, X.shape[2])
                row.update(
                    d_pr=g.participation_ratio(pts), d_ev=g.explained_variance_dimension(pts)
                )
            else:
                sim = g.simulated_capacity(key, X, a.dichotomies, None, mesh, budget)
                if sim is None:
                    raise UserError(
                        "this installation has no empirical-capacity routine "
                        "(geomjax.manifold.empirical_capacity)."
                    )
                row.update(sim)
            rows.append(row)
            print(
                json.dumps(
                    {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
                )
            )
        df = pd.DataFrame(rows)
    elif a.analysis in _SIMILARITY:
        from geomjax.similarity import similarity_matrix

        reps = _flat_arrays(arrays, a.labels_key)
        ns = {v.shape[0] for v in reps.values()}
        if len(ns) != 1:
            raise UserError(
                f"layers hold different numbers of samples {sorted(ns)}; similarity "
                "analyses compare the same samples."
            )
        if a.project and a.analysis in ("svcca", "cca", "pwcca"):
            reps = {
                k: g.project_features(v, a.project, seed=a.seed) if v.shape[1] > a.project else v
                for k, v in reps.items()
            }
        # the CCA family with a small ridge (rank-deficient layers); CKA as defined
        kw = {} if a.analysis in ("cka", "rbf_cka") else {"epsilon": 1e-6}
        if mesh is not None:
            from geomjax.distributed import similarity_matrix_sharded

            m = similarity_matrix_sharded(
                reps, measure=a.analysis, mesh=mesh, memory_budget=budget, **kw
            )
        elif a.analysis == "cka":
            from geomjax.similarity import cka_matrix

            m = cka_matrix(reps)
        else:
            m = similarity_matrix(reps, measure=a.analysis, **kw)
        df = m.to_frame()
        print(m.to_wide().round(3).to_string())
    elif a.analysis == "probe":
        from geomjax.probing import concat_layers, fit_standardizer, paper_pipeline, standardize

        reps = _flat_arrays(arrays, a.labels_key)
        names = list(reps)
        n = reps[names[0]].shape[0]
        y = _labels(arrays, a.labels_key, n)
        rng = np.random.default_rng(a.seed)
        perm = rng.permutation(n)
        cut = int(0.7 * n)
        tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
        X, index = concat_layers([reps[k] for k in names])
        X = np.asarray(X)
        st = fit_standardizer(X[tr])
        Xs = np.asarray(standardize(X, st))
        args = (key, Xs[tr], y[tr], Xs[te], y[te], index)
        kw = dict(n_classes=int(y.max()) + 1, epochs=a.epochs)
        if mesh is not None:  # one label set: the protocol runs on one device of the mesh
            from geomjax.distributed import paper_pipeline_sharded

            r = paper_pipeline_sharded(*args, mesh=mesh, memory_budget=budget, **kw)
        else:
            r = paper_pipeline(*args, **kw)
        df = r.to_frame().drop(columns=["task", "seed"])
        lay = df["analysis"] == "layer"
        df.loc[lay, "subset"] = [names[int(s[1:])] for s in df.loc[lay, "subset"]]
        print(df.to_string(index=False))
    else:  # slt
        from geomjax import jacobian as jb

        if not a.checkpoint:
            raise UserError("analysis 'slt' needs --checkpoint (a phone_mlp training folder).")
        ck = _load_ckpt(a.checkpoint, a.epoch)
        from geomjax.models import model_name

        if model_name(ck.model) != "phone_mlp":
            raise UserError("analysis 'slt' supports phone_mlp checkpoints (a ReLU MLP).")
        x = next(
            np.asarray(v, np.float32)
            for k, v in arrays.items()
            if not k.startswith("_") and k != a.labels_key
        )
        p = ck.variables["params"]
        nl = ck.model.config.layers
        mlp = [(p[f"dense{i + 1}"]["kernel"], p[f"dense{i + 1}"]["bias"]) for i in range(nl)]
        mlp.append((p["out"]["kernel"], p["out"]["bias"]))
        if x.ndim != 2 or x.shape[1] != mlp[0][0].shape[0]:
            raise UserError(f"'slt' needs (n, {mlp[0][0].shape[0]}) input frames; got {x.shape}.")
        groups = None
        if a.labels_key in arrays:
            groups = _labels(arrays, a.labels_key, x.shape[0])
        if mesh is not None:  # frames sharded, Grams summed over devices
            from geomjax.distributed import slt_spectra_sharded

            spec = slt_spectra_sharded(mlp, x, layers=list(range(nl)), groups=groups, mesh=mesh)
        else:
            spec = jb.slt_spectra(mlp, x, layers=list(range(nl)), groups=groups)
        df = spec.table()
        print(df.groupby(["layer", "group"])["auc"].mean().to_string())
    path = _write_table(df, out, a.analysis)
    print(f"table written to {path} (+ .csv)")
    return 0


def add_analyze(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="run an analysis on extracted activations or on your own arrays",
        description="Analyses: mftma (capacity/radius/dimension/centre correlation + D_PR/D_EV), "
        "capacity (simulated alpha_SIM), dimension (D_PR, D_EV), cka, rbf_cka, svcca, cca, "
        "pwcca (all layer pairs), probe (layer-wise + ALL probes, ranking, ablation, minimal set, "
        "control), slt (SLT spectra of a phone-MLP checkpoint). Input: .npz with one "
        "array per layer ((P, M, N) manifolds, or (n, N) rows plus a 'labels' array), "
        ".npy, or .parquet/.csv (numeric columns = features, optional 'label' column).",
    )
    p.add_argument("analysis", help=", ".join(ANALYSES))
    p.add_argument("input", help=".npz, .npy, .parquet or .csv")
    p.add_argument("--out", default="analysis", help="folder for the result table")
    p.add_argument("--labels-key", default="labels", help="name of the per-row label array")
    p.add_argument(
        "--project",
        type=int,
        default=None,
        help=(
            "bring layers wider than this many features to this width first: an exact "
            "embedding of the points when they are no more than it, else a random projection"
        ),
    )
    p.add_argument("--n-t", type=int, default=200, help="MFTMA Gaussian samples per manifold")
    p.add_argument("--dichotomies", type=int, default=64, help="alpha_SIM random dichotomies")
    p.add_argument("--epochs", type=int, default=20, help="probe training epochs")
    p.add_argument("--checkpoint", help="slt: phone MLP training folder")
    p.add_argument("--epoch", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    from geomjax.distributed import add_device_args

    add_device_args(p)
    p.set_defaults(func=_guard(cmd_analyze))


# ---- report / reproduce -------------------------------------------------------------------
def cmd_report(a) -> int:
    from geomjax.experiments._findings import build_report
    from geomjax.experiments._run import RunDir

    root = Path(a.run)
    if not (root / "settings.json").exists():
        raise UserError(
            f"{root} is not a run folder (no settings.json); run `geomjax reproduce` first."
        )
    run = RunDir(root)
    prof = json.loads((root / "settings.json").read_text())["settings"].get("profile", "?")
    rep = build_report(run, prof)
    h, m = rep.write(root)
    print(f"report: {h} and {m}; verdicts: {rep.verdict_counts()}")
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="(re)build report.html / report.md of a run folder")
    p.add_argument("run", help="a run folder written by `geomjax reproduce`")
    p.set_defaults(func=_guard(cmd_report))


def cmd_reproduce(a) -> int:
    from geomjax.experiments._reproduce import reproduce

    out = a.out or f"runs/{a.profile}-seed{a.seed}"
    mesh = budget = None
    if getattr(a, "devices", None) is not None:
        from geomjax.distributed import memory_budget_from_args, mesh_from_args

        mesh, budget = mesh_from_args(a), memory_budget_from_args(a)
    run = reproduce(
        out,
        a.profile,
        a.seed,
        stages=a.stages.split(",") if a.stages else None,
        progress=not a.no_progress,
        cache_dir=a.cache_dir,
        mesh=mesh,
        memory_budget=budget,
    )
    print(
        f"run folder: {run.root}\n  report: {run.root / 'report.html'}\n"
        f"  tables: {run.root / 'tables'}"
    )
    return 0


def add_reproduce(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="the main job: corpus -> models -> the papers' analyses -> report",
        description="Synthesise the corpus, train (or reuse) the models, run the four papers' "
        "analyses for initial vs trained weights, and write tables, figures and "
        "report.html. Reusing --out resumes an interrupted run. With --devices N the "
        "batched analyses (MFTMA sweeps, alpha_SIM dichotomies, CKA/SVCCA matrices, the "
        "probing protocol's label sets, SLT spectra) are sharded over N local devices with "
        "the same tables as one device; training, activations, EER and LDA run on one device.",
    )
    p.add_argument(
        "--profile",
        default="default",
        choices=["tiny", "default", "full"],
        help="tiny: CI check (minutes); default: 2-core CPU (~30 min); full: paper sizes on a GPU",
    )
    p.add_argument("--out", help="run folder (default runs/<profile>-seed<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", help="comma-separated subset of stages (default: all)")
    p.add_argument(
        "--cache-dir", help="corpus cache (default: $GEOMJAX_CACHE_DIR or ~/.cache/geomjax)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from geomjax.distributed import add_device_args

    add_device_args(
        p,
        multi_host=False,
        devices_help="shard the analyses over N local devices, or all (default: one device; "
        "training always runs on one device)",
    )
    p.set_defaults(func=_guard(cmd_reproduce))


SUBCOMMANDS = {
    "corpus": add_corpus,
    "train": add_train,
    "extract": add_extract,
    "analyze": add_analyze,
    "report": add_report,
    "reproduce": add_reproduce,
}


def register(sub) -> None:
    """Add every subcommand of this module to an argparse ``subparsers`` object."""
    for add in SUBCOMMANDS.values():
        add(sub)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand (handlers print user errors and return 2 themselves)."""
    return int(args.func(args) or 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="geomjax", description="How speech networks untangle information, layer by layer."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
