"""The tolerance policy (minigrad/testing/tolerance.py): what it lets through and, as much, what it catches."""

from __future__ import annotations

import numpy
import pytest

from minigrad.testing.tolerance import (
    FLOAT32_UNIT_ROUNDOFF,
    assert_close,
    float32_tolerance,
    is_float32,
    terms_bound,
)


def test_the_float32_tolerance_is_eight_n_u_steps():
    assert FLOAT32_UNIT_ROUNDOFF == 2.0**-24
    assert float32_tolerance() == 8 * 2.0**-24
    assert float32_tolerance(terms=27, steps=5) == 8 * 27 * 5 * 2.0**-24
    with pytest.raises(ValueError, match="terms and steps must be at least 1"):
        float32_tolerance(terms=0)


def test_terms_bound_is_the_largest_size():
    assert terms_bound(numpy.zeros((2, 3)), None, numpy.zeros(4)) == 6
    assert terms_bound() == 1


def test_float64_is_element_wise_and_as_tight_as_asked():
    expected = numpy.array([1.0, 1e-8])
    assert_close(expected * (1 + 1e-11), expected, float64=(1e-10, 0))
    with pytest.raises(AssertionError):
        assert_close(expected + [0, 1e-12], expected, float64=(1e-10, 0))  # 1e-4 relative on the small entry


def test_float32_entries_near_zero_are_held_to_the_tensors_scale():
    """A sum that cancels to nearly zero carries the rounding error of its large terms: the failure the policy
    exists for. An element-wise rtol fails it; the policy passes it."""
    rng = numpy.random.default_rng(0)
    terms = rng.standard_normal((100, 64)).astype(numpy.float32)
    terms[0] -= terms[0].sum() / 64  # row 0 sums to (nearly) zero
    exact = terms.astype(numpy.float64).sum(axis=1)
    forward = terms.sum(axis=1, dtype=numpy.float32)
    backward = terms[:, ::-1].sum(axis=1, dtype=numpy.float32)  # another order, as another CPU would add
    assert not numpy.allclose(forward[0], exact[0], rtol=1e-5, atol=0)  # element-wise: a coin toss
    assert_close(forward, backward, "two orders", terms=64)
    assert_close(forward, exact, "float32 vs exact", terms=64)


def test_float32_catches_a_dropped_term_and_a_half_precision_cast():
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((50, 27)).astype(numpy.float32)
    w = rng.standard_normal(27).astype(numpy.float32)
    right = x @ w
    with pytest.raises(AssertionError, match=r"float32 \|difference\|"):
        assert_close(x[:, 1:] @ w[1:], right, "dropped term", terms=27)
    with pytest.raises(AssertionError):
        assert_close((x.astype(numpy.float16) @ w.astype(numpy.float16)).astype(numpy.float32), right, terms=27)


def test_elementwise_holds_each_entry_to_its_own_magnitude():
    expected = numpy.array([1.0, 2e-9], dtype=numpy.float32)  # sigmoid(0)/2 and sigmoid(-20)
    assert_close(expected * numpy.float32(1 + 2**-23), expected, terms=4, elementwise=True)
    with pytest.raises(AssertionError):
        assert_close(numpy.array([1.0, 0.0], dtype=numpy.float32), expected, terms=4, elementwise=True)
    assert_close(numpy.array([1.0, 0.0], dtype=numpy.float32), expected, terms=4)  # scale-relative: passes


def test_nan_inf_and_shape_must_agree():
    with pytest.raises(AssertionError, match="NaN in one result"):
        assert_close(numpy.array([numpy.nan, 1], numpy.float32), numpy.array([0, 1], numpy.float32))
    with pytest.raises(AssertionError, match="infinities differ"):
        assert_close(numpy.array([numpy.inf, 1], numpy.float32), numpy.array([-numpy.inf, 1], numpy.float32))
    assert_close(numpy.array([numpy.inf, 1], numpy.float32), numpy.array([numpy.inf, 1], numpy.float32))
    with pytest.raises(AssertionError, match="shape"):
        assert_close(numpy.zeros(3, numpy.float32), numpy.zeros(4, numpy.float32))


def test_a_zero_tensor_needs_an_explicit_atol():
    noise = numpy.array([3e-7, -2e-7], dtype=numpy.float32)
    with pytest.raises(AssertionError):
        assert_close(noise, numpy.zeros(2, numpy.float32))
    assert_close(noise, numpy.zeros(2, numpy.float32), atol=float32_tolerance(16) * 4.0)


def test_is_float32():
    assert is_float32(numpy.zeros(1, numpy.float32), numpy.zeros(1))
    assert is_float32(numpy.zeros(1, numpy.float16))
    assert not is_float32(numpy.zeros(1), numpy.zeros(1, numpy.int32))
