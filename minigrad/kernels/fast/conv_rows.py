"""Stride-1 convolution by *row columns*: im2col along the width only, the kernel rows added by shifting.

The fast convolution of :mod:`minigrad.kernels.fast.conv` copies every input pixel ``kH * kW`` times into
its columns (25 times for a 5x5 kernel). With few input channels the matrix multiply is then small and the
copies, and col2im's adds in the backward, are most of the time. For a stride-1, undilated, ungrouped
convolution this module copies each pixel only ``kW`` times and lets the kernel rows come from shifting:

- **Row columns.** ``cols[(c, j), (n, y, ow)] = x_padded[n, c, y, ow + j]`` for every padded row ``y``
  (``Hp`` of them) and every output column ``ow``: (C_in * kW, N * Hp * W_out), kW copies of x, not kH * kW.
- **One product for every kernel row.** ``Z = W_rows @ cols`` with ``W_rows[(i, o), (c, j)] = w[o, c, i, j]``
  gives, for each kernel row i, (C_out, N * Hp * W_out): the sums over c and j at every padded row.
- **Rows by shifting.** Output ``(n, oh, ow)`` needs kernel row i at padded row ``oh + i``: in the flat
  (n, y, ow) order that is ``i * W_out`` places further on, so ``out = sum_i Z[i]`` shifted by ``i * W_out``,
  kH - 1 contiguous adds. Positions past the last output row of an image read into the next image; they
  are not outputs and are dropped.

The backward runs the same idea backwards:

- dY is laid out on the padded rows, with zeros below each image's last output row, and its kH copies
  shifted by 0, W_out, ..., (kH - 1) * W_out are stacked: ``S[(i, o), r] = dY[o, r - i * W_out]`` (every
  shift reads zeros where it leaves an image);
- ``grad_weight[o, c, i, j] = sum over r of cols[(c, j), r] * S[(i, o), r]``: one product, ``cols @ S.T``;
- the column gradient is one product too, ``dcols = W_cols @ S`` with ``W_cols[(c, j), (i, o)] = w[o, c, i, j]``;
- col2im along the width only: ``grad_x = sum_j dcols[(c, j)]`` shifted j columns, kW adds.

The same sums as the reference, in another order (the tests hold them within the float32 tolerance). It
pays on a CPU when C_in * kH * kW is small (:data:`MAX_DEPTH`): benchmarks/README.md has the figures.
"""

from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.kernels.geometry import WindowGeometry

# The largest C_in * kH * kW for which the fast convolution picks row columns by itself on a CPU. Measured
# forward + backward on a 2-core AMD EPYC, AVX2 (benchmarks/README.md): 1.8-2.3x faster at depth 200 (5x5
# over 8 channels), 1.3-1.5x at 108-216, 1.2-1.4x at 400-800; from 864 to 1152 anywhere from 0.86x to 1.2x,
# and 0.93-0.98x from 1296 on, where one long product over the full columns does as well.
MAX_DEPTH = 800

# On a CPU the row-columns method cuts its batch into chunks whose buffers hold at most this many bytes (or
# the convolution's own budget, if smaller): the products are then written into, and the shifted adds read
# from, the cache. Measured on a 2-core AMD EPYC (32 MiB L3, benchmarks/README.md): the demo's shallow
# convolutions, forward + backward, 90 ms in one chunk of 64 images, 76 ms in 4 MiB chunks, 81 ms in 1 MiB ones;
# the demo's whole training step about 2.6% faster (the median of 16 paired steps, quartiles -4% to +3%).
CACHE_CHUNK_BYTES = 4 * 2**20


def product(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b``, into ``out`` when given. Every matrix multiply of the row-columns method (and of the fast
    convolution's pointwise method) runs through this one function, so that a profile can tell the time of
    the products from the time of the copies around them (chapter 15 does)."""
    return backend.xp_of(a).matmul(a, b, out=out)


def applies(geometry: WindowGeometry, groups: int) -> bool:
    """True when row columns can compute this convolution: stride 1, no dilation, one group."""
    return groups == 1 and geometry.stride == (1, 1) and geometry.dilation == (1, 1)


def _layout(geometry: WindowGeometry) -> tuple[int, int, int, int, int, int]:
    """(top, left, Hp, W_out, H_out, kH): where x sits in the padded rows, and the sizes the products use."""
    (top, _), (left, _) = geometry.pads
    padded_h, _ = geometry.padded_size
    out_h, out_w = geometry.out_size
    return top, left, padded_h, out_w, out_h, geometry.kernel[0]


def bytes_per_sample(x_shape: tuple, out_channels: int, geometry: WindowGeometry, itemsize: int) -> int:
    """The size of one sample's share of the larger of the two buffers: the row columns or the products."""
    in_channels = x_shape[1]
    kernel_h, kernel_w = geometry.kernel
    _, _, padded_h, out_w, _, _ = _layout(geometry)
    return max(in_channels * kernel_w, kernel_h * out_channels) * padded_h * out_w * itemsize


def _width_ranges(j: int, left: int, width: int, out_w: int) -> tuple[slice, slice]:
    """For kernel column j: the output columns ow whose tap ``ow + j`` falls on x (not on padding), and
    the x columns they read: ``x[..., ow + j - left]``. Both empty when the tap sees only padding."""
    low, high = max(0, left - j), min(out_w, width + left - j)
    high = max(low, high)
    return slice(low, high), slice(low + j - left, high + j - left)


def row_columns_into(x: Any, geometry: WindowGeometry, cols: Any) -> Any:
    """Fill ``cols`` (C * kW, N * Hp * W_out) with x's row columns: ``cols[(c, j), (n, y, ow)]`` is the
    zero-padded input at image n, channel c, padded row y, padded column ``ow + j``. Returns cols."""
    n, c, height, width = x.shape
    top, left, padded_h, out_w, _, _ = _layout(geometry)
    kernel_w = geometry.kernel[1]
    by_tap = cols.reshape(c, kernel_w, n, padded_h, out_w)
    by_tap[:, :, :, :top] = 0
    by_tap[:, :, :, top + height :] = 0
    x_by_channel = x.transpose(1, 0, 2, 3)  # (C, N, H, W), a view
    for j in range(kernel_w):
        columns, source = _width_ranges(j, left, width, out_w)
        rows = by_tap[:, j, :, top : top + height]
        rows[..., : columns.start] = 0
        rows[..., columns.stop :] = 0
        rows[..., columns] = x_by_channel[..., source]
    return cols


def forward_chunk(x: Any, weight: Any, geometry: WindowGeometry, cols: Any, products: Any) -> Any:
    """The convolution of x (n, C_in, H, W), as a (C_out, n, H_out, W_out) view into ``products``.

    cols: a (C_in * kW, n * Hp * W_out) buffer; products: a (kH * C_out, n * Hp * W_out) buffer.
    """
    out_channels, kernel_h = weight.shape[0], geometry.kernel[0]
    _, _, padded_h, out_w, out_h, _ = _layout(geometry)
    row_columns_into(x, geometry, cols)
    weight_rows = weight.transpose(2, 0, 1, 3).reshape(kernel_h * out_channels, -1)  # (i, o) x (c, j)
    product(weight_rows, cols, out=products)
    by_row = products.reshape(kernel_h, out_channels, -1)
    length = by_row.shape[2] - (kernel_h - 1) * out_w  # every position that is an output lies before this
    for i in range(1, kernel_h):  # out = sum_i Z[i] shifted by i rows, summed into Z[0]
        by_row[0, :, :length] += by_row[i, :, i * out_w : i * out_w + length]
    return by_row[0].reshape(out_channels, x.shape[0], padded_h, out_w)[:, :, :out_h]


def backward_chunk(
    x: Any, grad_out: Any, weight: Any, geometry: WindowGeometry, buffers: dict,
    grad_weight_rows: Any = None, grad_x: Any = None,
) -> None:
    """Add this chunk's share to ``grad_weight_rows`` ((C_in * kW, kH * C_out), or None) and write its
    input gradient into ``grad_x`` ((n, C_in, H, W), or None).

    x: (n, C_in, H, W); grad_out: (n, C_out, H_out, W_out); buffers: scratch arrays of the right sizes under
    "columns" (C_in * kW, n * Hp * W_out), "grid" (margin + C_out * n * Hp * W_out,), "rows"
    (kH * C_out, n * Hp * W_out) and "sums" (C_in, n, H, W).
    """
    n, in_channels, height, width = x.shape
    out_channels = weight.shape[0]
    top, left, padded_h, out_w, out_h, kernel_h = _layout(geometry)
    kernel_w = geometry.kernel[1]
    per_channel = n * padded_h * out_w
    # dY on the padded rows, zero below every image's last output row, after `margin` zeros: a shift of up
    # to kH - 1 rows back then reads zeros wherever it leaves an image.
    margin = (kernel_h - 1) * out_w
    grid_buffer = buffers["grid"]
    grid_buffer[:margin] = 0
    grid = grid_buffer[margin:].reshape(out_channels, n, padded_h, out_w)
    grid[:, :, out_h:] = 0
    grid[:, :, :out_h] = grad_out.transpose(1, 0, 2, 3)

    # dY shifted by i rows (back), stacked: shifted[i, o, r] = dY[o, r - i * W_out]. Both gradients are
    # one product with it.
    shifted = buffers["rows"]
    for i in range(kernel_h):
        start = margin - i * out_w
        shifted[i * out_channels : (i + 1) * out_channels] = (
            grid_buffer[start : start + out_channels * per_channel].reshape(out_channels, per_channel)
        )
    cols = buffers["columns"]
    if grad_weight_rows is not None:
        # grad_weight[o, c, i, j] = sum_r cols[(c, j), r] * dY[o, r - i * W_out]: cols @ shifted.T, in the
        # layout (C_in * kW, kH * C_out); one product with a long inner dimension, not kH thin ones.
        row_columns_into(x, geometry, cols)
        grad_weight_rows += product(cols, shifted.T).reshape(grad_weight_rows.shape)
    if grad_x is None:
        return
    weight_columns = weight.transpose(1, 3, 2, 0).reshape(in_channels * kernel_w, kernel_h * out_channels)
    grad_cols = product(weight_columns, shifted, out=cols)  # (C_in * kW, n * Hp * W_out)
    row_columns_back(grad_cols, x.shape, geometry, buffers["sums"], grad_x)


def row_columns_back(grad_cols: Any, x_shape: tuple, geometry: WindowGeometry, sums: Any, grad_x: Any) -> Any:
    """The adjoint of :func:`row_columns_into`, col2im along the width only: every (c, j) row of the column
    gradient (C_in * kW, n * Hp * W_out) added back j columns to the right, into ``grad_x`` (n, C_in, H, W)
    by way of ``sums``, a (C_in, n, H, W) buffer. Returns grad_x."""
    n, in_channels, height, width = x_shape
    top, left, padded_h, out_w, _, _ = _layout(geometry)
    kernel_w = geometry.kernel[1]
    grad_by_tap = grad_cols.reshape(in_channels, kernel_w, n, padded_h, out_w)[:, :, :, top : top + height]
    sums[...] = 0
    for j in range(kernel_w):  # kernel column j lands j columns to the right
        columns, source = _width_ranges(j, left, width, out_w)
        sums[..., source] += grad_by_tap[:, j, ..., columns]
    grad_x[...] = sums.transpose(1, 0, 2, 3)
    return grad_x
