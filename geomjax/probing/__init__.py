"""geomjax.probing: elastic-net probes and neuron analysis, batched.

The speech protocol of Chowdhury, Durrani & Ali (CSL 2023) and the NeuroX "linguistic correlation
analysis" family (Dalvi et al., AAAI 2019), in pure JAX:

* features -- :func:`pool_frames` (masked mean / mean+std statistics pooling),
  :func:`fit_standardizer`, :func:`concat_layers` ("ALL" with a :class:`LayerIndex` back to
  ``(layer, unit)``), :func:`stack_layers` (``(L, N, H_max)`` layout);
* probes -- :func:`fit_probes` trains many elastic-net logistic probes in one call (vmapped over
  layers, label sets, neuron masks, lambdas, seeds), Adam protocol or converged FISTA mode;
  :func:`probe_objective`, :func:`predict`, :func:`scores` (accuracy, F1, MCC);
* ranking -- :func:`neuron_ordering`, :func:`top_neurons`, :func:`bottom_neurons`,
  :func:`top_neurons_hard_threshold`, :func:`random_neurons`, :func:`layer_distribution`;
* ablation -- :func:`ablation_masks`, :func:`evaluate_masks`, :func:`minimal_neuron_set`;
* controls -- :func:`majority_baseline`, :func:`random_init_baseline`,
  :func:`control_labels`, :func:`selectivity`,
  :func:`redundant_layers`, :func:`correlation_clusters`, :func:`independent_neurons`;
* verification -- :func:`cosine_scores`, :func:`eer` ("min-gap" convention), :func:`min_dcf`;
* :func:`paper_pipeline` -- the whole protocol in one compiled call, with tidy tables.
"""

from geomjax.probing._ablation import (
    PAPER_FRACTIONS,
    MinimalSet,
    ablation_masks,
    evaluate_masks,
    minimal_neuron_set,
    select_minimal,
)
from geomjax.probing._controls import (
    control_labels,
    correlation_clusters,
    independent_neurons,
    majority_baseline,
    neuron_correlation,
    random_init_baseline,
    redundant_layers,
    redundant_subsets,
    selectivity,
)
from geomjax.probing._features import (
    LayerIndex,
    Standardizer,
    concat_layers,
    fit_standardizer,
    pool_frames,
    stack_layers,
    standardize,
)
from geomjax.probing._metrics import Scores, accuracy, confusion_matrix, macro_f1, mcc, scores
from geomjax.probing._pipeline import PipelineResult, paper_pipeline
from geomjax.probing._probe import (
    Probe,
    fit_probe,
    fit_probes,
    predict,
    probe_kkt_residual,
    probe_logits,
    probe_objective,
)
from geomjax.probing._ranking import (
    NeuronOrdering,
    bottom_neurons,
    layer_distribution,
    mask_from_indices,
    neuron_ordering,
    random_k_neurons,
    random_neurons,
    top_neurons,
    top_neurons_hard_threshold,
)
from geomjax.probing._synth import planted_probing_data
from geomjax.probing._verification import (
    VerificationResult,
    cosine_scores,
    eer,
    length_normalize,
    min_dcf,
    operating_points,
)

__all__ = [
    "PAPER_FRACTIONS", "MinimalSet", "ablation_masks", "evaluate_masks", "minimal_neuron_set",
    "select_minimal", "control_labels", "correlation_clusters", "independent_neurons",
    "majority_baseline", "random_init_baseline", "neuron_correlation", "redundant_layers",
    "redundant_subsets",
    "selectivity", "LayerIndex", "Standardizer", "concat_layers", "fit_standardizer",
    "pool_frames", "stack_layers", "standardize", "Scores", "accuracy", "confusion_matrix",
    "macro_f1", "mcc", "scores", "PipelineResult", "paper_pipeline", "Probe", "fit_probe",
    "fit_probes", "predict", "probe_kkt_residual", "probe_logits", "probe_objective",
    "NeuronOrdering", "bottom_neurons", "layer_distribution", "mask_from_indices",
    "neuron_ordering", "random_k_neurons", "random_neurons", "top_neurons",
    "top_neurons_hard_threshold", "planted_probing_data", "VerificationResult", "cosine_scores",
    "eer", "length_normalize", "min_dcf", "operating_points",
]
