"""Shape ops: indexing (repeated indices add up), reshape/permute/transpose/flatten and their errors.

The parity tests take the ``device`` fixture (minigrad and its index tensors on that device, torch on the CPU).
"""

from __future__ import annotations

import numpy
import pytest
import torch

import minigrad.functional as F
from minigrad import Tensor
from tests.functional import check_against_torch

X = numpy.random.default_rng(0).standard_normal((4, 5))


def test_getitem_with_repeated_indices_accumulates(device):
    index = numpy.array([1, 3, 1, 1, 0])
    out = check_against_torch(lambda t: t[Tensor(index, device=device)], lambda t: t[torch.tensor(index)], [X],
                              device=device)
    assert out.shape == (5, 5)
    x = Tensor(X, requires_grad=True, device=device)
    x[[2, 2, 2]].sum().backward()  # a plain `grad[index] = upstream` would give 1 instead of 3
    numpy.testing.assert_array_equal(x.grad.numpy()[2], numpy.full(5, 3.0))
    assert x.grad.numpy()[[0, 1, 3]].sum() == 0


def test_getitem_paired_repeated_and_mixed_with_slices(device):
    rows, cols = numpy.array([0, 2, 0, 0]), numpy.array([1, 4, 1, 3])
    rows_ours, cols_ours = Tensor(rows, device=device), Tensor(cols, device=device)
    check_against_torch(lambda t: t[rows_ours, cols_ours], lambda t: t[torch.tensor(rows), torch.tensor(cols)],
                        [X], device=device)
    check_against_torch(lambda t: t[1:, cols_ours], lambda t: t[1:, torch.tensor(cols)], [X], device=device)


def test_getitem_boolean_mask_and_basic_indexing(device):
    mask = X > 0
    check_against_torch(lambda t: t[Tensor(mask, device=device)], lambda t: t[torch.tensor(mask)], [X], device=device)
    check_against_torch(lambda t: t[::-2, 1:4], lambda t: t.flip(0)[::2, 1:4], [X], device=device)
    check_against_torch(lambda t: t[-1], lambda t: t[-1], [X], device=device)


def test_getitem_out_of_range_names_the_shape(device):
    # Checked by minigrad itself: CuPy would wrap index 7 around to row 3 instead of raising.
    x = Tensor(X).to(device)
    with pytest.raises(IndexError, match=r"getitem: index 7 is out of range for axis 0 of size 4 .*\(4, 5\)"):
        x[Tensor([0, 7]).to(device)]
    with pytest.raises(IndexError, match=r"index -6 is out of range for axis 1 of size 5"):
        x[..., [1, -6]]
    with pytest.raises(IndexError, match=r"index 4 is out of range for axis 0"):
        x[None, [4]]
    with pytest.raises(IndexError, match=r"getitem: index .* does not fit a tensor of shape \(4, 5\)"):
        x[0, 0, 0]  # too many indices: NumPy's (or CuPy's) own error, with the shape added
    assert x[..., [-5, 4]].shape == (4, 2) and x[[True, False, True, False], [0]].shape == (2,)


def test_reshape_permute_transpose_flatten_match_torch(device):
    x = numpy.random.default_rng(1).standard_normal((2, 3, 4, 5))
    for ours, theirs in [
        (lambda t: t.reshape(6, -1), lambda t: t.reshape(6, -1)),
        (lambda t: t.permute(0, 2, 3, 1), lambda t: t.permute(0, 2, 3, 1)),
        (lambda t: t.permute(-1, 0, -2, 1), lambda t: t.permute(-1, 0, -2, 1)),
        (lambda t: t.transpose(1, -1), lambda t: t.transpose(1, -1)),
        (lambda t: t.flatten(1, 2), lambda t: t.flatten(1, 2)),
        (lambda t: t.flatten(-2), lambda t: t.flatten(-2)),
        (lambda t: t.T, lambda t: t.permute(3, 2, 1, 0)),
    ]:
        check_against_torch(ours, theirs, [x], device=device)


def test_shape_errors_name_the_shape():
    x = Tensor(numpy.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"permute: \(0, 1, 5\) is not a permutation of the 3 dimensions"):
        F.permute(x, 0, 1, 5)  # 5 % 3 == 2 must not sneak through
    with pytest.raises(ValueError, match="not a permutation"):
        F.permute(x, 0, 1, -4)
    with pytest.raises(ValueError, match="not a permutation"):
        F.permute(x, 0, 1)
    with pytest.raises(IndexError, match=r"transpose: dim 3 is out of range for a tensor of shape \(2, 3, 4\)"):
        F.transpose(x, 0, 3)
    with pytest.raises(IndexError, match=r"flatten: dim 5 is out of range for a tensor of shape \(2, 3, 4\)"):
        F.flatten(x, 5)
    with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"):
        F.flatten(x, 2, 1)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3, 4\) \(24 values\) into \(5, -1\)"):
        F.reshape(x, 5, -1)
    with pytest.raises(ValueError, match="cannot reshape"):
        F.reshape(x, -1, -1)
