"""2-D convolution as im2col + matrix multiply, made fast: replaces :mod:`minigrad.kernels.conv`.

The same formulas as the reference (``Y_mat[g] = W_mat[g] @ cols[g]``, ``dW = dY @ cols.T``,
``dcols = W_mat.T @ dY``, ``dx = col2im(dcols)``) and the same numbers, up to the order of float sums
(the tests hold the two together). It has three methods (the end of this docstring); the first,
``method="columns"``, does what follows differently from the reference, and why (benchmarks/README.md has the
figures):

- **One big matrix multiply** per group and chunk, not one per sample: each BLAS call starts and joins
  its threads, and on a busy machine many small calls cost far more than one large one.
- **The 1x1 shortcut** (stride 1, no padding): a 1x1 window holds one pixel's channels, so the columns are
  x itself with N and C swapped (``x.transpose(1, 0, 2, 3)``, one plain copy, no im2col), and the input
  gradient is the column gradient swapped back (no col2im). See :func:`_is_pointwise`.
- **Bounded memory, batch chunks**: the columns are C_in*kH*kW/C_out times larger than the output (9x for a
  3x3 conv keeping its channel count). The batch is cut into chunks whose columns fit in
  ``max_buffer_bytes`` (default :data:`DEFAULT_BUFFER_BYTES`); the results do not depend on the chunking.
  The backward makes the columns again chunk by chunk instead of keeping them from the forward.
- **Reused scratch buffers**: one buffer per (device, dtype, role) serves every chunk and every call
  (:func:`_scratch_array`); a fresh large array is page-faulted in on every call, a reused one is mapped.
- **No extra copies**: im2col writes the windows once in the layout the multiply wants, the products write
  straight into preallocated arrays (``matmul(..., out=...)``), the swap back to (N, C, H, W) is one copy
  that also adds the bias, and the column buffer receives the column gradient once the columns are used.
- **The weight gradient turned round**: ``(cols @ dY.T).T`` instead of ``dY @ cols.T``, the same numbers,
  an orientation OpenBLAS runs faster for this long-inner-dimension product (:func:`_accumulate_weight_grad`).

The columns are copied by a :class:`~minigrad.kernels.fast.im2col.ColumnKernels` pair, the array versions by
default; the dispatch point passes the CUDA C ones when they are switched on.

**Three methods.** ``method="columns"`` is all of the above: the general method, and a GPU's. ``method="rows"``
(:mod:`minigrad.kernels.fast.conv_rows`) copies each pixel kW times instead of kH * kW and adds the kernel
rows by shifting; it needs stride 1, no dilation and one group. ``method="pointwise"``, for a 1x1 kernel
(stride 1, no padding, one group), copies nothing: ``out[n] = W @ x[n]``, one product per sample, each
sample's (C, H*W) block read where it lies (measured faster than the swap copies on a quiet 2-core CPU,
whatever the cost of a BLAS call on a busy one). By default (``method=None``, :func:`choose_method`) a CPU
convolution takes pointwise where it can, rows where it can and its depth C_in * kH * kW is at most
:data:`~minigrad.kernels.fast.conv_rows.MAX_DEPTH` (few channels: the copies dominate), and columns
otherwise; a GPU takes columns (the others were measured on CPUs only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.kernels.conv import by_group, conv2d_geometry
from minigrad.kernels.fast import conv_rows
from minigrad.kernels.fast.im2col import ARRAY_COLUMNS, ColumnKernels
from minigrad.kernels.geometry import WindowGeometry

METHODS = ("columns", "rows", "pointwise")
# Below this many pixels per image the pointwise weight gradient swaps N and C for one long product instead
# of stacking per-sample ones (at 8x8, 832 -> 624 channels: 33 ms against 65; at 16x16 and up the stack wins).
POINTWISE_STACK_MIN_PIXELS = 256
DEFAULT_BUFFER_BYTES = 256 * 2**20  # largest column buffer one conv2d call may hold (per chunk of the batch)

# Scratch arrays kept between calls, keyed by (device, dtype, role). Nothing returned to a caller or kept in
# a ctx points into them, and kernels run one at a time (not thread-safe). :func:`release_buffers` gives the
# memory back.
_scratch: dict = {}


def set_buffer_budget(nbytes: int) -> None:
    """Change :data:`DEFAULT_BUFFER_BYTES`, the column-buffer budget of calls that pass none."""
    global DEFAULT_BUFFER_BYTES
    if int(nbytes) < 1:
        raise ValueError(f"conv2d: the buffer budget must be a positive number of bytes, got {nbytes!r}")
    DEFAULT_BUFFER_BYTES = int(nbytes)


def release_buffers() -> None:
    """Free the scratch arrays conv2d keeps between calls (they come back on the next call)."""
    _scratch.clear()


def _scratch_array(like: Any, shape: tuple, role: str) -> Any:
    """An uninitialised C-contiguous array of ``shape`` and ``like``'s dtype and device, reused across
    calls: a view into a flat buffer kept in ``_scratch`` under ``role``, grown when it is too small."""
    size = 1
    for length in shape:
        size *= length
    key = (backend.device_of(like), like.dtype.str, role)
    if key not in _scratch or _scratch[key].size < size:
        _scratch.pop(key, None)  # free the old buffer before allocating the larger one
        _scratch[key] = backend.xp_of(like).empty(size, dtype=like.dtype)
    return _scratch[key][:size].reshape(shape)


@dataclass(frozen=True)
class ConvContext:
    """What :func:`conv2d_backward` needs from the forward pass (the input itself, not its columns), and the
    budget and column kernels the forward ran with, so that the backward runs with them too."""

    x: Any
    weight: Any
    has_bias: bool
    geometry: WindowGeometry
    groups: int
    max_buffer_bytes: int
    columns: ColumnKernels
    method: str = "columns"


def choose_method(x: Any, weight: Any, geometry: WindowGeometry, groups: int, method: str | None = None) -> str:
    """The method a convolution runs with: ``method`` checked, or, when it is None, on a CPU "pointwise" for
    a 1x1 kernel with stride 1, no padding and one group, "rows" for a stride-1 undilated ungrouped one
    whose depth C_in * kH * kW is at most ``conv_rows.MAX_DEPTH``, and "columns" otherwise (always on a GPU)."""
    pointwise = _is_pointwise(geometry) and groups == 1
    if method is None:
        depth = weight.shape[1] * geometry.kernel[0] * geometry.kernel[1]
        if not backend.prefers_fewer_copies_to_longer_products(x):
            return "columns"
        if pointwise:
            return "pointwise"
        shallow = geometry.kernel != (1, 1) and depth <= conv_rows.MAX_DEPTH
        return "rows" if (shallow and conv_rows.applies(geometry, groups)) else "columns"
    if method not in METHODS:
        raise ValueError(f"conv2d: method must be one of {METHODS} or None (choose), got {method!r}")
    if method == "pointwise" and not pointwise:
        raise ValueError(
            f"conv2d: method='pointwise' needs a 1x1 kernel, stride 1, no padding and groups=1, got kernel "
            f"{geometry.kernel}, stride {geometry.stride}, padding {geometry.pads}, groups={groups} (input "
            f"{tuple(x.shape)}); use method='columns' or None"
        )
    if method == "rows" and not conv_rows.applies(geometry, groups):
        raise ValueError(
            f"conv2d: method='rows' needs stride 1, dilation 1 and groups=1, got stride {geometry.stride}, "
            f"dilation {geometry.dilation}, groups={groups} (input {tuple(x.shape)}, weight "
            f"{tuple(weight.shape)}); use method='columns' or None"
        )
    return method


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    max_buffer_bytes: int | None = None,
    columns: ColumnKernels = ARRAY_COLUMNS,
    method: str | None = None,
) -> tuple[Any, ConvContext]:
    """:func:`minigrad.kernels.conv.conv2d_forward`, chunked: x (N, C_in, H, W), weight (C_out, C_in/groups,
    kH, kW), bias (C_out,) or None -> (out (N, C_out, H_out, W_out), ctx for :func:`conv2d_backward`).

    ``max_buffer_bytes``: the most bytes of columns one chunk of the batch may hold (default
    :data:`DEFAULT_BUFFER_BYTES`); ``columns``: the im2col/col2im pair that copies the windows;
    ``method``: "columns", "rows" or None to choose (:func:`choose_method`).
    """
    geometry = conv2d_geometry(x, weight, bias, stride, padding, dilation, groups)
    budget = DEFAULT_BUFFER_BYTES if max_buffer_bytes is None else int(max_buffer_bytes)
    method = choose_method(x, weight, geometry, groups, method)
    xp = backend.xp_of(x)
    n, out_channels = x.shape[0], weight.shape[0]
    out_h, out_w = geometry.out_size
    out = xp.empty((n, out_channels, out_h, out_w), dtype=x.dtype)
    ctx = ConvContext(x, weight, bias is not None, geometry, groups, budget, columns, method)
    if method == "rows":
        for start, stop, buffers in _row_chunks(x, out_channels, geometry, budget):
            result = conv_rows.forward_chunk(x[start:stop], weight, geometry, buffers["columns"], buffers["rows"])
            _to_batch_major(result, bias, out[start:stop])
        return out, ctx
    if method == "pointwise":
        # out[n] = W @ x[n] for every sample n: NumPy's matmul runs one product per sample, straight on x
        conv_rows.product(weight.reshape(out_channels, -1), x.reshape(n, x.shape[1], -1),
                          out=out.reshape(n, out_channels, -1))
        if bias is not None:
            out += bias.reshape(-1, 1, 1)
        return out, ctx
    weight_matrix = weight.reshape(out_channels, -1)

    for start, stop, cols in _column_chunks(x, geometry, budget, columns):
        chunk = stop - start
        out_matrix = _scratch_array(x, (out_channels, cols.shape[1]), "rows")
        _grouped_matmul(weight_matrix, cols, out_matrix, groups)
        # (C_out, chunk, H_out*W_out) -> (chunk, C_out, H_out*W_out): one copy, bias added on the way.
        _to_batch_major(out_matrix.reshape(out_channels, chunk, out_h, out_w), bias, out[start:stop])
    return out, ctx


def _to_batch_major(result: Any, bias: Any, out: Any) -> None:
    """Write a (C_out, n, H_out, W_out) result into ``out`` (n, C_out, H_out, W_out): one copy that swaps
    the first two axes and adds the bias (C_out,) on the way when there is one."""
    swapped = result.transpose(1, 0, 2, 3)
    if bias is None:
        out[...] = swapped
    else:
        backend.xp_of(out).add(swapped, bias.reshape(-1, 1, 1), out=out)


def _row_chunks(x: Any, out_channels: int, geometry: WindowGeometry, max_buffer_bytes: int):
    """Yield ``(start, stop, buffers)`` for consecutive batch chunks of a row-columns convolution: as many
    samples as fit in ``max_buffer_bytes`` (on a CPU at most ``conv_rows.CACHE_CHUNK_BYTES``; at least one
    sample), and the scratch arrays
    :func:`conv_rows.backward_chunk` names, sized for the chunk."""
    n, in_channels, height, width = x.shape
    (kernel_h, kernel_w), out_w = geometry.kernel, geometry.out_size[1]
    padded_h = geometry.padded_size[0]
    per_sample = conv_rows.bytes_per_sample(x.shape, out_channels, geometry, x.dtype.itemsize)
    if backend.prefers_cache_sized_chunks(x):  # a CPU: chunks whose products stay in the cache
        max_buffer_bytes = min(max_buffer_bytes, conv_rows.CACHE_CHUNK_BYTES)
    chunk = max(1, min(n, max_buffer_bytes // per_sample))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        per_channel = (stop - start) * padded_h * out_w
        margin = (kernel_h - 1) * out_w
        yield start, stop, {
            "columns": _scratch_array(x, (in_channels * kernel_w, per_channel), "columns"),
            "rows": _scratch_array(x, (kernel_h * out_channels, per_channel), "rows"),
            "grid": _scratch_array(x, (margin + out_channels * per_channel,), "grid"),
            "sums": _scratch_array(x, (in_channels, stop - start, height, width), "sums"),
        }


def conv2d_backward(
    grad_out: Any,
    ctx: ConvContext,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
) -> tuple[Any, Any, Any]:
    """:func:`minigrad.kernels.conv.conv2d_backward`, chunked: grad_out (N, C_out, H_out, W_out) ->
    (grad_x, grad_weight, grad_bias) with the shapes of x, weight and bias; None where not needed."""
    x, weight, geometry, groups = ctx.x, ctx.weight, ctx.geometry, ctx.groups
    n, out_channels = x.shape[0], weight.shape[0]
    out_h, out_w = geometry.out_size
    expected = (n, out_channels, out_h, out_w)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"conv2d backward: grad_out has shape {tuple(grad_out.shape)}, expected {expected}")
    xp = backend.xp_of(grad_out)
    grad_out = grad_out.astype(x.dtype, copy=False)
    weight_matrix = weight.reshape(out_channels, -1)

    grad_bias = grad_out.sum(axis=(0, 2, 3)) if (need_bias_grad and ctx.has_bias) else None
    grad_x = xp.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    if not (need_input_grad or need_weight_grad):
        return None, None, grad_bias
    if ctx.method == "rows":
        return (*_backward_by_rows(grad_out, ctx, grad_x, need_weight_grad), grad_bias)
    if ctx.method == "pointwise":
        return (*_backward_pointwise(grad_out, ctx, grad_x, need_weight_grad), grad_bias)
    grad_weight_matrix = xp.zeros(weight_matrix.shape, dtype=x.dtype) if need_weight_grad else None

    chunks = _column_chunks(x, geometry, ctx.max_buffer_bytes, ctx.columns, fill=need_weight_grad)
    for start, stop, cols in chunks:
        chunk = stop - start
        # grad_out[chunk] laid out like the forward's out_matrix: (C_out, chunk * H_out * W_out).
        grad_matrix = _scratch_array(x, (out_channels, cols.shape[1]), "rows")
        grad_matrix.reshape(out_channels, chunk, out_h * out_w)[...] = (
            grad_out[start:stop].reshape(chunk, out_channels, -1).transpose(1, 0, 2)
        )
        if need_weight_grad:
            _accumulate_weight_grad(grad_matrix, cols, grad_weight_matrix, groups)
        if need_input_grad:
            # The columns are no longer needed: their buffer receives the column gradient.
            grad_cols = cols
            _grouped_matmul(weight_matrix, grad_matrix, grad_cols, groups, transpose_weight=True)
            if _is_pointwise(geometry):  # the adjoint of the plain axis swap is the swap back
                grad_x[start:stop] = _swap_batch_and_channels(grad_cols, (chunk, *x.shape[1:]))
            else:
                ctx.columns.col2im(grad_cols, (chunk, *x.shape[1:]), geometry, grad_x[start:stop])
    grad_weight = grad_weight_matrix.reshape(weight.shape) if need_weight_grad else None
    return grad_x, grad_weight, grad_bias


def _backward_by_rows(grad_out: Any, ctx: ConvContext, grad_x: Any, need_weight_grad: bool) -> tuple[Any, Any]:
    """conv2d_backward for a context made with ``method="rows"``: (grad_x, grad_weight), chunk by chunk."""
    x, weight, geometry = ctx.x, ctx.weight, ctx.geometry
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    xp = backend.xp_of(grad_out)
    # grad_weight gathered as (C_in * kW, kH * C_out), the layout the products give
    grad_rows = xp.zeros((in_channels * kernel_w, kernel_h * out_channels), dtype=x.dtype) if need_weight_grad else None
    for start, stop, buffers in _row_chunks(x, out_channels, geometry, ctx.max_buffer_bytes):
        conv_rows.backward_chunk(x[start:stop], grad_out[start:stop], weight, geometry, buffers, grad_rows,
                                 None if grad_x is None else grad_x[start:stop])
    if grad_rows is None:
        return grad_x, None
    grad_weight = grad_rows.reshape(in_channels, kernel_w, kernel_h, out_channels).transpose(3, 0, 2, 1)
    return grad_x, xp.ascontiguousarray(grad_weight)


def _backward_pointwise(grad_out: Any, ctx: ConvContext, grad_x: Any, need_weight_grad: bool) -> tuple[Any, Any]:
    """conv2d_backward for ``method="pointwise"``: ``grad_x[n] = W.T @ dY[n]``, one product per sample, and
    ``grad_weight = sum_n dY[n] @ x[n].T``: per sample too, in batch chunks whose (n, C_out, C_in) stack
    fits in the buffer budget, for images of at least :data:`POINTWISE_STACK_MIN_PIXELS` pixels; one product
    over N and C swapped (as the columns method does) for smaller ones."""
    x, weight = ctx.x, ctx.weight
    xp = backend.xp_of(grad_out)
    n, in_channels = x.shape[:2]
    out_channels = weight.shape[0]
    grad_rows, x_rows = grad_out.reshape(n, out_channels, -1), x.reshape(n, in_channels, -1)
    if grad_x is not None:
        conv_rows.product(weight.reshape(out_channels, in_channels).T, grad_rows,
                          out=grad_x.reshape(n, in_channels, -1))
    if not need_weight_grad:
        return grad_x, None
    grad_weight = xp.zeros((out_channels, in_channels), dtype=x.dtype)
    if x_rows.shape[2] < POINTWISE_STACK_MIN_PIXELS:
        # Small images: per-sample products with an inner dimension of only H*W run slowly and their stack is
        # large; swapping N and C instead gives one product whose inner dimension is every pixel of the batch.
        for start, stop, cols in _column_chunks(x, ctx.geometry, ctx.max_buffer_bytes, ctx.columns):
            grad_matrix = _scratch_array(x, (out_channels, cols.shape[1]), "rows")
            swapped_shape = (stop - start, out_channels, *x.shape[2:])
            _swap_batch_and_channels(grad_matrix, swapped_shape)[...] = grad_out[start:stop]
            _accumulate_weight_grad(grad_matrix, cols, grad_weight, 1)
        return grad_x, grad_weight.reshape(weight.shape)
    chunk = max(1, min(n, ctx.max_buffer_bytes // (out_channels * in_channels * x.dtype.itemsize)))
    for start in range(0, n, chunk):
        per_sample = conv_rows.product(grad_rows[start : start + chunk],
                                       x_rows[start : start + chunk].transpose(0, 2, 1))
        grad_weight += per_sample.sum(axis=0)
    return grad_x, grad_weight.reshape(weight.shape)


def _is_pointwise(geometry: WindowGeometry) -> bool:
    """True for a 1x1 kernel with stride 1 and no padding: a plain matrix multiply over channels."""
    return geometry.kernel == (1, 1) and geometry.stride == (1, 1) and geometry.pads == ((0, 0), (0, 0))


def _swap_batch_and_channels(matrix: Any, x_shape: tuple) -> Any:
    """View a (C, N * H * W) matrix as the (N, C, H, W) array it holds (axes swapped, no copy)."""
    n, c, h, w = x_shape
    return matrix.reshape(c, n, h, w).transpose(1, 0, 2, 3)


def _column_chunks(x: Any, geometry: WindowGeometry, max_buffer_bytes: int, columns: ColumnKernels,
                   fill: bool = True):
    """Yield ``(start, stop, cols)``: the columns of ``x[start:stop]`` for consecutive batch chunks
    (with ``fill=False`` only the buffer, for a caller that writes its own columns).

    A chunk holds as many samples as fit in ``max_buffer_bytes`` of columns (at least one sample).
    All chunks, and all calls, share one scratch buffer.
    """
    n, in_channels = x.shape[:2]
    (kernel_h, kernel_w), (out_h, out_w) = geometry.kernel, geometry.out_size
    rows, columns_per_sample = in_channels * kernel_h * kernel_w, out_h * out_w
    bytes_per_sample = rows * columns_per_sample * x.dtype.itemsize
    chunk = max(1, min(n, max_buffer_bytes // bytes_per_sample))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        cols = _scratch_array(x, (rows, (stop - start) * columns_per_sample), "columns")
        if fill and _is_pointwise(geometry):
            # A 1x1 window holds one pixel's channels: the columns are x itself with N and C swapped,
            # a plain copy with no window view and no padding (im2col would do the same, more slowly).
            _swap_batch_and_channels(cols, (stop - start, *x.shape[1:]))[...] = x[start:stop]
        elif fill:
            columns.im2col(x[start:stop], geometry, cols)
        yield start, stop, cols


def _grouped_matmul(
    weight_matrix: Any, inputs: Any, out: Any, groups: int, transpose_weight: bool = False
) -> None:
    """``out[g] = W[g] @ inputs[g]`` (or ``W[g].T @ inputs[g]``) for every group g, written into ``out``.

    ``weight_matrix``: (C_out, K_g); ``inputs``/``out``: matrices whose rows split into ``groups`` equal
    consecutive blocks. One ``matmul`` call does every group: it loops over the groups in C, calling BLAS
    once per group (once in all for ``groups=1``).
    """
    weights = by_group(weight_matrix, groups)  # (groups, C_out/groups, K_g)
    if transpose_weight:
        weights = weights.transpose(0, 2, 1)
    backend.xp_of(inputs).matmul(weights, by_group(inputs, groups), out=by_group(out, groups))


def _accumulate_weight_grad(grad_matrix: Any, cols: Any, grad_weight_matrix: Any, groups: int) -> None:
    """``grad_weight[g] += grad_matrix[g] @ cols[g].T`` for every group (one chunk's share of the sum).

    Computed as ``(cols[g] @ grad_matrix[g].T).T``: the same numbers in the orientation OpenBLAS runs faster
    for this product, whose inner dimension (every output pixel) is long and whose result is small. The
    transpose of the small (C_out, K) result is free (a view) before the add.
    """
    grad_by_group = by_group(grad_matrix, groups).transpose(0, 2, 1)  # (groups, columns, C_out/groups), a view
    product = backend.xp_of(cols).matmul(by_group(cols, groups), grad_by_group)  # (groups, K_g, C_out/groups)
    by_group(grad_weight_matrix, groups)[...] += product.transpose(0, 2, 1)
