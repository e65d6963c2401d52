"""Representational similarity: HSIC, CKA (linear, RBF, debiased, minibatch), CCA, SVCCA, PWCCA.

Rows are samples and columns are features throughout: a representation is ``(N, D)``; two
representations compared must hold the same N samples in the same order (widths may differ).
Every variant is named explicitly (estimator, bandwidth rule, truncation rule, PWCCA side), and
the module docstrings say where other libraries compute something different under the same name.

* :func:`hsic`, :func:`hsic_gram` -- biased (Gretton) and unbiased (Song) estimators.
* :func:`cka`, :func:`linear_cka`, :func:`rbf_cka`, :func:`debiased_cka`, :func:`cka_gram`.
* :class:`MinibatchCKA`, :func:`minibatch_cka`, :func:`minibatch_cka_matrix` -- streaming CKA
  (Nguyen et al. 2021) with memory independent of N.
* :func:`cca`, :func:`svcca`, :func:`pwcca`, :func:`truncated_mean`.
"""

from ._cca import CCAResult, PWCCAResult, cca, cca_method, pwcca, svcca, truncated_mean
from ._cka import (
    cka,
    cka_gram,
    debiased_cka,
    gram_linear,
    gram_rbf,
    hsic,
    hsic_gram,
    linear_cka,
    linear_cka_method,
    rbf_bandwidth,
    rbf_cka,
)
from ._streaming import MinibatchCKA, minibatch_cka, minibatch_cka_matrix

__all__ = [
    "hsic",
    "hsic_gram",
    "cka",
    "linear_cka",
    "rbf_cka",
    "debiased_cka",
    "cka_gram",
    "gram_linear",
    "gram_rbf",
    "rbf_bandwidth",
    "linear_cka_method",
    "MinibatchCKA",
    "minibatch_cka",
    "minibatch_cka_matrix",
    "CCAResult",
    "PWCCAResult",
    "cca",
    "svcca",
    "pwcca",
    "truncated_mean",
    "cca_method",
]

from ._matrix import SimilarityMatrix, cka_matrix, similarity_matrix  # noqa: E402
from ._sequence import flatten_time, interpolate_features, per_time_step  # noqa: E402

__all__ += [
    "SimilarityMatrix",
    "cka_matrix",
    "similarity_matrix",
    "flatten_time",
    "per_time_step",
    "interpolate_features",
]
