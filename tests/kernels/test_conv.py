"""The reference conv2d forward/backward kernels against torch: values, all three gradients, errors.
(The fast kernels, with their chunks and buffers: tests/kernels/fast/test_conv.py.)

The numerical tests take the ``device`` fixture: inputs are made with NumPy, moved there for the kernels, and
the results brought back to NumPy to be compared with torch's (CPU) results.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad.kernels import conv
from minigrad.kernels.conv import normalize_padding
from minigrad.testing.tolerance import assert_close, terms_bound
from tests.kernels import assert_same, back, on

rng = np.random.default_rng(0)
FLOAT64 = (1e-10, 1e-10)  # element-wise; float32 by the tolerance policy (minigrad/testing/tolerance.py)


def run_both(x_shape, weight_shape, with_bias=True, dtype=np.float64, device="cpu", kernels=conv, **options):
    """Forward and backward (random upstream gradient) in minigrad (on ``device``; ``kernels``: the module of
    conv2d_forward/backward, the reference by default) and torch on the same inputs; minigrad's results come
    back as NumPy arrays."""
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(weight_shape).astype(dtype)
    bias = rng.standard_normal(weight_shape[0]).astype(dtype) if with_bias else None
    out, ctx = kernels.conv2d_forward(*on(device, x, weight, bias), **options)
    out = back(out)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    grads = [back(grad) for grad in kernels.conv2d_backward(on(device, grad_out), ctx)]

    leaves = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias) if a is not None]
    options = {k: v for k, v in options.items() if k != "max_buffer_bytes"}
    with warnings.catch_warnings():  # torch warns that "same" with even kernels pads a copy; so do we
        warnings.simplefilter("ignore", UserWarning)
        t_out = torch.nn.functional.conv2d(leaves[0], leaves[1], leaves[2] if with_bias else None, **options)
    t_out.backward(torch.tensor(grad_out))
    t_grads = [leaf.grad.numpy() for leaf in leaves] + ([] if with_bias else [None])
    return (out, *grads), (t_out.detach().numpy(), *t_grads)


def assert_matches_torch(ours, theirs, dtype):
    # float32: no sum in a convolution or its gradients is longer than the largest array involved
    terms = terms_bound(*(array for array in theirs if array is not None))
    for name, mine, expected in zip(("out", "grad_x", "grad_weight", "grad_bias"), ours, theirs):
        if expected is None:
            assert mine is None, name
            continue
        assert mine.shape == expected.shape and mine.dtype == dtype, name
        assert_close(mine, expected, name, terms=terms, float64=FLOAT64)


# (x_shape, weight_shape, options): the awkward cases.
CASES = [
    ((1, 3, 5, 5), (4, 3, 3, 3), dict()),  # batch 1, no padding
    ((2, 3, 7, 9), (5, 3, 2, 3), dict(stride=(2, 1), padding=(1, 0))),  # odd sizes, non-square everything
    ((2, 4, 8, 8), (6, 4, 3, 3), dict(stride=2, padding=1)),
    ((2, 2, 9, 7), (3, 2, 3, 2), dict(dilation=(2, 3), padding=2)),
    ((2, 6, 6, 6), (4, 3, 3, 3), dict(groups=2, padding=1)),
    ((2, 4, 6, 5), (8, 1, 3, 3), dict(groups=4, padding=1, stride=2)),  # depthwise, multiplier 2
    ((3, 5, 4, 4), (7, 5, 1, 1), dict()),  # 1x1 fast path
    ((2, 6, 5, 5), (6, 2, 1, 1), dict(groups=3)),  # grouped 1x1 fast path
    ((2, 3, 5, 5), (4, 3, 1, 1), dict(stride=2, padding=1)),  # 1x1 that is not the fast path
    ((2, 3, 1, 1), (4, 3, 1, 1), dict()),  # 1x1 spatial map
    ((2, 3, 1, 1), (4, 3, 3, 3), dict(padding=1)),
    ((2, 3, 4, 5), (2, 3, 4, 5), dict()),  # kernel as large as the input
    ((2, 3, 6, 7), (4, 3, 3, 3), dict(padding="same")),
    ((2, 3, 6, 7), (4, 3, 2, 4), dict(padding="same")),  # even kernels: extra pad bottom/right
    ((2, 3, 9, 8), (4, 3, 2, 3), dict(padding="same", dilation=(3, 2))),
    ((2, 3, 6, 7), (4, 3, 3, 2), dict(padding="valid", stride=(1, 2))),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, weight_shape, options", CASES)
def test_matches_torch(x_shape, weight_shape, options, dtype, device):
    ours, theirs = run_both(x_shape, weight_shape, dtype=dtype, device=device, **options)
    assert_matches_torch(ours, theirs, dtype)


def test_without_bias_and_only_some_gradients(device):
    ours, theirs = run_both((2, 3, 6, 6), (4, 3, 3, 3), with_bias=False, device=device, padding=1)
    assert_matches_torch(ours, theirs, np.float64)
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    for kernel_size in (3, 1):
        weight = rng.standard_normal((4, 3, kernel_size, kernel_size))
        out, ctx = conv.conv2d_forward(*on(device, x, weight, np.zeros(4)))
        grad_out = on(device, rng.standard_normal(out.shape))
        full = conv.conv2d_backward(grad_out, ctx)
        only_x = conv.conv2d_backward(grad_out, ctx, need_weight_grad=False, need_bias_grad=False)
        only_w = conv.conv2d_backward(grad_out, ctx, need_input_grad=False, need_bias_grad=False)
        only_b = conv.conv2d_backward(grad_out, ctx, need_input_grad=False, need_weight_grad=False)
        assert only_x[1:] == (None, None) and only_w[::2] == (None, None) and only_b[:2] == (None, None)
        assert_same(only_x[0], full[0], device)
        assert_same(only_w[1], full[1], device)
        assert_same(only_b[2], full[2], device)


@pytest.mark.parametrize(
    "kernel, dilation",
    [((3, 3), (1, 1)), ((2, 4), (1, 1)), ((4, 1), (2, 3)), ((1, 1), (1, 1))],
)
def test_same_padding_is_torch_rule(kernel, dilation, device):
    """Total pad d*(k-1); the odd pixel goes bottom/right (checked against torch via the outputs)."""
    (top, bottom), (left, right) = normalize_padding("same", kernel, 1, dilation)
    assert top + bottom == dilation[0] * (kernel[0] - 1) and bottom - top in (0, 1)
    assert left + right == dilation[1] * (kernel[1] - 1) and right - left in (0, 1)
    ours, theirs = run_both((1, 2, 7, 6), (3, 2, *kernel), device=device, padding="same", dilation=dilation)
    assert ours[0].shape[2:] == (7, 6)
    assert_matches_torch(ours, theirs, np.float64)
    assert normalize_padding("valid", kernel, 1, dilation) == ((0, 0), (0, 0))
    assert normalize_padding((1, 2), kernel, 2, dilation) == ((1, 1), (2, 2))


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    in_channels, out_channels = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):
        stride, padding = (1, 1), draw(st.sampled_from(["same", "valid"]))
        pads = normalize_padding(padding, kernel, stride, dilation)
        pad_total = [sum(pads[0]), sum(pads[1])]
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        pad_total = [2 * padding[0], 2 * padding[1]]
    size = [
        max(1, dilation[a] * (kernel[a] - 1) + 1 - pad_total[a] + draw(st.integers(0, 4))) for a in range(2)
    ]
    x_shape = (draw(st.integers(1, 3)), in_channels, *size)
    weight_shape = (out_channels, in_channels // groups, *kernel)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x_shape, weight_shape, options, draw(st.booleans())


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
def test_random_geometry_matches_torch(case, device):
    x_shape, weight_shape, options, with_bias = case
    ours, theirs = run_both(x_shape, weight_shape, with_bias, device=device, **options)
    assert_matches_torch(ours, theirs, np.float64)


ERROR_CASES = [
    (
        (3, 8, 8),
        (4, 3, 3, 3),
        dict(),
        r"conv2d: expected a 4-D input \(N, C_in, H, W\), got shape \(3, 8, 8\)",
    ),
    ((2, 3, 8, 8), (4, 3, 3), dict(), r"conv2d: expected a 4-D weight"),
    (
        (2, 4, 8, 8),
        (8, 3, 3, 3),
        dict(),
        r"conv2d: input has 4 channels but weight \(8, 3, 3, 3\) with groups=1 expects 3 .*input \(2, 4, 8, 8\)"
        r".*pass an input with 3 channels",
    ),
    (
        (2, 6, 8, 8),
        (8, 2, 3, 3),
        dict(groups=2),
        r"input has 6 channels but weight \(8, 2, 3, 3\) with groups=2",
    ),
    (
        (2, 6, 8, 8),
        (8, 2, 3, 3),
        dict(groups=4),
        r"conv2d: groups=4 must divide both in_channels=6 and out_chan",
    ),
    ((2, 6, 8, 8), (7, 2, 3, 3), dict(groups=3), r"groups=3 must divide both .*out_channels=7"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(groups=0), r"conv2d: groups must be a positive int"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=0), r"conv2d: stride must be >= 1"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=(1, -2)), r"conv2d: stride must be >= 1"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(dilation=0), r"conv2d: dilation must be >= 1"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=-1), r"conv2d: padding must be non-negative"),
    (
        (2, 3, 4, 4),
        (4, 3, 5, 5),
        dict(),
        r"conv2d: kernel \(5, 5\) with dilation \(1, 1\) spans 5x5 pixels, larger than the padded input 4x4",
    ),
    ((2, 3, 4, 4), (4, 3, 3, 3), dict(dilation=2), r"spans 5x5 pixels, larger than the padded input 4x4"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding="same", stride=2), r"conv2d: padding='same' needs stride 1"),
    (
        (2, 3, 8, 8),
        (4, 3, 3, 3),
        dict(padding="full"),
        r"conv2d: padding must be an int, a pair, 'same' or 'valid'",
    ),
]


@pytest.mark.parametrize("x_shape, weight_shape, options, message", ERROR_CASES)
def test_errors_name_conv2d_the_shapes_and_the_fix(x_shape, weight_shape, options, message):
    with pytest.raises(ValueError, match=message):
        conv.conv2d_forward(np.zeros(x_shape), np.zeros(weight_shape), **options)


def test_type_errors():
    x, weight = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(C_out,\) = \(4,\), got \(3,\)"):
        conv.conv2d_forward(x, weight, np.zeros(3))
    with pytest.raises(TypeError, match="conv2d: weight has dtype float32 but the input has float64"):
        conv.conv2d_forward(x, weight.astype(np.float32))
    with pytest.raises(TypeError, match="conv2d: input must be floating point, got dtype int64"):
        conv.conv2d_forward(x.astype(np.int64), weight)
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair of ints"):
        conv.conv2d_forward(x, weight, stride=1.5)
    out, ctx = conv.conv2d_forward(x, weight)
    with pytest.raises(ValueError, match=r"conv2d backward: grad_out has shape \(2, 4, 5, 5\), expected"):
        conv.conv2d_backward(np.zeros((2, 4, 5, 5)), ctx)
