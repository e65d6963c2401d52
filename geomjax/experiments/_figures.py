"""Figures in the papers' styles: metric vs layer with CI bands, similarity heat maps,
time-step curves with word boundaries. Every function returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["layer_curves", "heatmap", "heatmap_grid", "timestep_curves"]


def layer_curves(
    df: pd.DataFrame,
    metrics: Sequence[str],
    hue: str | None = None,
    x: str = "layer",
    titles: dict[str, str] | None = None,
    suptitle: str | None = None,
    baselines: dict[str, float] | None = None,
):
    """One panel per metric: value vs ``x`` (in the table's order), one line per ``hue``, with a
    band between ``<metric>_lo`` and ``<metric>_hi`` where those columns exist."""
    titles = titles or {}
    n = len(metrics)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    order = list(dict.fromkeys(df[x].tolist()))
    pos = {v: i for i, v in enumerate(order)}
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=False))
    for ax, m in zip(axes[0], metrics, strict=False):
        for name, g in groups:
            xs = np.array([pos[v] for v in g[x]])
            o = np.argsort(xs)
            y = g[m].to_numpy(dtype=float)[o]
            (line,) = ax.plot(xs[o], y, marker="o", ms=3, label=None if name is None else str(name))
            if f"{m}_lo" in g and f"{m}_hi" in g:
                lo = g[f"{m}_lo"].to_numpy(dtype=float)[o]
                hi = g[f"{m}_hi"].to_numpy(dtype=float)[o]
                ok = np.isfinite(lo) & np.isfinite(hi)
                if ok.any():
                    ax.fill_between(xs[o][ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2)
        if baselines and m in baselines:
            ax.axhline(baselines[m], color="k", lw=0.8, ls="--")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([str(v) for v in order], rotation=45, ha="right", fontsize=7)
        ax.set_title(titles.get(m, m), fontsize=9)
        ax.grid(alpha=0.3)
    if hue is not None:
        axes[0][-1].legend(fontsize=7, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def heatmap(
    mat,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    ax=None,
    annotate: bool | None = None,
):
    """A similarity matrix as an image (rows top to bottom), values annotated when small."""
    mat = np.asarray(mat, dtype=float)
    col_labels = list(row_labels) if col_labels is None else list(col_labels)
    own = ax is None
    if own:
        s = max(3.0, 0.35 * max(mat.shape) + 1.5)
        fig, ax = plt.subplots(figsize=(s + 0.8, s))
    im = ax.imshow(mat, vmin=vmin, vmax=vmax, cmap="magma", origin="upper")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=6)
    ax.set_title(title, fontsize=9)
    if annotate is None:
        annotate = max(mat.shape) <= 10
    if annotate:
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=5,
                        color="w" if mat[i, j] < 0.6 * vmax else "k",
                    )
    if own:
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        return fig
    return im


def heatmap_grid(mats: dict[str, tuple], suptitle: str = ""):
    """Several heat maps side by side: ``{title: (matrix, row_labels, col_labels)}``."""
    n = len(mats)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.0), squeeze=False)
    im = None
    for ax, (title, (m, rl, cl)) in zip(axes[0], mats.items(), strict=False):
        im = heatmap(m, rl, cl, title=title, ax=ax)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def timestep_curves(
    df: pd.DataFrame,
    metrics: Sequence[str],
    t: str = "time_step",
    hue: str | None = "layer",
    boundaries: Sequence[float] = (),
    suptitle: str | None = None,
    frame_s: float | None = None,
):
    """Metric vs time step (one line per ``hue``), with vertical lines at word boundaries."""
    n = len(metrics)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.0), squeeze=False)
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=False))
    scale = 1.0 if frame_s is None else frame_s
    for ax, m in zip(axes[0], metrics, strict=False):
        for name, g in groups:
            g = g.sort_values(t)
            ax.plot(
                g[t].to_numpy() * scale,
                g[m].to_numpy(dtype=float),
                lw=1,
                label=None if name is None else str(name),
            )
        for b in boundaries:
            ax.axvline(b * scale, color="k", lw=0.8, ls=":")
        ax.set_xlabel("time (s)" if frame_s else t)
        ax.set_title(m, fontsize=9)
        ax.grid(alpha=0.3)
    if hue is not None:
        axes[0][-1].legend(fontsize=6, frameon=False, ncol=2)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig
