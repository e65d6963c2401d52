"""Experiments: run folders, tidy tables, summaries over seeds, figures and reports."""

from geomjax.experiments._figures import heatmap, heatmap_grid, layer_curves, timestep_curves
from geomjax.experiments._report import Finding, Report, Section
from geomjax.experiments._run import RunDir, versions
from geomjax.experiments._stats import mean_ci, summarize

__all__ = [
    "RunDir",
    "versions",
    "mean_ci",
    "summarize",
    "layer_curves",
    "heatmap",
    "heatmap_grid",
    "timestep_curves",
    "Finding",
    "Section",
    "Report",
]
