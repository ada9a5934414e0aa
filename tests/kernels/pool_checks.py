"""Helpers shared by the pooling kernel tests: torch references, the check_* comparisons, cases and strategies.

The check_* helpers take a ``device``: inputs are made with NumPy, moved there for the kernels, and the
results (and the kernels' saved argmax) brought back to NumPy to be compared with torch's (CPU) results.
They check the reference kernels unless ``kernels`` names another module with the same functions (the fast
one, minigrad.kernels.fast.max_pool / avg_pool).
"""

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume
from hypothesis import strategies as st

from minigrad.kernels import avg_pool, max_pool
from minigrad.kernels.geometry import pool_output_size
from minigrad.testing.tolerance import assert_close
from tests.kernels import back, on

FLOAT64 = (1e-12, 1e-12)  # element-wise; float32 by the tolerance policy (minigrad/testing/tolerance.py)


def random_input(shape, dtype, seed=0):
    """Random floats: ties inside a window have probability ~0, so the argmax is unambiguous."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def torch_reference(torch_op, x, grad_seed=1, **kwargs):
    """torch's output and input gradient for a random upstream gradient (returned too)."""
    tx = torch.tensor(x, requires_grad=True)
    out = torch_op(tx, **kwargs)
    grad_out = np.random.default_rng(grad_seed).standard_normal(tuple(out.shape)).astype(x.dtype)
    # A max-pool window made only of padding (possible with dilation) outputs -inf; torch then sends its
    # gradient to a bogus index, even into another image (see test_max_pool_all_padding_window_*), we drop it.
    grad_out[np.isneginf(out.detach().numpy())] = 0
    (grad_x,) = torch.autograd.grad(out, tx, torch.tensor(grad_out))
    return out.detach().numpy(), grad_x.numpy(), grad_out


def assert_matches(ours, theirs, dtype, what=""):
    """Same dtype and shape, and equal within the policy (float32: sums no longer than the larger array)."""
    assert ours.dtype == dtype, f"dtype changed: {ours.dtype} != {dtype}"
    assert ours.shape == theirs.shape
    assert_close(ours, theirs, what, float64=FLOAT64)


# The check_* helpers run the kernels on ``device``; ``x`` is a NumPy array or one already on that device.
def check_max_pool(x, device="cpu", kernels=max_pool, **kwargs):
    expected_out, expected_grad, grad_out = torch_reference(F.max_pool2d, back(x), **kwargs)
    out, ctx = kernels.max_pool2d_forward(on(device, x), **kwargs)
    assert_matches(back(out), expected_out, x.dtype.type)
    assert_matches(back(kernels.max_pool2d_backward(on(device, grad_out), ctx)), expected_grad, x.dtype.type)


def check_avg_pool(x, device="cpu", kernels=avg_pool, **kwargs):
    expected_out, expected_grad, grad_out = torch_reference(F.avg_pool2d, back(x), **kwargs)
    out, ctx = kernels.avg_pool2d_forward(on(device, x), **kwargs)
    assert_matches(back(out), expected_out, x.dtype.type)
    assert_matches(back(kernels.avg_pool2d_backward(on(device, grad_out), ctx)), expected_grad, x.dtype.type)


def check_adaptive(x, output_size, device="cpu", kernels=avg_pool):
    expected_out, expected_grad, grad_out = torch_reference(F.adaptive_avg_pool2d, back(x), output_size=output_size)
    out, ctx = kernels.adaptive_avg_pool2d_forward(on(device, x), output_size)
    assert_matches(back(out), expected_out, x.dtype.type)
    assert_matches(back(kernels.adaptive_avg_pool2d_backward(on(device, grad_out), ctx)), expected_grad,
                   x.dtype.type)
    return ctx


# Max pooling's cases; average pooling runs those without dilation (AVG_CASES in test_avg_pool.py).
MAX_CASES = [
    ((1, 3, 7, 5), dict(kernel_size=3, stride=2, padding=1)),  # batch 1, odd sizes
    ((2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),  # non-square kernel and stride
    ((2, 2, 6, 6), dict(kernel_size=3, stride=1, padding=1)),  # GoogLeNet's branch-4 pool
    ((2, 4, 9, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),  # GoogLeNet's downsampling pool
    ((2, 2, 8, 7), dict(kernel_size=2)),  # stride None = kernel
    ((2, 2, 9, 10), dict(kernel_size=3, stride=1, padding=1, dilation=2)),
    ((2, 2, 11, 9), dict(kernel_size=(2, 3), stride=(2, 1), padding=1, dilation=(3, 2), ceil_mode=True)),
    ((2, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # H=6, k=3, s=2, p=1 ceil
    ((2, 2, 5, 5), dict(kernel_size=2, stride=2, ceil_mode=True)),  # last window hangs off the edge
    ((2, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),  # last window dropped
    ((2, 3, 1, 1), dict(kernel_size=1)),  # 1x1 map
    ((2, 3, 1, 1), dict(kernel_size=2, stride=1, padding=1)),  # 1x1 map, padded
    ((2, 3, 5, 5), dict(kernel_size=5)),  # kernel equal to the input
    ((3, 7, 6), dict(kernel_size=3, stride=2, padding=1)),  # unbatched (C, H, W)
]

# Average pooling's cases: max pooling's without dilation, each with three divisor rules.
AVG_CASES = [(shape, kwargs) for shape, kwargs in MAX_CASES if "dilation" not in kwargs]
AVG_OPTIONS = [dict(count_include_pad=True), dict(count_include_pad=False), dict(divisor_override=3)]

# Adaptive pooling's cases, with the path the fast kernel takes for each.
ADAPTIVE_CASES = [
    ((2, 3, 14, 14), 4, "matrix"),  # GoogLeNet's aux heads: unequal, overlapping windows
    ((2, 3, 5, 5), 3, "matrix"),
    ((2, 3, 1, 1), 4, "matrix"),  # output larger than the input: pixels repeat
    ((2, 3, 7, 7), 1, "global"),
    ((1, 3, 6, 9), (4, 2), "matrix"),
    ((2, 3, 8, 12), (4, 3), "blocks"),
    ((2, 3, 6, 9), (None, 3), "blocks"),
    ((2, 3, 5, 7), (3, None), "matrix"),
    ((3, 14, 14), 4, "matrix"),  # unbatched
    ((3, 6, 6), 1, "global"),
]


# Property tests: hypothesis draws the geometry, torch is the oracle.
@st.composite
def pool_geometries(draw, with_dilation):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    geometry = dict(
        kernel_size=kernel,
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=(draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2))),
        ceil_mode=draw(st.booleans()),
    )
    if with_dilation:
        geometry["dilation"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    dilation = geometry.get("dilation", (1, 1))
    for axis in (0, 1):
        size = pool_output_size(shape[2 + axis], kernel[axis], geometry["stride"][axis],
                                geometry["padding"][axis], dilation[axis], geometry["ceil_mode"])
        assume(size >= 1)
    return shape, geometry


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
SHARED_DEVICE = dict(suppress_health_check=[HealthCheck.function_scoped_fixture])
