"""geomjax.jacobian (under construction)."""

__all__: list[str] = []
