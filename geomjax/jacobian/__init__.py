"""Network-function analysis (Nagamine & Mesgarani, ICML 2017).

* Sample-dependent linear transforms (SLT): :func:`per_sample_jacobian` for any differentiable
  ``fn(params, x)``, and the exact masked-weight product for ReLU MLPs (:func:`relu_mlp_slt`,
  :func:`relu_mlp_output_slt`).
* Streaming SVD spectra of SLTs per node / per input / per group through Gram matrices
  (:func:`slt_spectra`), per-class all-node spectra (:func:`slt_class_spectra`) and the spectrum
  AUC of eq. 5 (:func:`spectrum_auc`).
"""

from ._auc import spectrum_auc
from ._slt import (
    init_relu_mlp,
    mlp_layers,
    per_sample_jacobian,
    relu_mlp_apply,
    relu_mlp_output_slt,
    relu_mlp_slt,
    select_layer,
)
from ._spectra import SLTClassSpectra, SLTSpectra, gram_spectrum, slt_class_spectra, slt_spectra

__all__ = [
    "per_sample_jacobian",
    "relu_mlp_slt",
    "relu_mlp_output_slt",
    "relu_mlp_apply",
    "init_relu_mlp",
    "mlp_layers",
    "select_layer",
    "spectrum_auc",
    "gram_spectrum",
    "slt_spectra",
    "SLTSpectra",
    "slt_class_spectra",
    "SLTClassSpectra",
]
