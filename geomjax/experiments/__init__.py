"""Experiments: the reproduction pipeline, run folders, tidy tables, summaries over seeds,
figures and reports.

* :func:`reproduce` -- corpus -> training -> the four papers' analyses -> tables, figures and
  ``report.html`` in one resumable run folder (``geomjax reproduce``); :data:`PROFILES`.
* model inputs -- :func:`task_splits` (training data of every task), :func:`model_inputs` (each
  model's front end for equal-length clips), :func:`ensure_splits` (held-out speakers).
* layer geometry -- :func:`layer_matrix`, :func:`project_features`, :func:`manifold_metrics`
  (MFTMA capacity / lower bound, radius, dimension / M, centre correlation, D_PR, D_EV),
  :func:`participation_ratio`, :func:`explained_variance_dimension`.
* run folders and reports -- :class:`RunDir`, :func:`summarize`, :func:`mean_ci`, figure helpers,
  :class:`Report`, :func:`build_report`.
"""

from geomjax.experiments._figures import heatmap, heatmap_grid, layer_curves, timestep_curves
from geomjax.experiments._findings import build_report, model_learned
from geomjax.experiments._geometry import (
    explained_variance_dimension,
    layer_matrix,
    manifold_metrics,
    participation_ratio,
    project_features,
    simulated_capacity,
)
from geomjax.experiments._inputs import ensure_splits, model_inputs, task_splits
from geomjax.experiments._profiles import PROFILES, Profile, get_profile
from geomjax.experiments._report import Finding, Report, Section
from geomjax.experiments._reproduce import STAGES, reproduce
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
    "build_report",
    "model_learned",
    "reproduce",
    "STAGES",
    "PROFILES",
    "Profile",
    "get_profile",
    "task_splits",
    "model_inputs",
    "ensure_splits",
    "layer_matrix",
    "project_features",
    "manifold_metrics",
    "participation_ratio",
    "explained_variance_dimension",
    "simulated_capacity",
]
