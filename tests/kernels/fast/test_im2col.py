"""The fast im2col/col2im (minigrad/kernels/fast/im2col.py) against the reference (minigrad/kernels/im2col.py):
the same columns and the same sums, bit for bit, on the awkward cases, the registry's convolutions and
hypothesis geometries; and their ``out=`` buffers.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from minigrad import backend
from minigrad.kernels import im2col as reference
from minigrad.kernels.conv import normalize_padding
from minigrad.kernels.fast import im2col as fast
from minigrad.kernels.geometry import window_geometry
from tests.kernels import back, on
from tests.kernels.fast import DTYPES, registry_samples
from tests.kernels.test_im2col import CASES, window_cases

rng = np.random.default_rng(0)


def check_against_reference(x_shape, kernel, stride, padding, dilation, dtype, device):
    """im2col: the same copies; col2im: the same adds in the same tap order, so equal bit for bit too."""
    x = on(device, rng.standard_normal(x_shape).astype(dtype))
    expected = reference.im2col(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(back(fast.im2col(x, kernel, stride, padding, dilation)), back(expected))
    cols = on(device, rng.standard_normal(expected.shape).astype(dtype))
    np.testing.assert_array_equal(back(fast.col2im(cols, x_shape, kernel, stride, padding, dilation)),
                                  back(reference.col2im(cols, x_shape, kernel, stride, padding, dilation)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, kernel, stride, padding, dilation", CASES)
def test_awkward_cases_match_the_reference(x_shape, kernel, stride, padding, dilation, dtype, device):
    check_against_reference(x_shape, kernel, stride, padding, dilation, dtype, device)


@pytest.mark.parametrize("inputs, options, name", registry_samples("conv2d"))
def test_the_registrys_convolutions_match_the_reference(inputs, options, name, device):
    x, weight = inputs[:2]
    kernel = weight.shape[2:]
    stride, dilation = options.get("stride", 1), options.get("dilation", 1)
    pads = normalize_padding(options.get("padding", 0), kernel, stride, dilation)
    check_against_reference(x.shape, kernel, stride, pads, dilation, np.float64, device)


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=window_cases())
def test_random_geometry_matches_the_reference(case, device):
    check_against_reference(*case, np.float64, device)


def test_out_buffers_are_used(device):
    xp = backend.get_xp(device)
    x = on(device, rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    buffer = xp.empty((27, 2 * 36), dtype=np.float32)
    cols = fast.im2col(x, 3, 1, 1, out=buffer)
    assert cols is buffer and cols.dtype == np.float32
    np.testing.assert_array_equal(back(cols), back(reference.im2col(x, 3, 1, 1)))
    grad = xp.empty(x.shape, dtype=np.float32)
    assert fast.col2im(cols, x.shape, 3, 1, 1, out=grad) is grad and grad.dtype == np.float32
    geometry = window_geometry(x.shape, 3, 1, 1)
    assert fast.im2col_into(x, geometry, buffer) is buffer
    assert fast.col2im_into(cols, x.shape, geometry, grad) is grad


def test_errors_name_the_op_and_the_fix():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"im2col: out must be a C-contiguous float64 array of shape \(27, 8\)"):
        fast.im2col(x, 3, out=np.empty((27, 9)))
    with pytest.raises(ValueError, match=r"col2im: out must be a C-contiguous float64 array"):
        fast.col2im(np.zeros((27, 8)), x.shape, 3, out=np.empty((2, 3, 4, 4), order="F"))
    with pytest.raises(ValueError, match=r"col2im: cols has shape \(27, 9\) .* needs \(27, 8\)"):
        fast.col2im(np.zeros((27, 9)), x.shape, 3)
    with pytest.raises(ValueError, match=r"im2col: kernel \(5, 5\) .* larger than the padded input 4x4"):
        fast.im2col(x, 5)
