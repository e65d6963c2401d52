"""Flax model zoo (installed as ``geomjax.models``)."""

__all__: list[str] = []
