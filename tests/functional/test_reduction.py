"""Reductions: ties in max share the gradient like torch.amax, several and negative dims, errors.

Every test but the error messages takes the ``device`` fixture (minigrad on that device, torch on the CPU).
"""

from __future__ import annotations

import numpy
import pytest
import torch

import minigrad.functional as F
from minigrad import Tensor
from tests.functional import check_against_torch


@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), (0, True), ((0, 2), False), (-1, True)])
def test_max_with_ties_splits_the_gradient_like_amax(dim, keepdim, device):
    rng = numpy.random.default_rng(0)
    x = rng.integers(0, 3, (3, 4, 5)).astype(numpy.float64)  # values in {0, 1, 2}: many ties
    torch_dim = tuple(range(3)) if dim is None else dim
    check_against_torch(lambda t: F.max(t, dim, keepdim), lambda t: torch.amax(t, torch_dim, keepdim), [x],
                        device=device)


def test_max_tie_shares_equally_by_hand(device):
    x = Tensor(numpy.array([[5.0, 1.0, 5.0, 5.0], [0.0, 2.0, -1.0, 2.0]]), requires_grad=True, device=device)
    F.max(x, 1).backward(numpy.array([3.0, 1.0]))
    numpy.testing.assert_allclose(x.grad.numpy(), [[1.0, 0.0, 1.0, 1.0], [0.0, 0.5, 0.0, 0.5]])


@pytest.mark.parametrize("name", ["sum", "mean"])
@pytest.mark.parametrize("dim, keepdim", [(None, False), ((-1, 0), True), ((1, 2), False), (-2, False)])
def test_sum_and_mean_over_dims_match_torch(name, dim, keepdim, device):
    x = numpy.random.default_rng(1).standard_normal((2, 3, 4))
    ours = getattr(F, name)

    def theirs(t):
        return getattr(t, name)() if dim is None else getattr(t, name)(dim=dim, keepdim=keepdim)

    check_against_torch(lambda t: ours(t, dim, keepdim), theirs, [x], device=device)


def test_method_spellings(device):
    x = Tensor(numpy.arange(6.0).reshape(2, 3), device=device)
    assert x.sum(1).tolist() == [3.0, 12.0] and x.mean(0, keepdim=True).shape == (1, 3) and x.max().item() == 5.0
    assert x.argmax(1).tolist() == [2, 2]


def test_reduction_errors():
    x = Tensor(numpy.zeros((2, 3)))
    with pytest.raises(IndexError, match="sum: dim 2 is out of range for a tensor with 2 dimensions"):
        F.sum(x, 2)
    with pytest.raises(IndexError, match="max: dim -3 is out of range"):
        F.max(x, -3)
    with pytest.raises(TypeError, match=r"mean: needs a floating-point tensor, got dtype int64"):
        F.mean(Tensor([1, 2]))
    with pytest.raises(ValueError, match=r"max: cannot take the maximum of an empty tensor of shape \(0, 3\)"):
        F.max(Tensor(numpy.zeros((0, 3))))


def test_sum_of_ints_stays_int(device):
    assert F.sum(Tensor([1, 2, 3], device=device)).dtype == numpy.int64
