"""geomjax.similarity (under construction)."""

__all__: list[str] = []
