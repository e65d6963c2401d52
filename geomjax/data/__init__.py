"""Data: synthetic manifold sets, the synthesised speech corpus, real-corpus loaders, features."""

from geomjax.data._manifold_synth import ball_manifolds, synthetic_manifolds

__all__ = ["synthetic_manifolds", "ball_manifolds"]
