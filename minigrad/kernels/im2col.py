"""im2col and col2im: copy every convolution window into a column of a matrix, and add them back.

With the windows as columns, a convolution is one matrix multiply (``weight_matrix @ cols``), which BLAS
(or cuBLAS) does far faster than any loop we could write. The column layout used everywhere:

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]
    cols.shape == (C * kH * kW, N * H_out * W_out)

- rows run over (channel, kernel row, kernel column): the same order as the columns of
  ``weight.reshape(C_out, C * kH * kW)``, so ``weight.reshape(C_out, -1) @ cols`` needs no transpose, and
  the rows of one channel group are one contiguous block (grouped convolutions multiply row blocks);
- columns run over (sample, output row, output column), so ``(weight_matrix @ cols).reshape(C_out, N,
  H_out, W_out)`` is the output with C and N swapped.

``x_padded`` is ``x`` with zeros around it: ``padding`` takes an int, a pair ``(pH, pW)`` or pads per side
``((top, bottom), (left, right))`` (PyTorch's ``padding="same"`` needs the last form for even kernels).

These are the reference versions: one strided slice per kernel tap (:func:`~minigrad.kernels.geometry.tap_slice`).
The fast ones, in :mod:`minigrad.kernels.fast.im2col` and the CUDA C of
:mod:`minigrad.kernels.fast.cuda_im2col`, give the same numbers.
"""

from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.kernels.geometry import WindowGeometry, crop, kernel_taps, pad_input, tap_slice, window_geometry


def columns_shape(x_shape: tuple, geometry: WindowGeometry) -> tuple[int, int]:
    """The shape of the columns of an (N, C, H, W) input: (C * kH * kW, N * H_out * W_out)."""
    (kernel_h, kernel_w), (out_h, out_w) = geometry.kernel, geometry.out_size
    return (x_shape[1] * kernel_h * kernel_w, x_shape[0] * out_h * out_w)


def check_columns(cols: Any, x_shape: tuple, geometry: WindowGeometry) -> None:
    """Raise a ValueError naming the shapes when ``cols`` cannot be the columns of an ``x_shape`` input."""
    expected = columns_shape(x_shape, geometry)
    if tuple(cols.shape) != expected:
        raise ValueError(
            f"col2im: cols has shape {tuple(cols.shape)} but input shape {tuple(x_shape)} with kernel "
            f"{geometry.kernel}, stride {geometry.stride}, pads {geometry.pads} needs {expected}"
        )


def im2col(x: Any, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Any:
    """Every window of ``x`` as a column: x: (N, C, H, W) -> cols: (C * kH * kW, N * H_out * W_out).

    ``cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]``: for each kernel tap
    (i, j), the rows (c, i, j) of every channel c are tap (i, j) of every window, one strided slice.
    """
    geometry = window_geometry(x.shape, kernel_size, stride, padding, dilation, op="im2col")
    n, c = x.shape[:2]
    (kernel_h, kernel_w), (out_h, out_w) = geometry.kernel, geometry.out_size
    x_padded = pad_input(x, geometry)
    cols = backend.xp_of(x).empty((c, kernel_h, kernel_w, n, out_h, out_w), dtype=x.dtype)
    for _, i, j in kernel_taps(geometry):
        cols[:, i, j] = tap_slice(x_padded, i, j, geometry).transpose(1, 0, 2, 3)  # (N, C, ..) -> (C, N, ..)
    return cols.reshape(c * kernel_h * kernel_w, n * out_h * out_w)


def col2im(
    cols: Any, x_shape: tuple, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> Any:
    """The adjoint of :func:`im2col`: cols (C * kH * kW, N * H_out * W_out) -> (N, C, H, W).

    Every column entry is added back onto the input pixel it was copied from; where windows overlap the
    values sum (this is how the gradient of a convolution reaches its input). Tap by tap: the entries of
    tap (i, j) land on one strided slice, where no pixel appears twice, so one ``+=`` adds them all.
    Entries copied from the padding are dropped.
    """
    geometry = window_geometry(x_shape, kernel_size, stride, padding, dilation, op="col2im")
    n, c = x_shape[:2]
    (kernel_h, kernel_w), (out_h, out_w) = geometry.kernel, geometry.out_size
    check_columns(cols, x_shape, geometry)
    xp = backend.xp_of(cols)
    cols_by_tap = cols.reshape(c, kernel_h, kernel_w, n, out_h, out_w)
    x_padded = xp.zeros((n, c, *geometry.padded_size), dtype=cols.dtype)
    for _, i, j in kernel_taps(geometry):
        pixels = tap_slice(x_padded, i, j, geometry)  # a view: += writes into x_padded
        pixels += cols_by_tap[:, i, j].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(crop(x_padded, geometry))
