"""Fixed-length integer bisection: thresholds, vmap over brackets, state threading."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomjax.solvers import bisection_steps, integer_bisection
from geomjax.solvers._bisection import guided_bisection_steps


@jax.jit
def _find(threshold, lo, hi):
    return integer_bisection(lambda n: (n >= threshold, n), lo, hi, bisection_steps(256))


@given(threshold=st.integers(1, 256), lo=st.integers(0, 255))
def test_finds_threshold_of_monotone_predicate(threshold, lo):
    hi = 256
    lo = min(lo, threshold - 1)  # invariant: pred(lo) False, pred(hi) True
    res = _find(threshold, lo, hi)
    assert int(res.hi) == threshold
    assert bool(res.closed)
    tested = np.asarray(res.tested_n)
    live = tested >= 0
    assert live.sum() <= bisection_steps(hi - lo)
    # Every live test is strictly inside the bracket and its verdict is the predicate's.
    assert np.all((tested[live] > lo) & (tested[live] < hi))
    np.testing.assert_array_equal(np.asarray(res.verdicts)[live], tested[live] >= threshold)
    np.testing.assert_array_equal(np.asarray(res.aux)[live], tested[live])


def test_vmap_over_brackets_matches_loop():
    th = jnp.array([1, 7, 100, 256, 33])
    lo = jnp.array([0, 3, 50, 0, 32])
    hi = jnp.full(5, 256)
    batched = jax.vmap(_find)(th, lo, hi)
    for i in range(5):
        single = _find(th[i], lo[i], hi[i])
        assert int(single.hi) == int(batched.hi[i]) == int(th[i])
        np.testing.assert_array_equal(single.tested_n, batched.tested_n[i])


def test_too_few_steps_reports_open_bracket():
    res = integer_bisection(lambda n: (n >= 77, ()), 0, 1000, 3)
    assert not bool(res.closed)
    assert int(res.lo) < 77 <= int(res.hi)


def test_state_is_threaded_and_frozen_after_closing():
    # State counts the live evaluations; a closed bracket must not change it.
    def pred(n, count):
        return n >= 5, (), count + 1

    res = integer_bisection(pred, 4, 6, 5, init_state=jnp.int32(0))
    assert int(res.hi) == 5
    assert (np.asarray(res.tested_n) >= 0).sum() == 1
    assert int(res.state) == 1


def test_bisection_steps():
    widths = (0, 1, 2, 3, 4, 5, 112, 128, 129)
    assert [bisection_steps(w) for w in widths] == [0, 0, 1, 2, 2, 3, 7, 7, 8]
    with pytest.raises(ValueError, match="width"):
        bisection_steps(-1)
    with pytest.raises(ValueError, match="num_steps"):
        integer_bisection(lambda n: (n > 0, ()), 0, 4, -1)


@partial(jax.jit, static_argnames=("min_split",))
def _find_guided(threshold, lo, hi, centre, min_split=4):
    grid = jnp.arange(257.0)
    cdf = jax.scipy.stats.norm.cdf((grid - centre) / 5.0)
    return integer_bisection(lambda n: (n >= threshold, n), lo, hi,
                             guided_bisection_steps(256, min_split), cdf=cdf, skip_closed=True,
                             min_split=min_split)


@given(threshold=st.integers(1, 256), lo=st.integers(0, 255), centre=st.integers(0, 256),
       min_split=st.sampled_from([4, 16]))
def test_guided_splits_find_the_same_threshold(threshold, lo, centre, min_split):
    # Any prior (even a wrong one) gives the same threshold within the guided step budget.
    hi = 256
    lo = min(lo, threshold - 1)
    res = _find_guided(threshold, lo, hi, float(centre), min_split=min_split)
    assert int(res.hi) == threshold and bool(res.closed)
    tested = np.asarray(res.tested_n)
    live = tested >= 0
    assert np.all((tested[live] > lo) & (tested[live] < hi))
    np.testing.assert_array_equal(np.asarray(res.verdicts)[live], tested[live] >= threshold)
    # Skipped steps return zeros as aux.
    assert np.all(np.asarray(res.aux)[~live] == 0)


def test_guided_splits_need_fewer_checks_near_the_guess():
    plain = _find(130, 0, 256)
    guided = _find_guided(130, 0, 256, 128.0)
    n_plain = int((np.asarray(plain.tested_n) >= 0).sum())
    n_guided = int((np.asarray(guided.tested_n) >= 0).sum())
    assert int(guided.hi) == 130 and n_guided < n_plain


def test_guided_bisection_steps():
    assert [guided_bisection_steps(w) for w in (0, 1, 2, 4, 112)] == [0, 0, 1, 3, 16]
    # A weaker guard (1/16 of the bracket) needs a longer worst-case budget.
    assert guided_bisection_steps(112, 16) > guided_bisection_steps(112)
    with pytest.raises(ValueError, match="width"):
        guided_bisection_steps(-1)
    with pytest.raises(ValueError, match="min_split"):
        guided_bisection_steps(8, 1)
    with pytest.raises(ValueError, match="min_split"):
        integer_bisection(lambda n: (n > 0, ()), 0, 4, 2, min_split=1)
