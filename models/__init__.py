"""Flax model zoo (installed as ``geomjax.models``): word CNN, Deep Speech 2, speaker CNN, phone
MLP and a small Transformer encoder, each returning ``(output, activations)``; seeded training with
per-epoch checkpoints; per-layer activation extraction.

Typical use::

    from geomjax import data, models
    corpus = data.synthesize_corpus("small", seed=0)
    sp = models.word_task(corpus)                  # train/valid/test TaskData, unseen speakers
    res = models.train(0, "word_cnn", sp.train, sp.valid, epochs=10, ckpt_dir="runs/word",
                       n_classes=sp.n_classes)     # key first; checkpoints at epochs 0..10
    for epoch, _ in models.list_checkpoints("runs/word"):
        ck = models.load_checkpoint("runs/word", epoch)
        acts = models.activations(ck.model, ck.variables, sp.test.inputs, sp.test.lengths)
        acts.layers["conv3"], acts.pooled("fc6"), acts.mask("rnn2") (sequence layers)

Models: ``build_model(name, preset, n_classes, **overrides)`` with names ``word_cnn``, ``ds2``,
``speaker_cnn``, ``phone_mlp``, ``transformer`` and presets ``paper`` (published sizes),
``cpu`` (reduced), ``tiny`` (tests), plus ``paper-2048`` (phone MLP) and ``paper-lstm`` (DS2).
"""

from geomjax.models._config import (
    MODEL_NAMES,
    PRESETS,
    DS2Config,
    PhoneMLPConfig,
    SpeakerCNNConfig,
    TransformerConfig,
    WordCNNConfig,
    config_from_dict,
    config_to_dict,
    get_config,
)
from geomjax.models.checkpoint import (
    Checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_metrics,
    read_run_info,
    save_checkpoint,
)
from geomjax.models.ctc import (
    ALPHABET,
    cer,
    ctc_loss,
    decode_labels,
    encode_text,
    greedy_decode,
    wer,
)
from geomjax.models.ds2 import DeepSpeech2, ds2_output_lengths
from geomjax.models.phone_mlp import PhoneMLP
from geomjax.models.speaker_cnn import SpeakerCNN
from geomjax.models.tasks import (
    TaskSplits,
    ctc_task,
    phone_task,
    reconstruction_task,
    speaker_task,
    word_task,
)
from geomjax.models.train import TASKS, TaskData, TrainResult, evaluate, make_optimizer, train
from geomjax.models.transformer import TransformerEncoder, mockingjay_mask
from geomjax.models.word_cnn import WordCNN
from geomjax.models.zoo import (
    SEQUENCE_MODELS,
    Activations,
    activations,
    build_model,
    count_params,
    init_variables,
    layer_lengths,
    model_name,
)

__all__ = [
    "MODEL_NAMES",
    "PRESETS",
    "SEQUENCE_MODELS",
    "TASKS",
    "WordCNNConfig",
    "DS2Config",
    "SpeakerCNNConfig",
    "PhoneMLPConfig",
    "TransformerConfig",
    "WordCNN",
    "DeepSpeech2",
    "SpeakerCNN",
    "PhoneMLP",
    "TransformerEncoder",
    "get_config",
    "config_to_dict",
    "config_from_dict",
    "build_model",
    "model_name",
    "init_variables",
    "count_params",
    "Activations",
    "activations",
    "layer_lengths",
    "TaskData",
    "TaskSplits",
    "word_task",
    "speaker_task",
    "phone_task",
    "ctc_task",
    "reconstruction_task",
    "TrainResult",
    "train",
    "evaluate",
    "make_optimizer",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "read_metrics",
    "read_run_info",
    "ALPHABET",
    "encode_text",
    "decode_labels",
    "ctc_loss",
    "greedy_decode",
    "cer",
    "wer",
    "ds2_output_lengths",
    "mockingjay_mask",
]
