"""Max pooling, forward and backward, on raw arrays: a running max over the kernel taps, and its winners.

For one window, ``y = max_q x_q``, so ``dy/dx_q`` is 1 for the winning pixel ``q*`` and 0 elsewhere:

    forward:   out[w] = max over the taps t of window w,  argmax[w] = the tap that won
    backward:  dL/dx[p] = sum over the windows w whose winner is p of dL/dout[w]

Both run over the ``kH * kW`` taps, one strided slice (:func:`~minigrad.kernels.geometry.tap_slice`) per
tap, each slice holding that tap's value for every window at once. Padding counts as ``-inf``: it never
wins. The semantics are PyTorch's, tie-breaking and NaN included (the tests compare with torch).

These are the reference kernels. The fast ones (:mod:`minigrad.kernels.fast.max_pool`: a separable,
flattened stride-1 path, cache-sized batch chunks, one scatter-add backward) give the same numbers.
"""

from __future__ import annotations

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
class MaxPoolContext:
    """What :func:`max_pool2d_backward` needs: the winning tap (``i * kW + j``) of every window,
    (N, C, OH, OW), where the windows lie, and whether the input came without a batch axis."""

    argmax: Any
    geometry: WindowGeometry
    unbatched: bool


def max_pool2d_forward(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple[Any, MaxPoolContext]:
    """Max over each window: x: (N, C, H, W) (or unbatched (C, H, W)) -> out: (N, C, OH, OW), and a ctx.

    ``stride=None`` means ``stride = kernel_size``. Ties go to the first maximum in row-major order, and a
    window with NaN outputs NaN with the last NaN as its argmax, exactly as torch's CPU kernel. Deliberate
    difference: a window made only of padding (possible with dilation) outputs -inf in both, but its
    gradient is dropped here, where torch sends it to a bogus index.
    """
    batched, unbatched = as_batched(x, "max_pool2d")
    geometry = pool_window_geometry("max_pool2d", batched.shape, kernel_size, stride, padding, dilation,
                                    ceil_mode)
    xp = backend.xp_of(x)
    x_padded = pad_input(batched, geometry, fill=-float("inf"))
    out = xp.full((*batched.shape[:2], *geometry.out_size), -float("inf"), dtype=x.dtype)
    argmax = xp.zeros(out.shape, dtype=xp.int64)
    for tap, i, j in kernel_taps(geometry):
        candidate = tap_slice(x_padded, i, j, geometry)
        # Strictly greater: of equal maxima the first keeps its place. A NaN always wins: the last one stays.
        wins = (candidate > out) | xp.isnan(candidate)
        out = xp.where(wins, candidate, out)
        argmax = xp.where(wins, tap, argmax)
    return (out[0] if unbatched else out), MaxPoolContext(argmax, geometry, unbatched)


def max_pool2d_backward(grad_out: Any, ctx: MaxPoolContext) -> Any:
    """Send each output gradient to the pixel that won its window: grad_out (N, C, OH, OW) -> (N, C, H, W).

    Tap by tap: the windows whose winner is tap t add their gradient onto tap t's slice of a zero padded
    gradient (overlapping windows that chose one pixel add up across the taps); the padding is cut off.
    """
    geometry = ctx.geometry
    expected = ctx.argmax.shape[1:] if ctx.unbatched else ctx.argmax.shape
    check_grad_shape("max_pool2d", grad_out, expected)
    xp = backend.xp_of(grad_out)
    grad_out = grad_out[None] if ctx.unbatched else grad_out
    grad_padded = xp.zeros((*grad_out.shape[:2], *geometry.padded_size), dtype=grad_out.dtype)
    for tap, i, j in kernel_taps(geometry):
        pixels = tap_slice(grad_padded, i, j, geometry)  # a view: += writes into grad_padded
        pixels += xp.where(ctx.argmax == tap, grad_out, 0)
    grad_x = xp.ascontiguousarray(crop(grad_padded, geometry))
    return grad_x[0] if ctx.unbatched else grad_x
