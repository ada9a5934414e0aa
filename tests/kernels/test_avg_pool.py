"""Average and adaptive average pooling kernels: torch parity (forward and backward, float64 and float32),
the divisor rules, the matrices and the tap loop, the adaptive fast paths, hypothesis properties.

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results brought back to NumPy to be compared with torch's (CPU) results.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.kernels import avg_pool
from minigrad.kernels.avg_pool import avg_pool2d_forward
from minigrad.kernels.pool_geometry import pool_output_size
from tests.kernels import back, on
from tests.kernels.pool_checks import (
    MAX_CASES,
    SHARED_DEVICE,
    check_adaptive,
    check_avg_pool,
    pool_geometries,
    random_input,
)

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
    monkeypatch.setattr(avg_pool, "_matrices_are_cheaper", lambda geometry: use_matrices)
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
