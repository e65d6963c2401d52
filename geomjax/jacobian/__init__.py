"""Network-function analysis of speech networks (Nagamine & Mesgarani, ICML 2017).

Sample-dependent linear transforms (SLT, eqs. 1-4):

* :func:`per_sample_jacobian` -- any differentiable ``fn(params, x)`` (vmap of jacfwd/jacrev,
  chunked); :func:`select_layer` picks one layer of a Flax-style apply function.
* :func:`relu_mlp_slt` / :func:`relu_mlp_output_slt` -- exact masked-weight products for ReLU MLPs.
* :func:`slt_spectra` -- per-node / per-input / per-group SVD spectra streamed through Gram
  matrices; :func:`slt_class_spectra` -- per-class all-node spectra; :func:`spectrum_auc` (eq. 5).
* :func:`slt_clusters`, :func:`slt_templates`, :func:`confusable_pairs`, :func:`slt_diversity`.

Activation analyses (§3): :func:`class_selectivity` (eq. 6), :func:`selectivity_clusters`,
:func:`fit_lda` / :func:`lda_transform` / :func:`lda_predict`, :func:`lda_layers`,
:func:`class_spectra`, :func:`cor_inc_split`, :func:`relative_expansion`, :func:`embed_2d`.
"""

from ._activations import (
    ClassSpectra,
    Embedding,
    Expansion,
    LDALayers,
    SelectivityClusters,
    class_selectivity,
    class_spectra,
    confusable_triplets,
    cor_inc_split,
    embed_2d,
    lda_layers,
    most_confused_pairs,
    relative_expansion,
    selectivity_clusters,
)
from ._auc import spectrum_auc
from ._functions import (
    ConfusablePairs,
    SLTClusters,
    SLTDiversity,
    SLTTemplates,
    confusable_pairs,
    output_slts,
    slt_clusters,
    slt_diversity,
    slt_templates,
)
from ._lda import LDA, fit_lda, lda_accuracy, lda_predict, lda_transform
from ._slt import (
    init_relu_mlp,
    mlp_layers,
    per_sample_jacobian,
    relu_mlp_apply,
    relu_mlp_output_slt,
    relu_mlp_slt,
    select_layer,
)
from ._spectra import (
    SLTClassSpectra,
    SLTSpectra,
    default_rcond,
    gram_spectrum,
    slt_class_spectra,
    slt_spectra,
)

__all__ = [
    # SLTs
    "per_sample_jacobian",
    "select_layer",
    "relu_mlp_slt",
    "relu_mlp_output_slt",
    "relu_mlp_apply",
    "init_relu_mlp",
    "mlp_layers",
    "output_slts",
    # spectra
    "spectrum_auc",
    "gram_spectrum",
    "default_rcond",
    "slt_spectra",
    "SLTSpectra",
    "slt_class_spectra",
    "SLTClassSpectra",
    "slt_diversity",
    "SLTDiversity",
    # output functions
    "slt_clusters",
    "SLTClusters",
    "slt_templates",
    "SLTTemplates",
    "confusable_pairs",
    "ConfusablePairs",
    # activations
    "class_selectivity",
    "selectivity_clusters",
    "SelectivityClusters",
    "class_spectra",
    "ClassSpectra",
    "LDA",
    "fit_lda",
    "lda_transform",
    "lda_predict",
    "lda_accuracy",
    "lda_layers",
    "LDALayers",
    "cor_inc_split",
    "confusable_triplets",
    "most_confused_pairs",
    "relative_expansion",
    "Expansion",
    "embed_2d",
    "Embedding",
]
