import jax.numpy as jnp
import numpy as np
import pytest

from geomjax._types import result_dtype
from geomjax.probing._host import check_finite_fast, compute_dtype


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_fast_finds_one_bad_value(bad):
    x = np.ones((7, 5), np.float32)
    x[3, 2] = bad
    with pytest.raises(ValueError, match="1 NaN/inf"):
        check_finite_fast(x, "x")


def test_check_finite_fast_inf_and_minus_inf_and_overflow():
    x = np.zeros((4, 3), np.float32)
    x[0, 0], x[1, 1] = np.inf, -np.inf  # the sum is NaN
    with pytest.raises(ValueError, match="2 NaN/inf"):
        check_finite_fast(x, "x")
    big = np.full((4, 3), np.finfo(np.float32).max, np.float32)  # finite, the sum overflows
    check_finite_fast(big, "x")
    check_finite_fast(jnp.ones((2, 2)), "x")
    with pytest.raises(ValueError):
        check_finite_fast(jnp.asarray([1.0, jnp.nan]), "x")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.bool_])
def test_compute_dtype_equals_result_dtype(dtype):
    a = np.zeros((3, 2), dtype)
    assert compute_dtype(a) == result_dtype(a)
    assert compute_dtype(a, np.zeros(2, np.float32)) == result_dtype(a, np.zeros(2, np.float32))
    assert compute_dtype(jnp.zeros(2, jnp.float32)) == jnp.float32
