"""``geomjax reproduce``: corpus -> training -> analyses of four papers -> tables, figures, report.

Stages (each writes its tables and a marker in ``stages/``; a rerun of the same folder skips
finished stages, so an interrupted run resumes):

1. ``corpus`` -- synthesise (or load from the cache) the seeded corpus; a description table.
2. ``train_<model>`` -- train each model with per-epoch checkpoints (epoch 0 = initial weights).
3. ``stephenson`` -- manifold capacity/radius/dimension/centre correlation/D_PR/D_EV per layer for
   word, speaker, phoneme, character and POS manifolds, initial vs trained weights, over seeds.
4. ``timesteps`` -- DS2 per-time-step geometry of word manifolds around the word boundaries.
5. ``epochs`` -- the same per layer across training epochs.
6. ``simcap`` -- simulated capacity (alpha_SIM) against the mean-field one (alpha_MFT).
7. ``similarity`` -- CKA and SVCCA between all layers, and across epochs.
8. ``probing`` -- layer-wise and ALL probes, rankings, ablation, minimal sets, controls, EER.
9. ``nagamine`` -- phone-MLP selectivity and clustering, LDA per layer, SLT spectra, COR vs INC.
10. ``report`` -- figures and ``report.html`` / ``report.md``.

Everything is seeded from ``--seed``: the same seed reproduces the tables exactly.

With a device mesh (``reproduce(..., mesh=...)``, ``geomjax reproduce --devices N``) the batched
analyses run over it: the MFTMA analyses of a stage (layers x time steps x epochs x seeds) are
pooled into :func:`geomjax.distributed.mftma_sweep` calls, alpha_SIM shards its dichotomies,
the CKA / SVCCA matrices their pair lists and factorisations, the probing protocol its label
sets (:func:`geomjax.distributed.paper_pipeline_sharded`), the SLT spectra their frames. Every
item keeps its key, so the tables equal the one-device run's (bitwise where the sharded
function is, else to round-off). Training, activations, the EER and the LDA stay on one device.
"""

from __future__ import annotations

import gc
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from geomjax.experiments._geometry import (
    layer_matrix,
    manifold_metrics,
    manifold_metrics_sharded,
    metrics_from_result,
    mftma_results,
    project_features,
    simulated_capacity,
)
from geomjax.experiments._inputs import ensure_splits, model_inputs, task_splits
from geomjax.experiments._profiles import Profile, get_profile
from geomjax.experiments._run import RunDir
from geomjax.experiments._stats import summarize

__all__ = ["reproduce", "STAGES", "Context", "GEOMETRY_METRICS"]

GEOMETRY_METRICS = (
    "capacity_ratio",
    "radius",
    "dimension_ratio",
    "center_correlation",
    "d_pr",
    "d_ev",
)
STEPHENSON_MODELS = ("word_cnn_word", "word_cnn_speaker", "ds2")
_TIMESTEP_SEEDS = 2  # manifold samples of the DS2 per-time-step analysis


def _usage() -> tuple[float, float]:
    """Process CPU seconds (user + system, this process and finished children) and wall time."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime, time.time()


def _cost(start: tuple[float, float]) -> dict:
    """Wall and CPU seconds since ``start`` (from :func:`_usage`) and the peak RSS so far (MB)."""
    import resource

    cpu, wall = _usage()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": round(wall - start[1], 1),
        "cpu_seconds": round(cpu - start[0], 1),
        "peak_rss_mb": round(rss, 0),
    }


def _release() -> None:
    """Between stages: drop JAX's compiled programs and collect garbage. Each cached CPU
    executable keeps its code and buffers mapped, so without this the resident set only grows
    over the run (peak 7.7 GB at the end before this was added, 6.7 GB with it). Not done between
    the MFTMA stages (stephenson, timesteps, epochs), which run the same programs: clearing
    there cost ~50 CPU-s of compilation per stage."""
    import jax

    jax.clear_caches()
    gc.collect()


def _say(msg: str) -> None:
    tqdm.write(f"[geomjax] {msg}")


def _key(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


class Context:
    """State shared by the stages of one run: the run folder, the profile, the corpus and the
    trained models (loaded lazily)."""

    def __init__(
        self,
        run: RunDir,
        profile: Profile,
        seed: int,
        progress: bool = True,
        cache_dir: str | Path | None = None,
        mesh=None,
        memory_budget: int | None = None,
    ):
        self.run = run
        self.mesh = mesh  # None: every analysis on the default device (the one-device code path)
        self.memory_budget = memory_budget
        self.profile = profile
        self.seed = int(seed)
        self.progress = progress
        self.cache_dir = cache_dir
        self._corpus = None
        self._splits: dict = {}
        self._manifolds: dict = {}
        self._inputs: dict = {}
        self._ckpts: dict = {}
        self._acts: dict = {}
        self._word_table = None

    # ---- data ---------------------------------------------------------------------------
    @property
    def corpus(self):
        if self._corpus is None:
            from geomjax.data import default_cache_dir, synthesize_corpus

            cache = self.cache_dir if self.cache_dir is not None else default_cache_dir()
            c = synthesize_corpus(
                self.profile.corpus, seed=self.seed, cache_dir=cache, progress=self.progress
            )
            self._corpus = ensure_splits(c, self.seed)
        return self._corpus

    def splits(self, task: str):
        if task not in self._splits:
            self._splits[task] = task_splits(
                self.corpus,
                task,
                seed=self.seed,
                ds2_bins=self.profile.ds2_bins,
                max_utterances=None,
                progress=False,
            )
        return self._splits[task]

    def word_windows(self, rows) -> tuple[np.ndarray, pd.DataFrame]:
        """Audio of rows ``rows`` of the 2-s word-window table (``corpus.word_segments`` with the
        run's seed, the windows the word and speaker tasks train on) and the whole table; only
        the table is kept, so no stage holds the audio of every window."""
        if self._word_table is None:
            _, self._word_table = self.corpus.word_segments(seed=self.seed, duration=2.0)
        tab = self._word_table
        t = tab.iloc[np.asarray(rows, np.int64)]
        n = int(round(2.0 * self.corpus.sample_rate))
        audio = self.corpus.windows(t["utt"].to_numpy(), t["win_start"].to_numpy() + n // 2, n)
        return audio, tab

    def model_dir(self, name: str) -> Path:
        return self.run.root / "models" / name

    def checkpoint(self, name: str, epoch: int | None = None):
        from geomjax.models import list_checkpoints, load_checkpoint

        d = self.model_dir(name)
        if not list_checkpoints(d):
            raise FileNotFoundError(
                f"no checkpoints for model {name!r} in {d}; run its training stage first."
            )
        k = (name, epoch)
        if k not in self._ckpts:  # loaded once per run (every stage reads the same few)
            self._ckpts[k] = load_checkpoint(d, epoch)
        return self._ckpts[k]

    def epochs(self, name: str) -> list[int]:
        from geomjax.models import list_checkpoints

        return [e for e, _ in list_checkpoints(self.model_dir(name))]

    def manifolds(self, label_type: str, rep: int):
        """Manifold set ``rep`` (a seed index) of one label type, 2-s windows for every type."""
        k = (label_type, rep)
        if k not in self._manifolds:
            from geomjax.data import sample_manifolds

            P = self.profile.n_classes
            kw = dict(window=2.0, content_only=label_type != "pos")
            last = None
            while P >= 2:
                try:
                    ms = sample_manifolds(
                        _key(self.seed, "manifolds", label_type, rep),
                        self.corpus,
                        label_type,
                        n_classes=P,
                        n_examples=self.profile.n_examples,
                        **kw,
                    )
                    break
                except ValueError as e:  # fewer classes with M examples than asked: take fewer
                    last = e
                    P -= 1
            else:
                raise ValueError(f"cannot sample {label_type} manifolds: {last}")
            self._manifolds[k] = ms
        return self._manifolds[k]

    def manifold_acts(self, name: str, epoch: int, label_type: str, rep: int, keep: bool = False):
        """Activations of model ``name`` at ``epoch`` for manifold set ``(label_type, rep)``;
        ``keep`` holds them for later stages of this process (the DS2 word windows are read by
        the layer, time-step and epoch analyses alike)."""
        k = (name, epoch, label_type, rep)
        if k in self._acts:
            return self._acts[k]
        x, L = self.manifold_inputs(_front(name), label_type, rep)
        a = _acts(self.checkpoint(name, epoch), x, L)
        if keep:
            self._acts[k] = a
        return a

    def manifold_inputs(self, front: str, label_type: str, rep: int):
        k = (front, label_type, rep)
        if k not in self._inputs:
            ms = self.manifolds(label_type, rep)
            audio, _ = ms.flat()
            self._inputs[k] = model_inputs(front, audio, ds2_bins=self.profile.ds2_bins)
        return self._inputs[k]


# ---- helpers ------------------------------------------------------------------------------
def _front(model_key: str) -> str:
    return {"word_cnn_word": "word_cnn", "word_cnn_speaker": "word_cnn"}.get(model_key, model_key)


def _acts(ck, x, lengths, layers=None):
    from geomjax.models import activations

    return activations(ck.model, ck.variables, x, lengths, layers=layers, batch_size=64)


def _layer_jobs(ctx: Context, acts, P: int, M: int, how: str, tag: dict, seed_rep: int) -> list:
    """One MFTMA job per layer: ``(row labels, key, (P, M, n_features) set)``."""
    import jax

    jobs = []
    for li, layer in enumerate(acts.names):
        A = layer_matrix(acts.layers[layer], acts.lengths.get(layer), how=how)
        X = project_features(
            A, ctx.profile.n_features, seed=_key(ctx.seed, "proj", layer, seed_rep)
        )
        key = jax.random.key(_key(ctx.seed, "mftma", layer, seed_rep))
        jobs.append(
            ({**tag, "layer": layer, "layer_index": li, "P": P, "M": M}, key, X.reshape(P, M, -1))
        )
    return jobs


def _timestep_fields(r) -> dict:
    return {
        "capacity_ratio": float(r.capacity_ratio),
        "radius": float(r.radius),
        "dimension_ratio": float(r.dimension_ratio),
    }


class MftmaPool:
    """Rows of a stage whose MFTMA analyses are gathered and run together.

    ``add(jobs)`` appends one row per job ``(row labels, key, (P, M, N) set)``; ``add_rows``
    appends finished rows. Without a mesh every job runs when it is added (the one-device code
    path); with one, jobs wait and are run in one :func:`geomjax.distributed.mftma_sweep` (all
    anchor problems pooled and sharded over the mesh) when their sets exceed ``max_bytes`` or
    at :meth:`rows`. Each job keeps its key, so the rows, and their order, are the same.

    ``full=True`` rows carry :func:`manifold_metrics` (with D_PR and D_EV); ``full=False`` only
    capacity ratio, radius and dimension ratio (the per-time-step analysis).
    """

    def __init__(
        self, n_t: int, mesh=None, memory_budget=None, full: bool = True, max_bytes: int = 1 << 30
    ):
        self.n_t, self.mesh, self.memory_budget = int(n_t), mesh, memory_budget
        self.full, self.max_bytes = full, int(max_bytes)
        self._rows: list = []
        self._pending: list = []  # (row index, labels, key, X)
        self._bytes = 0

    def _row(self, base, r, X) -> dict:
        return {**base, **(metrics_from_result(r, X) if self.full else _timestep_fields(r))}

    def add(self, jobs) -> None:
        for base, key, X in jobs:
            X = np.asarray(X, np.float32)
            if self.mesh is None:
                r = mftma_results([key], [X], self.n_t)[0]
                self._rows.append(self._row(base, r, X))
                continue
            self._pending.append((len(self._rows), base, key, X))
            self._rows.append(None)
            self._bytes += X.nbytes
        if self._bytes > self.max_bytes:
            self.flush()

    def add_rows(self, rows) -> None:
        self._rows += list(rows)

    def flush(self) -> None:
        if not self._pending:
            return
        res = mftma_results(
            [p[2] for p in self._pending],
            [p[3] for p in self._pending],
            self.n_t,
            self.mesh,
            self.memory_budget,
        )
        for (i, base, _, X), r in zip(self._pending, res, strict=True):
            self._rows[i] = self._row(base, r, X)
        self._pending, self._bytes = [], 0

    def rows(self) -> list:
        self.flush()
        return list(self._rows)


def _weights(ctx: Context, name: str) -> list[tuple[str, int]]:
    ep = ctx.epochs(name)
    return [("initial", ep[0]), ("trained", ep[-1])]


# ---- stages -------------------------------------------------------------------------------
def stage_corpus(ctx: Context) -> None:
    c = ctx.corpus
    u = c.utterances
    rows = [
        {"item": "utterances", "value": len(u)},
        {"item": "duration_s", "value": round(float(u["n_samples"].sum()) / c.sample_rate, 3)},
        {"item": "speakers", "value": u["speaker"].nunique()},
        {"item": "word_tokens", "value": len(c.words)},
        {"item": "word_types", "value": c.words["word"].nunique()},
        {"item": "phone_tokens", "value": len(c.phones)},
        {"item": "phone_types", "value": c.phones["phone"].nunique()},
        {"item": "accents", "value": u["accent"].nunique()},
        {"item": "channels", "value": u["channel"].nunique()},
    ]
    for s, n in u["split"].value_counts().sort_index().items():
        rows.append({"item": f"utterances_{s}", "value": int(n)})
    df = pd.DataFrame(rows)
    df["value"] = df["value"].astype(float)
    ctx.run.save_table("corpus", df)


def stage_train(ctx: Context, name: str) -> None:
    from geomjax import models

    spec = ctx.profile.models[name]
    t0 = _usage()
    sp = ctx.splits(spec.task)
    n_classes = len(sp.classes) if spec.task not in ("ctc", "reconstruction") else None
    res = models.train(
        _key(ctx.seed, "train", name),
        spec.model,
        sp.train,
        sp.valid,
        epochs=spec.epochs,
        ckpt_dir=ctx.model_dir(name),
        preset=spec.preset,
        n_classes=n_classes,
        config=dict(spec.config) or None,
        batch_size=min(spec.batch_size, len(sp.train)),
        learning_rate=spec.learning_rate,
        max_steps_per_epoch=spec.max_steps_per_epoch,
        progress=ctx.progress,
        **dict(spec.options),
    )
    m = res.metrics.copy()
    m.insert(0, "model", name)
    # wall-clock columns would make tables differ between identical runs
    m = m.drop(columns=[c for c in m.columns if "second" in c or "time" in c], errors="ignore")
    if n_classes:
        m["chance"] = float(np.bincount(sp.valid.labels).max() / len(sp.valid))
    m["n_train"] = len(sp.train)
    ctx.run.save_table(f"train_{name}", m)
    ctx.run.mark_done(f"train_{name}", _cost(t0))


def stage_stephenson(ctx: Context) -> None:
    prof = ctx.profile
    pool = MftmaPool(prof.n_t, ctx.mesh, ctx.memory_budget)
    jobs = [(rep, lt) for rep in range(prof.seeds) for lt in prof.label_types]
    for rep, lt in tqdm(
        jobs, desc="manifold geometry (seeds x label types)", disable=not ctx.progress
    ):
        ms = ctx.manifolds(lt, rep)
        P, M = ms.shape[:2]
        for name in STEPHENSON_MODELS:
            if (
                name == "ds2"
                and prof.ds2_label_types is not None
                and lt not in prof.ds2_label_types
            ):
                continue
            for weights, epoch in _weights(ctx, name):
                keep = name == "ds2" and lt == "word" and rep < _TIMESTEP_SEEDS
                acts = ctx.manifold_acts(name, epoch, lt, rep, keep=keep)
                how = "centre" if name == "ds2" else "flatten"
                pool.add(
                    _layer_jobs(
                        ctx,
                        acts,
                        P,
                        M,
                        how,
                        {
                            "model": name,
                            "weights": weights,
                            "epoch": epoch,
                            "label_type": lt,
                            "seed": rep,
                        },
                        rep,
                    )
                )
    df = pd.DataFrame(pool.rows())
    ctx.run.save_table("stephenson_layers_raw", df)
    summ = summarize(
        df,
        ["model", "weights", "label_type", "layer", "layer_index"],
        list(GEOMETRY_METRICS) + ["capacity"],
    )
    ctx.run.save_table("stephenson_layers", summ)


def stage_timesteps(ctx: Context) -> None:
    import jax

    prof = ctx.profile
    pool = MftmaPool(prof.n_t, ctx.mesh, ctx.memory_budget, full=False)
    reps = range(min(prof.seeds, _TIMESTEP_SEEDS))
    bounds = []
    for rep in reps:
        ms = ctx.manifolds("word", rep)
        P, M = ms.shape[:2]
        t = ms.table
        half_win = ms.audio.shape[-1] / 2 / ms.sample_rate
        bounds.append(
            (
                float(np.mean(t["target_start"].to_numpy())) / ms.sample_rate - half_win,
                float(np.mean(t["target_end"].to_numpy())) / ms.sample_rate - half_win,
            )
        )
        for weights, epoch in _weights(ctx, "ds2"):
            acts = ctx.manifold_acts("ds2", epoch, "word", rep, keep=rep == 0)
            for layer in tqdm(
                acts.names,
                desc=f"DS2 time steps ({weights}, seed {rep})",
                disable=not ctx.progress,
                leave=False,
            ):
                a = acts.layers[layer]
                T = a.shape[1]
                c = T // 2
                half = int(round(prof.timestep_window_s / 0.02))
                steps = range(max(0, c - half), min(T, c + half + 1), prof.timestep_stride)
                for ts in steps:
                    A = a[:, ts].reshape(a.shape[0], -1)
                    X = project_features(
                        A, prof.n_features, seed=_key(ctx.seed, "proj", layer, rep)
                    )
                    base = {
                        "model": "ds2",
                        "weights": weights,
                        "layer": layer,
                        "seed": rep,
                        "time_step": ts,
                        "time_s": (ts - c) * 0.02,
                    }
                    key = jax.random.key(_key(ctx.seed, "ts", layer, ts, rep))
                    pool.add([(base, key, X.reshape(P, M, -1))])
    df = pd.DataFrame(pool.rows())
    ctx.run.save_table("ds2_timesteps_raw", df)
    s = summarize(
        df,
        ["weights", "layer", "time_step", "time_s"],
        ["capacity_ratio", "radius", "dimension_ratio"],
    )
    ctx.run.save_table("ds2_timesteps", s)
    # word boundaries relative to the window centre (the word's centre, up to the jitter)
    b = np.mean(np.asarray(bounds), axis=0)
    ctx.run.save_table(
        "ds2_word_boundaries",
        pd.DataFrame(
            {"boundary": ["word_start", "word_end"], "time_s": [float(b[0]), float(b[1])]}
        ),
    )


def _done_rows(ctx: Context, name: str, lt: str, rep: int, epoch: int) -> list | None:
    """The layer rows the ``stephenson`` stage already measured for this model, label type,
    manifold sample and epoch (same keys, so the same numbers), or None."""
    if not ctx.run.has_table("stephenson_layers_raw"):
        return None
    df = ctx.run.load_table("stephenson_layers_raw")
    d = df[
        (df["model"] == name)
        & (df["label_type"] == lt)
        & (df["seed"] == rep)
        & (df["epoch"] == epoch)
    ]
    if not len(d):
        return None
    return d.sort_values("layer_index").drop(columns=["weights", "seed"]).to_dict("records")


def stage_epochs(ctx: Context) -> None:
    pool = MftmaPool(ctx.profile.n_t, ctx.mesh, ctx.memory_budget)
    for name, lts in (("word_cnn_word", ("word", "speaker")), ("ds2", ("word",))):
        for lt in lts:
            ms = ctx.manifolds(lt, 0)
            P, M = ms.shape[:2]
            for epoch in tqdm(
                ctx.epochs(name), desc=f"{name} epochs ({lt})", disable=not ctx.progress
            ):
                done = _done_rows(ctx, name, lt, 0, epoch)
                if done is not None:  # initial and final weights: measured by `stephenson`
                    pool.add_rows(done)
                    continue
                acts = ctx.manifold_acts(name, epoch, lt, 0)
                pool.add(
                    _layer_jobs(
                        ctx,
                        acts,
                        P,
                        M,
                        "centre" if name == "ds2" else "flatten",
                        {"model": name, "epoch": epoch, "label_type": lt},
                        0,
                    )
                )
    rows = pool.rows()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    ctx.run.save_table("epochs", pd.DataFrame(rows, columns=cols))


def stage_simcap(ctx: Context) -> None:
    import jax

    prof = ctx.profile
    name = "word_cnn_word"
    ms = ctx.manifolds("word", 0)
    P, M = ms.shape[:2]
    rows = []
    for weights, epoch in _weights(ctx, name):
        acts = ctx.manifold_acts(name, epoch, "word", 0)
        done = {r["layer"]: r for r in (_done_rows(ctx, name, "word", 0, epoch) or [])}
        names = acts.names
        pick = sorted({0, len(names) // 2, len(names) - 2})
        for li in tqdm(pick, desc=f"alpha_SIM ({weights})", disable=not ctx.progress):
            layer = names[li]
            A = layer_matrix(acts.layers[layer])
            X = project_features(A, prof.n_features, seed=_key(ctx.seed, "proj", layer, 0)).reshape(
                P, M, -1
            )
            if layer in done:  # alpha_MFT of this very set: measured by `stephenson`
                met = {"capacity": float(done[layer]["capacity"])}
            elif ctx.mesh is None:
                met = manifold_metrics(
                    jax.random.key(_key(ctx.seed, "mftma", layer, 0)), X, prof.n_t
                )
            else:
                met = manifold_metrics_sharded(
                    jax.random.key(_key(ctx.seed, "mftma", layer, 0)),
                    [X],
                    prof.n_t,
                    ctx.mesh,
                    ctx.memory_budget,
                )[0]
            sim = simulated_capacity(
                jax.random.key(_key(ctx.seed, "sim", layer)),
                X,
                prof.sim_dichotomies,
                met["capacity"],
                ctx.mesh,
                ctx.memory_budget,
            )
            row = {
                "model": name,
                "weights": weights,
                "layer": layer,
                "P": P,
                "M": M,
                "alpha_mft": met["capacity"],
            }
            if sim is None:
                row.update(
                    alpha_sim=np.nan, alpha_sim_lo=np.nan, alpha_sim_hi=np.nan, n_censored=-1
                )
            else:
                row.update(sim)
            rows.append(row)
    ctx.run.save_table("simcap", pd.DataFrame(rows))


def _sim_inputs(ctx: Context, name: str):
    """Held-out 2-s windows (unseen speakers) for the similarity analysis."""
    prof = ctx.profile
    _, tab = ctx.word_windows([])
    idx = np.nonzero(tab["split"].to_numpy() == "test")[0]
    rng = np.random.default_rng(_key(ctx.seed, "sim_rows"))
    idx = np.sort(rng.choice(idx, min(prof.sim_samples, idx.size), replace=False))
    return model_inputs(_front(name), ctx.word_windows(idx)[0], ds2_bins=prof.ds2_bins)


def _sim_reps(ctx, acts, name):
    """Per-layer ``(n, D)`` representations: flattened CNN maps, or frames of sequence layers."""
    out = {}
    for layer in acts.names:
        a = acts.layers[layer]
        if name in ("ds2", "transformer") and a.ndim >= 3:
            T = a.shape[1]
            steps = np.arange(0, T, max(1, T // 8))  # 8 frames per clip
            a = a[:, steps].reshape(-1, int(np.prod(a.shape[2:])))
        else:
            a = a.reshape(a.shape[0], -1)
        out[layer] = np.asarray(a, np.float32)
    return out


def cka_table(xs, ys=None, mesh=None, memory_budget=None):
    """Linear CKA matrix of the dicts ``xs`` (against ``ys``) of ``(n, D)`` layers:
    :func:`geomjax.similarity.cka_matrix`, or with ``mesh`` its pair list sharded by
    :func:`geomjax.distributed.cka_matrix_sharded` (the feature-space route, on layers no wider
    than n: equal to the one-device matrix to round-off)."""
    if mesh is None:
        from geomjax.similarity import cka_matrix

        return cka_matrix(xs, ys)
    from geomjax.distributed import cka_matrix_sharded

    def narrow(reps):
        # the pair-sharded route forms D x D cross-products; a layer wider than its n samples
        # is replaced by its exact n-dimensional embedding (the same Gram matrix, hence the
        # same linear CKA, to round-off), so a pair costs n^2 memory instead of D^2
        if reps is None:
            return None
        return {
            k: project_features(v, v.shape[0]) if v.shape[1] > v.shape[0] else v
            for k, v in reps.items()
        }

    return cka_matrix_sharded(narrow(xs), narrow(ys), mesh=mesh, memory_budget=memory_budget)


def svcca_table(xs, mesh=None, memory_budget=None):
    """SVCCA matrix (99 % variance, ridge 1e-6) of ``xs``; with ``mesh`` the factorisations and
    pairs are sharded by :func:`geomjax.distributed.similarity_matrix_sharded` (round-off)."""
    kw = dict(measure="svcca", threshold=0.99, epsilon=1e-6)
    if mesh is None:
        from geomjax.similarity import similarity_matrix

        return similarity_matrix(xs, **kw)
    from geomjax.distributed import similarity_matrix_sharded

    return similarity_matrix_sharded(xs, mesh=mesh, memory_budget=memory_budget, **kw)


def stage_similarity(ctx: Context) -> None:
    prof = ctx.profile
    mesh, budget = ctx.mesh, ctx.memory_budget
    rows, erows = [], []
    for name in tqdm(
        ("word_cnn_word", "ds2", "transformer"), desc="CKA / SVCCA", disable=not ctx.progress
    ):
        x, L = _sim_inputs(ctx, name)
        epochs = ctx.epochs(name)
        reps_by_epoch = {
            e: _sim_reps(ctx, _acts(ctx.checkpoint(name, e), x, L), name) for e in epochs
        }
        final = reps_by_epoch[epochs[-1]]
        for weights, e in (("initial", epochs[0]), ("trained", epochs[-1])):
            reps = reps_by_epoch[e]
            ck = cka_table(reps, None, mesh, budget)
            df = ck.to_frame()
            df["measure"] = "cka"
            proj = {
                k: project_features(v, prof.sim_features, seed=_key(ctx.seed, "sv", k))
                if v.shape[1] > prof.sim_features
                else v
                for k, v in reps.items()
            }
            sv = svcca_table(proj, mesh, budget).to_frame()
            sv["measure"] = "svcca"
            for d in (df, sv):
                d.insert(0, "weights", weights)
                d.insert(0, "model", name)
                rows.append(d)
        # each layer at every epoch against the same layer at the final epoch
        layers = list(final)
        for e in epochs:
            m = cka_table(
                {f"{k}@{e}": v for k, v in reps_by_epoch[e].items()},
                {f"{k}@final": v for k, v in final.items()},
                mesh,
                budget,
            )
            vals = np.asarray(m.values)
            for i, layer in enumerate(layers):
                erows.append(
                    {
                        "model": name,
                        "epoch": e,
                        "layer": layer,
                        "layer_index": i,
                        "cka_to_final": float(vals[i, i]),
                        "cka_to_final_best": float(np.max(vals[i])),
                    }
                )
    ctx.run.save_table("similarity_layers", pd.concat(rows, ignore_index=True))
    ctx.run.save_table("similarity_epochs", pd.DataFrame(erows))


def _probe_data(ctx: Context, name: str):
    """Windows of ``probe_speakers`` speakers: probe-train on the speaker task's training words,
    probe-test on held-out words; labels speaker, gender, accent, channel."""
    prof = ctx.profile
    sp = ctx.splits("speaker")
    tr, te = sp.train.meta, sp.test.meta
    spk = tr["speaker"].value_counts()
    spk = sorted(spk.index[: prof.probe_speakers])
    itr = np.nonzero(tr["speaker"].isin(spk).to_numpy())[0]
    ite = np.nonzero(te["speaker"].isin(spk).to_numpy())[0]
    cap = 40 * len(spk)
    rng = np.random.default_rng(_key(ctx.seed, "probe_rows"))
    if itr.size > cap:
        itr = np.sort(rng.choice(itr, cap, replace=False))
    if name == "speaker_cnn":
        xtr, ltr = sp.train.inputs[itr], sp.train.lengths[itr]
        xte, lte = sp.test.inputs[ite], sp.test.lengths[ite]
    else:  # the transformer reads 40-band log-Mel frames of the same windows
        _, tab = ctx.word_windows([])
        key_cols = ["utt", "word_index"]
        pos = {tuple(r): i for i, r in enumerate(tab[key_cols].itertuples(index=False))}
        rtr = [pos[tuple(r)] for r in tr.iloc[itr][key_cols].itertuples(index=False)]
        rte = [pos[tuple(r)] for r in te.iloc[ite][key_cols].itertuples(index=False)]
        xtr, ltr = model_inputs("transformer", ctx.word_windows(rtr)[0])
        xte, lte = model_inputs("transformer", ctx.word_windows(rte)[0])
    return (xtr, ltr, tr.iloc[itr].reset_index(drop=True)), (
        xte,
        lte,
        te.iloc[ite].reset_index(drop=True),
    )


def _eer_rows(ctx, feats_te, spk, tag):
    from geomjax.probing import cosine_scores, eer

    rng = np.random.default_rng(_key(ctx.seed, "trials"))
    n = len(spk)
    n_trials = ctx.profile.eer_trials
    i = rng.integers(0, n, n_trials)
    same = rng.random(n_trials) < 0.5
    by = pd.Series(np.arange(n)).groupby(np.asarray(spk)).apply(list).to_dict()
    j = np.array(
        [rng.choice(by[spk[a]]) if s else rng.integers(0, n) for a, s in zip(i, same, strict=False)]
    )
    ok = i != j
    i, j = i[ok], j[ok]
    lab = np.asarray(spk)[i] == np.asarray(spk)[j]
    rows = []
    for li, (layer, f) in enumerate(feats_te.items()):
        f = f - f.mean(0, keepdims=True)
        r = eer(cosine_scores(f[i], f[j]), lab)
        rows.append(
            {
                **tag,
                "layer": layer,
                "layer_index": li,
                "eer": float(r.value),
                "n_trials": int(lab.size),
                "n_target": int(lab.sum()),
            }
        )
    return rows


def stage_probing(ctx: Context) -> None:
    import jax

    from geomjax.probing import concat_layers, fit_standardizer, paper_pipeline, standardize

    prof = ctx.profile
    pipeline, mesh_kw = paper_pipeline, {}
    if ctx.mesh is not None:  # the label sets' runs of the protocol sharded over the mesh
        from geomjax.distributed import paper_pipeline_sharded as pipeline

        mesh_kw = {"mesh": ctx.mesh, "memory_budget": ctx.memory_budget}
    res_rows, dist_rows, eer_rows = [], [], []
    (xtr, ltr, mtr), (xte, lte, mte) = _probe_data(ctx, "speaker_cnn")
    data = {
        "speaker_cnn": ((xtr, ltr, mtr), (xte, lte, mte)),
        "transformer": _probe_data(ctx, "transformer"),
    }
    jobs = [(n, w) for n in ("speaker_cnn", "transformer") for w in ("initial", "trained")]
    for name, weights in tqdm(jobs, desc="probing (model x weights)", disable=not ctx.progress):
        (xtr, ltr, mtr), (xte, lte, mte) = data[name]
        epoch = dict(_weights(ctx, name))[weights]
        ck = ctx.checkpoint(name, epoch)
        atr, ate = _acts(ck, xtr, ltr), _acts(ck, xte, lte)
        layers = [k for k in atr.names if k not in ("out", "recon")]
        ftr = {k: atr.pooled(k) for k in layers}
        fte = {k: ate.pooled(k) for k in layers}
        Xtr, index = concat_layers([ftr[k] for k in layers])
        Xte, _ = concat_layers([fte[k] for k in layers])
        st = fit_standardizer(Xtr)
        Xtr, Xte = np.asarray(standardize(Xtr, st)), np.asarray(standardize(Xte, st))
        # all label sets in one batched call (one compiled program per model width)
        tasks, ytr_all, yte_all, n_cls = [], [], [], []
        for task in ("speaker", "gender", "accent", "channel"):
            classes = sorted(set(mtr[task].astype(str)) | set(mte[task].astype(str)))
            cmap = {c: i for i, c in enumerate(classes)}
            ytr = mtr[task].astype(str).map(cmap).to_numpy(np.int32)
            yte = mte[task].astype(str).map(cmap).to_numpy(np.int32)
            if np.unique(ytr).size < 2:
                continue
            tasks.append(task)
            ytr_all.append(ytr)
            yte_all.append(yte)
            n_cls.append(len(classes))
        r = pipeline(
            jax.random.key(_key(ctx.seed, "probe", name)),
            Xtr,
            np.stack(ytr_all),
            Xte,
            np.stack(yte_all),
            index,
            n_classes=max(n_cls),
            epochs=prof.probe_epochs,
            **mesh_kw,
        )
        # tidy tables of the batched result: one block of rows per task (``task`` = its index)
        frame, dist = r.to_frame(), r.layer_distribution_frame()
        for t, task in enumerate(tasks):
            df = frame[frame["task"] == t].drop(columns=["task", "seed"]).reset_index(drop=True)
            lay = df["analysis"] == "layer"
            df.loc[lay, "subset"] = [layers[int(s[1:])] for s in df.loc[lay, "subset"]]
            df["n_classes"] = n_cls[t]
            df.insert(0, "label", task)
            df.insert(0, "weights", weights)
            df.insert(0, "model", name)
            res_rows.append(df)
            dd = dist[dist["task"] == t].drop(columns=["task", "seed"]).reset_index(drop=True)
            dd["layer"] = [layers[i] for i in dd["layer"]]
            dd.insert(0, "label", task)
            dd.insert(0, "weights", weights)
            dd.insert(0, "model", name)
            dist_rows.append(dd)
        eer_rows += _eer_rows(
            ctx, fte, mte["speaker"].astype(str).to_numpy(), {"model": name, "weights": weights}
        )
    ctx.run.save_table("probing", pd.concat(res_rows, ignore_index=True))
    ctx.run.save_table("probing_top_neurons", pd.concat(dist_rows, ignore_index=True))
    ctx.run.save_table("probing_eer", pd.DataFrame(eer_rows))


def slt_table(mlp, x, layers, groups, mesh=None):
    """SLT spectra of the ReLU MLP ``mlp`` over frames ``x`` (batches of 256):
    :func:`geomjax.jacobian.slt_spectra`, or with ``mesh`` the frames sharded by
    :func:`geomjax.distributed.slt_spectra_sharded` (Grams summed with ``psum``: round-off)."""
    if mesh is None:
        from geomjax.jacobian import slt_spectra

        return slt_spectra(mlp, x, layers=layers, groups=groups, batch_size=256)
    from geomjax.distributed import slt_spectra_sharded

    return slt_spectra_sharded(mlp, x, layers=layers, groups=groups, batch_size=256, mesh=mesh)


def stage_nagamine(ctx: Context) -> None:
    from geomjax import jacobian as jb

    prof = ctx.profile
    sp = ctx.splits("phone")
    rng = np.random.default_rng(_key(ctx.seed, "nagamine"))
    ite = np.sort(rng.choice(len(sp.test), min(prof.nagamine_frames, len(sp.test)), replace=False))
    idv = np.sort(
        rng.choice(len(sp.valid), min(prof.nagamine_frames, len(sp.valid)), replace=False)
    )
    xte, yte = sp.test.inputs[ite], sp.test.labels[ite]
    xdv, ydv = sp.valid.inputs[idv], sp.valid.labels[idv]
    K = len(sp.classes)
    sel_rows, lda_rows, slt_rows = [], [], []
    for weights, epoch in tqdm(
        _weights(ctx, "phone_mlp"), desc="phone MLP function analysis", disable=not ctx.progress
    ):
        ck = ctx.checkpoint("phone_mlp", epoch)
        ate, adv = _acts(ck, xte, None), _acts(ck, xdv, None)
        hidden = [k for k in ate.names if k != "out"]
        pred = np.argmax(ate.output, -1)
        acc = float(np.mean(pred == yte))
        for li, k in enumerate(hidden):
            S = np.asarray(jb.class_selectivity(ate.layers[k], yte, n_classes=K))
            try:
                cl = jb.selectivity_clusters(S, cut=0.5)
                n_cl, n_drop = int(cl.n_clusters), int(cl.n_dropped)
            except ValueError:  # fewer than two live nodes
                n_cl, n_drop = 0, int(S.shape[1])
            # how selective a node is: spread of its CSV over classes relative to its mean
            csv_sd = S.std(0) / np.maximum(np.abs(S.mean(0)), 1e-12)
            sel_rows.append(
                {
                    "weights": weights,
                    "layer": k,
                    "layer_index": li,
                    "n_clusters": n_cl,
                    "n_dead": n_drop,
                    "n_nodes": S.shape[1],
                    "csv_cv_median": float(np.median(csv_sd)),
                    "test_accuracy": acc,
                }
            )
        lda = jb.lda_layers(
            [xdv] + [adv.layers[k] for k in hidden],
            ydv,
            [xte] + [ate.layers[k] for k in hidden],
            yte,
        )
        t = lda.table()
        t["layer"] = ["features"] + hidden
        t.insert(0, "weights", weights)
        lda_rows.append(t)
        groups = jb.cor_inc_split(lda.ldas[0], xte, yte, pred)
        n = min(prof.slt_frames, len(xte))
        g = {k: np.asarray(v)[:n] for k, v in groups.items()}
        g = {k: v for k, v in g.items() if v.sum() >= 2}
        params = ck.variables["params"]
        mlp = [
            (params[f"dense{i + 1}"]["kernel"], params[f"dense{i + 1}"]["bias"])
            for i in range(len(hidden))
        ] + [(params["out"]["kernel"], params["out"]["bias"])]
        spec = slt_table(mlp, xte[:n], list(range(len(hidden))), g, ctx.mesh)
        n_sig = int(min(spec.n_sigma))
        aucs = spec.auc_at(n_sig)
        for li, k in enumerate(hidden):
            for gi, gname in enumerate(spec.group_names):
                a = np.asarray(aucs[li][gi])
                slt_rows.append(
                    {
                        "weights": weights,
                        "layer": k,
                        "layer_index": li,
                        "group": gname,
                        "n_samples": int(np.asarray(spec.counts)[gi]),
                        "n_sigma": n_sig,
                        "auc_mean": float(np.nanmean(a)),
                        "auc_median": float(np.nanmedian(a)),
                        "n_live": int(np.isfinite(a).sum()),
                    }
                )
    ctx.run.save_table("nagamine_selectivity", pd.DataFrame(sel_rows))
    ctx.run.save_table("nagamine_lda", pd.concat(lda_rows, ignore_index=True))
    ctx.run.save_table("nagamine_slt", pd.DataFrame(slt_rows))


def stage_report(ctx: Context) -> None:
    from geomjax.experiments._findings import build_report

    rep = build_report(ctx.run, ctx.profile)
    rep.write(ctx.run.root)


STAGES = (
    "corpus",
    "train",
    "stephenson",
    "timesteps",
    "epochs",
    "simcap",
    "similarity",
    "probing",
    "nagamine",
    "report",
)

_STAGE_FN = {
    "corpus": stage_corpus,
    "stephenson": stage_stephenson,
    "timesteps": stage_timesteps,
    "epochs": stage_epochs,
    "simcap": stage_simcap,
    "similarity": stage_similarity,
    "probing": stage_probing,
    "nagamine": stage_nagamine,
    "report": stage_report,
}


def reproduce(
    out,
    profile: str = "default",
    seed: int = 0,
    *,
    stages=None,
    progress: bool = True,
    cache_dir=None,
    force_report: bool = True,
    mesh=None,
    memory_budget: int | None = None,
) -> RunDir:
    """Run (or resume) a reproduction in folder ``out``.

    Args:
        out: the run folder; reusing it resumes (finished stages are skipped).
        profile: ``tiny``, ``default`` or ``full`` (see :mod:`geomjax.experiments._profiles`).
        seed: seeds the corpus, training, manifold sampling and every analysis.
        stages: subset of :data:`STAGES` to run (default: all); a stage's inputs must exist.
        progress: progress bars.
        cache_dir: corpus cache (default :func:`geomjax.data.default_cache_dir`).
        force_report: rebuild the report even when it was built before.
        mesh: a device mesh (:func:`geomjax.distributed.make_mesh`) to run the batched
            analyses over (see the module docstring); ``None``: one device. Training stays on
            one device. The tables equal the one-device run's.
        memory_budget: bytes per device for the mesh's chunk planning (default: planned from
            the device memory).

    Returns:
        The :class:`RunDir`.
    """
    prof = get_profile(profile)
    run = RunDir(out, {"profile": prof.name, "seed": int(seed)})
    ctx = Context(
        run,
        prof,
        seed,
        progress=progress,
        cache_dir=cache_dir,
        mesh=mesh,
        memory_budget=memory_budget,
    )
    wanted = list(STAGES) if stages is None else list(stages)
    bad = sorted(set(wanted) - set(STAGES))
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; stages are {list(STAGES)}.")
    t_all = time.time()
    for st in STAGES:
        if st not in wanted:
            continue
        if st == "train":
            for name in prof.models:
                if run.done(f"train_{name}"):
                    continue
                _say(f"training {name} ({prof.models[name].model}, {prof.models[name].preset})")
                stage_train(ctx, name)
                _release()
            for task in ("word", "speaker_windows", "ctc", "reconstruction"):
                ctx._splits.pop(task, None)  # no analysis reads these training sets: free them
            continue
        if run.done(st) and not (st == "report" and force_report):
            _say(f"stage {st}: done before, skipped")
            continue
        _say(f"stage {st}")
        t0 = _usage()
        _STAGE_FN[st](ctx)
        run.mark_done(st, _cost(t0))
        if st not in ("stephenson", "timesteps"):  # the DS2 word activations are read up to here
            ctx._acts.clear()
        if st not in ("stephenson", "timesteps", "epochs"):  # these reuse each other's programs
            _release()
    _say(f"finished in {time.time() - t_all:.0f} s: {run.root}")
    return run
