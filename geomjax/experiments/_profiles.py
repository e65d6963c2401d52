"""Run profiles of ``geomjax reproduce``: corpus size, model presets, training budgets and
analysis sizes.

* ``tiny`` -- the end-to-end CI check: the tiny corpus, tiny models, a few training steps and
  small manifold sets. Every stage runs and every table is written; nothing is expected to learn.
* ``default`` -- the synthesised "small" corpus and the reduced ("cpu") models, sized to finish
  in under 25 minutes with under 8 GB on an idle 2-core CPU: about 11 minutes of training (step
  budgets with warm-up + cosine decay) and 8 of analyses (P = M = 16 manifolds embedded exactly
  in P * M = 256 features, n_t = 100, 3 seeds; DS2 on word, character and phoneme manifolds).
  Every stage records its wall and CPU seconds in ``stages/<stage>.done`` and the report's cost
  table.
* ``full`` -- paper-sized models (published widths) and manifold sets (P = M = 50, 5000
  projected features, n_t = 200, 5 seeds) for one GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Profile", "PROFILES", "get_profile", "TrainSpec"]


@dataclass(frozen=True)
class TrainSpec:
    """How one model is trained in a reproduction run.

    Attributes:
        model: zoo name (``word_cnn``, ``ds2``, ``speaker_cnn``, ``phone_mlp``, ``transformer``).
        task: data the model learns: ``word`` / ``speaker`` (2-s windows), ``phone`` (frames),
            ``ctc`` (utterances), ``reconstruction`` (utterances).
        preset: model preset; config: further config overrides.
        epochs, batch_size, learning_rate, max_steps_per_epoch: training budget.
        options: further keyword arguments of :func:`geomjax.models.train` (the recipe:
            ``schedule``, ``warmup_steps``, ``augment``, ``grad_clip``, ``length_bucket``,
            ``sortagrad``, ``length_grouped``, ...).
    """

    model: str
    task: str
    preset: str
    epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    max_steps_per_epoch: int | None = None
    config: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    """Sizes of one reproduction profile (see the module docstring)."""

    name: str
    corpus: str
    models: dict[str, TrainSpec]
    # manifold analysis (Stephenson et al.)
    n_classes: int  # P (label types with fewer classes use all they have)
    n_examples: int  # M
    n_features: int  # every layer is projected (or zero-padded) to this many features
    n_t: int
    seeds: int
    label_types: tuple[str, ...] = ("word", "speaker", "phoneme", "character", "pos")
    # label types DS2 is analysed on (None: all of ``label_types``); its forward pass over the
    # 2-s windows costs about 8x the word CNN's on a CPU
    ds2_label_types: tuple[str, ...] | None = None
    timestep_stride: int = 4  # DS2 per-time-step analysis: every k-th output frame
    timestep_window_s: float = 0.6  # +- around the word centre
    sim_dichotomies: int = 32  # alpha_SIM check
    # similarity (CCA/CKA)
    sim_samples: int = 256
    sim_features: int = 256  # random projection width before SVCCA
    # probing
    probe_epochs: int = 10
    probe_speakers: int = 20
    eer_trials: int = 2000
    # Nagamine & Mesgarani
    nagamine_frames: int = 4000  # test frames analysed
    slt_frames: int = 2000
    ds2_bins: int | None = 81

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d


_TINY_MODELS = {
    "word_cnn_word": TrainSpec(
        "word_cnn", "word", "tiny", epochs=2, batch_size=16, max_steps_per_epoch=4
    ),
    "word_cnn_speaker": TrainSpec(
        "word_cnn", "speaker_windows", "tiny", epochs=2, batch_size=16, max_steps_per_epoch=4
    ),
    "ds2": TrainSpec("ds2", "ctc", "tiny", epochs=2, batch_size=4, max_steps_per_epoch=2),
    "speaker_cnn": TrainSpec(
        "speaker_cnn", "speaker", "tiny", epochs=2, batch_size=16, max_steps_per_epoch=4
    ),
    "phone_mlp": TrainSpec(
        "phone_mlp", "phone", "tiny", epochs=2, batch_size=128, max_steps_per_epoch=8
    ),
    "transformer": TrainSpec(
        "transformer", "reconstruction", "tiny", epochs=2, batch_size=4, max_steps_per_epoch=2
    ),
}

# Sized for about 12 minutes of training on an idle 2-core CPU (steps, not epochs, are the
# budget: warm-up then cosine decay to zero over the run, which learns more per step than a
# constant rate). Measured costs and accuracies: README / benchmarks/results/cpu-2core.md.
_COSINE = {"schedule": "cosine"}
_SEQ = {"length_bucket": 50, "length_grouped": True}
_DEFAULT_MODELS = {
    "word_cnn_word": TrainSpec(
        "word_cnn",
        "word",
        "cpu",
        epochs=6,
        batch_size=64,
        learning_rate=2e-3,
        max_steps_per_epoch=100,
        options={**_COSINE, "warmup_steps": 50},
    ),
    "word_cnn_speaker": TrainSpec(
        "word_cnn",
        "speaker_windows",
        "cpu",
        epochs=5,
        batch_size=64,
        learning_rate=2e-3,
        max_steps_per_epoch=100,
        options={**_COSINE, "warmup_steps": 30},
    ),
    "ds2": TrainSpec(
        "ds2",
        "ctc",
        "cpu",
        epochs=3,
        batch_size=16,
        max_steps_per_epoch=25,
        learning_rate=3e-3,
        config={"conv_channels": (8, 8), "rnn_hidden": 128, "rnn_layers": 3},
        options={**_COSINE, **_SEQ, "warmup_steps": 10, "grad_clip": 5.0, "sortagrad": True},
    ),
    "speaker_cnn": TrainSpec(
        "speaker_cnn",
        "speaker",
        "cpu",
        epochs=4,
        batch_size=32,
        learning_rate=2e-3,
        max_steps_per_epoch=80,
        options={**_COSINE, "warmup_steps": 30},
    ),
    "phone_mlp": TrainSpec(
        "phone_mlp",
        "phone",
        "cpu",
        epochs=3,
        batch_size=256,
        learning_rate=2e-3,
        max_steps_per_epoch=800,
        options={**_COSINE, "warmup_steps": 200},
    ),
    "transformer": TrainSpec(
        "transformer",
        "reconstruction",
        "cpu",
        epochs=3,
        batch_size=16,
        max_steps_per_epoch=15,
        options={**_SEQ},
    ),
}

_FULL_MODELS = {
    "word_cnn_word": TrainSpec("word_cnn", "word", "paper", epochs=20, batch_size=64),
    "word_cnn_speaker": TrainSpec("word_cnn", "speaker_windows", "paper", epochs=20, batch_size=64),
    "ds2": TrainSpec("ds2", "ctc", "paper", epochs=15, batch_size=20, learning_rate=3e-4),
    "speaker_cnn": TrainSpec("speaker_cnn", "speaker", "paper", epochs=15, batch_size=32),
    "phone_mlp": TrainSpec("phone_mlp", "phone", "paper", epochs=10, batch_size=256),
    "transformer": TrainSpec("transformer", "reconstruction", "paper", epochs=15, batch_size=16),
}

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        corpus="tiny",
        models=_TINY_MODELS,
        n_classes=4,
        n_examples=4,
        n_features=64,
        n_t=20,
        seeds=2,
        timestep_stride=8,
        sim_dichotomies=8,
        sim_samples=48,
        sim_features=16,
        probe_epochs=2,
        probe_speakers=4,
        eer_trials=200,
        nagamine_frames=600,
        slt_frames=200,
        ds2_bins=81,
    ),
    "default": Profile(
        name="default",
        corpus="small",
        models=_DEFAULT_MODELS,
        n_classes=16,
        n_examples=16,
        n_features=256,  # = P * M: the exact embedding of the points (no projection error)
        ds2_label_types=("word", "character", "phoneme"),
        n_t=100,
        seeds=3,
        timestep_stride=4,
        sim_dichotomies=32,
        sim_samples=256,
        sim_features=128,
        probe_epochs=10,
        probe_speakers=20,
        eer_trials=3000,
        nagamine_frames=4000,
        slt_frames=1500,
        ds2_bins=81,
    ),
    "full": Profile(
        name="full",
        corpus="medium",
        models=_FULL_MODELS,
        n_classes=50,
        n_examples=50,
        n_features=5000,
        n_t=200,
        seeds=5,
        timestep_stride=1,
        sim_dichotomies=64,
        sim_samples=1024,
        sim_features=512,
        probe_epochs=20,
        probe_speakers=100,
        eer_trials=20000,
        nagamine_frames=20000,
        slt_frames=5000,
        ds2_bins=None,
    ),
}


def get_profile(name: str) -> Profile:
    """The named profile (``tiny``, ``default`` or ``full``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}.")
    return PROFILES[name]
