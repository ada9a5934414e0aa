"""Pooling geometry: torch's output-size rules (ceil mode's last window included), and what all three pooling
kernels share through minigrad/kernels/pool_geometry.py: chunked batches, fresh writeable gradients, every
device, and errors that name the op, the shapes and the fix.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigrad import backend
from minigrad.kernels import pool_geometry
from minigrad.kernels.avg_pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
)
from minigrad.kernels.max_pool import max_pool2d_backward, max_pool2d_forward
from minigrad.kernels.pool_geometry import pool_output_size
from minigrad.testing.tolerance import assert_close
from tests.kernels.pool_checks import check_avg_pool, check_max_pool, random_input

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
# Things a caller relies on: chunked batches, fresh writeable gradients, every device
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batches_split_into_cache_sized_chunks_give_the_same_result(monkeypatch, dtype, device):
    monkeypatch.setattr(pool_geometry, "_CHUNK_ELEMENTS", 100)  # 2 images of 2x3x3x3 outputs per chunk, 7 images
    x = random_input((7, 3, 6, 6), dtype)
    check_max_pool(x, device, kernel_size=3, stride=2, padding=1, ceil_mode=True)
    check_avg_pool(x, device, kernel_size=3, stride=1, padding=1, count_include_pad=False)


@pytest.mark.parametrize(
    "forward, backward, args",
    [
        (max_pool2d_forward, max_pool2d_backward, (3, 1, 1)),
        (max_pool2d_forward, max_pool2d_backward, (2,)),  # no padding: no padded copy
        (avg_pool2d_forward, avg_pool2d_backward, (3, 2, 1)),
        (adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, (1,)),
        (adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, (3,)),
        (adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, (4,)),
        (adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, (6,)),
    ],
)
def test_gradients_are_fresh_writeable_arrays(forward, backward, args):
    # the engine accumulates gradients in place, so a read-only broadcast view or a view of grad_out would break
    x = random_input((2, 3, 6, 6), np.float32)
    out, ctx = forward(x, *args)
    grad_out = np.ones_like(out)
    grad_x = backward(grad_out, ctx)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float32
    assert grad_x.flags.writeable and grad_x.flags.c_contiguous
    assert not np.shares_memory(grad_x, grad_out) and not np.shares_memory(grad_x, x)


def test_on_every_device(device):
    """The same numbers on each device (CuPy runs only where a GPU answers)."""
    x = random_input((2, 3, 7, 7), np.float32)
    grad_seed = np.random.default_rng(5)
    for forward, backward, args in [
        (max_pool2d_forward, max_pool2d_backward, (3, 2, 1, 1, True)),
        (avg_pool2d_forward, avg_pool2d_backward, (3, 2, 1, True, False)),
        (adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, (3,)),
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
        (lambda: max_pool2d_forward(np.zeros((5, 5)), 2), ValueError, r"max_pool2d: expected a 4-D .* \(5, 5\)"),
        (lambda: avg_pool2d_forward(np.zeros((1, 1, 1, 5, 5)), 2), ValueError, r"avg_pool2d: expected a 4-D"),
        (lambda: adaptive_avg_pool2d_forward(np.zeros(5), 1), ValueError, r"adaptive_avg_pool2d: expected a 4-D"),
        (lambda: max_pool2d_forward(X, 6), ValueError,
         r"max_pool2d: the 6x6 window .* does not fit the padded 5x5 input \(input \(2, 3, 5, 5\).*smaller kernel"),
        (lambda: avg_pool2d_forward(X, (2, 8), padding=1), ValueError, r"avg_pool2d: the 2x8 window .* 7x7 input"),
        (lambda: max_pool2d_forward(X, 3, dilation=3), ValueError, r"max_pool2d: the 7x7 window .* would be 0x0"),
        (lambda: max_pool2d_forward(X, 2, stride=0), ValueError, r"max_pool2d: stride must be >= 1, got \(0, 0\)"),
        (lambda: avg_pool2d_forward(X, 2, stride=(1, -1)), ValueError, r"avg_pool2d: stride must be >= 1"),
        (lambda: max_pool2d_forward(X, 0), ValueError, r"max_pool2d: kernel_size must be >= 1"),
        (lambda: max_pool2d_forward(X, 2, dilation=0), ValueError, r"max_pool2d: dilation must be >= 1"),
        (lambda: max_pool2d_forward(X, 2, padding=-1), ValueError, r"max_pool2d: padding must be >= 0"),
        (lambda: max_pool2d_forward(X, 3, padding=2), ValueError,
         r"max_pool2d: padding \(2, 2\) is more than half the kernel \(3, 3\).*at most kernel_size // 2 = \(1, 1\)"),
        (lambda: avg_pool2d_forward(X, (4, 2), padding=(2, 2)), ValueError, r"avg_pool2d: padding .* more than half"),
        (lambda: max_pool2d_forward(X, 2.5), TypeError, r"max_pool2d: kernel_size must be an int or a pair"),
        (lambda: max_pool2d_forward(X, (2, 2, 2)), TypeError, r"max_pool2d: kernel_size must be an int or a pair"),
        (lambda: max_pool2d_forward(np.zeros((1, 1, 4, 4), np.int64), 2), TypeError,
         r"max_pool2d: expected a floating-point input, got dtype int64"),
        (lambda: avg_pool2d_forward(X, 2, divisor_override=0), ValueError, r"avg_pool2d: divisor_override must not"),
        (lambda: adaptive_avg_pool2d_forward(X, 0), ValueError,
         r"adaptive_avg_pool2d: output_size must be >= 1, got 0 \(input \(2, 3, 5, 5\)\)"),
        (lambda: adaptive_avg_pool2d_forward(X, (3, -1)), ValueError, r"adaptive_avg_pool2d: output_size must be >="),
        (lambda: adaptive_avg_pool2d_forward(X, "7"), TypeError, r"adaptive_avg_pool2d: output_size must be an int"),
        (lambda: adaptive_avg_pool2d_forward(X, (1, 2, 3)), TypeError, r"adaptive_avg_pool2d: output_size must be"),
        (lambda: max_pool2d_backward(np.zeros((2, 3, 3, 3)), max_pool2d_forward(X, 2)[1]), ValueError,
         r"max_pool2d backward: grad_out has shape \(2, 3, 3, 3\) but the forward output had shape \(2, 3, 2, 2\)"),
    ],
)
def test_errors_name_the_op_the_shapes_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()
