"""The window geometry every window op shares (minigrad/kernels/geometry.py): ``pair`` and pads per side, the
output-size rule against torch's (ceil mode's last window included), the tap slices, and what the pooling
kernels, reference and fast, get from it: fresh writeable gradients, every device, and errors that name the
op, the shapes and the fix.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigrad import backend
from minigrad.kernels import avg_pool, max_pool
from minigrad.kernels.fast import avg_pool as fast_avg_pool
from minigrad.kernels.fast import max_pool as fast_max_pool
from minigrad.kernels.geometry import (
    conv_output_size,
    kernel_taps,
    output_size,
    pads_per_side,
    pair,
    pool_output_size,
    pool_window_geometry,
    tap_slice,
    window_geometry,
)
from minigrad.testing.tolerance import assert_close
from tests.kernels.pool_checks import random_input

POOL_MODULES = [(max_pool, avg_pool), (fast_max_pool, fast_avg_pool)]
POOL_IDS = ["reference", "fast"]


def test_pair_and_pads_per_side():
    assert pair(3, "stride", "op") == (3, 3)
    assert pair([2, 1], "stride", "op") == (2, 1)
    assert pair(np.int64(2), "stride", "op") == (2, 2)
    with pytest.raises(TypeError, match="op: stride must be an int or a pair of ints, got 1.5"):
        pair(1.5, "stride", "op")
    with pytest.raises(TypeError, match="op: stride must be an int or a pair"):
        pair(True, "stride", "op")
    with pytest.raises(ValueError, match=r"op: stride must be >= 1 in both dimensions, got \(1, 0\)"):
        pair((1, 0), "stride", "op", minimum=1)
    assert pads_per_side(2, "op") == ((2, 2), (2, 2))
    assert pads_per_side((1, 2), "op") == ((1, 1), (2, 2))
    assert pads_per_side(((0, 1), (2, 3)), "op") == ((0, 1), (2, 3))


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation", [(7, 3, 2, 1, 1), (8, 2, 3, 0, 2), (5, 5, 1, 0, 1)]
)
def test_conv_output_size_matches_torch(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size, size)
    expected = torch.nn.functional.conv2d(
        x, torch.zeros(1, 1, kernel, kernel), None, stride, padding, dilation
    )
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected.shape[-1]
    assert conv_output_size(size, kernel, stride, (padding, padding), dilation) == expected.shape[-1]


def test_one_rule_for_convolution_and_pooling():
    assert conv_output_size is output_size and pool_output_size is output_size
    # uneven pads: (before, after), and the last-window rule counts only the pad before
    assert output_size(5, 2, 2, (0, 1)) == 3 and output_size(5, 2, 2, (1, 0), ceil_mode=True) == 3


def test_tap_slices_are_the_windows_taps_and_the_padded_size_holds_every_window():
    """tap_slice(i, j)[oh, ow] is x_padded[oh*s + i*d, ow*s + j*d] for every window and tap (ceil mode too)."""
    x = random_input((1, 1, 7, 6), np.float64)
    for geometry in (window_geometry(x.shape, (3, 2), (2, 1), ((1, 2), (0, 1)), (2, 1)),
                     pool_window_geometry("max_pool2d", x.shape, 3, 2, 1, 1, True)):
        (top, _), (left, _) = geometry.pads
        padded = np.full((1, 1, *geometry.padded_size), np.nan)
        padded[:, :, top : top + 7, left : left + 6] = x
        taps = list(kernel_taps(geometry))
        assert [tap for tap, _, _ in taps] == list(range(geometry.kernel[0] * geometry.kernel[1]))
        for _, i, j in taps:
            window = tap_slice(padded, i, j, geometry)
            assert window.shape[2:] == geometry.out_size
            for oh, ow in np.ndindex(*geometry.out_size):
                row = oh * geometry.stride[0] + i * geometry.dilation[0]
                col = ow * geometry.stride[1] + j * geometry.dilation[1]
                np.testing.assert_array_equal(window[0, 0, oh, ow], padded[0, 0, row, col])

# ---------------------------------------------------------------------------
# Output size (including the ceil-mode last-window rule)
# ---------------------------------------------------------------------------


def test_output_size_matches_torch_on_a_grid():
    compared = 0
    for size, kernel, stride, dilation, ceil_mode in itertools.product(
        range(1, 9), range(1, 5), range(1, 4), (1, 2), (False, True)
    ):
        for padding in range(kernel // 2 + 1):
            ours = pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
            if ours < 1:
                with pytest.raises(RuntimeError):
                    F.max_pool2d(torch.zeros(1, 1, size, 1), (kernel, 1), (stride, 1), (padding, 0),
                                 (dilation, 1), ceil_mode)
                continue
            theirs = F.max_pool2d(torch.zeros(1, 1, size, 1), (kernel, 1), (stride, 1), (padding, 0),
                                  (dilation, 1), ceil_mode).shape[2]
            assert ours == theirs, (size, kernel, stride, padding, dilation, ceil_mode)
            compared += 1
    assert compared > 500


def test_ceil_mode_drops_a_last_window_that_would_start_in_the_right_padding():
    # H=5, k=2, s=2, p=1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start at 3*2 - 1 = 5,
    # past the input, so torch (and we) keep 3.
    assert pool_output_size(5, 2, 2, 1, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2, 1, ceil_mode=False) == 3
    assert pool_output_size(5, 2, 2, 0, ceil_mode=True) == 3  # the last window hangs off the edge: kept
    assert pool_output_size(5, 2, 2, 0, ceil_mode=False) == 2
    assert pool_output_size(6, 3, 2, 1, ceil_mode=True) == 4


# ---------------------------------------------------------------------------
# Things a caller relies on: fresh writeable gradients, every device
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("modules", POOL_MODULES, ids=POOL_IDS)
@pytest.mark.parametrize(
    "kernel, args",
    [
        ("max_pool2d", (3, 1, 1)),
        ("max_pool2d", (2,)),  # no padding: no padded copy
        ("avg_pool2d", (3, 2, 1)),
        ("adaptive_avg_pool2d", (1,)),
        ("adaptive_avg_pool2d", (3,)),
        ("adaptive_avg_pool2d", (4,)),
        ("adaptive_avg_pool2d", (6,)),
    ],
)
def test_gradients_are_fresh_writeable_arrays(modules, kernel, args):
    # the engine accumulates gradients in place, so a read-only broadcast view or a view of grad_out would break
    module = modules[0] if kernel == "max_pool2d" else modules[1]
    forward, backward = getattr(module, f"{kernel}_forward"), getattr(module, f"{kernel}_backward")
    x = random_input((2, 3, 6, 6), np.float32)
    out, ctx = forward(x, *args)
    grad_out = np.ones_like(out)
    grad_x = backward(grad_out, ctx)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float32
    assert grad_x.flags.writeable and grad_x.flags.c_contiguous
    assert not np.shares_memory(grad_x, grad_out) and not np.shares_memory(grad_x, x)


@pytest.mark.parametrize("modules", POOL_MODULES, ids=POOL_IDS)
def test_on_every_device(modules, device):
    """The same numbers on each device (CuPy runs only where a GPU answers)."""
    max_kernels, avg_kernels = modules
    x = random_input((2, 3, 7, 7), np.float32)
    grad_seed = np.random.default_rng(5)
    for forward, backward, args in [
        (max_kernels.max_pool2d_forward, max_kernels.max_pool2d_backward, (3, 2, 1, 1, True)),
        (avg_kernels.avg_pool2d_forward, avg_kernels.avg_pool2d_backward, (3, 2, 1, True, False)),
        (avg_kernels.adaptive_avg_pool2d_forward, avg_kernels.adaptive_avg_pool2d_backward, (3,)),
    ]:
        out_cpu, ctx_cpu = forward(x, *args)
        grad_out = grad_seed.standard_normal(out_cpu.shape).astype(np.float32)
        out, ctx = forward(backend.to_device(x, device), *args)
        grad_x = backward(backend.to_device(grad_out, device), ctx)
        assert backend.device_of(out) == device and backend.device_of(grad_x) == device
        assert_close(out, out_cpu, f"{forward.__name__} on {device}", terms=x.size)
        assert_close(grad_x, backward(grad_out, ctx_cpu), f"{backward.__name__} on {device}", terms=x.size)


# ---------------------------------------------------------------------------
# Errors: name the op, the shapes, and the fix
# ---------------------------------------------------------------------------

X = np.zeros((2, 3, 5, 5), np.float32)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, a: m.max_pool2d_forward(np.zeros((5, 5)), 2), ValueError, r"max_pool2d: expected a 4-D .* \(5, 5\)"),
        (lambda m, a: a.avg_pool2d_forward(np.zeros((1, 1, 1, 5, 5)), 2), ValueError, r"avg_pool2d: expected a 4-D"),
        (lambda m, a: a.adaptive_avg_pool2d_forward(np.zeros(5), 1), ValueError,
         r"adaptive_avg_pool2d: expected a 4-D"),
        (lambda m, a: m.max_pool2d_forward(X, 6), ValueError,
         r"max_pool2d: the 6x6 window .* does not fit the padded 5x5 input \(input \(2, 3, 5, 5\).*smaller kernel"),
        (lambda m, a: a.avg_pool2d_forward(X, (2, 8), padding=1), ValueError,
         r"avg_pool2d: the 2x8 window .* 7x7 input"),
        (lambda m, a: m.max_pool2d_forward(X, 3, dilation=3), ValueError,
         r"max_pool2d: the 7x7 window .* would be 0x0"),
        (lambda m, a: m.max_pool2d_forward(X, 2, stride=0), ValueError,
         r"max_pool2d: stride must be >= 1, got \(0, 0\)"),
        (lambda m, a: a.avg_pool2d_forward(X, 2, stride=(1, -1)), ValueError, r"avg_pool2d: stride must be >= 1"),
        (lambda m, a: m.max_pool2d_forward(X, 0), ValueError, r"max_pool2d: kernel_size must be >= 1"),
        (lambda m, a: m.max_pool2d_forward(X, 2, dilation=0), ValueError, r"max_pool2d: dilation must be >= 1"),
        (lambda m, a: m.max_pool2d_forward(X, 2, padding=-1), ValueError, r"max_pool2d: padding must be >= 0"),
        (lambda m, a: m.max_pool2d_forward(X, 3, padding=2), ValueError,
         r"max_pool2d: padding \(2, 2\) is more than half the kernel \(3, 3\).*at most kernel_size // 2 = \(1, 1\)"),
        (lambda m, a: a.avg_pool2d_forward(X, (4, 2), padding=(2, 2)), ValueError,
         r"avg_pool2d: padding .* more than half"),
        (lambda m, a: m.max_pool2d_forward(X, 2.5), TypeError, r"max_pool2d: kernel_size must be an int or a pair"),
        (lambda m, a: m.max_pool2d_forward(X, (2, 2, 2)), TypeError,
         r"max_pool2d: kernel_size must be an int or a pair"),
        (lambda m, a: m.max_pool2d_forward(np.zeros((1, 1, 4, 4), np.int64), 2), TypeError,
         r"max_pool2d: expected a floating-point input, got dtype int64"),
        (lambda m, a: a.avg_pool2d_forward(X, 2, divisor_override=0), ValueError,
         r"avg_pool2d: divisor_override must not"),
        (lambda m, a: a.adaptive_avg_pool2d_forward(X, 0), ValueError,
         r"adaptive_avg_pool2d: output_size must be >= 1, got 0 \(input \(2, 3, 5, 5\)\)"),
        (lambda m, a: a.adaptive_avg_pool2d_forward(X, (3, -1)), ValueError,
         r"adaptive_avg_pool2d: output_size must be >="),
        (lambda m, a: a.adaptive_avg_pool2d_forward(X, "7"), TypeError,
         r"adaptive_avg_pool2d: output_size must be an int"),
        (lambda m, a: a.adaptive_avg_pool2d_forward(X, (1, 2, 3)), TypeError,
         r"adaptive_avg_pool2d: output_size must be"),
        (lambda m, a: m.max_pool2d_backward(np.zeros((2, 3, 3, 3)), m.max_pool2d_forward(X, 2)[1]), ValueError,
         r"max_pool2d backward: grad_out has shape \(2, 3, 3, 3\) but the forward output had shape \(2, 3, 2, 2\)"),
    ],
)
@pytest.mark.parametrize("modules", POOL_MODULES, ids=POOL_IDS)
def test_errors_name_the_op_the_shapes_and_the_fix(call, error, match, modules):
    with pytest.raises(error, match=match):
        call(*modules)
