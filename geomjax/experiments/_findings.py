"""The report of a reproduction run: each paper's claims next to what the run measured, with a
verdict computed from the tables (never typed in), and the papers' figures.

Verdict rules: a finding is ``reproduced`` when the measured effect has the paper's sign (and,
where confidence intervals over seeds exist, the intervals do not overlap); ``not reproduced``
when the model learned its task and the effect is absent or reversed; ``not testable`` when the
model did not learn its task (then no claim about trained representations can be tested) or a
table is missing.
"""

from __future__ import annotations

import numpy as np

from geomjax.experiments._figures import heatmap_grid, layer_curves, timestep_curves
from geomjax.experiments._report import Finding, Report, Section
from geomjax.experiments._run import RunDir

__all__ = ["build_report", "model_learned"]

_TITLES = {
    "capacity_ratio": "capacity / (2/M)",
    "radius": "radius",
    "dimension_ratio": "dimension / M",
    "center_correlation": "centre correlation",
    "d_pr": "D_PR",
    "d_ev": "D_EV",
}


def _fmt(v, lo=None, hi=None) -> str:
    if lo is None or not np.isfinite(lo):
        return f"{v:.3g}"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def model_learned(run: RunDir, name: str) -> tuple[bool | None, str]:
    """Whether a model learned its task, judged on the validation split of its last epoch:
    classifiers need at least twice the chance (majority) accuracy; DS2 a character error rate
    below 0.8; the Transformer a reconstruction loss below its initial value."""
    t = f"train_{name}"
    if not run.has_table(t):
        return None, f"{name}: no training table"
    m = run.load_table(t)
    last, first = m.iloc[-1], m.iloc[0]
    if "val_accuracy" in m and "chance" in m and np.isfinite(last.get("val_accuracy", np.nan)):
        acc, ch = float(last["val_accuracy"]), float(last["chance"])
        ok = acc >= 2 * ch
        return (
            ok,
            f"{name}: validation accuracy {acc:.1%} after {int(last['epoch'])} epochs "
            f"(chance {ch:.1%})",
        )
    if "val_cer" in m:
        c = float(last["val_cer"])
        return c < 0.8, f"{name}: validation CER {c:.2f} after {int(last['epoch'])} epochs"
    if "val_loss" in m:
        a, b = float(first["val_loss"]), float(last["val_loss"])
        return b < 0.9 * a, f"{name}: validation loss {a:.3g} -> {b:.3g}"
    return None, f"{name}: no validation metric"


def _get(df, **kw):
    m = np.ones(len(df), bool)
    for k, v in kw.items():
        m &= (df[k] == v).to_numpy()
    return df[m]


def _first_last(df, metric):
    """(first layer row, last layer row) by layer_index."""
    d = df.sort_values("layer_index")
    return d.iloc[0], d.iloc[-1]


def _rise(df, metric) -> tuple[float, str, bool]:
    f, l_ = _first_last(df, metric)
    sep = np.isfinite(l_.get(f"{metric}_lo", np.nan)) and l_[f"{metric}_lo"] > f[f"{metric}_hi"]
    txt = (
        f"{f['layer']} {_fmt(f[metric], f.get(f'{metric}_lo'), f.get(f'{metric}_hi'))} -> "
        f"{l_['layer']} {_fmt(l_[metric], l_.get(f'{metric}_lo'), l_.get(f'{metric}_hi'))}"
    )
    return float(l_[metric] - f[metric]), txt, bool(sep)


def _verdict(effect_ok: bool, learned: bool | None) -> str:
    if learned is False or learned is None:
        return "not testable"
    return "reproduced" if effect_ok else "not reproduced"


# ---- Stephenson et al. ---------------------------------------------------------------------
def _stephenson(run: RunDir, learned: dict) -> Section:
    sec = Section(
        "Untangling in invariant speech recognition (Stephenson et al., 2019)",
        intro=(
            "Mean-field manifold capacity (normalised by the 2/M lower bound), radius, "
            "dimension/M, centre correlation, D_PR and D_EV per layer; mean and 95% CI over "
            "manifold samples (seeds). Word CNN trained on words and on speakers; DS2 read at "
            "the centre time step of each 2-s window."
        ),
    )
    if not run.has_table("stephenson_layers"):
        sec.notes.append("The manifold geometry stage has not run.")
        return sec
    s = run.load_table("stephenson_layers")
    lw, lw_txt = learned.get("word_cnn_word", (None, ""))
    ls, ls_txt = learned.get("word_cnn_speaker", (None, ""))
    ld, ld_txt = learned.get("ds2", (None, ""))
    sec.notes += [t for t in (lw_txt, ls_txt, ld_txt) if t]
    # 1. word capacity rises in the trained word model, not at initialisation
    tr = _get(s, model="word_cnn_word", weights="trained", label_type="word")
    ini = _get(s, model="word_cnn_word", weights="initial", label_type="word")
    if len(tr) and len(ini):
        d_tr, t_tr, sep = _rise(tr, "capacity_ratio")
        d_in, t_in, _ = _rise(ini, "capacity_ratio")
        ok = d_tr > 0 and sep and d_tr > d_in
        sec.findings.append(
            Finding(
                "Word-manifold capacity rises across the layers of the trained word network, but "
                "not "
                "at initialisation.",
                f"trained: {t_tr}; initial: {t_in} (capacity / lower bound).",
                _verdict(ok, lw),
            )
        )
    # 2. speaker manifolds: word model's late layers vs speaker model's
    a = _get(s, model="word_cnn_word", weights="trained", label_type="speaker")
    b = _get(s, model="word_cnn_speaker", weights="trained", label_type="speaker")
    if len(a) and len(b):
        la, lb = a.sort_values("layer_index").iloc[-1], b.sort_values("layer_index").iloc[-1]
        ok = la["capacity_ratio"] < lb["capacity_ratio"]
        sec.findings.append(
            Finding(
                "Speaker manifolds are less separable in the late layers of the word-trained "
                "network "
                "than in the same network trained on speakers.",
                f"speaker capacity at {la['layer']}: word-trained "
                f"{_fmt(la['capacity_ratio'], la['capacity_ratio_lo'], la['capacity_ratio_hi'])}, "
                "speaker-trained "
                f"{_fmt(lb['capacity_ratio'], lb['capacity_ratio_lo'], lb['capacity_ratio_hi'])}.",
                _verdict(bool(ok), None if lw is None or ls is None else (lw and ls)),
            )
        )
    # 3. trained word model: word radius and dimension shrink in late layers
    if len(tr):
        f, l_ = _first_last(tr, "radius")
        ok = l_["radius"] < f["radius"] and l_["dimension_ratio"] < f["dimension_ratio"]
        sec.findings.append(
            Finding(
                "As word manifolds untangle, their radius and dimension shrink in the late layers.",
                f"radius {f['layer']} {f['radius']:.3g} -> {l_['layer']} {l_['radius']:.3g}; "
                f"dimension/M {f['dimension_ratio']:.3g} -> {l_['dimension_ratio']:.3g}.",
                _verdict(bool(ok), lw),
            )
        )
        ok = l_["center_correlation"] < f["center_correlation"]
        sec.findings.append(
            Finding(
                "Centre correlation of word manifolds falls in the late layers of the trained "
                "network.",
                f"{f['layer']} {f['center_correlation']:.3g} -> "
                f"{l_['layer']} {l_['center_correlation']:.3g}.",
                _verdict(bool(ok), lw),
            )
        )
    # 4. DS2: character and phoneme manifolds untangle with depth
    for lt in ("character", "phoneme"):
        d = _get(s, model="ds2", weights="trained", label_type=lt)
        if len(d):
            diff, txt, sep = _rise(d, "capacity_ratio")
            sec.findings.append(
                Finding(
                    f"In the trained DS2 model, {lt} manifold capacity rises with depth.",
                    txt + ".",
                    _verdict(diff > 0 and sep, ld),
                )
            )
    # figures
    for model in sorted(s["model"].unique()):
        for lt in sorted(s["label_type"].unique()):
            d = _get(s, model=model, label_type=lt)
            if not len(d):
                continue
            fig = layer_curves(
                d,
                list(_TITLES),
                hue="weights",
                titles=_TITLES,
                suptitle=f"{model}: {lt} manifolds (initial vs trained)",
                baselines={"capacity_ratio": 1.0},
            )
            p = run.save_figure(f"stephenson_{model}_{lt}", fig)
            sec.figures.append(
                (f"{model}, {lt} manifolds: metrics per layer (95% CI over seeds)", p)
            )
    d = s[
        (s["label_type"] == "speaker")
        & (s["weights"] == "trained")
        & s["model"].isin(["word_cnn_word", "word_cnn_speaker"])
    ]
    if len(d):
        fig = layer_curves(
            d,
            ["capacity_ratio", "radius", "dimension_ratio"],
            hue="model",
            titles=_TITLES,
            suptitle="speaker manifolds: word- vs speaker-trained CNN",
        )
        sec.figures.append(
            (
                "Speaker manifolds in the CNN trained on words vs on speakers",
                run.save_figure("stephenson_word_vs_speaker_model", fig),
            )
        )
    sec.tables.append(("stephenson_layers", s))
    _timesteps(run, sec, ld)
    _epochs(run, sec, lw)
    _simcap(run, sec)
    return sec


def _timesteps(run: RunDir, sec: Section, learned) -> None:
    if not run.has_table("ds2_timesteps"):
        return
    ts = run.load_table("ds2_timesteps")
    b = run.load_table("ds2_word_boundaries")["time_s"].tolist()
    for w in ("trained", "initial"):
        d = ts[ts["weights"] == w]
        if len(d):
            fig = timestep_curves(
                d,
                ["capacity_ratio", "radius", "dimension_ratio"],
                t="time_s",
                hue="layer",
                boundaries=b,
                suptitle=f"DS2 ({w}): word manifolds per time step",
            )
            sec.figures.append(
                (
                    f"DS2 {w}: geometry per time step; dotted lines: mean word boundaries",
                    run.save_figure(f"ds2_timesteps_{w}", fig),
                )
            )
    d = ts[ts["weights"] == "trained"]
    if len(d):
        last = d[d["layer"] == d["layer"].iloc[-1]]
        inside = last[(last["time_s"] >= b[0]) & (last["time_s"] <= b[1])]["capacity_ratio"]
        outside = last[(last["time_s"] < b[0]) | (last["time_s"] > b[1])]["capacity_ratio"]
        if len(inside) and len(outside):
            ok = inside.mean() > outside.mean()
            sec.findings.append(
                Finding(
                    "In DS2, word-manifold capacity is highest while the word is spoken and falls "
                    "outside the word boundaries.",
                    f"layer {last['layer'].iloc[0]}: mean capacity/LB inside the word "
                    f"{inside.mean():.3g}, outside {outside.mean():.3g}.",
                    _verdict(bool(ok), learned),
                )
            )
    sec.tables.append(("ds2_timesteps", ts))


def _epochs(run: RunDir, sec: Section, learned) -> None:
    if not run.has_table("epochs"):
        return
    e = run.load_table("epochs")
    for (model, lt), d in e.groupby(["model", "label_type"], sort=False):
        d = d.copy()
        d["epoch"] = d["epoch"].astype(str)
        fig = layer_curves(
            d,
            ["capacity_ratio", "radius", "dimension_ratio"],
            hue="epoch",
            titles=_TITLES,
            suptitle=f"{model}: {lt} manifolds across epochs",
        )
        sec.figures.append(
            (
                f"{model}, {lt} manifolds, per training epoch (0 = initial)",
                run.save_figure(f"epochs_{model}_{lt}", fig),
            )
        )
    d = e[(e["model"] == "word_cnn_word") & (e["label_type"] == "word")]
    if len(d):
        last = d[d["layer_index"] == d["layer_index"].max()].sort_values("epoch")
        from scipy.stats import spearmanr

        rho = (
            spearmanr(last["epoch"], last["capacity_ratio"]).statistic if len(last) > 2 else np.nan
        )
        ok = (
            np.isfinite(rho)
            and rho > 0
            and last["capacity_ratio"].iloc[-1] > last["capacity_ratio"].iloc[0]
        )
        sec.findings.append(
            Finding(
                "Word-manifold capacity in the late layers grows over the course of training.",
                f"{last['layer'].iloc[0]}: capacity/LB by epoch "
                + ", ".join(
                    f"{int(a)}: {v:.3g}"
                    for a, v in zip(last["epoch"], last["capacity_ratio"], strict=False)
                )
                + f" (Spearman rho {rho:.2f}).",
                _verdict(bool(ok), learned),
            )
        )
    sec.tables.append(("epochs", e))


def _simcap(run: RunDir, sec: Section) -> None:
    if not run.has_table("simcap"):
        return
    t = run.load_table("simcap")
    ok_rows = t[np.isfinite(t["alpha_sim"])]
    if not len(ok_rows):
        sec.findings.append(
            Finding(
                "The mean-field capacity alpha_MFT agrees with the simulated capacity alpha_SIM.",
                "alpha_SIM could not be measured in this run (no finite estimate).",
                "not testable",
            )
        )
    else:
        inside = (ok_rows["alpha_mft"] >= ok_rows["alpha_sim_lo"]) & (
            ok_rows["alpha_mft"] <= ok_rows["alpha_sim_hi"]
        )
        rel = np.abs(ok_rows["alpha_mft"] / ok_rows["alpha_sim"] - 1)
        ok = bool((inside | (rel < 0.25)).mean() >= 0.5)
        sec.findings.append(
            Finding(
                "The mean-field capacity alpha_MFT agrees with the simulated capacity alpha_SIM.",
                "; ".join(
                    f"{r.weights} {r.layer}: MFT {r.alpha_mft:.3g}, SIM {r.alpha_sim:.3g} "
                    f"[{r.alpha_sim_lo:.3g}, {r.alpha_sim_hi:.3g}]"
                    for r in ok_rows.itertuples()
                )
                + ".",
                "reproduced" if ok else "not reproduced",
            )
        )
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3.6, 3.4))
        yerr = np.vstack(
            [
                ok_rows["alpha_sim"] - ok_rows["alpha_sim_lo"],
                ok_rows["alpha_sim_hi"] - ok_rows["alpha_sim"],
            ]
        ).clip(0)
        ax.errorbar(ok_rows["alpha_mft"], ok_rows["alpha_sim"], yerr=yerr, fmt="o", ms=4)
        lim = [0, float(np.nanmax(np.r_[ok_rows["alpha_mft"], ok_rows["alpha_sim_hi"]])) * 1.1]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("alpha_MFT")
        ax.set_ylabel("alpha_SIM")
        ax.set_title("simulated vs mean-field capacity", fontsize=9)
        fig.tight_layout()
        sec.figures.append(("alpha_SIM (95% CI) vs alpha_MFT", run.save_figure("simcap", fig)))
    sec.tables.append(("simcap", t))


# ---- CCA / CKA -----------------------------------------------------------------------------
def _similarity(run: RunDir, learned: dict) -> Section:
    sec = Section(
        "SVCCA and CKA across layers and epochs of end-to-end speech models",
        intro=(
            "Linear CKA and SVCCA (99% variance) between every pair of layers, on held-out 2-s "
            "windows (frames of the sequence models), and CKA of every layer at every epoch to "
            "the same layer at the final epoch."
        ),
    )
    if not run.has_table("similarity_layers"):
        sec.notes.append("The similarity stage has not run.")
        return sec
    t = run.load_table("similarity_layers")
    for model in t["model"].unique():
        mats = {}
        for meas in ("cka", "svcca"):
            d = t[(t["model"] == model) & (t["measure"] == meas) & (t["weights"] == "trained")]
            names = list(dict.fromkeys(d["x"]))
            M = d.pivot(index="x", columns="y", values="value").loc[names, names].to_numpy()
            mats[f"{meas} (trained)"] = (M, names, names)
            if meas == "cka":
                n = len(names)
                i, j = np.triu_indices(n, 1)
                gap = np.abs(i - j)
                adj = M[i[gap == 1], j[gap == 1]].mean()
                far = M[i[gap >= 3], j[gap >= 3]].mean() if (gap >= 3).any() else np.nan
                ok = np.isfinite(far) and adj > far
                lr = learned.get(
                    model if model != "word_cnn_word" else "word_cnn_word", (None, "")
                )[0]
                sec.findings.append(
                    Finding(
                        f"{model}: adjacent layers are more similar than distant ones (block "
                        f"structure "
                        "along the diagonal).",
                        f"mean CKA of adjacent layers {adj:.3f}, of layers 3+ apart {far:.3f}.",
                        _verdict(bool(ok), lr),
                    )
                )
        d0 = t[(t["model"] == model) & (t["weights"] == "trained") & (t["x"] != t["y"])]
        a = d0[d0["measure"] == "cka"].set_index(["x", "y"])["value"]
        b = d0[d0["measure"] == "svcca"].set_index(["x", "y"])["value"]
        common = a.index.intersection(b.index)
        if len(common) > 3:
            from scipy.stats import spearmanr

            rho = spearmanr(a.loc[common], b.loc[common]).statistic
            sec.findings.append(
                Finding(
                    f"{model}: CKA and SVCCA give the same picture of which layers are alike.",
                    f"Spearman correlation of the off-diagonal CKA and SVCCA values: {rho:.2f}.",
                    "reproduced" if rho > 0.5 else "not reproduced",
                )
            )
        fig = heatmap_grid(mats, suptitle=f"{model}: layer similarity")
        sec.figures.append(
            (f"{model}: CKA and SVCCA between layers", run.save_figure(f"similarity_{model}", fig))
        )
    if run.has_table("similarity_epochs"):
        e = run.load_table("similarity_epochs")
        mats = {}
        for model, d in e.groupby("model", sort=False):
            layers = list(dict.fromkeys(d.sort_values("layer_index")["layer"]))
            epochs = sorted(d["epoch"].unique())
            M = d.pivot(index="layer", columns="epoch", values="cka_to_final").loc[layers, epochs]
            mats[model] = (M.to_numpy(), layers, [str(x) for x in epochs])
            if len(epochs) >= 3:
                e1 = d[d["epoch"] == epochs[1]].sort_values("layer_index")
                lo = e1.iloc[: max(1, len(e1) // 3)]["cka_to_final"].mean()
                hi = e1.iloc[-max(1, len(e1) // 3) :]["cka_to_final"].mean()
                lr = learned.get(model, (None, ""))[0]
                sec.findings.append(
                    Finding(
                        f"{model}: lower layers converge earlier in training than upper layers.",
                        f"after epoch {epochs[1]}, CKA to the final weights: lower third {lo:.3f}, "
                        f"upper third {hi:.3f}.",
                        _verdict(bool(lo > hi), lr),
                    )
                )
        if mats:
            fig = heatmap_grid(
                mats, suptitle="CKA of each layer (rows) at each epoch (columns) to its final state"
            )
            sec.figures.append(
                (
                    "CKA to the final epoch, layers x epochs",
                    run.save_figure("similarity_epochs", fig),
                )
            )
        sec.tables.append(("similarity_epochs", e))
    sec.tables.append(("similarity_layers", t))
    return sec


# ---- probing -------------------------------------------------------------------------------
def _probing(run: RunDir, learned: dict) -> Section:
    sec = Section(
        "Layer- and neuron-level probing of speaker, gender, accent and channel",
        intro=(
            "Elastic-net probes on utterance vectors (mean over frames) of every layer and of "
            "all layers concatenated (ALL); neuron ranking from the ALL probe, ablation keeping "
            "the top / bottom / random 20%, minimal neuron sets, control tasks with permuted "
            "labels, and speaker-verification EER (cosine scoring) per layer. Probes train on "
            "the training words and are tested on held-out words."
        ),
    )
    if not run.has_table("probing"):
        sec.notes.append("The probing stage has not run.")
        return sec
    p = run.load_table("probing")
    for name in p["model"].unique():
        lr = learned.get(name, (None, ""))
        if lr[1]:
            sec.notes.append(lr[1])
        tr = p[(p["model"] == name) & (p["weights"] == "trained")]
        for label in tr["label"].unique():
            d = tr[tr["label"] == label]
            orc = d[d["analysis"] == "oracle"]["accuracy"].iloc[0]
            maj = d[d["analysis"] == "majority"]["accuracy"].iloc[0]
            ctl = d[d["analysis"] == "control"]["accuracy"].iloc[0]
            lay = d[d["analysis"] == "layer"]
            best = lay.loc[lay["accuracy"].idxmax()]
            abl = d[d["analysis"] == "ablation"].set_index("subset")["accuracy"]
            top, bottom, rnd = abl.iloc[0], abl.iloc[1], abl.iloc[2]
            mins = d[d["analysis"].str.startswith("minimal_set (chosen)")]
            sec.findings.append(
                Finding(
                    f"{name}: {label} is linearly decodable from the representations, above the "
                    "majority baseline and above a control task (selectivity > 0).",
                    f"ALL probe {orc:.1%} (majority {maj:.1%}, control {ctl:.1%}); best layer "
                    f"{best['subset']} {best['accuracy']:.1%}.",
                    "reproduced" if (orc > maj + 0.02 and orc > ctl) else "not reproduced",
                )
            )
            sec.findings.append(
                Finding(
                    f"{name}: for {label}, the top-ranked 20% of neurons keep more accuracy than "
                    f"the "
                    "bottom or random 20%.",
                    f"top {top:.1%}, random {rnd:.1%}, bottom {bottom:.1%}.",
                    "reproduced" if (top >= rnd and top > bottom) else "not reproduced",
                )
            )
            if len(mins):
                m = mins.iloc[0]
                frac = m["n_neurons"] / d[d["analysis"] == "oracle"]["n_neurons"].iloc[0]
                sec.findings.append(
                    Finding(
                        f"{name}: a small subset of neurons suffices for {label} (minimal set "
                        f"within 1% "
                        "of the ALL probe).",
                        f"chosen set {m['subset']} ({int(m['n_neurons'])} neurons, {frac:.0%}) at "
                        f"{m['accuracy']:.1%} vs ALL {orc:.1%}.",
                        "reproduced"
                        if (frac <= 0.5 and m["accuracy"] >= orc - 0.02)
                        else "not reproduced",
                    )
                )
        d = p[(p["model"] == name) & (p["analysis"] == "layer")].rename(columns={"subset": "layer"})
        d = d.assign(series=d["label"] + " / " + d["weights"])
        fig = layer_curves(
            d,
            ["accuracy"],
            hue="series",
            titles={"accuracy": "layer-wise probe accuracy"},
            suptitle=f"{name}: layer-wise probes",
        )
        sec.figures.append(
            (f"{name}: layer-wise probe accuracy", run.save_figure(f"probing_{name}", fig))
        )
    if run.has_table("probing_eer"):
        e = run.load_table("probing_eer")
        for name in e["model"].unique():
            tr = e[(e["model"] == name) & (e["weights"] == "trained")].sort_values("layer_index")
            ini = e[(e["model"] == name) & (e["weights"] == "initial")].sort_values("layer_index")
            if len(tr) and len(ini):
                best = tr.loc[tr["eer"].idxmin()]
                ok = tr["eer"].min() < ini["eer"].min() and best["layer_index"] >= len(tr) // 2
                sec.findings.append(
                    Finding(
                        f"{name}: speaker verification is best from the upper layers of the "
                        f"trained "
                        "network, and better than at initialisation.",
                        f"lowest EER {best['eer']:.1%} at {best['layer']} (trained) vs "
                        f"{ini['eer'].min():.1%} (initial).",
                        _verdict(bool(ok), learned.get(name, (None, ""))[0]),
                    )
                )
        fig = layer_curves(
            e.assign(series=e["model"] + " / " + e["weights"]),
            ["eer"],
            hue="series",
            titles={"eer": "speaker-verification EER"},
            suptitle="EER per layer",
        )
        sec.figures.append(
            ("EER per layer (cosine scoring, held-out words)", run.save_figure("probing_eer", fig))
        )
        sec.tables.append(("probing_eer", e))
    if run.has_table("probing_top_neurons"):
        dist = run.load_table("probing_top_neurons")
        d = dist[(dist["weights"] == "trained") & (dist["selection"] == "top")]
        d = d.assign(series=d["model"] + " / " + d["label"])
        fig = layer_curves(
            d,
            ["fraction_of_layer"],
            hue="series",
            titles={"fraction_of_layer": "share of layer in top 20%"},
            suptitle="distribution of top neurons across layers (trained)",
        )
        sec.figures.append(
            ("Where the top-ranked neurons sit", run.save_figure("probing_top_neurons", fig))
        )
        sec.tables.append(("probing_top_neurons", dist))
    sec.tables.append(("probing", p))
    return sec


# ---- Nagamine & Mesgarani ------------------------------------------------------------------
def _nagamine(run: RunDir, learned: dict) -> Section:
    sec = Section(
        "Representation and computation of a phone MLP (Nagamine & Mesgarani, 2017)",
        intro=(
            "Class selectivity vectors and their clustering (UPGMA, correlation distance, cut "
            "0.5), LDA per layer (fit on validation frames, tested on unseen speakers), and the "
            "SVD spectra of the per-sample linear transforms (SLT) with their AUC (eq. 5), for "
            "all test frames and split into linearly separable (COR) and inseparable (INC) ones."
        ),
    )
    lr, txt = learned.get("phone_mlp", (None, ""))
    if txt:
        sec.notes.append(txt)
    if run.has_table("nagamine_lda"):
        lda = run.load_table("nagamine_lda")
        tr, ini = lda[lda["weights"] == "trained"], lda[lda["weights"] == "initial"]
        if len(tr):
            ok = tr["test_accuracy"].iloc[-1] > tr["test_accuracy"].iloc[0]
            sec.findings.append(
                Finding(
                    "Linear (LDA) separability of phones increases with depth in the trained "
                    "network.",
                    "LDA test accuracy, trained: "
                    + ", ".join(
                        f"{a} {v:.1%}"
                        for a, v in zip(tr["layer"], tr["test_accuracy"], strict=False)
                    )
                    + "; initial: "
                    + ", ".join(
                        f"{a} {v:.1%}"
                        for a, v in zip(ini["layer"], ini["test_accuracy"], strict=False)
                    )
                    + ".",
                    _verdict(bool(ok), lr),
                )
            )
        d = lda.assign(layer_index=lda.groupby("weights").cumcount())
        fig = layer_curves(
            d,
            ["test_accuracy", "evr_auc", "class_auc"],
            hue="weights",
            suptitle="phone MLP: LDA per layer",
        )
        sec.figures.append(
            ("LDA accuracy and spectra per layer", run.save_figure("nagamine_lda", fig))
        )
        sec.tables.append(("nagamine_lda", lda))
    if run.has_table("nagamine_selectivity"):
        sel = run.load_table("nagamine_selectivity")
        tr = sel[sel["weights"] == "trained"].sort_values("layer_index")
        if len(tr):
            ok = tr["csv_cv_median"].iloc[-1] > tr["csv_cv_median"].iloc[0]
            sec.findings.append(
                Finding(
                    "Nodes become more selective to phone classes in deeper layers.",
                    "median coefficient of variation of the class selectivity vectors, trained: "
                    + ", ".join(
                        f"{a} {v:.3g}"
                        for a, v in zip(tr["layer"], tr["csv_cv_median"], strict=False)
                    )
                    + "; selectivity clusters (cut 0.5): "
                    + ", ".join(str(int(v)) for v in tr["n_clusters"])
                    + ".",
                    _verdict(bool(ok), lr),
                )
            )
        fig = layer_curves(
            sel,
            ["csv_cv_median", "n_clusters", "n_dead"],
            hue="weights",
            suptitle="phone MLP: class selectivity per layer",
        )
        sec.figures.append(
            ("Selectivity and clustering per layer", run.save_figure("nagamine_selectivity", fig))
        )
        sec.tables.append(("nagamine_selectivity", sel))
    if run.has_table("nagamine_slt"):
        slt = run.load_table("nagamine_slt")
        tr = slt[slt["weights"] == "trained"]
        a = tr[tr["group"] == "ALL"].sort_values("layer_index")
        if len(a):
            ok = a["auc_mean"].iloc[-1] > a["auc_mean"].iloc[0]
            sec.findings.append(
                Finding(
                    "The spectra of the sample-dependent linear transforms flatten with depth (AUC "
                    "rises): deeper layers apply more diverse transforms.",
                    "mean SLT AUC (ALL), trained: "
                    + ", ".join(
                        f"{a_} {v:.3g}" for a_, v in zip(a["layer"], a["auc_mean"], strict=False)
                    )
                    + ".",
                    _verdict(bool(ok), lr),
                )
            )
        c, i = tr[tr["group"] == "COR"], tr[tr["group"] == "INC"]
        if len(c) and len(i):
            cc = c.set_index("layer")["auc_mean"]
            ii = i.set_index("layer")["auc_mean"]
            common = [k for k in cc.index if k in ii.index]
            deep = common[len(common) // 2 :]
            ok = bool(np.mean([ii[k] > cc[k] for k in deep]) >= 0.5)
            sec.findings.append(
                Finding(
                    "Inputs that are not linearly separable (INC) receive more diverse transforms "
                    "(higher SLT AUC) than separable ones (COR).",
                    "mean SLT AUC COR vs INC, trained: "
                    + ", ".join(f"{k} {cc[k]:.3g}/{ii[k]:.3g}" for k in common)
                    + ".",
                    _verdict(ok, lr),
                )
            )
        d = slt.assign(series=slt["group"] + " / " + slt["weights"])
        fig = layer_curves(
            d,
            ["auc_mean"],
            hue="series",
            titles={"auc_mean": "mean SLT AUC"},
            suptitle="phone MLP: SLT spectrum AUC per layer (ALL, COR, INC)",
        )
        sec.figures.append(("SLT AUC per layer and group", run.save_figure("nagamine_slt", fig)))
        sec.tables.append(("nagamine_slt", slt))
    return sec


def _training(run: RunDir, learned: dict) -> Section:
    sec = Section(
        "Models and training",
        intro="Validation metrics per epoch (epoch 0 = initial weights). A model that "
        "did not learn its task makes every claim about its trained "
        "representations not testable.",
    )
    for name, (ok, txt) in learned.items():
        state = (
            "learned its task" if ok else ("did NOT learn its task" if ok is False else "unknown")
        )
        sec.notes.append(f"{txt} -> {state}.")
        if run.has_table(f"train_{name}"):
            sec.tables.append((f"train_{name}", run.load_table(f"train_{name}")))
    if run.has_table("corpus"):
        sec.tables.append(("corpus", run.load_table("corpus")))
    return sec


def stage_costs(run: RunDir):
    """One row per finished stage: wall seconds, process CPU seconds and peak RSS (MB) as its
    marker recorded them (older markers hold only the wall seconds), plus a total row."""
    import pandas as pd

    rows = []
    infos = {p.stem: run.stage_info(p.stem) for p in (run.root / "stages").glob("*.done")}
    for stem in sorted(infos, key=lambda k: (str(infos[k].get("finished", "")), k)):
        info = infos[stem]
        rows.append(
            {
                "stage": stem,
                "wall_s": float(info.get("seconds", np.nan)),
                "cpu_s": float(info.get("cpu_seconds", np.nan)),
                "peak_rss_mb": float(info.get("peak_rss_mb", np.nan)),
                "finished": str(info.get("finished", "")),
            }
        )
    df = pd.DataFrame(rows, columns=["stage", "wall_s", "cpu_s", "peak_rss_mb", "finished"])
    if len(df):
        total = {
            "stage": "total",
            "wall_s": float(df["wall_s"].sum()),
            "cpu_s": float(df["cpu_s"].sum(min_count=1)),
            "peak_rss_mb": float(df["peak_rss_mb"].max()),
            "finished": "",
        }
        df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    return df


def _costs(run: RunDir) -> Section:
    sec = Section(
        "Run cost per stage",
        intro=(
            "Wall-clock and process CPU seconds (user + system) of every stage, and the peak "
            "resident memory of the process when the stage ended. Stages skipped on a resumed "
            "run keep the figures of the run that computed them."
        ),
    )
    df = stage_costs(run)
    if len(df):
        tot = df.iloc[-1]
        sec.notes.append(
            f"Total: {tot['wall_s']:.0f} s wall ({tot['wall_s'] / 60:.1f} min), "
            f"{tot['cpu_s']:.0f} s CPU, peak RSS {tot['peak_rss_mb']:.0f} MB."
        )
        sec.tables.append(("stage_costs", df))
        sec.markdown_tables = True
    return sec


def build_report(run: RunDir, profile) -> Report:
    """The report of a run folder, from its tables."""
    import json

    names = [t[len("train_") :] for t in run.tables() if t.startswith("train_")]
    learned = {n: model_learned(run, n) for n in names}
    meta = json.loads((run.root / "settings.json").read_text())
    meta["stages"] = {
        p.stem: run.stage_info(p.stem) for p in sorted((run.root / "stages").glob("*.done"))
    }
    rep = Report(f"geomjax reproduction ({getattr(profile, 'name', profile)} profile)", meta)
    rep.add(_training(run, learned))
    rep.add(_stephenson(run, learned))
    rep.add(_similarity(run, learned))
    rep.add(_probing(run, learned))
    rep.add(_nagamine(run, learned))
    rep.add(_costs(run))
    return rep
