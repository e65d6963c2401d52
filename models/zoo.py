"""Uniform entry points: build a model by name and preset, initialise it, count its parameters,
and extract per-layer activations as NumPy arrays for analysis."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from geomjax.models._config import MODEL_NAMES, get_config
from geomjax.models.ds2 import DeepSpeech2, ds2_output_lengths
from geomjax.models.phone_mlp import PhoneMLP
from geomjax.models.speaker_cnn import SpeakerCNN
from geomjax.models.transformer import TransformerEncoder
from geomjax.models.word_cnn import WordCNN
from tqdm.auto import tqdm

__all__ = [
    "MODEL_CLASSES",
    "SEQUENCE_MODELS",
    "Activations",
    "build_model",
    "model_name",
    "init_variables",
    "count_params",
    "layer_lengths",
    "activations",
]

MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "word_cnn": WordCNN,
    "ds2": DeepSpeech2,
    "speaker_cnn": SpeakerCNN,
    "phone_mlp": PhoneMLP,
    "transformer": TransformerEncoder,
}
#: models whose input is ``(B, T, F)`` with valid lengths and whose layers are per time step.
SEQUENCE_MODELS = ("ds2", "speaker_cnn", "transformer")


def build_model(
    name: str, preset: str = "cpu", n_classes: int | None = None, **overrides
) -> nn.Module:
    """A Flax module by name and preset.

    Args:
        name: ``"word_cnn"``, ``"ds2"``, ``"speaker_cnn"``, ``"phone_mlp"`` or ``"transformer"``.
        preset: ``"paper"`` (published size), ``"cpu"`` (reduced), ``"tiny"`` (tests), or
            ``"paper-2048"`` (phone MLP) / ``"paper-lstm"`` (DS2 V3).
        n_classes: output classes (not used by the transformer, whose output is a reconstruction).
        **overrides: any config field, e.g. ``channels=(...)``, ``rnn_layers=3``.

    Returns:
        The module; ``model.apply(variables, x, lengths, train=False)`` returns
        ``(output, acts)`` with ``acts`` a dict of every analysed layer.
    """
    if n_classes is not None:
        if name == "transformer":
            raise ValueError(
                "`n_classes` does not apply to 'transformer' (it reconstructs its input)."
            )
        if int(n_classes) < 1:
            raise ValueError(f"`n_classes` must be >= 1; got {n_classes}.")
        overrides["n_classes"] = int(n_classes)
    cfg = get_config(name, preset, **overrides)
    return MODEL_CLASSES[name](cfg)


def model_name(model: nn.Module) -> str:
    """The registry name of a model built by :func:`build_model`."""
    for k, cls in MODEL_CLASSES.items():
        if type(model) is cls:
            return k
    raise TypeError(
        f"`model` must be one of the zoo's modules {list(MODEL_NAMES)}; got {type(model).__name__}."
    )


def init_variables(key, model: nn.Module, example_inputs, lengths=None) -> dict:
    """Initial variables (``params`` and, with batch norm, ``batch_stats``) for an example batch.

    Args:
        key: a ``jax.random.key`` (or an int seed).
        model: a zoo module.
        example_inputs: an input batch (only its shape and dtype matter).
        lengths: optional ``(B,)`` valid lengths for sequence models.
    """
    key = _as_key(key)
    x = jnp.asarray(example_inputs)
    lengths = None if lengths is None else jnp.asarray(lengths)
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": key, "dropout": key}, x, lengths
    )
    return dict(variables)


def _as_key(key):
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32:
        return jax.random.wrap_key_data(key)
    raise TypeError(f"`key` must be a jax.random.key or an int seed; got {type(key).__name__}.")


def count_params(variables, exclude_batchnorm: bool = False) -> int:
    """Number of trainable parameters.

    Args:
        variables: the variables dict (or just its ``params``).
        exclude_batchnorm: leave out batch-norm scales and biases (the phone MLP's published
            counts exclude them).
    """
    params = variables.get("params", variables) if isinstance(variables, dict) else variables
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        names = [getattr(p, "key", str(p)) for p in path]
        if exclude_batchnorm and any(
            "bn" in str(n) or str(n).startswith("norm") for n in names[:-1]
        ):
            continue
        total += int(np.prod(leaf.shape))
    return total


def layer_lengths(model: nn.Module, lengths) -> dict:
    """Valid time steps of every sequence layer of ``model`` for input ``lengths``.

    Returns an empty dict for the non-sequence models (word CNN, phone MLP).
    """
    name = model_name(model)
    if name not in SEQUENCE_MODELS or lengths is None:
        return {}
    L = jnp.asarray(lengths)
    cfg = model.config
    if name == "ds2":
        Lo = ds2_output_lengths(L)
        keys = ["conv1", "conv2"] + [f"rnn{i + 1}" for i in range(cfg.rnn_layers)] + ["fc"]
        return {k: Lo for k in keys}
    if name == "speaker_cnn":
        return model.layer_lengths(L)
    Lo = model.output_lengths(L)
    return {k: Lo for k in ["input"] + [f"layer{i + 1}" for i in range(cfg.layers)] + ["recon"]}


@dataclass
class Activations:
    """Per-layer activations of a batch of inputs, as NumPy arrays.

    Attributes:
        layers: layer name -> ``(n_samples, ...)`` array; sequence layers are
            ``(n_samples, T_layer, features)`` with padded steps zeroed.
        lengths: layer name -> ``(n_samples,)`` valid steps, for sequence layers only.
        output: the model output (logits or reconstruction).
    """

    layers: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    output: np.ndarray

    @property
    def names(self) -> list[str]:
        return list(self.layers)

    def mask(self, name: str) -> np.ndarray | None:
        """``(n_samples, T_layer)`` valid-step mask of a sequence layer (None otherwise)."""
        self._check(name)
        if name not in self.lengths:
            return None
        T = self.layers[name].shape[1]
        return np.arange(T)[None, :] < self.lengths[name][:, None]

    def frames(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Valid steps of a sequence layer as rows ``(n_frames, F)`` and their sample index."""
        m = self.mask(name)
        if m is None:
            raise ValueError(f"layer {name!r} is not a sequence layer; use `layers[{name!r}]`.")
        a = self.layers[name]
        idx = np.nonzero(m)
        return a[idx].reshape(len(idx[0]), -1), idx[0]

    def pooled(self, name: str) -> np.ndarray:
        """Mean over valid steps (sequence layers) or flattened features: ``(n_samples, F)``."""
        a = self.layers[name]
        m = self.mask(name)
        if m is None:
            return a.reshape(a.shape[0], -1)
        mm = m.reshape(m.shape + (1,) * (a.ndim - 2)).astype(a.dtype)
        s = (a * mm).sum(axis=1) / np.maximum(mm.sum(axis=1), 1)
        return s.reshape(a.shape[0], -1)

    def _check(self, name):
        if name not in self.layers:
            raise KeyError(f"no layer {name!r}; layers are {self.names}.")


@functools.lru_cache(maxsize=32)
def _eval_fn(model: nn.Module):
    order: list[str] = []  # layer order as the model emits it (jit returns dicts key-sorted)

    def f(variables, x, lengths):
        out, acts = model.apply(variables, x, lengths, train=False)
        order[:] = list(acts)
        return out, acts

    return jax.jit(f), order


def activations(
    model: nn.Module,
    variables,
    inputs,
    lengths=None,
    *,
    layers: list[str] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Activations:
    """Run ``model`` in eval mode over ``inputs`` in batches and collect every layer as NumPy.

    Args:
        model: a zoo module.
        variables: its variables (e.g. from :func:`geomjax.models.load_checkpoint`).
        inputs: ``(N, ...)`` input array (padded ``(N, T, F)`` for sequence models).
        lengths: ``(N,)`` valid frames for sequence models (None: full length).
        layers: keep only these layers (default: all).
        batch_size: rows per forward pass; the last batch is padded so one program serves all.
        progress: show a progress bar.

    Returns:
        :class:`Activations`.
    """
    x = np.asarray(inputs)
    N = x.shape[0]
    if N == 0:
        raise ValueError("`inputs` is empty; pass at least one sample.")
    name = model_name(model)
    seq = name in SEQUENCE_MODELS
    if lengths is not None:
        lengths = np.asarray(lengths, np.int32)
        if lengths.shape != (N,):
            raise ValueError(
                f"`lengths` must have shape ({N},) to match `inputs`; got {lengths.shape}."
            )
        if seq and (lengths.min() < 1 or lengths.max() > x.shape[1]):
            raise ValueError(
                f"`lengths` must lie in 1..{x.shape[1]} (the padded length of `inputs`)."
            )
    elif seq:
        lengths = np.full((N,), x.shape[1], np.int32)
    fn, order = _eval_fn(model)
    bs = min(batch_size, N)
    chunks, outs = {}, []
    for s in tqdm(range(0, N, bs), disable=not progress, desc=f"{name} activations"):
        xb = x[s : s + bs]
        n = xb.shape[0]
        if n < bs:
            xb = np.concatenate([xb, np.repeat(xb[-1:], bs - n, axis=0)])
        lb = None
        if lengths is not None and seq:
            lb = lengths[s : s + bs]
            lb = np.concatenate([lb, np.repeat(lb[-1:], bs - n)]) if n < bs else lb
        out, acts = fn(variables, jnp.asarray(xb), None if lb is None else jnp.asarray(lb))
        outs.append(np.asarray(out)[:n])
        for k, v in acts.items():
            if layers is None or k in layers:
                chunks.setdefault(k, []).append(np.asarray(v)[:n])
    if layers is not None:
        missing = sorted(set(layers) - set(chunks))
        if missing:
            raise ValueError(
                f"`layers` names unknown layer(s) {missing}; available: {sorted(acts)}."
            )
    acts_np = {k: np.concatenate(chunks[k]) for k in order if k in chunks}
    lens = {
        k: np.asarray(v)
        for k, v in layer_lengths(model, lengths if seq else None).items()
        if k in acts_np
    }
    return Activations(acts_np, lens, np.concatenate(outs))


def replace_config(model: nn.Module, **overrides) -> nn.Module:
    """A copy of ``model`` with config fields replaced (same architecture family)."""
    return type(model)(dataclasses.replace(model.config, **overrides))
