"""Concat/split kernels: torch parity, round trips, gradient adjointness, errors.

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results brought back to NumPy. Concatenating and splitting only copy values, so they are exact everywhere.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad import backend
from minigrad.kernels.concat import concat, concat_backward, split, split_backward
from tests.kernels import back, on


def random_arrays(shapes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [1, -3])
def test_concat_matches_torch_cat_on_inception_branches(dtype, axis, device):
    xs = random_arrays([(2, 4, 3, 3), (2, 8, 3, 3), (2, 2, 3, 3), (2, 2, 3, 3)], dtype)
    out = concat([on(device, x) for x in xs], axis)
    expected = torch.cat([torch.from_numpy(x) for x in xs], dim=axis).numpy()
    assert out.dtype == dtype and backend.device_of(out) == device
    np.testing.assert_array_equal(back(out), expected)


@pytest.mark.parametrize("sizes", [[1, 3, 2], [6], [0, 4, 2], 4, 2, 6, 10])
@pytest.mark.parametrize("axis", [0, 2, -1])
def test_split_matches_torch_split(sizes, axis, device):
    (x,) = random_arrays([(6, 3, 6)])
    pieces = split(on(device, x), sizes, axis)
    expected = torch.split(torch.from_numpy(x), sizes, dim=axis)
    assert len(pieces) == len(expected)
    for piece, theirs in zip(pieces, expected):
        np.testing.assert_array_equal(back(piece), theirs.numpy())


def test_split_then_concat_round_trips(device):
    (x,) = random_arrays([(2, 7, 3)], np.float32)
    pieces = split(on(device, x), [2, 0, 5], 1)
    np.testing.assert_array_equal(back(concat(pieces, 1)), x)
    assert concat(pieces, 1).dtype == np.float32


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    ndim=st.integers(1, 4),
    axis_seed=st.integers(0, 100),
    seed=st.integers(0, 1000),
)
def test_gradients_are_adjoint(lengths, ndim, axis_seed, seed, device):
    """<concat(xs), g> == sum_i <x_i, concat_backward(g)_i>, and the same for split: adjoint linear maps."""
    axis = axis_seed % ndim
    base = [2, 3, 1, 2][:ndim]
    shapes = [tuple(base[:axis] + [length] + base[axis + 1:]) for length in lengths]
    xs = random_arrays(shapes, seed=seed)
    out = back(concat([on(device, x) for x in xs], axis))
    (grad_out,) = random_arrays([out.shape], seed=seed + 1)
    grads = [back(grad) for grad in concat_backward(on(device, grad_out), lengths, axis)]
    lhs = np.sum(out * grad_out)
    rhs = sum(np.sum(x * g) for x, g in zip(xs, grads))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    for x, g in zip(xs, grads):
        assert g.shape == x.shape

    # split: x -> pieces, adjoint pieces' gradients -> grad_x
    pieces = [back(piece) for piece in split(on(device, out), lengths, axis)]
    piece_grads = random_arrays([p.shape for p in pieces], seed=seed + 2)
    grad_x = back(split_backward([on(device, g) for g in piece_grads], lengths, axis, like=on(device, out)))
    lhs = sum(np.sum(p * g) for p, g in zip(pieces, piece_grads))
    np.testing.assert_allclose(lhs, np.sum(out * grad_x), rtol=1e-12, atol=1e-12)


def test_split_backward_matches_torch_with_missing_gradients(device):
    (x,) = random_arrays([(2, 6, 2)], np.float32)
    tx = torch.tensor(x, requires_grad=True)
    a, b, c = torch.split(tx, [1, 2, 3], dim=1)
    grad_a, grad_c = random_arrays([a.shape, c.shape], np.float32, seed=3)
    torch.autograd.backward([a, c], [torch.from_numpy(grad_a), torch.from_numpy(grad_c)])  # b unused
    grad_x = split_backward([on(device, grad_a), None, on(device, grad_c)], [1, 2, 3], 1, like=on(device, x))
    assert grad_x.dtype == np.float32 and backend.device_of(grad_x) == device
    np.testing.assert_array_equal(back(grad_x), tx.grad.numpy())
    np.testing.assert_array_equal(back(split_backward([None, None], 3, 1, like=on(device, x))), np.zeros_like(x))


def test_concat_backward_matches_torch(device):
    xs = random_arrays([(3, 2), (3, 5)])
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    (grad_out,) = random_arrays([(3, 7)], seed=1)
    torch.cat(txs, 1).backward(torch.from_numpy(grad_out))
    for ours, tx in zip(concat_backward(on(device, grad_out), [2, 5], 1), txs):
        np.testing.assert_array_equal(back(ours), tx.grad.numpy())


def test_on_every_device(device):
    xp = backend.get_xp(device)
    xs = [xp.asarray(x) for x in random_arrays([(2, 3, 4), (2, 1, 4)], np.float32)]
    out = concat(xs, 1)
    assert backend.device_of(out) == device and out.dtype == xp.float32
    pieces = split(out, [3, 1], 1)
    grad = split_backward([pieces[0], None], [3, 1], 1, like=out)
    expected = np.concatenate([backend.to_numpy(xs[0]), np.zeros((2, 1, 4), np.float32)], 1)
    np.testing.assert_array_equal(backend.to_numpy(grad), expected)


@pytest.mark.parametrize(
    "shapes, axis, fragment",
    [
        ([(2, 3, 4), (2, 3, 5)], 1, "cat: shapes [(2, 3, 4), (2, 3, 5)] differ outside axis 1"),
        ([(2, 3), (2, 3, 1)], 0, "cat: all arrays must have the same number of dimensions, got shapes"),
        ([(2, 3), (2, 3)], 2, "cat: axis 2 is out of range for 2-D arrays (shapes [(2, 3), (2, 3)])"),
        ([(2, 3), (2, 3)], -3, "use an axis in [-2, 1]"),
        ([], 0, "cat: expected a non-empty list"),
    ],
)
def test_concat_errors_name_the_shapes(shapes, axis, fragment):
    with pytest.raises(ValueError) as error:
        concat(random_arrays(shapes), axis)
    assert fragment in str(error.value)


def test_concat_refuses_mixed_dtypes():
    with pytest.raises(TypeError, match=r"cat: arrays have different dtypes \['float32', 'float64'\]"):
        concat([np.ones(2, np.float32), np.ones(2)], 0)


@pytest.mark.parametrize(
    "sizes, axis, fragment",
    [
        ([2, 2], 1, "split: sizes [2, 2] must be non-negative and sum to 5, the length of axis 1 of shape (2, 5)"),
        ([6, -1], 1, "sum to 5"),
        (0, 1, "split: chunk size must be a positive int, got 0 for shape (2, 5)"),
        ([5], 2, "split: axis 2 is out of range for 2-D arrays (shapes [(2, 5)])"),
    ],
)
def test_split_errors_name_the_shapes(sizes, axis, fragment):
    with pytest.raises(ValueError) as error:
        split(np.ones((2, 5)), sizes, axis)
    assert fragment in str(error.value)


def test_split_backward_errors():
    x = np.ones((2, 5))
    with pytest.raises(ValueError, match=r"split: got 1 gradients for 2 pieces \[2, 3\] of shape \(2, 5\)"):
        split_backward([None], [2, 3], 1, like=x)
    with pytest.raises(ValueError, match=r"split: a gradient has shape \(2, 2\) but its piece"):
        split_backward([np.ones((2, 2)), None], [3, 2], 1, like=x)
