"""Pooling kernels: torch parity for max, average and adaptive average pooling (forward and backward,
float64 and float32), output-size rules, ties and NaN, batch chunking, hypothesis properties, errors.

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results (and the kernels' saved argmax) brought back to NumPy to be compared with torch's (CPU) results.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minigrad import backend
from minigrad.kernels import pooling
from minigrad.kernels.pooling import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_output_size,
)
from tests.kernels import assert_same, back, on

TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


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


def assert_matches(ours, theirs, dtype):
    assert ours.dtype == dtype, f"dtype changed: {ours.dtype} != {dtype}"
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[dtype])


# The check_* helpers run the kernels on ``device``; ``x`` is a NumPy array or one already on that device.
def check_max_pool(x, device="cpu", **kwargs):
    expected_out, expected_grad, grad_out = torch_reference(F.max_pool2d, back(x), **kwargs)
    out, ctx = max_pool2d_forward(on(device, x), **kwargs)
    assert_matches(back(out), expected_out, x.dtype.type)
    assert_matches(back(max_pool2d_backward(on(device, grad_out), ctx)), expected_grad, x.dtype.type)


def check_avg_pool(x, device="cpu", **kwargs):
    expected_out, expected_grad, grad_out = torch_reference(F.avg_pool2d, back(x), **kwargs)
    out, ctx = avg_pool2d_forward(on(device, x), **kwargs)
    assert_matches(back(out), expected_out, x.dtype.type)
    assert_matches(back(avg_pool2d_backward(on(device, grad_out), ctx)), expected_grad, x.dtype.type)


def check_adaptive(x, output_size, device="cpu"):
    expected_out, expected_grad, grad_out = torch_reference(F.adaptive_avg_pool2d, back(x), output_size=output_size)
    out, ctx = adaptive_avg_pool2d_forward(on(device, x), output_size)
    assert_matches(back(out), expected_out, x.dtype.type)
    assert_matches(back(adaptive_avg_pool2d_backward(on(device, grad_out), ctx)), expected_grad, x.dtype.type)
    return ctx


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
# Max pooling
# ---------------------------------------------------------------------------

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
    argmax = back(ctx["argmax"])
    _, torch_indices = F.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    # torch stores the flat input index; convert our tap (i * kW + j) to that
    rows = np.arange(4)[:, None] * 2 - 1 + argmax // 3
    cols = np.arange(4)[None, :] * 2 - 1 + argmax % 3
    np.testing.assert_array_equal(rows * 7 + cols, torch_indices.numpy())
    assert argmax.dtype == np.int8


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1, ceil_mode=True),  # GoogLeNet's branch-4 pool
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),  # its pools between stages
    dict(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=(2, 1)),
])
def test_max_pool_winners_are_torchs_flat_indices(kwargs, device):
    """The backward's scatter targets (tap offset + window start, in the padded chunk) are torch's indices."""
    x = random_input((2, 3, 9, 8), np.float64)
    _, ctx = max_pool2d_forward(on(device, x), **kwargs)
    _, torch_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    geometry = ctx["geometry"]
    tap_offsets = np.asarray(pooling._tap_offsets(geometry))
    winners = tap_offsets[back(ctx["argmax"])] + pooling._window_start_indices(np, 2, 3, geometry)
    padded_h, padded_w = geometry.padded_size
    rows = winners % (padded_h * padded_w) // padded_w - geometry.padding[0]
    cols = winners % padded_w - geometry.padding[1]
    np.testing.assert_array_equal(rows * 8 + cols, torch_indices.numpy())


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=1, dilation=(2, 1)),  # no padding: the flat view is of x itself
])
def test_max_pool_stride_1_flat_path_in_chunks_and_on_a_non_contiguous_input(monkeypatch, kwargs, device):
    """Stride 1 runs on each chunk flattened to 1-D, where windows of the dropped positions wrap into the
    next row or image: one-image chunks and a transposed input must not change the result."""
    monkeypatch.setattr(pooling, "_CHUNK_ELEMENTS", 100)
    x = on(device, random_input((5, 3, 7, 6), np.float32)).transpose(0, 1, 3, 2)  # transposed on the device
    check_max_pool(x, device, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 4), stride=1, padding=(1, 2), dilation=(2, 1)),
    dict(kernel_size=(3, 2), stride=1, ceil_mode=True),
])
def test_max_pool_stride_1_rows_then_columns_keeps_torchs_tie_rule(kwargs, device):
    """Values from {0, 1, 2}: most windows hold their maximum several times, in several rows. The
    row-by-row max must still pick the first maximum in row-major order: torch's indices, exactly."""
    x = np.random.default_rng(5).integers(0, 3, (2, 3, 9, 8)).astype(np.float32)
    out, ctx = max_pool2d_forward(on(device, x), **kwargs)
    expected, torch_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(back(out), expected.numpy())  # a max picks a value: exact on every device
    geometry = ctx["geometry"]
    winners = np.asarray(pooling._tap_offsets(geometry))[back(ctx["argmax"])] + pooling._window_start_indices(
        np, 2, 3, geometry)
    padded_h, padded_w = geometry.padded_size
    rows = winners % (padded_h * padded_w) // padded_w - geometry.padding[0]
    cols = winners % padded_w - geometry.padding[1]
    np.testing.assert_array_equal(rows * 8 + cols, torch_indices.numpy())


def test_max_pool_backward_adds_overlapping_windows_in_torchs_order(device):
    """float32, many ties (ReLU-like zeros): the scatter-add sums a pixel's gradients in torch's order,
    so the input gradient is bit for bit torch's, even where one pixel wins several windows. (On a GPU the
    atomic adds of a scatter-add follow no fixed order: there the gradient is compared to 1e-6.)"""
    x = np.maximum(random_input((3, 4, 10, 10), np.float32), 0)
    for stride in (1, 2):
        kwargs = dict(kernel_size=3, stride=stride, padding=1, ceil_mode=True)
        expected_out, expected_grad, grad_out = torch_reference(F.max_pool2d, x, **kwargs)
        out, ctx = max_pool2d_forward(on(device, x), **kwargs)
        np.testing.assert_array_equal(back(out), expected_out)
        assert_same(max_pool2d_backward(on(device, grad_out), ctx), expected_grad, device)


# ---------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------

AVG_CASES = [(shape, kwargs) for shape, kwargs in MAX_CASES if "dilation" not in kwargs]
AVG_OPTIONS = [dict(count_include_pad=True), dict(count_include_pad=False), dict(divisor_override=3)]


@pytest.mark.parametrize("options", AVG_OPTIONS, ids=["include_pad", "exclude_pad", "divisor_3"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, kwargs", AVG_CASES)
def test_avg_pool_matches_torch(shape, kwargs, dtype, options, device):
    check_avg_pool(random_input(shape, dtype), device, **kwargs, **options)


def test_avg_pool_divisor_rules_match_torch_on_a_grid(device):
    """Every small geometry x ceil_mode x count_include_pad: the divisor rules are easy to get wrong."""
    for height, width in ((5, 6), (6, 7), (1, 3)):
        x = random_input((1, 2, height, width), np.float64)
        for kernel, stride, ceil_mode, include_pad in itertools.product(
            (1, 2, 3, 4), (1, 2, 3), (False, True), (True, False)
        ):
            for padding in range(kernel // 2 + 1):
                sizes = [pool_output_size(n, kernel, stride, padding, 1, ceil_mode) for n in (height, width)]
                if min(sizes) >= 1:
                    check_avg_pool(x, device, kernel_size=kernel, stride=stride, padding=padding,
                                   ceil_mode=ceil_mode, count_include_pad=include_pad)


@pytest.mark.parametrize("use_matrices", [True, False], ids=["matrices", "taps"])
@pytest.mark.parametrize("options", AVG_OPTIONS, ids=["include_pad", "exclude_pad", "divisor_3"])
@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 14, 14), dict(kernel_size=5, stride=3)),  # the auxiliary heads' pool (paper variant)
    ((2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True)),
    ((3, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # unbatched, window past the edge
])
def test_avg_pool_matrices_and_taps_both_match_torch(monkeypatch, shape, kwargs, options, use_matrices, device):
    monkeypatch.setattr(pooling, "_matrices_are_cheaper", lambda geometry: use_matrices)
    for dtype in (np.float64, np.float32):
        check_avg_pool(random_input(shape, dtype), device, **kwargs, **options)


def test_avg_pool_takes_the_matrices_for_large_windows_on_small_maps():
    assert "rows" in avg_pool2d_forward(random_input((2, 3, 16, 16), np.float32), 5, 3)[1]  # aux heads' pool
    assert "rows" not in avg_pool2d_forward(random_input((2, 3, 32, 32), np.float32), 3, 1, 1)[1]  # 3x3/1 at 32


def test_avg_pool_divisor_clips_to_the_padded_input_in_ceil_mode(device):
    # H=W=6, k=3, s=2, p=1, ceil: the last window starts at 5 and would end at 8, past H + p = 7. torch
    # divides by (7 - 5) * ... there, not by 9, and by the real elements only without count_include_pad.
    x = on(device, np.ones((1, 1, 6, 6)))
    out = back(avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True)[0])
    np.testing.assert_allclose(out[0, 0, 3, 3], 1 / (2 * 2))  # one real element, area clipped to 2x2
    np.testing.assert_allclose(out[0, 0, 0, 0], 4 / 9)  # top-left: 2x2 real elements, full 3x3 area
    out = back(avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)[0])
    np.testing.assert_allclose(out, 1.0)


# ---------------------------------------------------------------------------
# Adaptive average pooling
# ---------------------------------------------------------------------------

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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, output_size, path", ADAPTIVE_CASES)
def test_adaptive_avg_pool_matches_torch(shape, output_size, path, dtype, device):
    ctx = check_adaptive(random_input(shape, dtype), output_size, device)
    assert ctx["path"] == path  # the fast paths are taken where they apply


# ---------------------------------------------------------------------------
# Things a caller relies on: chunked batches, fresh writeable gradients, every device
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batches_split_into_cache_sized_chunks_give_the_same_result(monkeypatch, dtype, device):
    monkeypatch.setattr(pooling, "_CHUNK_ELEMENTS", 100)  # 2 images of 2x3x3x3 outputs per chunk, 7 images
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
        np.testing.assert_allclose(backend.to_numpy(out), out_cpu, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(backend.to_numpy(grad_x), backward(grad_out, ctx_cpu), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# Property tests: hypothesis draws the geometry, torch is the oracle
# ---------------------------------------------------------------------------


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


@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(case=pool_geometries(with_dilation=True), seed=st.integers(0, 2**16))
def test_max_pool_property_matches_torch(case, seed, device):
    shape, geometry = case
    check_max_pool(random_input(shape, np.float64, seed), device, **geometry)


@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(case=pool_geometries(with_dilation=False), seed=st.integers(0, 2**16),
       include_pad=st.booleans(), divisor=st.sampled_from([None, None, 1, 5]))
def test_avg_pool_property_matches_torch(case, seed, include_pad, divisor, device):
    shape, geometry = case
    check_avg_pool(random_input(shape, np.float64, seed), device, count_include_pad=include_pad,
                   divisor_override=divisor, **geometry)


@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(height=st.integers(1, 12), width=st.integers(1, 12), out_h=st.integers(1, 8), out_w=st.integers(1, 8),
       seed=st.integers(0, 2**16))
def test_adaptive_avg_pool_property_matches_torch(height, width, out_h, out_w, seed, device):
    check_adaptive(random_input((2, 3, height, width), np.float64, seed), (out_h, out_w), device)


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


def test_max_pool_of_an_empty_batch_has_an_empty_gradient(device):
    out, ctx = max_pool2d_forward(on(device, np.zeros((0, 3, 5, 5), dtype=np.float32)), 3, 1, 1)
    assert out.shape == (0, 3, 5, 5)
    assert max_pool2d_backward(out, ctx).shape == (0, 3, 5, 5)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1),                 # every pixel in up to 9 windows
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),  # GoogLeNet's stage pools
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
    dict(kernel_size=2, stride=2),                             # no overlap
])
def test_tap_by_tap_backward_gives_the_scatter_adds_sums(kwargs):
    """The GPU's deterministic backward (one strided add per kernel tap) against the scatter-add (the CPU's)."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 3, 9, 8)).astype(np.float64)  # many ties: winners shared by several windows
    out, ctx = max_pool2d_forward(x, **kwargs)
    grad_out = rng.standard_normal(out.shape)
    expected = max_pool2d_backward(grad_out, ctx)
    geometry = ctx["geometry"]
    grad_padded = np.zeros(x.shape[:2] + geometry.padded_size)
    pooling._add_winners_by_tap(grad_padded, grad_out, ctx["argmax"], geometry)
    top, left = geometry.padding
    got = grad_padded[:, :, top : top + x.shape[2], left : left + x.shape[3]]
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    assert np.abs(expected).sum() > 0 and (np.count_nonzero(expected) < expected.size)
