"""Fixed-length, branch-free integer bisection for monotone predicates.

For a predicate that is monotone in an integer ``n`` (False below a threshold, True from it
on), the threshold ``n* = min{n : pred(n)}`` inside a known bracket ``(lo, hi]`` with
``pred(lo) = False`` and ``pred(hi) = True`` is found in ``ceil(log2(hi - lo))`` evaluations.
The loop is a ``lax.scan`` of that fixed length, so it compiles once, has no Python control flow
on values and vmaps over independent problems (each with its own bracket); a problem whose
bracket has already closed keeps evaluating a harmless point and ignores the verdict.

Used by the empirical manifold capacity: with nested random projections the separability of a
dichotomy is monotone in the number of features, so each dichotomy's critical size is found by
bisection and the separable fraction p(n) follows at every n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from geomjax._types import pytree_dataclass

__all__ = ["BisectionResult", "bisection_steps", "integer_bisection"]


@pytree_dataclass
class BisectionResult:
    """Outcome of :func:`integer_bisection` for one problem (leading axes under ``vmap``).

    Attributes:
        lo: largest tested ``n`` with a False verdict (or the initial ``lo``).
        hi: smallest tested ``n`` with a True verdict (or the initial ``hi``): the threshold
            ``n*`` once ``hi - lo <= 1``.
        closed: bool, ``hi - lo <= 1`` at the end (the step budget sufficed).
        tested_n: ``(num_steps,)`` int32, the point evaluated at each step (-1 for steps after
            the bracket closed, whose verdicts were ignored).
        verdicts: ``(num_steps,)`` bool, the predicate's verdict at each step.
        aux: per-step auxiliary output of the predicate, stacked along a leading step axis.
        state: the threaded state after the last live step (``None`` without ``init_state``).
    """

    lo: jax.Array
    hi: jax.Array
    closed: jax.Array
    tested_n: jax.Array
    verdicts: jax.Array
    aux: Any
    state: Any = None


def bisection_steps(width: int) -> int:
    """Evaluations that close a bracket of ``width = hi - lo`` integers: ``ceil(log2(width))``."""
    if width < 0:
        raise ValueError(f"`width` must be >= 0 (hi >= lo); got {width}.")
    return 0 if width <= 1 else int(math.ceil(math.log2(width)))


def integer_bisection(
    predicate: Callable[..., tuple],
    lo,
    hi,
    num_steps: int,
    init_state: Any = None,
) -> BisectionResult:
    """Threshold of a monotone integer predicate by a fixed-length ``lax.scan`` bisection.

    Invariant: ``predicate(lo)`` is False and ``predicate(hi)`` is True (not evaluated here).
    Each step tests ``mid = (lo + hi) // 2`` and moves ``hi`` to ``mid`` on True, ``lo`` to
    ``mid`` on False. After ``num_steps >= ceil(log2(hi - lo))`` steps, ``hi = n*``.

    Args:
        predicate: ``n -> (verdict, aux)`` with ``n`` an int32 scalar; ``verdict`` a bool
            scalar and ``aux`` any pytree of arrays with fixed shapes (diagnostics). With
            ``init_state`` it is ``(n, state) -> (verdict, aux, state)`` instead, and the state
            (e.g. a warm start) is threaded through the steps.
        lo, hi: int scalars (may be traced), ``lo < hi``.
        num_steps: static step count; use :func:`bisection_steps` of the widest bracket.
        init_state: optional pytree carried from step to step (see ``predicate``).

    Returns:
        :class:`BisectionResult`.
    """
    if int(num_steps) < 0:
        raise ValueError(f"`num_steps` must be >= 0; got {num_steps}.")
    lo = jnp.asarray(lo, jnp.int32)
    hi = jnp.asarray(hi, jnp.int32)

    stateful = init_state is not None

    def step(carry, _):
        lo, hi, state = carry
        open_ = hi - lo > 1
        mid = jnp.where(open_, (lo + hi) // 2, hi)
        if stateful:
            verdict, aux, new_state = predicate(mid, state)
            # A closed bracket's verdicts are ignored, and so is its state.
            state = jax.tree_util.tree_map(
                lambda a, b: jnp.where(open_, a, b), new_state, state
            )
        else:
            verdict, aux = predicate(mid)
        verdict = jnp.asarray(verdict, bool)
        new_hi = jnp.where(open_ & verdict, mid, hi)
        new_lo = jnp.where(open_ & ~verdict, mid, lo)
        return (new_lo, new_hi, state), (jnp.where(open_, mid, -1), verdict, aux)

    (lo_f, hi_f, state_f), (tested, verdicts, aux) = lax.scan(
        step, (lo, hi, init_state), None, length=int(num_steps)
    )
    return BisectionResult(
        lo=lo_f, hi=hi_f, closed=(hi_f - lo_f) <= 1, tested_n=tested, verdicts=verdicts, aux=aux,
        state=state_f,
    )
