"""Model configurations with named presets.

Every architecture has one frozen dataclass config; the published ("paper") sizes and the reduced
CPU sizes ("cpu", "tiny") are presets of the same config, so both run through one code path.
Configs round-trip through JSON (``to_dict`` / ``config_from_dict``) so a checkpoint directory
records exactly what was trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "WordCNNConfig",
    "DS2Config",
    "SpeakerCNNConfig",
    "PhoneMLPConfig",
    "TransformerConfig",
    "MODEL_NAMES",
    "PRESETS",
    "get_config",
    "config_to_dict",
    "config_from_dict",
]


@dataclass(frozen=True)
class WordCNNConfig:
    """Kell et al. (2018) word network with batch norm in place of LRN (Stephenson et al. 2019).

    Attributes:
        channels: output channels of each conv layer (conv1..convK).
        kernels: square kernel size of each conv layer.
        strides: stride of each conv layer.
        pools: pooling after each conv layer: ``"max"``, ``"avg"`` or ``None``; 3x3 window,
            stride 2, TF ``SAME`` padding (average pooling excludes padded cells).
        norm: ``"batch"`` (Stephenson), ``"lrn"`` (Kell: depth_radius 2, bias 1, alpha 1e-3,
            beta 0.75) or ``"none"``.
        norm_layers: 0-based conv indices followed by a normalisation layer (Kell's norm1, norm2).
        norm_after_relu: normalise after the ReLU (``True``, the LRN position) or before it.
        fc: widths of the hidden fully connected layers (fc6).
        n_classes: output classes (587 words in Kell et al.).
        dropout: dropout rate after each hidden fully connected layer in training (0: none).
        param_dtype: dtype of the parameters.
    """

    channels: tuple[int, ...] = (96, 256, 512, 1024, 512)
    kernels: tuple[int, ...] = (9, 5, 3, 3, 3)
    strides: tuple[int, ...] = (3, 2, 1, 1, 1)
    pools: tuple[str | None, ...] = ("max", "max", None, None, "avg")
    norm: str = "batch"
    norm_layers: tuple[int, ...] = (0, 1)
    norm_after_relu: bool = True
    fc: tuple[int, ...] = (1024,)
    n_classes: int = 587
    dropout: float = 0.0
    param_dtype: str = "float32"


@dataclass(frozen=True)
class DS2Config:
    """Deep Speech 2 as in deepspeech.pytorch (tags v1.1-v2.0: 5 x BiGRU-800).

    Attributes:
        conv_channels: channels of the two conv2d layers.
        rnn_hidden: hidden size of each bidirectional recurrent layer.
        rnn_layers: number of bidirectional recurrent layers (forward and backward are summed).
        cell: ``"gru"`` (v2.0) or ``"lstm"`` (V3).
        n_classes: output characters including the CTC blank at index 0 (29).
        param_dtype: dtype of the parameters.
    """

    conv_channels: tuple[int, int] = (32, 32)
    rnn_hidden: int = 800
    rnn_layers: int = 5
    cell: str = "gru"
    n_classes: int = 29
    param_dtype: str = "float32"


@dataclass(frozen=True)
class SpeakerCNNConfig:
    """x-vector-like 1-D temporal CNN (widened Shon, Ali & Glass 2018).

    Attributes:
        channels: output channels of each temporal conv layer.
        kernels: kernel width (frames) of each conv layer.
        strides: stride of each conv layer.
        fc: widths of the fully connected layers after statistics pooling.
        batch_norm: batch norm after each conv ReLU.
        n_classes: number of speakers (or gender/accent/channel classes).
        param_dtype: dtype of the parameters.
    """

    channels: tuple[int, ...] = (1000, 1000, 1000, 1500)
    kernels: tuple[int, ...] = (5, 7, 1, 1)
    strides: tuple[int, ...] = (1, 2, 1, 1)
    fc: tuple[int, ...] = (1500, 600)
    batch_norm: bool = False
    n_classes: int = 100
    param_dtype: str = "float32"


@dataclass(frozen=True)
class PhoneMLPConfig:
    """Phone MLP of Nagamine & Mesgarani (2017) on spliced log-Mel frames.

    Attributes:
        hidden: width of each hidden layer.
        layers: number of ReLU hidden layers.
        batch_norm: Dense -> BN -> ReLU (the 2048-unit net) instead of Dense -> ReLU.
        dropout: dropout rate on the input and after each hidden layer (0 disables it).
        n_classes: phone classes (40).
        param_dtype: dtype of the parameters.
    """

    hidden: int = 256
    layers: int = 5
    batch_norm: bool = False
    dropout: float = 0.0
    n_classes: int = 40
    param_dtype: str = "float32"


@dataclass(frozen=True)
class TransformerConfig:
    """Mockingjay-style Transformer encoder pretrained by masked frame reconstruction.

    Attributes:
        d_model: hidden size.
        heads: attention heads.
        d_ff: feed-forward width.
        layers: encoder layers.
        downsample: consecutive frames stacked into one input step (Mockingjay's R).
        dropout: dropout rate in training.
        max_len: longest supported (downsampled) sequence for the positional encoding.
        param_dtype: dtype of the parameters.
    """

    d_model: int = 768
    heads: int = 12
    d_ff: int = 3072
    layers: int = 3
    downsample: int = 3
    dropout: float = 0.1
    max_len: int = 4096
    param_dtype: str = "float32"


_CLASSES = {
    "word_cnn": WordCNNConfig,
    "ds2": DS2Config,
    "speaker_cnn": SpeakerCNNConfig,
    "phone_mlp": PhoneMLPConfig,
    "transformer": TransformerConfig,
}
MODEL_NAMES: tuple[str, ...] = tuple(_CLASSES)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "word_cnn": {
        "paper": {},
        "cpu": {"channels": (24, 64, 128, 256, 128), "fc": (256,)},
        "tiny": {"channels": (4, 8, 8, 8, 8), "fc": (16,)},
    },
    "ds2": {
        "paper": {},
        "paper-lstm": {"cell": "lstm", "rnn_hidden": 1024},
        # reduced: 2 conv x 8 channels, 3 x BiGRU-128 (on 81 bins about half the step time of
        # 16 channels / BiGRU-256, for the 30-minute CPU training target)
        "cpu": {"conv_channels": (8, 8), "rnn_hidden": 128, "rnn_layers": 3},
        "tiny": {"conv_channels": (4, 4), "rnn_hidden": 16, "rnn_layers": 2},
    },
    "speaker_cnn": {
        "paper": {},
        "cpu": {"channels": (256, 256, 256, 384), "fc": (384, 192), "batch_norm": True},
        "tiny": {"channels": (8, 8, 8, 12), "fc": (12, 8), "batch_norm": True},
    },
    "phone_mlp": {
        "paper": {},
        "paper-2048": {"hidden": 2048, "batch_norm": True, "dropout": 0.2},
        "cpu": {},
        "tiny": {"hidden": 16},
    },
    "transformer": {
        "paper": {},
        "cpu": {"d_model": 128, "heads": 4, "d_ff": 256, "downsample": 1},
        "tiny": {"d_model": 16, "heads": 2, "d_ff": 32, "downsample": 1, "max_len": 512},
    },
}


def _check_name(name: str) -> None:
    if name not in _CLASSES:
        raise ValueError(f"`name` must be one of {list(MODEL_NAMES)}; got {name!r}.")


def get_config(name: str, preset: str = "cpu", **overrides):
    """The config of model ``name`` for a named preset, with field overrides.

    Args:
        name: one of :data:`MODEL_NAMES`.
        preset: ``"paper"`` (published size), ``"cpu"`` (reduced), ``"tiny"`` (tests) or a
            model-specific preset such as ``"paper-2048"`` (phone MLP) or ``"paper-lstm"`` (DS2).
        **overrides: config fields to replace, e.g. ``n_classes=50``.

    Returns:
        The frozen config dataclass.
    """
    _check_name(name)
    if preset not in PRESETS[name]:
        raise ValueError(
            f"`preset` must be one of {list(PRESETS[name])} for model {name!r}; got {preset!r}."
        )
    cls = _CLASSES[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(
            f"unknown config field(s) {bad} for {name!r}; valid fields: {sorted(fields)}."
        )
    cfg = cls(**{**PRESETS[name][preset], **overrides})
    _validate(name, cfg)
    return cfg


def _validate(name: str, cfg) -> None:
    if name == "word_cnn":
        k = len(cfg.channels)
        if not (len(cfg.kernels) == len(cfg.strides) == len(cfg.pools) == k) or k == 0:
            raise ValueError(
                "word_cnn config: `channels`, `kernels`, `strides` and `pools` must have the same "
                f"non-zero length; got {len(cfg.channels)}, {len(cfg.kernels)}, "
                f"{len(cfg.strides)}, "
                f"{len(cfg.pools)}."
            )
        if cfg.norm not in ("batch", "lrn", "none"):
            raise ValueError(
                f"word_cnn config: `norm` must be 'batch', 'lrn' or 'none'; got {cfg.norm!r}."
            )
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"word_cnn config: `dropout` must be in [0, 1); got {cfg.dropout}.")
        if any(p not in ("max", "avg", None) for p in cfg.pools):
            raise ValueError(
                f"word_cnn config: `pools` entries must be 'max', 'avg' or None; got {cfg.pools}."
            )
    elif name == "ds2":
        if cfg.cell not in ("gru", "lstm"):
            raise ValueError(f"ds2 config: `cell` must be 'gru' or 'lstm'; got {cfg.cell!r}.")
        if len(cfg.conv_channels) != 2 or cfg.rnn_layers < 1:
            raise ValueError("ds2 config: needs 2 `conv_channels` and `rnn_layers` >= 1.")
    elif name == "speaker_cnn":
        k = len(cfg.channels)
        if not (len(cfg.kernels) == len(cfg.strides) == k) or k == 0:
            raise ValueError(
                "speaker_cnn config: `channels`, `kernels` and `strides` must have the same "
                "non-zero length."
            )
    elif name == "phone_mlp":
        if cfg.layers < 1 or cfg.hidden < 1:
            raise ValueError("phone_mlp config: `layers` and `hidden` must be >= 1.")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"phone_mlp config: `dropout` must be in [0, 1); got {cfg.dropout}.")
    elif name == "transformer":
        if cfg.d_model % cfg.heads:
            raise ValueError(
                f"transformer config: `d_model` ({cfg.d_model}) must be divisible by "
                f"`heads` ({cfg.heads})."
            )
        if cfg.downsample < 1:
            raise ValueError("transformer config: `downsample` must be >= 1.")
    if getattr(cfg, "n_classes", 2) < 1:
        raise ValueError(f"{name} config: `n_classes` must be >= 1; got {cfg.n_classes}.")


def config_to_dict(cfg) -> dict[str, Any]:
    """A JSON-friendly dict of a config (tuples become lists)."""
    return dataclasses.asdict(cfg)


def config_from_dict(name: str, d: dict[str, Any]):
    """Inverse of :func:`config_to_dict` (lists become tuples again)."""
    _check_name(name)
    cls = _CLASSES[name]
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    cfg = cls(**kw)
    _validate(name, cfg)
    return cfg
