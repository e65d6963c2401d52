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

__all__ = ["BisectionResult", "bisection_steps", "guided_bisection_steps", "integer_bisection"]


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


def guided_bisection_steps(width: int, min_split: int = 4) -> int:
    """Evaluations that close a bracket of ``width`` integers in the worst case when every test
    point keeps at least ``1 / min_split`` of the bracket on each side (guided splits, see
    :func:`integer_bisection`'s ``cdf``)."""
    if width < 0:
        raise ValueError(f"`width` must be >= 0 (hi >= lo); got {width}.")
    if min_split < 2:
        raise ValueError(f"`min_split` must be >= 2; got {min_split}.")
    steps = 0
    while width > 1:
        width -= max(1, width // min_split)
        steps += 1
    return steps


def integer_bisection(
    predicate: Callable[..., tuple],
    lo,
    hi,
    num_steps: int,
    init_state: Any = None,
    cdf=None,
    skip_closed: bool = False,
    min_split: int = 4,
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
        cdf: optional ``(n_grid,)`` non-decreasing prior CDF of the threshold over the integers
            ``0..n_grid-1``. Each test point then splits the bracket's prior mass in two (the
            smallest ``n`` with ``cdf[n] >= (cdf[lo] + cdf[hi]) / 2``), kept at least
            ``1 / min_split`` of the bracket from either end, so a concentrated prior needs about
            its entropy in evaluations on average; size ``num_steps`` with
            :func:`guided_bisection_steps` (same ``min_split``).
        skip_closed: run the predicate under ``lax.cond`` so a closed bracket costs nothing
            (unbatched callers; under ``vmap`` both branches would run). The skipped steps'
            ``aux`` is zeros.
        min_split: with ``cdf``, the guard on the split point (see ``cdf``); a larger value
            trusts the prior more (fewer evaluations when it is right, more steps in the worst
            case).

    Returns:
        :class:`BisectionResult`.
    """
    if int(num_steps) < 0:
        raise ValueError(f"`num_steps` must be >= 0; got {num_steps}.")
    if int(min_split) < 2:
        raise ValueError(f"`min_split` must be >= 2; got {min_split}.")
    lo = jnp.asarray(lo, jnp.int32)
    hi = jnp.asarray(hi, jnp.int32)

    stateful = init_state is not None

    if cdf is not None:
        cdf = jnp.asarray(cdf)
        grid = jnp.arange(cdf.shape[0], dtype=jnp.int32)

    def pick(lo, hi):
        if cdf is None:
            return (lo + hi) // 2
        a = jnp.maximum(1, (hi - lo) // int(min_split))
        c_lo = cdf[jnp.clip(lo, 0, cdf.shape[0] - 1)]
        c_hi = cdf[jnp.clip(hi, 0, cdf.shape[0] - 1)]
        target = 0.5 * (c_lo + c_hi)
        first = jnp.min(jnp.where((cdf >= target) & (grid > lo), grid, hi))
        return jnp.clip(first, lo + a, hi - a)

    def call(mid, state):
        if stateful:
            return predicate(mid, state)
        return (*predicate(mid), state)

    def step(carry, _):
        lo, hi, state = carry
        open_ = hi - lo > 1
        mid = jnp.where(open_, pick(lo, hi), hi)
        if skip_closed:
            out_shape = jax.eval_shape(call, mid, state)

            def skip(mid, state):
                v, aux, _ = jax.tree_util.tree_map(
                    lambda s: jnp.zeros(s.shape, s.dtype), out_shape
                )
                return v, aux, state

            verdict, aux, new_state = lax.cond(open_, call, skip, mid, state)
        else:
            verdict, aux, new_state = call(mid, state)
        if stateful:
            # A closed bracket's verdicts are ignored, and so is its state.
            state = jax.tree_util.tree_map(
                lambda a, b: jnp.where(open_, a, b), new_state, state
            )
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
