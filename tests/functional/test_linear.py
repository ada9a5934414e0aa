"""matmul with NumPy's broadcasting and 1-D rules, and the fully connected layer; errors name both shapes.

The parity tests take the ``device`` fixture (minigrad on that device, torch on the CPU).
"""

from __future__ import annotations

import numpy
import pytest
import torch

import minigrad.functional as F
from minigrad import Tensor
from tests.functional import check_against_torch

SHAPE_PAIRS = [
    ((4,), (4,), ()),
    ((4,), (4, 3), (3,)),
    ((3, 4), (4,), (3,)),
    ((4,), (2, 4, 3), (2, 3)),
    ((2, 3, 4), (4,), (2, 3)),
    ((2, 3, 4), (4, 5), (2, 3, 5)),
    ((3, 4), (2, 4, 5), (2, 3, 5)),
    ((1, 3, 4), (2, 4, 5), (2, 3, 5)),
    ((2, 1, 3, 4), (5, 4, 2), (2, 5, 3, 2)),
]


@pytest.mark.parametrize("shape_a, shape_b, expected", SHAPE_PAIRS, ids=[f"{a}@{b}" for a, b, _ in SHAPE_PAIRS])
def test_matmul_shapes_and_gradients_match_torch(shape_a, shape_b, expected, device):
    rng = numpy.random.default_rng(0)
    arrays = [rng.standard_normal(shape_a), rng.standard_normal(shape_b)]
    out = check_against_torch(F.matmul, torch.matmul, arrays, device=device)
    assert out.shape == expected


def test_matmul_operator_in_float32(device):
    rng = numpy.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(numpy.float32) for s in ((2, 3, 4), (4, 5)))
    check_against_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], device=device)  # float32: terms_bound


def test_matmul_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) cannot be multiplied.*\(4\).*\(5\)"):
        F.matmul(Tensor(numpy.zeros((3, 4))), Tensor(numpy.zeros((5, 2))))
    with pytest.raises(ValueError, match=r"matmul: shapes \(3,\) and \(4,\) cannot be multiplied"):
        F.matmul(Tensor(numpy.zeros(3)), Tensor(numpy.zeros(4)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3, 4\) and \(5, 4, 2\) have batch dimensions"):
        F.matmul(Tensor(numpy.zeros((2, 3, 4))), Tensor(numpy.zeros((5, 4, 2))))
    with pytest.raises(ValueError, match=r"at least one dimension, got shapes \(\) and \(3,\)"):
        F.matmul(Tensor(numpy.array(2.0)), Tensor(numpy.zeros(3)))


@pytest.mark.parametrize("x_shape", [(4, 5), (5,), (2, 3, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(x_shape, with_bias, device):
    rng = numpy.random.default_rng(1)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal((3, 5))]
    arrays += [rng.standard_normal(3)] if with_bias else []
    check_against_torch(F.linear, torch.nn.functional.linear, arrays, device=device)


def test_linear_errors():
    x, w = Tensor(numpy.zeros((4, 6))), Tensor(numpy.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"linear: input of shape \(4, 6\) does not fit weight of shape \(3, 5\)"):
        F.linear(x, w)
    with pytest.raises(ValueError, match=r"linear: bias has shape \(5,\) but weight \(3, 5\) needs \(3,\)"):
        F.linear(Tensor(numpy.zeros((4, 5))), w, Tensor(numpy.zeros(5)))
