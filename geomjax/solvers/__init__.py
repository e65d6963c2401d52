"""Generic batched solvers: NNLS (FISTA + active-set polish) and Stiefel-manifold optimisation
(Barzilai-Borwein gradient descent and L-BFGS).

Every solver returns :class:`geomjax._types.Solution` (value, converged, num_steps, residual,
settings) and is ``jax.vmap``-able over problems.
"""

from geomjax.solvers._bisection import BisectionResult, bisection_steps, integer_bisection
from geomjax.solvers._nnls import (
    default_rtol,
    kkt_residual,
    lawson_hanson_lanes,
    nnls,
    nnls_gram,
)
from geomjax.solvers._separability import SeparabilityCertificate, separability
from geomjax.solvers._stiefel import random_stiefel, stiefel_lbfgs, stiefel_minimize

__all__ = [
    "nnls",
    "nnls_gram",
    "lawson_hanson_lanes",
    "kkt_residual",
    "default_rtol",
    "stiefel_minimize",
    "stiefel_lbfgs",
    "random_stiefel",
    "separability",
    "SeparabilityCertificate",
    "integer_bisection",
    "bisection_steps",
    "BisectionResult",
]
