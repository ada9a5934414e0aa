"""The reference average and adaptive average pooling kernels: torch parity (forward and backward, float64
and float32), the divisor rules, hypothesis properties. (The fast kernels: tests/kernels/fast/.)

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results brought back to NumPy to be compared with torch's (CPU) results.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.kernels.avg_pool import avg_pool2d_forward
from minigrad.kernels.geometry import pool_output_size
from tests.kernels import back, on
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

# ---------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------

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

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, output_size, path", ADAPTIVE_CASES)
def test_adaptive_avg_pool_matches_torch(shape, output_size, path, dtype, device):
    check_adaptive(random_input(shape, dtype), output_size, device)


# ---------------------------------------------------------------------------
# Property tests: hypothesis draws the geometry, torch is the oracle
# ---------------------------------------------------------------------------


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
