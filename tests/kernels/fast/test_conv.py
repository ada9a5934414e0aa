"""The fast conv2d kernels (minigrad/kernels/fast/conv.py) against the reference (minigrad/kernels/conv.py):
the registry's samples, the awkward cases, hypothesis geometries, every budget; and what only the fast ones
have: batch chunks, the buffer budget, reused scratch buffers, the 1x1 shortcut, and both methods (the full
columns and the row columns of minigrad/kernels/fast/conv_rows.py) wherever each applies.

Inputs are made with NumPy and moved to the ``device``; results come back to NumPy for the comparison.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad.kernels import conv
from minigrad.kernels.conv import conv2d_geometry
from minigrad.kernels.fast import conv as fast_conv
from minigrad.kernels.fast import conv_rows
from minigrad.kernels.fast.im2col import ARRAY_COLUMNS, ColumnKernels
from minigrad.testing.tolerance import terms_bound
from tests.kernels import assert_same, back, on
from tests.kernels.fast import DTYPES, assert_same_numbers, cast, registry_samples
from tests.kernels.test_conv import CASES, conv_cases

rng = np.random.default_rng(0)


def methods_for(x, weight, options):
    """The methods that can run this convolution: always "columns", "rows" and "pointwise" where they apply,
    and None."""
    groups = options.get("groups", 1)
    geometry = conv2d_geometry(x, weight, None, options.get("stride", 1), options.get("padding", 0),
                               options.get("dilation", 1), groups)
    rows = ["rows"] if conv_rows.applies(geometry, groups) else []
    pointwise = ["pointwise"] if fast_conv._is_pointwise(geometry) and groups == 1 else []
    return ["columns", *rows, *pointwise, None]


def check_against_reference(x, weight, bias, device, max_buffer_bytes=None, **options):
    """Forward and every gradient (random upstream gradient) of the fast kernel equal the reference's, with
    every method that applies."""
    arrays = on(device, x, weight, bias)
    expected_out, expected_ctx = conv.conv2d_forward(*arrays, **options)
    grad_out = on(device, rng.standard_normal(expected_out.shape).astype(x.dtype))
    expected = (expected_out, *conv.conv2d_backward(grad_out, expected_ctx))
    terms = terms_bound(x, weight, expected_out)  # no sum of a convolution or its gradients is longer
    for method in methods_for(x, weight, options):
        out, ctx = fast_conv.conv2d_forward(*arrays, **options, max_buffer_bytes=max_buffer_bytes, method=method)
        results = (out, *fast_conv.conv2d_backward(grad_out, ctx))
        for name, mine, reference in zip(("out", "grad_x", "grad_weight", "grad_bias"), results, expected):
            assert_same_numbers(back(mine), back(reference), f"{name} (method {method})", terms=terms)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inputs, options, name", registry_samples("conv2d"), ids=lambda v: v if isinstance(v, str)
                         else None)
def test_registry_samples_match_the_reference(inputs, options, name, dtype, device):
    check_against_reference(*cast(inputs, dtype), device, **options)


@pytest.mark.parametrize("budget", [None, 1], ids=["one-chunk", "one-sample-chunks"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, weight_shape, options", CASES)
def test_awkward_cases_match_the_reference_in_any_chunks(x_shape, weight_shape, options, dtype, budget, device):
    x, weight = rng.standard_normal(x_shape), rng.standard_normal(weight_shape)
    bias = rng.standard_normal(weight_shape[0])
    check_against_reference(*cast((x, weight, bias), dtype), device, max_buffer_bytes=budget, **options)


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases(), budget=st.sampled_from([10**9, 1]))
def test_random_geometry_matches_the_reference(case, budget, device):
    x_shape, weight_shape, options, with_bias = case
    bias = rng.standard_normal(weight_shape[0]) if with_bias else None
    check_against_reference(rng.standard_normal(x_shape), rng.standard_normal(weight_shape), bias, device,
                            max_buffer_bytes=budget, **options)


def spy_on_chunks(monkeypatch):
    """Record the number of columns of every matrix product conv2d makes (one per chunk in forward)."""
    columns = []
    original = fast_conv._grouped_matmul

    def spy(weight_matrix, inputs, out, groups, transpose_weight=False):
        columns.append(inputs.shape[-1])
        return original(weight_matrix, inputs, out, groups, transpose_weight)

    monkeypatch.setattr(fast_conv, "_grouped_matmul", spy)
    return columns


@pytest.mark.parametrize(
    "x_shape, weight_shape, options",
    [
        ((5, 4, 7, 6), (6, 2, 3, 3), dict(groups=2, padding=1, stride=(2, 1))),
        ((4, 3, 6, 6), (5, 3, 1, 1), dict()),  # 1x1 path
    ],
)
def test_chunked_equals_unchunked(monkeypatch, x_shape, weight_shape, options, device):
    """A budget smaller than one sample's columns runs one sample per chunk; the results do not change."""
    x, weight = on(device, rng.standard_normal(x_shape), rng.standard_normal(weight_shape))
    bias = on(device, rng.standard_normal(weight_shape[0]))
    out, ctx = fast_conv.conv2d_forward(x, weight, bias, **options, method="columns")
    grad_out = on(device, rng.standard_normal(out.shape))
    grads = fast_conv.conv2d_backward(grad_out, ctx)

    columns = spy_on_chunks(monkeypatch)
    out_chunked, ctx_chunked = fast_conv.conv2d_forward(x, weight, bias, **options, max_buffer_bytes=1,
                                                        method="columns")
    assert columns == [out.shape[2] * out.shape[3]] * x.shape[0]  # really one sample at a time
    grads_chunked = fast_conv.conv2d_backward(grad_out, ctx_chunked)
    # Forward and grad_x are the same products on fewer columns; grad_weight sums in another order.
    for chunked, whole in zip((out_chunked, *grads_chunked), (out, *grads)):
        np.testing.assert_allclose(back(chunked), back(whole), rtol=1e-12, atol=1e-12)


def test_set_buffer_budget_sets_the_default(monkeypatch, device):
    x, weight = on(device, rng.standard_normal((5, 2, 6, 7)), rng.standard_normal((3, 2, 3, 3)))
    whole, _ = fast_conv.conv2d_forward(x, weight, None, padding=1)
    columns = spy_on_chunks(monkeypatch)
    previous = fast_conv.DEFAULT_BUFFER_BYTES
    fast_conv.set_buffer_budget(2 * x[0].size * 9 * x.itemsize)  # two samples' columns of a 3x3 kernel
    try:
        chunked, _ = fast_conv.conv2d_forward(x, weight, None, padding=1, method="columns")
    finally:
        fast_conv.set_buffer_budget(previous)
    assert columns == [2 * 6 * 7, 2 * 6 * 7, 6 * 7]
    np.testing.assert_allclose(back(chunked), back(whole), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="buffer budget must be a positive number of bytes"):
        fast_conv.set_buffer_budget(0)


def test_results_do_not_share_the_reused_scratch_buffers(device):
    """conv2d reuses its column buffers between calls: nothing it returns may point into them."""
    x, weight = on(device, rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)))
    out, ctx = fast_conv.conv2d_forward(x, weight, None, padding=1)
    grad_out = on(device, rng.standard_normal(out.shape))
    grads = fast_conv.conv2d_backward(grad_out, ctx)
    saved = [back(a).copy() for a in (out, *grads[:2])]
    bigger_x, bias = on(device, rng.standard_normal((3, 3, 9, 9)), np.ones(4))
    bigger_out, bigger_ctx = fast_conv.conv2d_forward(bigger_x, weight, bias, padding=2)
    fast_conv.conv2d_backward(on(device, rng.standard_normal(bigger_out.shape)), bigger_ctx)
    for before, after in zip(saved, (out, *grads[:2])):
        np.testing.assert_array_equal(before, back(after))
    fast_conv.release_buffers()
    assert_same(fast_conv.conv2d_forward(x, weight, None, padding=1)[0], out, device)


def test_pointwise_forward_skips_im2col(device):
    def fail(*args):
        raise AssertionError("the 1x1 shortcut called im2col")

    no_im2col = ColumnKernels(im2col=fail, col2im=fail)
    x, weight = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((6, 4, 1, 1))
    out, ctx = fast_conv.conv2d_forward(*on(device, x, weight), None, dilation=3, columns=no_im2col)
    expected, expected_ctx = conv.conv2d_forward(x, weight, None, dilation=3)
    np.testing.assert_allclose(back(out), expected, rtol=1e-12, atol=1e-12)
    grad_out = rng.standard_normal(out.shape)
    grad_x, _, _ = fast_conv.conv2d_backward(on(device, grad_out), ctx, need_weight_grad=False)
    np.testing.assert_allclose(back(grad_x), conv.conv2d_backward(grad_out, expected_ctx)[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(AssertionError, match="called im2col"):  # a 3x3 conv does need it
        fast_conv.conv2d_forward(*on(device, x, rng.standard_normal((6, 4, 3, 3))), None, padding=1,
                                 columns=no_im2col, method="columns")


def test_the_context_keeps_the_column_kernels_and_the_budget():
    x, weight = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    _, ctx = fast_conv.conv2d_forward(x, weight, max_buffer_bytes=7)
    assert ctx.columns is ARRAY_COLUMNS and ctx.max_buffer_bytes == 7


def test_the_method_is_chosen_by_depth_stride_and_device(device):
    """None chooses rows on a CPU for a shallow stride-1 ungrouped kernel, columns for everything else; the
    context keeps the choice, so the backward runs the same method."""
    x = on(device, rng.standard_normal((2, 8, 6, 6)))
    cases = [
        ((4, 8, 5, 5), dict(padding=2), "rows"),  # depth 8 * 25 = 200
        ((4, 8, 3, 3), dict(padding=1, stride=2), "columns"),
        ((4, 8, 3, 3), dict(padding=1, dilation=2), "columns"),
        ((4, 4, 3, 3), dict(padding=1, groups=2), "columns"),
        ((4, 8, 1, 1), dict(), "pointwise"),
        ((4, 8, 1, 1), dict(padding=1), "columns"),  # a padded 1x1 is not pointwise
        ((4, 4, 1, 1), dict(groups=2), "columns"),
    ]
    for weight_shape, options, on_cpu in cases:
        _, ctx = fast_conv.conv2d_forward(x, on(device, rng.standard_normal(weight_shape)), **options)
        assert ctx.method == (on_cpu if device == "cpu" else "columns"), (weight_shape, options)
    deep = on(device, rng.standard_normal((1, conv_rows.MAX_DEPTH // 9 + 1, 4, 4)))
    _, ctx = fast_conv.conv2d_forward(deep, on(device, rng.standard_normal((2, deep.shape[1], 3, 3))), padding=1)
    assert ctx.method == "columns"  # deeper than MAX_DEPTH: one long product wins


def test_a_method_that_cannot_run_is_refused(device):
    x, weight = on(device, rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"method='rows' needs stride 1.*got stride \(2, 2\).*method='columns'"):
        fast_conv.conv2d_forward(x, weight, stride=2, method="rows")
    with pytest.raises(ValueError, match="method must be one of"):
        fast_conv.conv2d_forward(x, weight, method="winograd")
    with pytest.raises(ValueError, match=r"method='pointwise' needs a 1x1 kernel.*got kernel \(3, 3\)"):
        fast_conv.conv2d_forward(x, weight, method="pointwise")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "x_shape, weight_shape, options",
    [
        ((3, 4, 7, 6), (5, 4, 5, 5), dict(padding=2)),  # the paper's 5x5 branch
        ((2, 3, 5, 9), (4, 3, 3, 5), dict(padding=(1, 2))),  # wider than tall
        ((2, 3, 6, 7), (4, 3, 2, 4), dict(padding="same")),  # uneven padding: more at the bottom and right
        ((2, 2, 3, 3), (3, 2, 3, 3), dict(padding=1)),  # every tap of a corner sees padding
        ((2, 2, 2, 2), (3, 2, 5, 5), dict(padding=2)),  # kernel wider than the image: some taps see nothing
        ((2, 3, 4, 5), (2, 3, 4, 5), dict()),  # one output pixel
        ((2, 3, 6, 6), (4, 3, 1, 3), dict(padding=(0, 1))),  # one kernel row: no shifted adds
    ],
)
def test_row_columns_match_the_reference_in_any_chunks(x_shape, weight_shape, options, dtype, device):
    x, weight = rng.standard_normal(x_shape), rng.standard_normal(weight_shape)
    bias = rng.standard_normal(weight_shape[0])
    for budget in (None, 1):  # one chunk, and one sample per chunk
        check_against_reference(*cast((x, weight, bias), dtype), device, max_buffer_bytes=budget, **options)


def test_row_columns_never_call_im2col_and_chunk_the_batch(monkeypatch, device):
    """Rows copy their own columns (never the im2col pair), and a budget of two samples' buffers runs the
    batch two samples at a time with the same numbers."""
    def fail(*args):
        raise AssertionError("row columns called im2col")

    x, weight = on(device, rng.standard_normal((5, 3, 6, 7)), rng.standard_normal((4, 3, 3, 3)))
    no_im2col = ColumnKernels(im2col=fail, col2im=fail)
    out, ctx = fast_conv.conv2d_forward(x, weight, None, padding=1, method="rows", columns=no_im2col)
    grad_out = on(device, rng.standard_normal(out.shape))
    grads = fast_conv.conv2d_backward(grad_out, ctx)

    chunks = []
    original = conv_rows.forward_chunk
    monkeypatch.setattr(conv_rows, "forward_chunk", lambda x, *rest: chunks.append(x.shape[0]) or original(x, *rest))
    two_samples = 2 * conv_rows.bytes_per_sample(x.shape, 4, ctx.geometry, x.itemsize)
    out_chunked, ctx_chunked = fast_conv.conv2d_forward(x, weight, None, padding=1, method="rows",
                                                        max_buffer_bytes=two_samples)
    assert chunks == [2, 2, 1]
    grads_chunked = fast_conv.conv2d_backward(grad_out, ctx_chunked)
    for chunked, whole in zip((out_chunked, *grads_chunked[:2]), (out, *grads[:2])):
        np.testing.assert_allclose(back(chunked), back(whole), rtol=1e-12, atol=1e-12)


def test_row_columns_backward_gives_only_what_is_asked(device):
    x, weight = on(device, rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)))
    out, ctx = fast_conv.conv2d_forward(x, weight, None, padding=1, method="rows")
    grad_out = on(device, rng.standard_normal(out.shape))
    full = fast_conv.conv2d_backward(grad_out, ctx)
    grad_x, grad_weight, _ = fast_conv.conv2d_backward(grad_out, ctx, need_weight_grad=False)
    assert grad_weight is None
    np.testing.assert_allclose(back(grad_x), back(full[0]), rtol=1e-12, atol=1e-12)
    grad_x, grad_weight, _ = fast_conv.conv2d_backward(grad_out, ctx, need_input_grad=False)
    assert grad_x is None
    np.testing.assert_allclose(back(grad_weight), back(full[1]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("min_pixels", [1, 10**9], ids=["per-sample-stack", "swapped-product"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_weight_gradient_is_the_same_in_any_chunks(monkeypatch, dtype, min_pixels, device):
    """Both ways to the pointwise weight gradient match the reference, and chunking does not change them
    (per-sample products are summed chunk by chunk, budget: the stack of one chunk's (C_out, C_in) products;
    the swapped product runs the columns method's chunks)."""
    monkeypatch.setattr(fast_conv, "POINTWISE_STACK_MIN_PIXELS", min_pixels)
    x, weight, bias = cast((rng.standard_normal((5, 6, 4, 3)), rng.standard_normal((7, 6, 1, 1)),
                            rng.standard_normal(7)), dtype)
    check_against_reference(x, weight, bias, device)
    x, weight = on(device, x, weight)
    out, ctx = fast_conv.conv2d_forward(x, weight, None, method="pointwise")
    grad_out = on(device, rng.standard_normal(out.shape).astype(dtype))
    whole = fast_conv.conv2d_backward(grad_out, ctx)
    _, one_by_one = fast_conv.conv2d_forward(x, weight, None, method="pointwise", max_buffer_bytes=1)
    chunked = fast_conv.conv2d_backward(grad_out, one_by_one)
    np.testing.assert_array_equal(back(chunked[0]), back(whole[0]))  # grad_x: the same products
    assert_same_numbers(back(chunked[1]), back(whole[1]), "grad_weight in one-sample chunks", terms=5 * 12)


def test_row_columns_chunks_are_cache_sized_on_a_cpu(monkeypatch, device):
    """On a CPU the rows method's chunks hold at most conv_rows.CACHE_CHUNK_BYTES (the products then stay in the
    cache); on a GPU only the budget counts. The numbers do not change."""
    x, weight = on(device, rng.standard_normal((6, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)))
    whole, _ = fast_conv.conv2d_forward(x, weight, None, padding=1, method="rows")
    _, ctx = fast_conv.conv2d_forward(x, weight, None, padding=1, method="rows")
    per_sample = conv_rows.bytes_per_sample(x.shape, 4, ctx.geometry, x.itemsize)
    monkeypatch.setattr(conv_rows, "CACHE_CHUNK_BYTES", 2 * per_sample)
    chunks = [stop - start for start, stop, _ in fast_conv._row_chunks(x, 4, ctx.geometry, 10**9)]
    assert chunks == ([2, 2, 2] if device == "cpu" else [6])
    chunked, _ = fast_conv.conv2d_forward(x, weight, None, padding=1, method="rows")
    np.testing.assert_allclose(back(chunked), back(whole), rtol=1e-12, atol=1e-12)
