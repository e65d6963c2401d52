"""Shared result types and dtype helpers.

Every iterative solver in geomjax returns a :class:`Solution`; analyses return dataclasses
that are registered pytrees (so they pass through ``jit``/``vmap``) and convert to tidy tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Solution",
    "SolverSettings",
    "pytree_dataclass",
    "result_dtype",
    "to_numpy",
    "NotConvergedError",
]


class NotConvergedError(RuntimeError):
    """Raised by solvers called with ``strict=True`` when a problem did not converge."""


def pytree_dataclass(cls=None, *, meta: tuple[str, ...] = ()):
    """Make ``cls`` a frozen dataclass registered as a JAX pytree.

    Fields named in ``meta`` are static (hashable, not traced); all others are children.
    """

    def wrap(c):
        c = dataclasses.dataclass(frozen=True)(c)
        names = [f.name for f in dataclasses.fields(c)]
        data = [n for n in names if n not in meta]
        return jax.tree_util.register_dataclass(c, data_fields=data, meta_fields=list(meta))

    return wrap if cls is None else wrap(cls)


@pytree_dataclass(meta=("rtol", "atol", "max_steps", "method"))
class SolverSettings:
    """The settings a solver ran with (static: they are part of the compiled program)."""

    rtol: float
    atol: float
    max_steps: int
    method: str


@pytree_dataclass(meta=("settings",))
class Solution:
    """Result of an iterative solver, one per problem (leading axes appear under ``vmap``).

    Attributes:
        value: the solution (e.g. the NNLS coefficients), shape ``(..., n)``.
        converged: bool, the residual met ``atol + rtol * scale`` within ``max_steps``.
        num_steps: int32, iterations used.
        residual: the convergence residual in the solver's documented norm (for QPs the
            KKT residual ``||min(x, grad)||_inf``).
        settings: :class:`SolverSettings` used.
    """

    value: Any
    converged: Any
    num_steps: Any
    residual: Any
    settings: SolverSettings

    def summary(self) -> dict[str, Any]:
        """Counts over however many problems this batch holds."""
        conv = np.asarray(self.converged)
        steps = np.asarray(self.num_steps)
        res = np.asarray(self.residual)
        return {
            "n_problems": int(conv.size),
            "n_unconverged": int(conv.size - conv.sum()),
            "max_steps_used": int(steps.max()) if steps.size else 0,
            "max_residual": float(res.max()) if res.size else 0.0,
        }

    def raise_if_unconverged(self, what: str = "solver") -> None:
        s = self.summary()
        if s["n_unconverged"]:
            raise NotConvergedError(
                f"{what}: {s['n_unconverged']} of {s['n_problems']} problems did not converge "
                f"within max_steps={self.settings.max_steps} (max residual {s['max_residual']:.3g}); "
                "raise max_steps or loosen rtol/atol."
            )


def result_dtype(*arrays) -> jnp.dtype:
    """Floating dtype the computation should run in: follows the inputs, never flips x64."""
    dt = jnp.result_type(*[jnp.asarray(a).dtype for a in arrays])
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)  # float32 unless the user enabled x64
    return dt


def to_numpy(tree):
    """Device -> host conversion of every array leaf."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, tree)
