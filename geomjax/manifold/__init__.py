"""geomjax.manifold (under construction)."""

__all__: list[str] = []
