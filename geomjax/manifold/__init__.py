"""Manifold geometry: MFTMA capacity, radius, dimension and centre correlation; D_PR, D_EV;
random projections."""

from geomjax.manifold._center import (
    center_correlation,
    fit_center_subspace,
    fit_center_subspaces,
    max_rank_budget,
)
from geomjax.manifold._dimension import (
    explained_variance_dimension,
    participation_ratio,
    pooled_points,
    random_projection,
)
from geomjax.manifold._empirical import EmpiricalCapacity, empirical_capacity
from geomjax.manifold._mftma import (
    AnchorGeometry,
    MFTMAResult,
    anchor_geometry,
    mftma,
    reduce_manifolds,
)

__all__ = [
    "anchor_geometry",
    "AnchorGeometry",
    "mftma",
    "MFTMAResult",
    "reduce_manifolds",
    "center_correlation",
    "fit_center_subspace",
    "fit_center_subspaces",
    "max_rank_budget",
    "participation_ratio",
    "explained_variance_dimension",
    "random_projection",
    "pooled_points",
    "empirical_capacity",
    "EmpiricalCapacity",
]
