"""im2col and col2im: copy every convolution window into a column of a matrix, and add them back.

With the windows as columns, a convolution is one matrix multiply (``weight_matrix @ cols``), which BLAS
(or cuBLAS) does far faster than any loop we could write. The column layout used everywhere here:

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]
    cols.shape == (C * kH * kW, N * H_out * W_out)

- rows run over (channel, kernel row, kernel column): the same order as the columns of
  ``weight.reshape(C_out, C * kH * kW)``, so ``weight.reshape(C_out, -1) @ cols`` needs no transpose, and
  the rows of one channel group are one contiguous block (grouped convolutions multiply row blocks);
- columns run over (sample, output row, output column): a chunk of the batch is a contiguous block of
  columns, and ``(weight_matrix @ cols).reshape(C_out, N, H_out, W_out)`` is the output with C and N swapped.

``x_padded`` is ``x`` with zeros around it: ``padding`` takes an int, a pair ``(pH, pW)`` or pads per side
``((top, bottom), (left, right))`` (PyTorch's ``padding="same"`` needs the last form for even kernels).

The functions here are array expressions that run unchanged on NumPy and CuPy, and they are the reference.
On a GPU, ``MINIGRAD_CUDA_KERNELS=1`` swaps in hand-written CUDA kernels with the same layout
(:mod:`minigrad.kernels.cuda_im2col`, source in ``cuda/im2col.cu``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minigrad import backend
from minigrad.kernels import cuda_im2col
from minigrad.kernels.utils import Pads, conv_output_size, pads_per_side, pair


class WindowGeometry(NamedTuple):
    """Where the windows of a (N, C, H, W) input lie; every field is per axis (height, width)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads  # ((top, bottom), (left, right))
    dilation: tuple[int, int]
    out_size: tuple[int, int]  # (H_out, W_out)


def window_geometry(
    x_shape: tuple, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, op: str = "im2col"
) -> WindowGeometry:
    """Check the window arguments against a (N, C, H, W) shape and work out the output size.

    Raises ValueError naming ``op`` when the input is not 4-D, a stride or dilation is not positive, a
    pad is negative, or the (dilated) kernel is larger than the padded input.
    """
    if len(x_shape) != 4:
        raise ValueError(
            f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x_shape)}; "
            f"add a batch axis with x[None] or reshape the input"
        )
    kernel = pair(kernel_size, "kernel_size", op, minimum=1)
    stride = pair(stride, "stride", op, minimum=1)
    dilation = pair(dilation, "dilation", op, minimum=1)
    pads = pads_per_side(padding, op)
    out_size = tuple(
        conv_output_size(x_shape[2 + axis], kernel[axis], stride[axis], pads[axis], dilation[axis])
        for axis in range(2)
    )
    if min(out_size) < 1:
        spans = tuple(dilation[axis] * (kernel[axis] - 1) + 1 for axis in range(2))
        padded = tuple(x_shape[2 + axis] + sum(pads[axis]) for axis in range(2))
        raise ValueError(
            f"{op}: kernel {kernel} with dilation {dilation} spans {spans[0]}x{spans[1]} pixels, larger than "
            f"the padded input {padded[0]}x{padded[1]} (input {tuple(x_shape)}, pads {pads}); "
            f"use a smaller kernel or dilation, more padding, or a larger input"
        )
    return WindowGeometry(kernel, stride, pads, dilation, out_size)


def pad_input(x: Any, pads: Pads) -> Any:
    """``x: (N, C, H, W)`` with zero rows/columns added around H and W (``x`` itself when no pad)."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    padded = backend.xp_of(x).zeros((n, c, top + h + bottom, left + w + right), dtype=x.dtype)
    padded[:, :, top : top + h, left : left + w] = x
    return padded


def im2col(
    x: Any, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, *, out: Any = None
) -> Any:
    """Every window of ``x`` as a column: x: (N, C, H, W) -> cols: (C * kH * kW, N * H_out * W_out).

    ``cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]`` (see the module docstring).
    The windows are a strided *view* of the padded input (no copy); the only copy is the one assignment
    into ``cols``. ``out``: an optional C-contiguous array of that shape to write into (reused buffers
    avoid the page faults of a fresh large array).
    """
    geometry = window_geometry(x.shape, kernel_size, stride, padding, dilation, op="im2col")
    n, c = x.shape[:2]
    (kernel_h, kernel_w), (stride_h, stride_w) = geometry.kernel, geometry.stride
    (dilation_h, dilation_w), (out_h, out_w) = geometry.dilation, geometry.out_size
    shape = (c * kernel_h * kernel_w, n * out_h * out_w)
    cols = _output_array(out, shape, x, "im2col")
    if cuda_im2col.use_cuda_kernels(x):  # opt-in CUDA kernel on the GPU (see the module docstring)
        return cuda_im2col.im2col_cuda(x, geometry, cols)

    # All windows of the full (dilated) kernel span, one per pixel: (N, C, H', W', span_h, span_w). Taking
    # every stride-th window and every dilation-th tap inside a window leaves (N, C, H_out, W_out, kH, kW).
    span = (dilation_h * (kernel_h - 1) + 1, dilation_w * (kernel_w - 1) + 1)
    windows = backend.sliding_window_view(pad_input(x, geometry.pads), span, axis=(2, 3))
    windows = windows[:, :, ::stride_h, ::stride_w, ::dilation_h, ::dilation_w]
    cols.reshape(c, kernel_h, kernel_w, n, out_h, out_w)[...] = windows.transpose(1, 4, 5, 0, 2, 3)
    return cols


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
    """The adjoint of :func:`im2col`: cols (C * kH * kW, N * H_out * W_out) -> (N, C, H, W).

    Every column is added back onto the input pixels its window came from; where windows overlap the
    values sum (this is how the gradient of a convolution reaches its input). Instead of a scatter-add
    (``add.at``, ~10x slower) it makes kH * kW strided adds, one per kernel position (i, j), each adding
    the values of that tap for *all* windows at once: a tap's windows never touch a pixel twice.
    ``out``: optional (N, C, H, W) array to write the result into.
    """
    geometry = window_geometry(x_shape, kernel_size, stride, padding, dilation, op="col2im")
    n, c, h, w = x_shape
    (kernel_h, kernel_w), (stride_h, stride_w) = geometry.kernel, geometry.stride
    (dilation_h, dilation_w), (out_h, out_w) = geometry.dilation, geometry.out_size
    (top, bottom), (left, right) = geometry.pads
    expected = (c * kernel_h * kernel_w, n * out_h * out_w)
    if tuple(cols.shape) != expected:
        raise ValueError(
            f"col2im: cols has shape {tuple(cols.shape)} but input shape {tuple(x_shape)} with kernel "
            f"{geometry.kernel}, stride {geometry.stride}, pads {geometry.pads} needs {expected}"
        )
    if cuda_im2col.use_cuda_kernels(cols):  # opt-in CUDA kernel on the GPU (see the module docstring)
        result = _output_array(out, (n, c, h, w), cols, "col2im")
        return cuda_im2col.col2im_cuda(cols, x_shape, geometry, result)
    xp = backend.xp_of(cols)
    cols_by_tap = cols.reshape(c, kernel_h, kernel_w, n, out_h, out_w)
    # Sum in (C, N, H, W) order, the order of the columns, so every add walks both arrays front to back;
    # the final copy into (N, C, H, W) swaps the axes and drops the padding in one pass.
    summed = xp.zeros((c, n, top + h + bottom, left + w + right), dtype=cols.dtype)
    for i in range(kernel_h):
        rows = slice(i * dilation_h, i * dilation_h + stride_h * (out_h - 1) + 1, stride_h)
        for j in range(kernel_w):
            columns = slice(j * dilation_w, j * dilation_w + stride_w * (out_w - 1) + 1, stride_w)
            summed[:, :, rows, columns] += cols_by_tap[:, i, j]
    result = _output_array(out, (n, c, h, w), cols, "col2im")
    result[...] = summed[:, :, top : top + h, left : left + w].transpose(1, 0, 2, 3)
    return result


def _output_array(out: Any, shape: tuple, like: Any, op: str) -> Any:
    """``out`` checked to be a C-contiguous array of ``shape`` and ``like``'s dtype, or a new empty one."""
    if out is None:
        return backend.xp_of(like).empty(shape, dtype=like.dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != like.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"{op}: out must be a C-contiguous {like.dtype} array of shape {shape}, "
            f"got {out.dtype} {tuple(out.shape)} (contiguous: {out.flags.c_contiguous})"
        )
    return out
