"""Phone MLP of Nagamine & Mesgarani (2017): 5 ReLU hidden layers on spliced log-Mel frames.

Input ``(B, 253)`` = 23 log-Mel bands x 11 frames (+-5). The 2048-unit net uses Dense -> BN ->
ReLU -> Dropout with 20 % dropout on the input and hidden layers; dropout is the identity in eval
mode (inverted dropout, no weight rescaling).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from geomjax.models._common import as_input
from geomjax.models._config import PhoneMLPConfig

__all__ = ["PhoneMLP"]


class PhoneMLP(nn.Module):
    """Frame-wise phone classifier.

    Call: ``logits, acts = model.apply(variables, x, train=False)`` (training with dropout needs
    ``rngs={"dropout": key}``). ``acts`` holds ``h1``..``hL`` (post-ReLU hidden layers,
    ``(B, hidden)``) and ``out`` (the logits, ``(B, n_classes)``). ``lengths`` is ignored.
    """

    config: PhoneMLPConfig

    @nn.compact
    def __call__(self, x, lengths=None, train: bool = False):
        cfg = self.config
        pd = jnp.dtype(cfg.param_dtype)
        x = as_input(x, "x", (2,))
        acts = {}
        if cfg.dropout > 0:
            x = nn.Dropout(cfg.dropout, deterministic=not train, name="drop0")(x)
        for i in range(cfg.layers):
            x = nn.Dense(cfg.hidden, param_dtype=pd, name=f"dense{i + 1}")(x)
            if cfg.batch_norm:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    param_dtype=pd,
                    name=f"bn{i + 1}",
                )(x)
            x = nn.relu(x)
            acts[f"h{i + 1}"] = x
            if cfg.dropout > 0:
                x = nn.Dropout(cfg.dropout, deterministic=not train, name=f"drop{i + 1}")(x)
        logits = nn.Dense(cfg.n_classes, param_dtype=pd, name="out")(x)
        acts["out"] = logits
        return logits, acts
