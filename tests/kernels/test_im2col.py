"""The reference im2col / col2im against torch's unfold / fold, and the adjoint identity.

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results brought back to NumPy to be compared with torch's (CPU) results.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad.kernels.geometry import pads_per_side, window_geometry
from minigrad.kernels.im2col import col2im, im2col
from tests.kernels import back, on

rng = np.random.default_rng(0)


def torch_unfold(x, kernel, stride, pads, dilation):
    """torch's im2col, rearranged into our layout (C*kH*kW, N*H_out*W_out); pads per side via F.pad."""
    (top, bottom), (left, right) = pads
    padded = torch.nn.functional.pad(torch.from_numpy(x), (left, right, top, bottom))
    cols = torch.nn.functional.unfold(padded, kernel, dilation=dilation, stride=stride)  # (N, CKK, L)
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1).numpy()


def torch_fold(cols, x_shape, kernel, stride, pads, dilation):
    """torch's col2im (fold) on our layout, cropped back to the unpadded input."""
    n, c, h, w = x_shape
    (top, bottom), (left, right) = pads
    size = (h + top + bottom, w + left + right)
    batched = torch.from_numpy(cols).reshape(cols.shape[0], n, -1).permute(1, 0, 2)
    folded = torch.nn.functional.fold(batched, size, kernel, dilation=dilation, stride=stride)
    return folded[:, :, top : top + h, left : left + w].numpy()


# (x_shape, kernel, stride, padding, dilation): batch 1, odd sizes, non-square kernels and strides,
# per-side pads, dilation, a kernel as large as the input and a 1x1 map.
CASES = [
    ((2, 3, 5, 5), (3, 3), (1, 1), 1, (1, 1)),
    ((1, 2, 7, 6), (2, 3), (2, 1), (1, 0), (1, 1)),
    ((2, 1, 9, 8), (3, 2), (2, 3), ((1, 2), (0, 1)), (2, 1)),
    ((3, 2, 4, 4), (4, 4), (1, 1), 0, (1, 1)),
    ((2, 4, 1, 1), (1, 1), (1, 1), 0, (1, 1)),
    ((1, 3, 6, 7), (3, 3), (3, 2), 2, (2, 3)),
]


def normalized(padding):
    return pads_per_side(padding, "test")


@pytest.mark.parametrize("x_shape, kernel, stride, padding, dilation", CASES)
def test_im2col_matches_torch_unfold(x_shape, kernel, stride, padding, dilation, device):
    x = rng.standard_normal(x_shape)
    cols = back(im2col(on(device, x), kernel, stride, padding, dilation))
    expected = torch_unfold(x, kernel, stride, normalized(padding), dilation)
    assert cols.shape == expected.shape
    np.testing.assert_array_equal(cols, expected)  # a copy of the input's values: exact on every device


@pytest.mark.parametrize("x_shape, kernel, stride, padding, dilation", CASES)
def test_col2im_matches_torch_fold(x_shape, kernel, stride, padding, dilation, device):
    geometry = window_geometry(x_shape, kernel, stride, padding, dilation)
    rows = x_shape[1] * kernel[0] * kernel[1]
    cols = rng.standard_normal((rows, x_shape[0] * geometry.out_size[0] * geometry.out_size[1]))
    result = back(col2im(on(device, cols), x_shape, kernel, stride, padding, dilation))
    expected = torch_fold(cols, x_shape, kernel, stride, normalized(padding), dilation)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def check_adjoint(x_shape, kernel, stride, padding, dilation, device="cpu"):
    """<im2col(x), c> == <x, col2im(c)> for random x and c: col2im is im2col's transpose."""
    x = rng.standard_normal(x_shape)
    cols = back(im2col(on(device, x), kernel, stride, padding, dilation))
    c = rng.standard_normal(cols.shape)
    left = np.vdot(cols, c)
    right = np.vdot(x, back(col2im(on(device, c), x_shape, kernel, stride, padding, dilation)))
    np.testing.assert_allclose(left, right, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("x_shape, kernel, stride, padding, dilation", CASES)
def test_col2im_is_the_adjoint_of_im2col(x_shape, kernel, stride, padding, dilation, device):
    check_adjoint(x_shape, kernel, stride, padding, dilation, device)


@st.composite
def window_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    # An input at least as large as the dilated kernel once padded, plus a little.
    size = [dilation[a] * (kernel[a] - 1) + 1 - sum(pads[a]) + draw(st.integers(0, 4)) for a in range(2)]
    x_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), max(1, size[0]), max(1, size[1]))
    return x_shape, kernel, stride, pads, dilation


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=window_cases())
def test_im2col_col2im_random_geometry(case, device):
    x_shape, kernel, stride, pads, dilation = case
    x = rng.standard_normal(x_shape)
    np.testing.assert_array_equal(back(im2col(on(device, x), kernel, stride, pads, dilation)),
                                  torch_unfold(x, *case[1:]))
    geometry = window_geometry(x_shape, kernel, stride, pads, dilation)
    cols = rng.standard_normal((x_shape[1] * kernel[0] * kernel[1], x_shape[0] * np.prod(geometry.out_size)))
    np.testing.assert_allclose(
        back(col2im(on(device, cols), x_shape, kernel, stride, pads, dilation)),
        torch_fold(cols, x_shape, kernel, stride, pads, dilation),
        rtol=1e-12,
        atol=1e-12,
    )
    check_adjoint(*case, device)


def test_float32_stays_float32(device):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    cols = im2col(on(device, x), 3, 1, 1)
    assert cols.dtype == np.float32
    np.testing.assert_array_equal(back(cols), torch_unfold(x, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)))
    grad = col2im(cols, x.shape, 3, 1, 1)
    assert grad.dtype == np.float32 and grad.shape == x.shape and grad.flags.c_contiguous


def test_errors_name_the_op_and_the_fix():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"im2col: expected a 4-D input .* got shape \(3, 4, 4\)"):
        im2col(x[0], 3)
    with pytest.raises(ValueError, match=r"im2col: kernel \(5, 5\) .* larger than the padded input 4x4"):
        im2col(x, 5)
    with pytest.raises(ValueError, match="im2col: stride must be >= 1"):
        im2col(x, 3, stride=0)
    with pytest.raises(ValueError, match="im2col: padding must be non-negative"):
        im2col(x, 3, padding=(-1, 0))
    with pytest.raises(TypeError, match="im2col: kernel_size must be an int or a pair"):
        im2col(x, (3, 3, 3))
    with pytest.raises(ValueError, match=r"col2im: cols has shape \(27, 9\) .* needs \(27, 8\)"):
        col2im(np.zeros((27, 9)), x.shape, 3)
