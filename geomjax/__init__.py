"""geomjax: how deep speech networks untangle information, layer by layer, on the GPU.

Subpackages (imported lazily, so ``import geomjax`` is cheap):

* :mod:`geomjax.manifold` -- MFTMA capacity/radius/dimension, empirical capacity, D_PR/D_EV.
* :mod:`geomjax.similarity` -- HSIC/CKA, CCA/SVCCA/PWCCA, all-pairs matrices.
* :mod:`geomjax.probing` -- elastic-net probes, neuron ranking, ablation, control tasks, EER.
* :mod:`geomjax.jacobian` -- per-sample Jacobians (SLT), spectra, selectivity, LDA.
* :mod:`geomjax.solvers` -- batched NNLS / separability / bisection / Stiefel solvers.
* :mod:`geomjax.data` -- synthesised speech corpus, real-corpus loaders, features, manifold sets.
* :mod:`geomjax.models` -- Flax model zoo with per-layer activations and training loops.
* :mod:`geomjax.experiments` -- sweeps, tidy tables, figures and reports; :mod:`geomjax.cli`.

Every public function of a subpackage is also reachable as ``geomjax.<name>``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "manifold",
    "similarity",
    "probing",
    "jacobian",
    "solvers",
    "data",
    "models",
    "experiments",
)

__all__ = list(_SUBPACKAGES) + ["__version__"]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"geomjax.{name}")
    # Re-export public names of the numerical subpackages on first use.
    for sub in ("manifold", "similarity", "probing", "jacobian", "solvers"):
        try:
            mod = importlib.import_module(f"geomjax.{sub}")
        except ImportError:  # a subpackage that failed to import should not hide others
            continue
        if name in getattr(mod, "__all__", ()):
            return getattr(mod, name)
    raise AttributeError(f"module 'geomjax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
