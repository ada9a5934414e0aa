"""Element-wise ops: extreme values, PyTorch's conventions at kinks, broadcasting, dtype promotion.

Every test but the error message takes the ``device`` fixture (minigrad on that device, torch on the CPU).
"""

from __future__ import annotations

import numpy
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigrad.functional as F
from minigrad import Tensor
from minigrad.testing.tolerance import assert_close
from tests.functional import check_against_torch

EXTREMES = numpy.array([-1000.0, -100.0, -30.0, -20.0, -17.0, -1.0, 0.0, 1.0, 17.0, 20.0, 30.0, 100.0, 1000.0])


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_sigmoid_keeps_relative_precision_at_extremes(dtype, device):
    # 1 + tanh(x/2) rounds to 0 in float32 for x = -20: sigmoid(-20) is 2e-9, a relative error of 100%.
    # So float32 is held entry by entry to its own magnitude: a libm call's few ulps (terms=4, the tolerance
    # policy's element-wise form). (float32_atol: torch flushes sigmoid(-100) = 4e-44, a subnormal, to 0)
    with numpy.errstate(over="raise", invalid="raise"):  # no overflow on the way (underflow is fine)
        check_against_torch(F.sigmoid, torch.sigmoid, [EXTREMES.astype(dtype)], rtol=1e-14, atol=1e-37, device=device,
                            elementwise=True, terms=4, float32_atol=1e-37)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_tanh_and_exp_at_extremes(dtype, device):
    # float32: entry by entry, a libm call's few ulps (terms=4; minigrad/testing/tolerance.py)
    check_against_torch(F.tanh, torch.tanh, [EXTREMES.astype(dtype)], rtol=1e-6, atol=1e-30, device=device,
                        elementwise=True, terms=4, float32_atol=1e-30)
    moderate = numpy.array([-80.0, -5.0, 0.0, 5.0, 80.0], dtype=dtype)
    check_against_torch(F.exp, torch.exp, [moderate], rtol=1e-6, atol=0, device=device, elementwise=True, terms=4)


def test_relu_at_infinities_and_zero(device):
    x = numpy.array([-numpy.inf, -2.0, 0.0, 3.0, numpy.inf], dtype=numpy.float32)
    out = check_against_torch(F.relu, torch.relu, [x], rtol=0, atol=0, device=device)
    numpy.testing.assert_array_equal(out.numpy(), [0.0, 0.0, 0.0, 3.0, numpy.inf])  # -inf -> 0, not nan


def test_relu_gradient_at_zero_is_zero_like_torch(device):
    x = Tensor(numpy.array([-1.0, 0.0, 1.0]), requires_grad=True, device=device)
    F.relu(x).sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


def test_relu_inplace_overwrites_its_input_and_gives_the_same_gradients_as_torch(device):
    rng = numpy.random.default_rng(0)
    x = Tensor(rng.standard_normal((3, 4)).astype(numpy.float32), requires_grad=True, device=device)
    scale = Tensor(rng.standard_normal((3, 4)).astype(numpy.float32), requires_grad=True, device=device)
    upstream = rng.standard_normal((3, 4)).astype(numpy.float32)
    product = x * scale  # a fresh intermediate that nothing else reads: what inplace is for
    out = F.relu(product, inplace=True)
    assert out.data is product.data  # no new array
    out.backward(upstream)

    tx, tscale = torch.tensor(x.numpy(), requires_grad=True), torch.tensor(scale.numpy(), requires_grad=True)
    expected = torch.relu_(tx * tscale)
    expected.backward(torch.tensor(upstream))
    numpy.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    # one multiply per entry, correctly rounded on any CPU: terms=1 of the tolerance policy, entry by entry
    assert_close(x.grad.numpy(), tx.grad.numpy(), "x.grad", terms=1, elementwise=True)
    assert_close(scale.grad.numpy(), tscale.grad.numpy(), "scale.grad", terms=1, elementwise=True)


def test_relu_inplace_refuses_a_leaf_that_requires_grad():
    with pytest.raises(RuntimeError, match=r"relu: inplace=True would overwrite a leaf .* \(2,\)"):
        F.relu(Tensor(numpy.ones(2, dtype=numpy.float32), requires_grad=True), inplace=True)
    plain = Tensor(numpy.array([-1.0, 2.0], dtype=numpy.float32))  # no gradient wanted: fine, as in torch
    F.relu(plain, inplace=True)
    numpy.testing.assert_array_equal(plain.numpy(), [0.0, 2.0])


@pytest.mark.parametrize("fn, ref", [(F.log, torch.log), (F.sqrt, torch.sqrt)])
def test_log_and_sqrt_on_tiny_and_huge_values(fn, ref, device):
    x = numpy.array([1e-30, 1e-8, 1.0, 1e8, 1e30])
    check_against_torch(fn, ref, [x], rtol=1e-12, device=device)


def test_broadcast_error_names_both_shapes():
    a, b = Tensor(numpy.zeros((2, 3))), Tensor(numpy.zeros((4, 3)))
    for op in (F.add, F.sub, F.mul, F.div):
        with pytest.raises(ValueError, match=rf"{op.__name__}: shapes \(2, 3\) and \(4, 3\) cannot be broadcast"):
            op(a, b)


def test_integer_tensor_with_float_tensor_uses_the_float_dtype(device):
    x = Tensor(numpy.array([1.0, 2.0, 3.0], dtype=numpy.float32), requires_grad=True, device=device)
    counts = Tensor([1, 2, 3], device=device)
    for y in (x * counts, counts * x, x + counts, counts - x, x / counts, counts / x):
        assert y.dtype == numpy.float32
    (x * counts).sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])
    assert counts.grad is None


def test_pow_with_tensor_exponent_broadcasts_both_gradients(device):
    rng = numpy.random.default_rng(0)
    arrays = [rng.uniform(0.5, 2.0, (3, 1, 4)), rng.standard_normal((2, 1))]
    check_against_torch(F.pow, torch.pow, arrays, device=device)


def test_python_scalar_on_the_left(device):
    x = Tensor(numpy.array([0.5, 2.0]), requires_grad=True, device=device)
    y = 1 / x + 3 - x * 2
    y.sum().backward()
    numpy.testing.assert_allclose(y.numpy(), 1 / x.numpy() + 3 - 2 * x.numpy())
    numpy.testing.assert_allclose(x.grad.numpy(), -1 / x.numpy() ** 2 - 2)


# Broadcasting backward (sum back down to each input's shape) over random compatible shape pairs.
def broadcastable_pair():
    def split(shape, drop, ones_a, ones_b):
        a = tuple(1 if i in ones_a else s for i, s in enumerate(shape))[drop:]
        b = tuple(1 if i in ones_b else s for i, s in enumerate(shape))
        return a, b

    shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)
    return shapes.flatmap(lambda shape: st.tuples(
        st.just(shape), st.integers(0, len(shape)), st.sets(st.integers(0, max(len(shape) - 1, 0))),
        st.sets(st.integers(0, max(len(shape) - 1, 0))),
    )).map(lambda args: split(*args))


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=broadcastable_pair(), op=st.sampled_from(["add", "sub", "mul", "div"]), swap=st.booleans())
def test_broadcasting_gradients_match_torch(pair, op, swap, device):
    shape_a, shape_b = pair[::-1] if swap else pair
    rng = numpy.random.default_rng(0)
    a = rng.standard_normal(shape_a)
    b = rng.uniform(0.5, 2.0, shape_b) * rng.choice([-1, 1], shape_b)
    reference = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op]
    check_against_torch(getattr(F, op), reference, [a, b], device=device)
