"""Average and adaptive average pooling, forward and backward, on raw arrays.

Average pooling is linear: ``out[w] = (sum of window w, padding counting as 0) / D[w]``, so
``dout[w]/dx[q] = 1 / D[w]`` for every pixel q of the window, and the backward spreads each output's
gradient evenly over its window. Both directions run over the ``kH * kW`` tap slices
(:func:`~minigrad.kernels.geometry.tap_slice`): a running sum forward, an add onto each slice backward.
The divisor ``D`` follows torch's rules (:func:`avg_divisor_1d`).

Adaptive average pooling takes an output size instead of a kernel. Averaging a rectangle is separable
(average the rows, then the columns), so it is two matrix products, ``out = A_h @ x @ A_w.T``, with
:func:`adaptive_matrix` the averaging matrix of one axis; the backward is the transposed map,
``grad_x = A_h.T @ grad_out @ A_w``.

These are the reference kernels. The fast ones (:mod:`minigrad.kernels.fast.avg_pool`: averaging matrices
for large windows, cache-sized batch chunks, global and block shortcuts) give the same numbers.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from minigrad import backend
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
    """What :func:`avg_pool2d_backward` needs: the divisor of every window ((OH, OW), or one number), where
    the windows lie, the output's shape and whether the input was unbatched."""

    divisor: Any
    geometry: WindowGeometry
    out_shape: tuple
    unbatched: bool


@dataclass(frozen=True)
class AdaptiveAvgPoolContext:
    """What :func:`adaptive_avg_pool2d_backward` needs: the averaging matrices rows (OH, H) and cols (OW, W),
    the output's shape and whether the input was unbatched."""

    rows: Any
    cols: Any
    out_shape: tuple
    unbatched: bool


def avg_divisor_1d(xp: Any, geometry: WindowGeometry, axis: int, count_include_pad: bool) -> Any:
    """How many elements each output's window counts along one axis (torch's rule, as an int array).

    A window starts at ``start = o*s - p`` and is first clipped to the *padded* input, ``end = min(start + k,
    size + p)``: with count_include_pad that clipped length ``end - start`` is the count (so a ceil-mode
    window hanging past the padding is not charged for it). Without it, only real input elements count:
    ``min(end, size) - max(start, 0)``.
    """
    size, kernel = geometry.in_size[axis], geometry.kernel[axis]
    stride, padding = geometry.stride[axis], geometry.pads[axis][0]
    starts = xp.arange(geometry.out_size[axis]) * stride - padding
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
) -> tuple[Any, AvgPoolContext]:
    """Mean over each window: x: (N, C, H, W) (or unbatched (C, H, W)) -> out: (N, C, OH, OW), and a ctx.

    ``out = (sum of the window, padding counting as 0) / divisor``, where the divisor is
    ``divisor_override`` if given, else the window area clipped to the padded input
    (``count_include_pad=True``, torch's default) or the number of real input elements in the window.
    """
    batched, unbatched = as_batched(x, "avg_pool2d")
    geometry = pool_window_geometry("avg_pool2d", batched.shape, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("avg_pool2d: divisor_override must not be zero; pass None to use the window size")
    xp = backend.xp_of(x)
    if divisor_override is not None:
        divisor = xp.asarray(divisor_override, dtype=x.dtype)
    else:
        rows = avg_divisor_1d(xp, geometry, 0, count_include_pad)
        cols = avg_divisor_1d(xp, geometry, 1, count_include_pad)
        divisor = (rows[:, None] * cols[None, :]).astype(x.dtype)  # (OH, OW), broadcasts over N and C
    x_padded = pad_input(batched, geometry)
    total = xp.zeros((*batched.shape[:2], *geometry.out_size), dtype=x.dtype)
    for _, i, j in kernel_taps(geometry):
        total += tap_slice(x_padded, i, j, geometry)
    out = total / divisor
    out = out[0] if unbatched else out
    return out, AvgPoolContext(divisor, geometry, out.shape, unbatched)


def avg_pool2d_backward(grad_out: Any, ctx: AvgPoolContext) -> Any:
    """Spread each output gradient evenly over its window: grad_out (N, C, OH, OW) -> (N, C, H, W).

    ``dL/dx[p] = sum over windows w containing p of dL/dout[w] / divisor[w]``; gradient that lands on
    padding is dropped.
    """
    check_grad_shape("avg_pool2d", grad_out, ctx.out_shape)
    xp = backend.xp_of(grad_out)
    geometry = ctx.geometry
    grad_out = grad_out[None] if ctx.unbatched else grad_out
    grad_per_element = grad_out / ctx.divisor
    grad_padded = xp.zeros((*grad_out.shape[:2], *geometry.padded_size), dtype=grad_out.dtype)
    for _, i, j in kernel_taps(geometry):
        pixels = tap_slice(grad_padded, i, j, geometry)  # a view: += writes into grad_padded
        pixels += grad_per_element
    grad_x = xp.ascontiguousarray(crop(grad_padded, geometry))
    return grad_x[0] if ctx.unbatched else grad_x


def adaptive_output_size(output_size: Any, input_size: tuple[int, int], shape: tuple) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(None, 7) -> (H, 7)`` (None keeps that input size); check each is >= 1."""
    op = "adaptive_avg_pool2d"
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    try:
        if len(sizes) != 2 or any(isinstance(s, bool) for s in sizes):
            raise TypeError
        sizes = tuple(input_size[a] if sizes[a] is None else operator.index(sizes[a]) for a in (0, 1))
    except TypeError:
        raise TypeError(f"{op}: output_size must be an int or a pair of ints/None, got {output_size!r}") from None
    if min(sizes) < 1:
        raise ValueError(
            f"{op}: output_size must be >= 1, got {output_size!r} (input {tuple(shape)}); "
            f"pass e.g. output_size=1 for global average pooling"
        )
    return sizes


def adaptive_matrix(xp: Any, size: int, out_size: int, dtype: Any) -> Any:
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


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, AdaptiveAvgPoolContext]:
    """Average into a fixed output grid: x: (N, C, H, W) (or unbatched) -> out: (N, C, OH, OW), and a ctx.

    ``out = A_h @ x @ A_w.T``, with the averaging matrices of :func:`adaptive_matrix` (matmul applies them
    to every (H, W) plane of the batch at once).
    """
    batched, unbatched = as_batched(x, "adaptive_avg_pool2d")
    height, width = batched.shape[2:]
    out_h, out_w = adaptive_output_size(output_size, (height, width), batched.shape)
    xp = backend.xp_of(x)
    rows = adaptive_matrix(xp, height, out_h, x.dtype)  # A_h: (OH, H)
    cols = adaptive_matrix(xp, width, out_w, x.dtype)  # A_w: (OW, W)
    out = rows @ batched @ cols.T  # (OH, H) @ (N, C, H, W) @ (W, OW) -> (N, C, OH, OW)
    out = out[0] if unbatched else out
    return out, AdaptiveAvgPoolContext(rows, cols, out.shape, unbatched)


def adaptive_avg_pool2d_backward(grad_out: Any, ctx: AdaptiveAvgPoolContext) -> Any:
    """Spread each output gradient evenly over its window: grad_out (N, C, OH, OW) -> (N, C, H, W).

    ``grad_x = A_h.T @ grad_out @ A_w``: the transpose of the forward's linear map.
    """
    check_grad_shape("adaptive_avg_pool2d", grad_out, ctx.out_shape)
    grad_out = grad_out[None] if ctx.unbatched else grad_out
    grad_x = ctx.rows.T @ grad_out @ ctx.cols  # (H, OH) @ (N, C, OH, OW) @ (OW, W) -> (N, C, H, W)
    return grad_x[0] if ctx.unbatched else grad_x
