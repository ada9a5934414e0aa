"""The fast max pooling kernels (minigrad/kernels/fast/max_pool.py) against the reference
(minigrad/kernels/max_pool.py): the registry's samples, the awkward cases, ties, NaN and hypothesis geometries,
the winners included; and what only the fast ones do: int8 winners, the flattened stride-1 path in chunks,
the scatter-add in torch's order, the tap-by-tap backward where a scatter-add is not deterministic.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad import backend
from minigrad.kernels import max_pool
from minigrad.kernels.fast import batch_chunks
from minigrad.kernels.fast import max_pool as fast_max_pool
from tests.kernels import assert_same, back, on
from tests.kernels.fast import DTYPES, assert_same_numbers, registry_samples
from tests.kernels.pool_checks import (
    MAX_CASES,
    SHARED_DEVICE,
    check_max_pool,
    pool_geometries,
    random_input,
    torch_reference,
)

rng = np.random.default_rng(0)


def check_against_reference(x, device, **kwargs):
    """Output, winners and input gradient: a max picks a value and the gradients are sums of the same values in
    the same tap order, so the fast kernel equals the reference exactly (NaN in the same places). The maxima
    alone (need_argmax=False) are the same values."""
    out, ctx = fast_max_pool.max_pool2d_forward(on(device, x), **kwargs)
    expected_out, expected_ctx = max_pool.max_pool2d_forward(on(device, x), **kwargs)
    np.testing.assert_array_equal(back(out), back(expected_out))
    maxima, _ = fast_max_pool.max_pool2d_forward(on(device, x), **kwargs, need_argmax=False)
    np.testing.assert_array_equal(back(maxima), back(expected_out))
    np.testing.assert_array_equal(back(ctx.argmax), back(expected_ctx.argmax))
    grad_out = on(device, rng.standard_normal(out.shape).astype(x.dtype))
    assert_same_numbers(back(fast_max_pool.max_pool2d_backward(grad_out, ctx)),
                        back(max_pool.max_pool2d_backward(grad_out, expected_ctx)), "grad_x")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inputs, kwargs, name", registry_samples("max_pool2d"))
def test_registry_samples_match_the_reference(inputs, kwargs, name, dtype, device):
    check_against_reference(inputs[0].astype(dtype), device, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kwargs", MAX_CASES)
def test_awkward_cases_match_the_reference(shape, kwargs, dtype, device):
    check_against_reference(random_input(shape, dtype), device, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2, stride=2),
                                    dict(kernel_size=(2, 3), stride=(2, 1), padding=1, dilation=(2, 1))])
def test_ties_nan_and_infinities_match_the_reference(kwargs, device):
    """Values from {0, 1, 2} (ties in most windows), NaN in some, -inf in others."""
    x = np.random.default_rng(5).integers(0, 3, (2, 3, 9, 8)).astype(np.float64)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[1, 2, 4, 0] = np.nan
    x[0, 1, :3, :3] = x[1, 0, 5, :] = -np.inf
    check_against_reference(x, device, **kwargs)


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(case=pool_geometries(with_dilation=True), seed=st.integers(0, 2**16))
def test_random_geometry_matches_the_reference(case, seed, device):
    shape, geometry = case
    check_against_reference(random_input(shape, np.float64, seed), device, **geometry)


def test_winners_are_kept_in_int8_where_the_taps_fit():
    assert fast_max_pool.max_pool2d_forward(random_input((1, 2, 7, 7), np.float32), 3, 2, 1)[1].argmax.dtype == np.int8
    x = random_input((1, 1, 13, 13), np.float32)
    _, ctx = fast_max_pool.max_pool2d_forward(x, 12, 1)  # 144 taps
    assert ctx.argmax.dtype == np.int32
    np.testing.assert_array_equal(ctx.argmax, max_pool.max_pool2d_forward(x, 12, 1)[1].argmax)


def torch_indices_of_the_winners(ctx, width):
    """The fast backward's scatter targets (tap offset + window start, in the padded chunk) as torch's
    flat input indices."""
    geometry = ctx.geometry
    n, c = ctx.argmax.shape[:2]
    tap_offsets = np.asarray(fast_max_pool._tap_offsets(geometry))
    winners = tap_offsets[back(ctx.argmax)] + fast_max_pool._window_start_indices(np, n, c, geometry)
    padded_h, padded_w = geometry.padded_size
    rows = winners % (padded_h * padded_w) // padded_w - geometry.pads[0][0]
    cols = winners % padded_w - geometry.pads[1][0]
    return rows * width + cols


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1, ceil_mode=True),  # GoogLeNet's branch-4 pool
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),  # its pools between stages
    dict(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=(2, 1)),
])
def test_max_pool_winners_are_torchs_flat_indices(kwargs, device):
    x = random_input((2, 3, 9, 8), np.float64)
    _, ctx = fast_max_pool.max_pool2d_forward(on(device, x), **kwargs)
    _, torch_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(torch_indices_of_the_winners(ctx, 8), torch_indices.numpy())


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=1, dilation=(2, 1)),  # no padding: the flat view is of x itself
])
def test_max_pool_stride_1_flat_path_in_chunks_and_on_a_non_contiguous_input(monkeypatch, kwargs, device):
    """Stride 1 runs on each chunk flattened to 1-D, where windows of the dropped positions wrap into the
    next row or image: one-image chunks and a transposed input must not change the result."""
    monkeypatch.setattr(batch_chunks, "CHUNK_ELEMENTS", 100)
    x = on(device, random_input((5, 3, 7, 6), np.float32)).transpose(0, 1, 3, 2)  # transposed on the device
    check_max_pool(x, device, kernels=fast_max_pool, **kwargs)
    check_against_reference(back(x), device, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 4), stride=1, padding=(1, 2), dilation=(2, 1)),
    dict(kernel_size=(3, 2), stride=1, ceil_mode=True),
])
def test_max_pool_stride_1_rows_then_columns_keeps_torchs_tie_rule(kwargs, device):
    """Values from {0, 1, 2}: most windows hold their maximum several times, in several rows. The
    row-by-row max must still pick the first maximum in row-major order: torch's indices, exactly."""
    x = np.random.default_rng(5).integers(0, 3, (2, 3, 9, 8)).astype(np.float32)
    out, ctx = fast_max_pool.max_pool2d_forward(on(device, x), **kwargs)
    expected, torch_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(back(out), expected.numpy())  # a max picks a value: exact on every device
    np.testing.assert_array_equal(torch_indices_of_the_winners(ctx, 8), torch_indices.numpy())


def test_max_pool_backward_adds_overlapping_windows_in_torchs_order(device):
    """float32, many ties (ReLU-like zeros): the scatter-add sums a pixel's gradients in torch's order,
    so the input gradient is bit for bit torch's, even where one pixel wins several windows. (On a GPU the
    atomic adds of a scatter-add follow no fixed order: there the gradient is compared to 1e-6.)"""
    x = np.maximum(random_input((3, 4, 10, 10), np.float32), 0)
    for stride in (1, 2):
        kwargs = dict(kernel_size=3, stride=stride, padding=1, ceil_mode=True)
        expected_out, expected_grad, grad_out = torch_reference(F.max_pool2d, x, **kwargs)
        out, ctx = fast_max_pool.max_pool2d_forward(on(device, x), **kwargs)
        np.testing.assert_array_equal(back(out), expected_out)
        assert_same(fast_max_pool.max_pool2d_backward(on(device, grad_out), ctx), expected_grad, device)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1),                 # every pixel in up to 9 windows
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),  # GoogLeNet's stage pools
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
    dict(kernel_size=2, stride=2),                             # no overlap
])
def test_tap_by_tap_backward_gives_the_scatter_adds_sums(kwargs, monkeypatch):
    """The deterministic backward (one strided add per kernel tap), which runs where the scatter-add is not
    deterministic (a GPU), against the scatter-add (the CPU's)."""
    generator = np.random.default_rng(4)
    x = generator.integers(0, 3, (2, 3, 9, 8)).astype(np.float64)  # many ties: winners shared by several windows
    out, ctx = fast_max_pool.max_pool2d_forward(x, **kwargs)
    grad_out = generator.standard_normal(out.shape)
    expected = fast_max_pool.max_pool2d_backward(grad_out, ctx)
    monkeypatch.setattr(backend, "scatter_add_is_deterministic", lambda array: False)
    monkeypatch.setattr(backend, "scatter_add", None)  # calling it would fail
    got = fast_max_pool.max_pool2d_backward(grad_out, ctx)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    assert np.abs(expected).sum() > 0 and (np.count_nonzero(expected) < expected.size)


def test_max_pool_of_an_empty_batch_has_an_empty_gradient(device):
    out, ctx = fast_max_pool.max_pool2d_forward(on(device, np.zeros((0, 3, 5, 5), dtype=np.float32)), 3, 1, 1)
    assert out.shape == (0, 3, 5, 5)
    assert fast_max_pool.max_pool2d_backward(out, ctx).shape == (0, 3, 5, 5)


def test_maxima_alone_keep_no_winners_and_refuse_a_backward(device):
    x = on(device, rng.standard_normal((2, 3, 6, 6)))
    out, ctx = fast_max_pool.max_pool2d_forward(x, 3, 2, 1, need_argmax=False)
    assert ctx.argmax is None
    with pytest.raises(ValueError, match="max_pool2d backward: the forward ran with need_argmax=False"):
        fast_max_pool.max_pool2d_backward(on(device, np.ones(out.shape)), ctx)
