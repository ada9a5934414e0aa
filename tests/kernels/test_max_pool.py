"""The reference max pooling kernels: torch parity (forward and backward, float64 and float32), ties and NaN,
the winning taps as torch's indices, hypothesis properties. (The fast kernels: tests/kernels/fast/.)

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results (and the kernels' saved argmax) brought back to NumPy to be compared with torch's (CPU) results.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.kernels.geometry import pool_output_size
from minigrad.kernels.max_pool import max_pool2d_backward, max_pool2d_forward
from tests.kernels import back, on
from tests.kernels.pool_checks import MAX_CASES, SHARED_DEVICE, check_max_pool, pool_geometries, random_input

# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, kwargs", MAX_CASES)
def test_max_pool_matches_torch(shape, kwargs, dtype, device):
    check_max_pool(random_input(shape, dtype), device, **kwargs)


def test_max_pool_small_grid_matches_torch(device):
    """Every small geometry, floor and ceil mode, forward and backward."""
    x = random_input((1, 2, 7, 6), np.float64)
    for kernel, stride, dilation, ceil_mode in itertools.product((1, 2, 3), (1, 2, 3), (1, 2), (False, True)):
        for padding in range(kernel // 2 + 1):
            if pool_output_size(6, kernel, stride, padding, dilation, ceil_mode) >= 1:
                check_max_pool(x, device, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                               ceil_mode=ceil_mode)


def test_max_pool_ties_go_to_the_first_maximum_like_torch(device):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 0, 2, 1] = 5.0  # three equal maxima in the overlapping windows
    kwargs = dict(kernel_size=3, stride=1, padding=1)
    check_max_pool(x, device, **kwargs)  # constant zeros elsewhere: many ties in every window
    out, ctx = max_pool2d_forward(on(device, x), **kwargs)
    grad = back(max_pool2d_backward(on(device, np.ones(out.shape)), ctx))
    # windows that see (1, 1) pick it (first in row-major order): it collects 9 of the 16 gradients
    assert grad[0, 0, 1, 1] == 9.0
    # all-equal windows pick their first element, padding never counts
    _, ctx = max_pool2d_forward(on(device, np.ones((1, 1, 4, 4))), 2)
    np.testing.assert_array_equal(back(max_pool2d_backward(on(device, np.ones((1, 1, 2, 2))), ctx))[0, 0],
                                  [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_max_pool_nan_propagates_and_its_gradient_goes_where_torch_sends_it(device):
    x = random_input((1, 2, 5, 5), np.float64)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[0, 1, 4, 0] = np.nan
    for kwargs in (dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2, stride=2, ceil_mode=True)):
        tx = torch.tensor(x, requires_grad=True)
        expected = F.max_pool2d(tx, **kwargs)
        grad_out = random_input(tuple(expected.shape), np.float64, seed=3)
        expected.backward(torch.tensor(grad_out))
        out, ctx = max_pool2d_forward(on(device, x), **kwargs)
        np.testing.assert_array_equal(back(out), expected.detach().numpy())  # equal_nan by default
        grad_x = back(max_pool2d_backward(on(device, grad_out), ctx))
        np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-12, atol=0)


def test_max_pool_all_padding_window_outputs_minus_inf_and_drops_its_gradient(device):
    # W=1, kernel 2 with dilation 2 and padding 1: the taps sit at columns -1 and 1, both outside the input.
    # torch allows this geometry (its padding check uses the undilated kernel) and outputs -inf, as we do.
    x = np.array([[[[1.0], [2.0]]], [[[3.0], [4.0]]]])
    out, ctx = max_pool2d_forward(on(device, x), (1, 2), 1, (0, 1), (1, 2))
    expected, _ = F.max_pool2d(torch.tensor(x), (1, 2), 1, (0, 1), (1, 2), return_indices=True)
    np.testing.assert_array_equal(back(out), expected.numpy())
    assert np.all(np.isneginf(back(out)))
    # No input element is in the window, so no input gets the gradient. (torch routes it to flat indices
    # 1 and 2 of each plane: the wrong pixel, or the next image's plane.)
    np.testing.assert_array_equal(back(max_pool2d_backward(on(device, np.ones(out.shape)), ctx)), np.zeros_like(x))


def test_max_pool_argmax_is_the_winning_kernel_tap(device):
    x = random_input((2, 3, 7, 7), np.float64)
    _, ctx = max_pool2d_forward(on(device, x), 3, 2, 1)
    argmax = back(ctx.argmax)
    _, torch_indices = F.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    # torch stores the flat input index; convert our tap (i * kW + j) to that
    rows = np.arange(4)[:, None] * 2 - 1 + argmax // 3
    cols = np.arange(4)[None, :] * 2 - 1 + argmax % 3
    np.testing.assert_array_equal(rows * 7 + cols, torch_indices.numpy())


def test_max_pool_of_an_empty_batch_has_an_empty_gradient(device):
    out, ctx = max_pool2d_forward(on(device, np.zeros((0, 3, 5, 5), dtype=np.float32)), 3, 1, 1)
    assert out.shape == (0, 3, 5, 5)
    assert max_pool2d_backward(out, ctx).shape == (0, 3, 5, 5)


# ---------------------------------------------------------------------------
# Property tests: hypothesis draws the geometry, torch is the oracle
# ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(case=pool_geometries(with_dilation=True), seed=st.integers(0, 2**16))
def test_max_pool_property_matches_torch(case, seed, device):
    shape, geometry = case
    check_max_pool(random_input(shape, np.float64, seed), device, **geometry)
