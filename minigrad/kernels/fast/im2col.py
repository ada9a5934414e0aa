"""im2col and col2im written into buffers the caller keeps: the fast versions of :mod:`minigrad.kernels.im2col`.

Same layout, same numbers as the reference (the tests hold them equal). What differs:

- **Into a given buffer.** :func:`im2col_into` and :func:`col2im_into` write into an ``out`` array, so the
  fast convolution can reuse one large buffer between calls instead of page-faulting in a fresh one.
- **One copy for im2col.** Instead of one strided copy per kernel tap, a single strided copy: every window
  of the full dilated span is a view (``sliding_window_view``), and taking every stride-th window and every
  dilation-th tap of it leaves (N, C, H_out, W_out, kH, kW), written into ``cols`` in one assignment.
- **col2im sums in the columns' order.** The taps are added into a padded (C, N, Hp, Wp) array, the order
  of the columns, so every add walks both arrays front to back; one last copy swaps C and N and drops the
  padding. The same adds in the same tap order as the reference: the sums agree bit for bit.

:class:`ColumnKernels` names an (im2col, col2im) pair with these signatures; the CUDA C kernels of
:mod:`minigrad.kernels.fast.cuda_im2col` are another such pair. The dispatch point
(:mod:`minigrad.kernels.dispatch`) chooses which one a fast convolution uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.kernels.geometry import WindowGeometry, pad_input, window_geometry
from minigrad.kernels.im2col import check_columns, columns_shape


@dataclass(frozen=True)
class ColumnKernels:
    """An im2col/col2im pair that writes into given arrays.

    im2col(x, geometry, cols) -> cols: x (N, C, H, W), cols a C-contiguous (C*kH*kW, N*H_out*W_out) array;
    col2im(cols, x_shape, geometry, out) -> out: out a C-contiguous array of ``x_shape`` (N, C, H, W).
    """

    im2col: Callable[[Any, WindowGeometry, Any], Any]
    col2im: Callable[[Any, tuple, WindowGeometry, Any], Any]


def im2col_into(x: Any, geometry: WindowGeometry, cols: Any) -> Any:
    """The columns of x: (N, C, H, W) written into ``cols`` (C * kH * kW, N * H_out * W_out); returns cols.

    Replaces :func:`minigrad.kernels.im2col.im2col`: one strided copy of a window view instead of one per tap.
    """
    n, c = x.shape[:2]
    (kernel_h, kernel_w), (stride_h, stride_w) = geometry.kernel, geometry.stride
    (dilation_h, dilation_w), (out_h, out_w) = geometry.dilation, geometry.out_size
    # All windows of the full (dilated) kernel span, one per pixel: (N, C, H', W', span_h, span_w). Taking
    # every stride-th window and every dilation-th tap inside a window leaves (N, C, H_out, W_out, kH, kW).
    span = (dilation_h * (kernel_h - 1) + 1, dilation_w * (kernel_w - 1) + 1)
    windows = backend.sliding_window_view(pad_input(x, geometry), span, axis=(2, 3))
    windows = windows[:, :, ::stride_h, ::stride_w, ::dilation_h, ::dilation_w]
    cols.reshape(c, kernel_h, kernel_w, n, out_h, out_w)[...] = windows.transpose(1, 4, 5, 0, 2, 3)
    return cols


def col2im_into(cols: Any, x_shape: tuple, geometry: WindowGeometry, out: Any) -> Any:
    """The adjoint of :func:`im2col_into`: cols (C * kH * kW, N * H_out * W_out) added back into ``out``
    (N, C, H, W), which it overwrites; returns out.

    Replaces :func:`minigrad.kernels.im2col.col2im`: the same tap-by-tap adds, in (C, N) order.
    """
    n, c, h, w = x_shape
    (kernel_h, kernel_w), (stride_h, stride_w) = geometry.kernel, geometry.stride
    (dilation_h, dilation_w), (out_h, out_w) = geometry.dilation, geometry.out_size
    (top, _), (left, _) = geometry.pads
    cols_by_tap = cols.reshape(c, kernel_h, kernel_w, n, out_h, out_w)
    summed = backend.xp_of(cols).zeros((c, n, *geometry.padded_size), dtype=cols.dtype)
    for i in range(kernel_h):
        rows = slice(i * dilation_h, i * dilation_h + stride_h * (out_h - 1) + 1, stride_h)
        for j in range(kernel_w):
            columns = slice(j * dilation_w, j * dilation_w + stride_w * (out_w - 1) + 1, stride_w)
            summed[:, :, rows, columns] += cols_by_tap[:, i, j]
    out[...] = summed[:, :, top : top + h, left : left + w].transpose(1, 0, 2, 3)
    return out


ARRAY_COLUMNS = ColumnKernels(im2col_into, col2im_into)  # the array-expression pair, on NumPy and CuPy


def im2col(
    x: Any, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, *, out: Any = None
) -> Any:
    """:func:`minigrad.kernels.im2col.im2col`, written into ``out`` when given: an optional C-contiguous
    array of the columns' shape (C * kH * kW, N * H_out * W_out) and x's dtype."""
    geometry = window_geometry(x.shape, kernel_size, stride, padding, dilation, op="im2col")
    return im2col_into(x, geometry, output_array(out, columns_shape(x.shape, geometry), x, "im2col"))


def col2im(
    cols: Any,
    x_shape: tuple,
    kernel_size: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    *,
    out: Any = None,
) -> Any:
    """:func:`minigrad.kernels.im2col.col2im`, written into ``out`` when given: an optional C-contiguous
    (N, C, H, W) array of cols' dtype."""
    geometry = window_geometry(x_shape, kernel_size, stride, padding, dilation, op="col2im")
    check_columns(cols, x_shape, geometry)
    return col2im_into(cols, tuple(x_shape), geometry, output_array(out, tuple(x_shape), cols, "col2im"))


def output_array(out: Any, shape: tuple, like: Any, op: str) -> Any:
    """``out`` checked to be a C-contiguous array of ``shape`` and ``like``'s dtype, or a new empty one."""
    if out is None:
        return backend.xp_of(like).empty(shape, dtype=like.dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != like.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"{op}: out must be a C-contiguous {like.dtype} array of shape {shape}, "
            f"got {out.dtype} {tuple(out.shape)} (contiguous: {out.flags.c_contiguous})"
        )
    return out
