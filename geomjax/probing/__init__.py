"""geomjax.probing (under construction)."""

__all__: list[str] = []
