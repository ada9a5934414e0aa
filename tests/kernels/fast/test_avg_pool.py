"""The fast average and adaptive average pooling kernels (minigrad/kernels/fast/avg_pool.py) against the
reference (minigrad/kernels/avg_pool.py): the registry's samples, the awkward cases with every divisor rule,
hypothesis geometries; both of average pooling's algorithms (matrices and taps) and where the cost model
takes each; adaptive pooling's global, block and matrix paths.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.kernels import avg_pool
from minigrad.kernels.fast import avg_pool as fast_avg_pool
from tests.kernels import on
from tests.kernels.fast import DTYPES, assert_same_numbers, registry_samples
from tests.kernels.pool_checks import (
    ADAPTIVE_CASES,
    AVG_CASES,
    AVG_OPTIONS,
    SHARED_DEVICE,
    check_adaptive,
    check_avg_pool,
    pool_geometries,
    random_input,
)

rng = np.random.default_rng(0)


def check_against_reference(x, device, kernel="avg_pool2d", **kwargs):
    """Output and input gradient of the fast kernel equal the reference's (the same sums, perhaps in another
    order: by matrices, or the mean of a block)."""
    fast_forward, fast_backward = (getattr(fast_avg_pool, f"{kernel}_{d}") for d in ("forward", "backward"))
    forward, backward = (getattr(avg_pool, f"{kernel}_{d}") for d in ("forward", "backward"))
    out, ctx = fast_forward(on(device, x), **kwargs)
    expected_out, expected_ctx = forward(on(device, x), **kwargs)
    assert_same_numbers(out, expected_out, "out")
    grad_out = on(device, rng.standard_normal(out.shape).astype(x.dtype))
    assert_same_numbers(fast_backward(grad_out, ctx), backward(grad_out, expected_ctx), "grad_x")
    return ctx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inputs, kwargs, name", registry_samples("avg_pool2d"))
def test_registry_samples_match_the_reference(inputs, kwargs, name, dtype, device):
    check_against_reference(inputs[0].astype(dtype), device, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inputs, kwargs, name", registry_samples("adaptive_avg_pool2d"))
def test_registry_adaptive_samples_match_the_reference(inputs, kwargs, name, dtype, device):
    check_against_reference(inputs[0].astype(dtype), device, "adaptive_avg_pool2d", **kwargs)


@pytest.mark.parametrize("use_matrices", [True, False], ids=["matrices", "taps"])
@pytest.mark.parametrize("options", AVG_OPTIONS, ids=["include_pad", "exclude_pad", "divisor_3"])
@pytest.mark.parametrize("shape, kwargs", AVG_CASES)
def test_awkward_cases_match_the_reference_by_both_algorithms(monkeypatch, shape, kwargs, options, use_matrices,
                                                              device):
    monkeypatch.setattr(fast_avg_pool, "_matrices_are_cheaper", lambda geometry: use_matrices)
    for dtype in DTYPES:
        ctx = check_against_reference(random_input(shape, dtype), device, **kwargs, **options)
        assert (ctx.rows is not None) == use_matrices


@pytest.mark.parametrize("use_matrices", [True, False], ids=["matrices", "taps"])
@pytest.mark.parametrize("options", AVG_OPTIONS, ids=["include_pad", "exclude_pad", "divisor_3"])
@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 14, 14), dict(kernel_size=5, stride=3)),  # the auxiliary heads' pool (paper variant)
    ((2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True)),
    ((3, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # unbatched, window past the edge
])
def test_avg_pool_matrices_and_taps_both_match_torch(monkeypatch, shape, kwargs, options, use_matrices, device):
    monkeypatch.setattr(fast_avg_pool, "_matrices_are_cheaper", lambda geometry: use_matrices)
    for dtype in DTYPES:
        check_avg_pool(random_input(shape, dtype), device, kernels=fast_avg_pool, **kwargs, **options)


def test_avg_pool_takes_the_matrices_for_large_windows_on_small_maps():
    assert fast_avg_pool.avg_pool2d_forward(random_input((2, 3, 16, 16), np.float32), 5, 3)[1].rows is not None
    assert fast_avg_pool.avg_pool2d_forward(random_input((2, 3, 32, 32), np.float32), 3, 1, 1)[1].rows is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size, path", ADAPTIVE_CASES)
def test_adaptive_paths_match_the_reference_and_torch(shape, output_size, path, dtype, device):
    ctx = check_against_reference(random_input(shape, dtype), device, "adaptive_avg_pool2d", output_size=output_size)
    assert ctx.path == path  # the fast paths are taken where they apply
    check_adaptive(random_input(shape, dtype), output_size, device, kernels=fast_avg_pool)


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(case=pool_geometries(with_dilation=False), seed=st.integers(0, 2**16),
       include_pad=st.booleans(), divisor=st.sampled_from([None, None, 1, 5]))
def test_random_geometry_matches_the_reference(case, seed, include_pad, divisor, device):
    shape, geometry = case
    check_against_reference(random_input(shape, np.float64, seed), device, count_include_pad=include_pad,
                            divisor_override=divisor, **geometry)


@settings(max_examples=40, deadline=None, **SHARED_DEVICE)
@given(height=st.integers(1, 12), width=st.integers(1, 12), out_h=st.integers(1, 8), out_w=st.integers(1, 8),
       seed=st.integers(0, 2**16))
def test_random_adaptive_sizes_match_the_reference(height, width, out_h, out_w, seed, device):
    check_against_reference(random_input((2, 3, height, width), np.float64, seed), device, "adaptive_avg_pool2d",
                            output_size=(out_h, out_w))
