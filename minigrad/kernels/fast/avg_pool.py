"""Average and adaptive average pooling made fast: replaces :mod:`minigrad.kernels.avg_pool`, with the same
numbers (the tests hold them equal).

Both take ``x: (N, C, H, W)`` (or an unbatched ``(C, H, W)``) and return ``(out, ctx)``; the matching
``*_backward(grad_out, ctx)`` returns ``grad_x`` with the shape of ``x``. What differs from the reference:

* **averaging by matrices**: averaging is linear and separable, so ``rows @ plane @ cols.T`` with one
  averaging matrix per axis computes the same numbers as the tap loop (:func:`_average_by_matrices`), as
  two 2-D BLAS calls over the whole batch; average pooling takes it where a cost model says it is cheaper
  (:func:`_matrices_are_cheaper`): large windows on small maps, such as the auxiliary heads' 5x5/3 pool;
* cache-sized batch chunks for the tap loop on a CPU (:mod:`minigrad.kernels.fast.batch_chunks`);
* adaptive pooling: a plain mean for a 1x1 output (global average pooling), a reshape when the windows
  are equal blocks, the 2-D matrix products otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.kernels.avg_pool import adaptive_matrix, adaptive_output_size, avg_divisor_1d
from minigrad.kernels.fast.batch_chunks import batch_chunks
from minigrad.kernels.geometry import (
    WindowGeometry,
    as_batched,
    check_grad_shape,
    crop,
    kernel_taps,
    pad_input,
    pool_window_geometry,
    tap_slice,
)


@dataclass(frozen=True)
class AvgPoolContext:
    """What :func:`avg_pool2d_backward` needs: where the windows lie, the output's shape, whether the input
    was unbatched, and either the averaging matrices rows (OH, H) and cols (OW, W) (the divisor folded in)
    or the divisor ((OH, OW), or one number) of the tap loop; the other is None."""

    geometry: WindowGeometry
    out_shape: tuple
    unbatched: bool
    divisor: Any = None
    rows: Any = None
    cols: Any = None


@dataclass(frozen=True)
class AdaptiveAvgPoolContext:
    """What :func:`adaptive_avg_pool2d_backward` needs: the path the forward took ("global", "blocks" or
    "matrix"), the input and output shapes, whether the input was unbatched, and the matrix path's
    averaging matrices rows (OH, H) and cols (OW, W) (None on the other paths)."""

    path: str
    input_shape: tuple
    out_shape: tuple
    unbatched: bool
    rows: Any = None
    cols: Any = None


def avg_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[Any, AvgPoolContext]:
    """:func:`minigrad.kernels.avg_pool.avg_pool2d_forward`, fast: x: (N, C, H, W) -> out: (N, C, OH, OW),
    plus ctx for the backward.

    Two ways to the same numbers: the tap loop (strided adds, in cache-sized chunks), or, where
    :func:`_matrices_are_cheaper`, ``rows @ plane @ cols.T`` with one averaging matrix per axis
    (:func:`_average_by_matrices`), the divisor folded into the matrices.
    """
    xp = backend.xp_of(x)
    batched, unbatched = as_batched(x, "avg_pool2d")
    geometry = pool_window_geometry("avg_pool2d", batched.shape, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("avg_pool2d: divisor_override must not be zero; pass None to use the window size")
    out_shape = (*x.shape[:-2], *geometry.out_size)
    if _matrices_are_cheaper(geometry):
        # The divisor is a product of one count per axis (or one number), so it folds into the matrices.
        if divisor_override is not None:
            row_divisor, col_divisor = divisor_override, 1
        else:
            row_divisor = avg_divisor_1d(xp, geometry, 0, count_include_pad)
            col_divisor = avg_divisor_1d(xp, geometry, 1, count_include_pad)
        rows = _window_matrix(xp, geometry, 0, row_divisor, x.dtype)  # (OH, H)
        cols = _window_matrix(xp, geometry, 1, col_divisor, x.dtype)  # (OW, W)
        out = _average_by_matrices(batched, rows, cols)
        ctx = AvgPoolContext(geometry, out_shape, unbatched, rows=rows, cols=cols)
    else:
        out, divisor = _average_by_taps(batched, geometry, count_include_pad, divisor_override)
        ctx = AvgPoolContext(geometry, out_shape, unbatched, divisor=divisor)
    return (out[0] if unbatched else out), ctx


def avg_pool2d_backward(grad_out: Any, ctx: AvgPoolContext) -> Any:
    """:func:`minigrad.kernels.avg_pool.avg_pool2d_backward`, fast: grad_out (N, C, OH, OW) -> (N, C, H, W).

    With matrices: ``grad_x = rows.T @ grad_out @ cols`` (the transposed linear map); else the tap loop in
    cache-sized chunks.
    """
    check_grad_shape("avg_pool2d", grad_out, ctx.out_shape)
    xp = backend.xp_of(grad_out)
    geometry = ctx.geometry
    grad_out = grad_out[None] if ctx.unbatched else grad_out
    if ctx.rows is not None:
        grad_x = _spread_by_matrices(grad_out, ctx.rows, ctx.cols)
        return grad_x[0] if ctx.unbatched else grad_x
    grad_x = xp.empty(grad_out.shape[:2] + geometry.in_size, dtype=grad_out.dtype)
    for batch in batch_chunks(grad_out):
        grad_per_element = grad_out[batch] / ctx.divisor
        grad_padded = xp.zeros(grad_x[batch].shape[:2] + geometry.padded_size, dtype=grad_out.dtype)
        for _, i, j in kernel_taps(geometry):
            window = tap_slice(grad_padded, i, j, geometry)  # a view: += writes into grad_padded
            window += grad_per_element
        grad_x[batch] = crop(grad_padded, geometry)
    return grad_x[0] if ctx.unbatched else grad_x


def _average_by_taps(
    x: Any, geometry: WindowGeometry, count_include_pad: bool, divisor_override: int | None
) -> tuple[Any, Any]:
    """Window sums as kH * kW strided adds, divided by the divisor: (window means (N, C, OH, OW), divisor)."""
    xp = backend.xp_of(x)
    if divisor_override is not None:
        divisor = xp.asarray(divisor_override, dtype=x.dtype)
    else:
        rows = avg_divisor_1d(xp, geometry, 0, count_include_pad)
        cols = avg_divisor_1d(xp, geometry, 1, count_include_pad)
        divisor = (rows[:, None] * cols[None, :]).astype(x.dtype)  # (OH, OW), broadcasts over N and C
    total = xp.empty(x.shape[:2] + geometry.out_size, dtype=x.dtype)
    for batch in batch_chunks(total):
        padded = pad_input(x[batch], geometry, fill=0.0)
        window_sum = total[batch]  # a view: summing into it fills `total`
        for position, i, j in kernel_taps(geometry):
            if position == 0:
                window_sum[...] = tap_slice(padded, i, j, geometry)
            else:
                window_sum += tap_slice(padded, i, j, geometry)
    total /= divisor
    return total, divisor


def _matrices_are_cheaper(geometry: WindowGeometry) -> bool:
    """Whether :func:`_average_by_matrices` beats the tap loop for this geometry (a cost model of a CPU).

    Per plane the matrices cost ``H*W*OW + OW*H*OH`` multiply-adds (most of them by zero), the taps
    ``kH*kW*OH*OW`` adds; the model counts a matrix multiply as doing about four multiply-adds in the time
    NumPy's strided loop does one add (benchmarks/README.md has the measurements behind the 4).
    """
    (height, width), (out_h, out_w) = geometry.in_size, geometry.out_size
    kernel_h, kernel_w = geometry.kernel
    return height * width * out_w + out_w * height * out_h <= 4 * kernel_h * kernel_w * out_h * out_w


def _window_matrix(xp: Any, geometry: WindowGeometry, axis: int, divisor: Any, dtype: Any) -> Any:
    """The (out, size) averaging matrix of one axis: row o is ``1 / divisor[o]`` on window o's inputs.

    Window o covers padded positions ``[o*s - p, o*s - p + k)``; those outside ``[0, size)`` are padding
    and have no column (they add 0). divisor: (out,) counts of this axis, or one number.
    """
    size, kernel = geometry.in_size[axis], geometry.kernel[axis]
    stride, padding = geometry.stride[axis], geometry.pads[axis][0]
    starts = xp.arange(geometry.out_size[axis]) * stride - padding
    positions = xp.arange(size)
    inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < starts[:, None] + kernel)
    return inside.astype(dtype) / xp.asarray(divisor, dtype=dtype).reshape(-1, 1)


def _average_by_matrices(x: Any, rows: Any, cols: Any) -> Any:
    """``rows @ plane @ cols.T`` for every plane of x: (N, C, H, W) -> (N, C, OH, OW); rows (OH, H), cols (OW, W).

    Two 2-D matrix multiplies over the whole batch, each one BLAS call (a stack of N*C tiny products
    would be N*C calls): every row of every plane times ``cols.T``, then, with H moved last, ``rows.T``.
    """
    xp = backend.xp_of(x)
    n, c, height, width = x.shape
    out_h, out_w = rows.shape[0], cols.shape[0]
    along_w = x.reshape(n * c * height, width) @ cols.T  # (N*C*H, OW), straight from x: no copy
    along_w = along_w.reshape(n * c, height, out_w).transpose(0, 2, 1).reshape(n * c * out_w, height)
    both = along_w @ rows.T  # (N*C*OW, OH)
    return xp.ascontiguousarray(both.reshape(n, c, out_w, out_h).transpose(0, 1, 3, 2))


def _spread_by_matrices(grad_out: Any, rows: Any, cols: Any) -> Any:
    """``rows.T @ plane @ cols`` for every plane: (N, C, OH, OW) -> (N, C, H, W), the backward of
    :func:`_average_by_matrices`.

    The same two products in the other order: the output is the large array here, so the W product comes
    last, where it writes the result in its final layout, and the transposes move only small arrays.
    """
    n, c, out_h, out_w = grad_out.shape
    height, width = rows.shape[1], cols.shape[1]
    planes = n * c
    h_first = grad_out.reshape(planes, out_h, out_w).transpose(1, 0, 2).reshape(out_h, planes * out_w)
    along_h = rows.T @ h_first  # (H, N*C*OW)
    along_h = along_h.reshape(height, planes, out_w).transpose(1, 0, 2).reshape(planes * height, out_w)
    return (along_h @ cols).reshape(n, c, height, width)


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, AdaptiveAvgPoolContext]:
    """:func:`minigrad.kernels.avg_pool.adaptive_avg_pool2d_forward`, fast: x: (N, C, H, W) ->
    out: (N, C, OH, OW), plus ctx for the backward.

    Output 1x1 is a plain mean (global average pooling); when OH divides H and OW divides W the windows
    are equal blocks, averaged through a reshape; otherwise the two matrix products of
    :func:`_average_by_matrices` with :func:`~minigrad.kernels.avg_pool.adaptive_matrix`.
    """
    xp = backend.xp_of(x)
    batched, unbatched = as_batched(x, "adaptive_avg_pool2d")
    n, c, height, width = batched.shape
    out_h, out_w = adaptive_output_size(output_size, (height, width), batched.shape)
    rows = cols = None
    if (out_h, out_w) == (1, 1):
        path = "global"
        out = batched.mean(axis=(2, 3), keepdims=True)
    elif height % out_h == 0 and width % out_w == 0:
        path = "blocks"
        blocks = batched.reshape(n, c, out_h, height // out_h, out_w, width // out_w)
        out = blocks.mean(axis=(3, 5))
    else:
        path = "matrix"
        rows = adaptive_matrix(xp, height, out_h, x.dtype)  # (OH, H)
        cols = adaptive_matrix(xp, width, out_w, x.dtype)  # (OW, W)
        out = _average_by_matrices(batched, rows, cols)
    out = out[0] if unbatched else out
    return out, AdaptiveAvgPoolContext(path, batched.shape, out.shape, unbatched, rows, cols)


def adaptive_avg_pool2d_backward(grad_out: Any, ctx: AdaptiveAvgPoolContext) -> Any:
    """:func:`minigrad.kernels.avg_pool.adaptive_avg_pool2d_backward`, fast: grad_out (N, C, OH, OW) ->
    (N, C, H, W), by the path the forward took."""
    check_grad_shape("adaptive_avg_pool2d", grad_out, ctx.out_shape)
    xp = backend.xp_of(grad_out)
    grad_out = grad_out[None] if ctx.unbatched else grad_out
    n, c, height, width = ctx.input_shape
    out_h, out_w = grad_out.shape[2:]
    if ctx.path == "matrix":
        grad_x = _spread_by_matrices(grad_out, ctx.rows, ctx.cols)
    else:
        # Equal blocks (global pooling is one block): every pixel of block (a, b) gets grad_out[a, b] / area.
        block_h, block_w = height // out_h, width // out_w
        grad_blocks = xp.empty((n, c, out_h, block_h, out_w, block_w), dtype=grad_out.dtype)
        grad_blocks[...] = (grad_out / (block_h * block_w))[:, :, :, None, :, None]
        grad_x = grad_blocks.reshape(n, c, height, width)
    return grad_x[0] if ctx.unbatched else grad_x
