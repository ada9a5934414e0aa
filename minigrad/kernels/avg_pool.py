"""Average and adaptive average pooling, forward and backward, on raw arrays.

Both take ``x: (N, C, H, W)`` (or an unbatched ``(C, H, W)``) and return ``(out, ctx)``; the matching
``*_backward(grad_out, ctx)`` returns ``grad_x`` with the shape of ``x``. Average pooling sums the
``kH * kW`` strided window slices of :mod:`minigrad.kernels.pool_geometry` and divides by torch's divisor;
with a large window on a small map (the auxiliary heads' 5x5/3) two matrix multiplies compute the same
numbers faster, since averaging is linear and separable (:func:`_average_by_matrices`). Adaptive average
pooling works its windows out from the output size and uses the same matrix products.
"""

from __future__ import annotations

import operator
from typing import Any

from minigrad import backend
from minigrad.kernels.pool_geometry import (
    _as_batched,
    _batch_chunks,
    _check_grad,
    _crop,
    _Geometry,
    _geometry,
    _kernel_taps,
    _pad,
    _window,
)

# ---------------------------------------------------------------------------
# Average pooling.
# ---------------------------------------------------------------------------


def _avg_divisor_1d(xp: Any, geometry: _Geometry, axis: int, count_include_pad: bool) -> Any:
    """How many elements each output's window counts along one axis (torch's rule, as an int array).

    A window starts at ``start = o*s - p`` and is first clipped to the *padded* input, ``end = min(start + k,
    size + p)``: with count_include_pad that clipped length ``end - start`` is the count (so a ceil-mode
    window hanging past the padding is not charged for it). Without it, only real input elements count:
    ``min(end, size) - max(start, 0)``.
    """
    size, kernel = geometry.input_size[axis], geometry.kernel[axis]
    stride, padding = geometry.stride[axis], geometry.padding[axis]
    starts = xp.arange(geometry.output_size[axis]) * stride - padding
    ends = xp.minimum(starts + kernel, size + padding)
    if count_include_pad:
        return ends - starts
    return xp.minimum(ends, size) - xp.maximum(starts, 0)


def avg_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[Any, dict]:
    """Mean over each window: x: (N, C, H, W) -> out: (N, C, OH, OW), plus ctx for the backward.

    ``out = (sum of the window, padding counting as 0) / divisor``, where the divisor is
    ``divisor_override`` if given, else the window area clipped to the padded input
    (``count_include_pad=True``, torch's default) or the number of real input elements in the window.

    Two ways to compute it, the same numbers: a loop over the kH * kW kernel taps (strided adds), or, since
    averaging is linear and separable, ``rows @ plane @ cols.T`` with one averaging matrix per axis
    (:func:`_average_by_matrices`), taken where it is cheaper (:func:`_matrices_are_cheaper`): large windows
    on small maps, such as the auxiliary heads' 5x5/3 pool on 16x16 maps (about 10x faster there).
    """
    xp = backend.xp_of(x)
    batched, unbatched = _as_batched(x, "avg_pool2d")
    geometry = _geometry("avg_pool2d", batched.shape, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("avg_pool2d: divisor_override must not be zero; pass None to use the window size")
    ctx = {"geometry": geometry, "unbatched": unbatched}
    if _matrices_are_cheaper(geometry):
        # The divisor is a product of one count per axis (or one number), so it folds into the matrices.
        if divisor_override is not None:
            row_divisor, col_divisor = divisor_override, 1
        else:
            row_divisor = _avg_divisor_1d(xp, geometry, 0, count_include_pad)
            col_divisor = _avg_divisor_1d(xp, geometry, 1, count_include_pad)
        ctx["rows"] = _window_matrix(xp, geometry, 0, row_divisor, x.dtype)  # (OH, H)
        ctx["cols"] = _window_matrix(xp, geometry, 1, col_divisor, x.dtype)  # (OW, W)
        out = _average_by_matrices(batched, ctx["rows"], ctx["cols"])
    else:
        out = _average_by_taps(batched, geometry, count_include_pad, divisor_override, ctx)
    out = out[0] if unbatched else out
    ctx["out_shape"] = out.shape
    return out, ctx


def avg_pool2d_backward(grad_out: Any, ctx: dict) -> Any:
    """Spread each output gradient evenly over its window: grad_out (N, C, OH, OW) -> (N, C, H, W).

    ``dL/dx[p] = sum over windows w containing p of dL/dout[w] / divisor[w]``; gradient that lands on
    padding is dropped. With matrices: ``grad_x = rows.T @ grad_out @ cols`` (the transposed linear map).
    """
    _check_grad("avg_pool2d", grad_out, ctx["out_shape"])
    xp = backend.xp_of(grad_out)
    geometry = ctx["geometry"]
    grad_out = grad_out[None] if ctx["unbatched"] else grad_out
    if "rows" in ctx:
        grad_x = _spread_by_matrices(grad_out, ctx["rows"], ctx["cols"])
        return grad_x[0] if ctx["unbatched"] else grad_x
    grad_x = xp.empty(grad_out.shape[:2] + geometry.input_size, dtype=grad_out.dtype)
    for batch in _batch_chunks(grad_out):
        grad_per_element = grad_out[batch] / ctx["divisor"]
        grad_padded = xp.zeros(grad_x[batch].shape[:2] + geometry.padded_size, dtype=grad_out.dtype)
        for _, i, j in _kernel_taps(geometry):
            window = _window(grad_padded, i, j, geometry)  # a view: += writes into grad_padded
            window += grad_per_element
        grad_x[batch] = _crop(grad_padded, geometry)
    return grad_x[0] if ctx["unbatched"] else grad_x


def _average_by_taps(
    x: Any, geometry: _Geometry, count_include_pad: bool, divisor_override: int | None, ctx: dict
) -> Any:
    """Window sums as kH * kW strided adds, divided by the divisor (kept in ``ctx``): (N, C, OH, OW)."""
    xp = backend.xp_of(x)
    if divisor_override is not None:
        divisor = xp.asarray(divisor_override, dtype=x.dtype)
    else:
        rows = _avg_divisor_1d(xp, geometry, 0, count_include_pad)
        cols = _avg_divisor_1d(xp, geometry, 1, count_include_pad)
        divisor = (rows[:, None] * cols[None, :]).astype(x.dtype)  # (OH, OW), broadcasts over N and C
    total = xp.empty(x.shape[:2] + geometry.output_size, dtype=x.dtype)
    for batch in _batch_chunks(total):
        padded = _pad(x[batch], geometry, fill=0.0)
        window_sum = total[batch]  # a view: summing into it fills `total`
        for position, i, j in _kernel_taps(geometry):
            if position == 0:
                window_sum[...] = _window(padded, i, j, geometry)
            else:
                window_sum += _window(padded, i, j, geometry)
    total /= divisor
    ctx["divisor"] = divisor
    return total


def _matrices_are_cheaper(geometry: _Geometry) -> bool:
    """Whether :func:`_average_by_matrices` beats the tap loop for this geometry (measured on a CPU).

    Per plane the matrices cost ``H*W*OW + OW*H*OH`` multiply-adds (most of them by zero), the taps
    ``kH*kW*OH*OW`` adds; a matrix multiply does about four multiply-adds in the time NumPy's strided
    loop does one add (3x3/1 on 32x32, a ratio of 7, ran at about the same speed either way).
    """
    (height, width), (out_h, out_w) = geometry.input_size, geometry.output_size
    kernel_h, kernel_w = geometry.kernel
    return height * width * out_w + out_w * height * out_h <= 4 * kernel_h * kernel_w * out_h * out_w


def _window_matrix(xp: Any, geometry: _Geometry, axis: int, divisor: Any, dtype: Any) -> Any:
    """The (out, size) averaging matrix of one axis: row o is ``1 / divisor[o]`` on window o's inputs.

    Window o covers padded positions ``[o*s - p, o*s - p + k)``; those outside ``[0, size)`` are padding
    and have no column (they add 0). divisor: (out,) counts of this axis, or one number.
    """
    size, kernel = geometry.input_size[axis], geometry.kernel[axis]
    stride, padding = geometry.stride[axis], geometry.padding[axis]
    starts = xp.arange(geometry.output_size[axis]) * stride - padding
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


# ---------------------------------------------------------------------------
# Adaptive average pooling.
# ---------------------------------------------------------------------------


def _adaptive_output_size(output_size: Any, input_size: tuple[int, int], shape: tuple) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(None, 7) -> (H, 7)`` (None keeps that input size); check each is >= 1."""
    op = "adaptive_avg_pool2d"
    pair = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    try:
        if len(pair) != 2 or any(isinstance(s, bool) for s in pair):
            raise TypeError
        sizes = tuple(input_size[a] if pair[a] is None else operator.index(pair[a]) for a in (0, 1))
    except TypeError:
        raise TypeError(f"{op}: output_size must be an int or a pair of ints/None, got {output_size!r}") from None
    if min(sizes) < 1:
        raise ValueError(
            f"{op}: output_size must be >= 1, got {output_size!r} (input {tuple(shape)}); "
            f"pass e.g. output_size=1 for global average pooling"
        )
    return sizes


def _adaptive_matrix(xp: Any, size: int, out_size: int, dtype: Any) -> Any:
    """The (out_size, size) averaging matrix of one axis: row o is 1/len over window o, 0 elsewhere.

    Window o covers ``[floor(o * size / out_size), ceil((o + 1) * size / out_size))``: windows may differ
    in length and overlap (14 -> 5 gives lengths 3, 4, 4, 4, 3; 14 -> 4 gives four overlapping windows of 4),
    and may repeat pixels when out_size > size.
    """
    outputs = xp.arange(out_size)
    starts = (outputs * size) // out_size
    ends = ((outputs + 1) * size + out_size - 1) // out_size  # ceil division
    positions = xp.arange(size)
    inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < ends[:, None])
    return inside.astype(dtype) / (ends - starts)[:, None].astype(dtype)


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, dict]:
    """Average into a fixed output grid: x: (N, C, H, W) -> out: (N, C, OH, OW), plus ctx for the backward.

    Averaging a rectangle is separable (average the rows, then the columns), so in general
    ``out = A_h @ x @ A_w.T`` with the averaging matrices of :func:`_adaptive_matrix`. Two fast paths:
    output 1x1 is a plain mean (global average pooling), and when OH divides H and OW divides W the
    windows are equal blocks, averaged through a reshape.
    """
    xp = backend.xp_of(x)
    batched, unbatched = _as_batched(x, "adaptive_avg_pool2d")
    n, c, height, width = batched.shape
    out_h, out_w = _adaptive_output_size(output_size, (height, width), batched.shape)
    ctx = {"input_shape": batched.shape, "unbatched": unbatched}
    if (out_h, out_w) == (1, 1):
        ctx["path"] = "global"
        out = batched.mean(axis=(2, 3), keepdims=True)
    elif height % out_h == 0 and width % out_w == 0:
        ctx["path"] = "blocks"
        blocks = batched.reshape(n, c, out_h, height // out_h, out_w, width // out_w)
        out = blocks.mean(axis=(3, 5))
    else:
        ctx["path"] = "matrix"
        ctx["rows"] = _adaptive_matrix(xp, height, out_h, x.dtype)  # (OH, H)
        ctx["cols"] = _adaptive_matrix(xp, width, out_w, x.dtype)  # (OW, W)
        out = _average_by_matrices(batched, ctx["rows"], ctx["cols"])
    out = out[0] if unbatched else out
    ctx["out_shape"] = out.shape
    return out, ctx


def adaptive_avg_pool2d_backward(grad_out: Any, ctx: dict) -> Any:
    """Spread each output gradient evenly over its window: grad_out (N, C, OH, OW) -> (N, C, H, W).

    In general ``grad_x = A_h.T @ grad_out @ A_w`` (the transpose of the forward's linear map).
    """
    _check_grad("adaptive_avg_pool2d", grad_out, ctx["out_shape"])
    xp = backend.xp_of(grad_out)
    grad_out = grad_out[None] if ctx["unbatched"] else grad_out
    n, c, height, width = ctx["input_shape"]
    out_h, out_w = grad_out.shape[2:]
    if ctx["path"] == "matrix":
        grad_x = _spread_by_matrices(grad_out, ctx["rows"], ctx["cols"])
    else:
        # Equal blocks (global pooling is one block): every pixel of block (a, b) gets grad_out[a, b] / area.
        block_h, block_w = height // out_h, width // out_w
        grad_blocks = xp.empty((n, c, out_h, block_h, out_w, block_w), dtype=grad_out.dtype)
        grad_blocks[...] = (grad_out / (block_h * block_w))[:, :, :, None, :, None]
        grad_x = grad_blocks.reshape(n, c, height, width)
    return grad_x[0] if ctx["unbatched"] else grad_x
