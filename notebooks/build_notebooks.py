"""Write the paper notebooks (``*.ipynb``) from the cell lists below.

Each notebook starts with ``QUICK = True``: a fast pass on the tiny corpus and tiny models (what
the test suite executes); set it to ``False`` for the reduced models on the synthesised "small"
corpus. Run ``python notebooks/build_notebooks.py`` after editing a cell list.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cell(kind: str, text: str) -> dict:
    src = text.strip("\n").splitlines(keepends=True)
    c = {"cell_type": kind, "metadata": {}, "source": src}
    if kind == "code":
        c.update(execution_count=None, outputs=[])
    return c


def notebook(cells: list[tuple[str, str]]) -> dict:
    return {
        "cells": [_cell(k, t) for k, t in cells],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


SETUP = """
QUICK = True  # False: reduced models on the "small" corpus (minutes to tens of minutes on a CPU)
import tempfile
import numpy as np
import pandas as pd
import jax
from geomjax import data, models
from geomjax import experiments as ex

SIZE = "tiny" if QUICK else "small"
PRESET = "tiny" if QUICK else "cpu"
workdir = tempfile.mkdtemp(prefix="geomjax-nb-")
corpus = ex.ensure_splits(data.synthesize_corpus(SIZE, seed=0, cache_dir=data.default_cache_dir()))
corpus
"""

STEPHENSON = [
    (
        "markdown",
        """
# Untangling in invariant speech recognition (Stephenson et al., 2019)

**Claim.** In a word-recognition network, word manifolds become more separable with depth: the
mean-field capacity rises well above the 2/M lower bound in the late layers while manifold radius
and dimension shrink. Nothing of the kind happens at initialisation, and speaker manifolds are not
untangled by a network trained on words.

This notebook trains the word CNN (Kell et al. architecture with batch norm), samples P word and
speaker manifolds of M 2-s windows each, and measures capacity / radius / dimension / centre
correlation / D_PR / D_EV per layer for the initial and the trained weights.
""",
    ),
    ("code", SETUP),
    ("markdown", "## Train the word CNN (per-epoch checkpoints; epoch 0 = initial weights)"),
    (
        "code",
        """
splits = ex.task_splits(corpus, "word", seed=0)
res = models.train(0, "word_cnn", splits.train, splits.valid, epochs=1 if QUICK else 6,
                   ckpt_dir=f"{workdir}/word_cnn", preset=PRESET, n_classes=len(splits.classes),
                   batch_size=16 if QUICK else 64, max_steps_per_epoch=2 if QUICK else 120,
                   progress=False)
res.metrics[["epoch", "val_loss", "val_accuracy"]]
""",
    ),
    ("markdown", "## Manifolds: P classes x M examples, 2-s windows centred on the unit"),
    (
        "code",
        """
P, M = (4, 4) if QUICK else (16, 16)
N = 64 if QUICK else 1024          # every layer projected / zero-padded to N features
N_T = 20 if QUICK else 100         # Gaussian samples per manifold
sets = {lt: data.sample_manifolds(jax.random.key(0), corpus, lt, n_classes=P, n_examples=M,
                                  window=2.0) for lt in ("word", "speaker")}
inputs = {lt: ex.model_inputs("word_cnn", s.flat()[0])[0] for lt, s in sets.items()}
{lt: s.shape for lt, s in sets.items()}
""",
    ),
    (
        "code",
        """
rows = []
epochs = [e for e, _ in models.list_checkpoints(f"{workdir}/word_cnn")]
for weights, epoch in (("initial", epochs[0]), ("trained", epochs[-1])):
    ck = models.load_checkpoint(f"{workdir}/word_cnn", epoch)
    for lt, x in inputs.items():
        acts = models.activations(ck.model, ck.variables, x)
        for i, layer in enumerate(acts.names):
            X = ex.project_features(ex.layer_matrix(acts.layers[layer]), N, seed=i)
            met = ex.manifold_metrics(jax.random.key(i), X.reshape(P, M, N), N_T)
            rows.append({"weights": weights, "label_type": lt, "layer": layer,
                         "layer_index": i, **met})
geometry = pd.DataFrame(rows)
geometry.head()
""",
    ),
    (
        "markdown",
        """
## Metrics per layer (the paper's Fig. 2 style)
Capacity is normalised by the lower bound 2/M (dashed line at 1).
""",
    ),
    (
        "code",
        """
for lt in ("word", "speaker"):
    fig = ex.layer_curves(geometry[geometry.label_type == lt],
                          ["capacity_ratio", "radius", "dimension_ratio", "center_correlation",
                           "d_pr", "d_ev"], hue="weights", baselines={"capacity_ratio": 1.0},
                          suptitle=f"{lt} manifolds")
""",
    ),
    (
        "markdown",
        """
The full analysis, with 95% confidence intervals over manifold samples, the word CNN trained on
speakers, DS2 per time step around word boundaries, trends over epochs and the alpha_SIM check,
is `geomjax reproduce` (tables `stephenson_layers`, `ds2_timesteps`, `epochs`, `simcap`).
""",
    ),
]

SIMILARITY = [
    (
        "markdown",
        """
# SVCCA and CKA across the layers and epochs of speech models

**Claim.** Representations of neighbouring layers are alike (a block structure along the diagonal
of the layer-by-layer similarity matrix); lower layers settle early in training while upper layers
keep changing; CKA and SVCCA tell the same story.

The notebook trains a small Transformer encoder by masked reconstruction and compares all of its
layers, and each layer across epochs, with linear CKA and SVCCA.
""",
    ),
    ("code", SETUP),
    (
        "code",
        """
splits = ex.task_splits(corpus, "reconstruction", seed=0)
res = models.train(0, "transformer", splits.train, splits.valid, epochs=2 if QUICK else 5,
                   ckpt_dir=f"{workdir}/transformer", preset=PRESET,
                   batch_size=4 if QUICK else 16, max_steps_per_epoch=2 if QUICK else 60,
                   progress=False)
res.metrics[["epoch", "val_loss"]]
""",
    ),
    ("markdown", "## Frames of held-out utterances, every layer"),
    (
        "code",
        """
from geomjax.similarity import cka_matrix, similarity_matrix

test = splits.test.take(np.arange(min(len(splits.test), 4 if QUICK else 32)))
def frames(epoch):
    ck = models.load_checkpoint(f"{workdir}/transformer", epoch)
    acts = models.activations(ck.model, ck.variables, test.inputs, test.lengths)
    return {k: acts.frames(k)[0] for k in acts.names}
epochs = [e for e, _ in models.list_checkpoints(f"{workdir}/transformer")]
reps = {e: frames(e) for e in epochs}
final = reps[epochs[-1]]
cka = cka_matrix(final)
proj = {k: ex.project_features(v, 16 if QUICK else 128) for k, v in final.items()}
svcca = similarity_matrix(proj, measure="svcca", epsilon=1e-6)
cka.to_wide().round(3)
""",
    ),
    (
        "code",
        """
names = list(final)
fig = ex.heatmap_grid({"CKA": (cka.values, names, names), "SVCCA": (svcca.values, names, names)},
                      suptitle="Transformer: similarity between layers")
""",
    ),
    ("markdown", "## Each layer across epochs, against its final state"),
    (
        "code",
        """
mat = np.array([[float(cka_matrix({"a": reps[e][k]}, {"b": final[k]}).values[0, 0])
                 for e in epochs] for k in names])
fig = ex.heatmap(mat, names, [str(e) for e in epochs], title="CKA to the final epoch")
""",
    ),
]

PROBING = [
    (
        "markdown",
        """
# Layer- and neuron-level probing for speaker, gender, accent and channel

**Claim.** Speaker-related properties are linearly decodable from a speaker network's layers;
a probe on all layers (ALL) ranks neurons so that keeping the top 20% preserves accuracy far
better than the bottom or random 20%; a small minimal set of neurons suffices; control tasks
confirm selectivity; speaker-verification EER is lowest in the upper layers.
""",
    ),
    ("code", SETUP),
    (
        "code",
        """
splits = ex.task_splits(corpus, "speaker", seed=0)
res = models.train(0, "speaker_cnn", splits.train, splits.valid, epochs=1 if QUICK else 6,
                   ckpt_dir=f"{workdir}/speaker_cnn", preset=PRESET,
                   n_classes=len(splits.classes), batch_size=16 if QUICK else 32,
                   max_steps_per_epoch=2 if QUICK else 150, progress=False)
ck = models.load_checkpoint(f"{workdir}/speaker_cnn")
def utterance_vectors(d):
    acts = models.activations(ck.model, ck.variables, d.inputs, d.lengths)
    names = [k for k in acts.names if k != "out"]
    return names, [acts.pooled(k) for k in names]
names, tr = utterance_vectors(splits.train)
_, te = utterance_vectors(splits.test)
""",
    ),
    (
        "code",
        """
from geomjax.probing import concat_layers, fit_standardizer, paper_pipeline, standardize

Xtr, index = concat_layers(tr)
Xte, _ = concat_layers(te)
st = fit_standardizer(Xtr)
Xtr, Xte = standardize(Xtr, st), standardize(Xte, st)
tables = []
for label in ("speaker", "gender", "accent", "channel"):
    classes = sorted(set(splits.train.meta[label].astype(str)) | set(splits.test.meta[label].astype(str)))
    y = lambda m: m[label].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    if len(set(y(splits.train.meta))) < 2:
        continue
    r = paper_pipeline(jax.random.key(0), Xtr, y(splits.train.meta), Xte, y(splits.test.meta),
                       index, n_classes=len(classes), epochs=2 if QUICK else 20)
    tables.append(r.to_frame().assign(label=label))
probes = pd.concat(tables)
probes[probes.analysis.isin(["oracle", "control", "majority", "ablation"])]
""",
    ),
    (
        "code",
        """
layerwise = probes[probes.analysis == "layer"].assign(layer=lambda d: [names[int(s[1:])] for s in d.subset])
fig = ex.layer_curves(layerwise, ["accuracy"], hue="label", suptitle="layer-wise probes")
""",
    ),
    ("markdown", "## Speaker-verification EER per layer (cosine scoring of utterance vectors)"),
    (
        "code",
        """
from geomjax.probing import cosine_scores, eer

rng = np.random.default_rng(0)
spk = splits.test.meta["speaker"].to_numpy()
i, j = rng.integers(0, len(spk), (2, 400 if QUICK else 4000))
keep = i != j
i, j = i[keep], j[keep]
rows = [{"layer": n, "layer_index": k, "eer": float(eer(cosine_scores(f[i], f[j]), spk[i] == spk[j]).value)}
        for k, (n, f) in enumerate(zip(names, te))]
fig = ex.layer_curves(pd.DataFrame(rows), ["eer"], suptitle="EER per layer")
""",
    ),
]

NAGAMINE = [
    (
        "markdown",
        """
# How a phone MLP represents and computes (Nagamine & Mesgarani, 2017)

**Claim.** In a trained phone-recognition MLP, nodes grow more selective to phone classes with
depth, phones become more linearly separable (LDA) layer by layer, and the per-sample linear
transforms (SLTs) become more diverse (flatter SVD spectra, larger AUC) with depth, more so for
inputs that are not linearly separable (INC) than for separable ones (COR).
""",
    ),
    ("code", SETUP),
    (
        "code",
        """
splits = ex.task_splits(corpus, "phone", seed=0)
res = models.train(0, "phone_mlp", splits.train, splits.valid, epochs=1 if QUICK else 3,
                   ckpt_dir=f"{workdir}/phone_mlp", preset=PRESET,
                   n_classes=len(splits.classes), batch_size=128 if QUICK else 256,
                   max_steps_per_epoch=4 if QUICK else None, progress=False)
ck = models.load_checkpoint(f"{workdir}/phone_mlp")
n = 400 if QUICK else 4000
xte, yte = splits.test.inputs[:n], splits.test.labels[:n]
xdv, ydv = splits.valid.inputs[:n], splits.valid.labels[:n]
ate = models.activations(ck.model, ck.variables, xte)
adv = models.activations(ck.model, ck.variables, xdv)
hidden = [k for k in ate.names if k != "out"]
""",
    ),
    ("markdown", "## Class selectivity vectors and their clustering"),
    (
        "code",
        """
from geomjax import jacobian as jb

K = len(splits.classes)
S = {k: np.asarray(jb.class_selectivity(ate.layers[k], yte, n_classes=K)) for k in hidden}
fig = ex.heatmap(S[hidden[-1]] / max(S[hidden[-1]].max(), 1e-9), [str(c) for c in splits.classes],
                 [str(i) for i in range(S[hidden[-1]].shape[1])], title=f"{hidden[-1]}: selectivity")
""",
    ),
    ("markdown", "## LDA per layer"),
    (
        "code",
        """
lda = jb.lda_layers([xdv] + [adv.layers[k] for k in hidden], ydv,
                    [xte] + [ate.layers[k] for k in hidden], yte)
t = lda.table().assign(layer=["features"] + hidden)
fig = ex.layer_curves(t, ["test_accuracy", "evr_auc", "class_auc"], suptitle="LDA per layer")
t
""",
    ),
    ("markdown", "## SLT spectra for all, COR and INC test frames"),
    (
        "code",
        """
pred = np.argmax(ate.output, -1)
groups = {g: m for g, m in jb.cor_inc_split(lda.ldas[0], xte, yte, pred).items() if m.sum() >= 2}
p = ck.variables["params"]
mlp = [(p[f"dense{i + 1}"]["kernel"], p[f"dense{i + 1}"]["bias"]) for i in range(len(hidden))]
mlp.append((p["out"]["kernel"], p["out"]["bias"]))
spec = jb.slt_spectra(mlp, xte, layers=list(range(len(hidden))), groups=groups)
aucs = spec.auc_at(int(min(spec.n_sigma)))
auc = pd.DataFrame([{"layer": hidden[l], "group": g, "auc": float(np.nanmean(aucs[l][gi]))}
                    for l in range(len(hidden)) for gi, g in enumerate(spec.group_names)])
fig = ex.layer_curves(auc, ["auc"], hue="group", suptitle="SLT spectrum AUC per layer")
""",
    ),
]

NOTEBOOKS = {
    "stephenson_untangling.ipynb": STEPHENSON,
    "cca_cka_similarity.ipynb": SIMILARITY,
    "probing_neurons.ipynb": PROBING,
    "nagamine_phone_mlp.ipynb": NAGAMINE,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        (HERE / name).write_text(json.dumps(notebook(cells), indent=1) + "\n")
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
