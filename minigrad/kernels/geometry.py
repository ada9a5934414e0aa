"""Where the windows of a sliding-window op lie: the geometry that im2col, col2im and both pools share.

A window op (a convolution, a pooling) slides a kH x kW window over an input (N, C, H, W) padded with
``pads = ((top, bottom), (left, right))`` rows and columns:

    window (oh, ow), tap (i, j)  reads  x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]

Along one axis there are :func:`output_size` windows, ``floor((H + top + bottom - d(k-1) - 1) / s) + 1``
(``ceil`` with ``ceil_mode``). No window is ever copied to be read: for one tap (i, j), the strided slice
:func:`tap_slice` of the padded input holds that tap's value for *every* window at once, (N, C, OH, OW).
A reduction over the kH * kW taps is a pooling; writing each tap's slice into a row block is im2col; adding
onto each tap's slice is col2im. Within one slice no pixel appears twice, so ``slice += values`` is exact.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from minigrad import backend

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def pair(value: Any, name: str, op: str, minimum: int | None = None) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(3, 2) -> (3, 2)``; anything else raises an error naming ``op`` and ``name``.

    With ``minimum``, values below it raise ValueError (e.g. ``minimum=1`` for a stride).
    """
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    try:
        if len(values) != 2 or any(isinstance(v, bool) for v in values):
            raise TypeError
        result = (operator.index(values[0]), operator.index(values[1]))
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if minimum is not None and min(result) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum} in both dimensions, got {value!r}")
    return result


def pads_per_side(padding: Any, op: str) -> Pads:
    """Padding as ``((top, bottom), (left, right))`` from an int, a pair ``(ph, pw)`` or that form itself.

    Negative pads raise ValueError naming ``op``.
    """
    is_nested = isinstance(padding, (tuple, list)) and len(padding) == 2
    is_nested = is_nested and all(isinstance(p, (tuple, list)) for p in padding)
    if is_nested:
        (top, bottom), (left, right) = (pair(p, "padding", op) for p in padding)
    else:
        (top, left) = (bottom, right) = pair(padding, "padding", op)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}; use padding >= 0")
    return ((top, bottom), (left, right))


def output_size(
    size: int, kernel: int, stride: int = 1, padding: Any = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Number of window positions along one axis: ``floor((size + pads - d(k-1) - 1) / s) + 1``.

    ``padding``: the pad on each side (an int) or ``(before, after)``. A dilated kernel spans ``d(k-1) + 1``
    pixels. With ``ceil_mode`` the floor is a ceiling, and PyTorch's rule applies: the last window must
    *start* inside the input or the left padding, so it is dropped when ``(out - 1) * s >= size + before``.
    The result is zero or negative when the kernel does not fit; callers check.
    """
    before, after = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    span = size + before + after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1  # Python's // floors, like torch's div_rtn, also for negative spans
    out = -(-span // stride) + 1  # ceil(span / stride) + 1
    if (out - 1) * stride >= size + before:
        out -= 1
    return out


# The same rule under the names the convolution and the pooling chapters use.
conv_output_size = output_size
pool_output_size = output_size


@dataclass(frozen=True)
class WindowGeometry:
    """Where the windows of a (N, C, H, W) input lie; every field is per axis (height, width)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads  # ((top, bottom), (left, right))
    dilation: tuple[int, int]
    in_size: tuple[int, int]  # (H, W)
    out_size: tuple[int, int]  # (H_out, W_out)

    @property
    def padded_size(self) -> tuple[int, int]:
        """(Hp, Wp) of the padded input: ``H + top + bottom``, or more where a ceil-mode window reaches
        past the bottom/right pad (those extra pixels count as padding too)."""
        return tuple(
            max(self.in_size[a] + sum(self.pads[a]),
                (self.out_size[a] - 1) * self.stride[a] + self.dilation[a] * (self.kernel[a] - 1) + 1)
            for a in (0, 1)
        )


def window_geometry(
    x_shape: tuple, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, op: str = "im2col"
) -> WindowGeometry:
    """The windows of a convolution (or im2col) over a (N, C, H, W) shape, its arguments checked.

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
    in_size = (x_shape[2], x_shape[3])
    out_size = tuple(output_size(in_size[a], kernel[a], stride[a], pads[a], dilation[a]) for a in (0, 1))
    if min(out_size) < 1:
        spans = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
        padded = tuple(in_size[a] + sum(pads[a]) for a in (0, 1))
        raise ValueError(
            f"{op}: kernel {kernel} with dilation {dilation} spans {spans[0]}x{spans[1]} pixels, larger than "
            f"the padded input {padded[0]}x{padded[1]} (input {tuple(x_shape)}, pads {pads}); "
            f"use a smaller kernel or dilation, more padding, or a larger input"
        )
    return WindowGeometry(kernel, stride, pads, dilation, in_size, out_size)


def pool_window_geometry(
    op: str, shape: tuple, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> WindowGeometry:
    """The windows of a pooling over a (N, C, H, W) shape, its arguments checked the way torch does.

    ``stride=None`` (or ``[]``, as torch allows) means ``stride = kernel_size``; ``padding`` is the same
    on both sides of an axis and at most half the kernel.
    """
    kernel = pair(kernel_size, "kernel_size", op)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else pair(stride, "stride", op)
    padding = pair(padding, "padding", op)
    dilation = pair(dilation, "dilation", op)
    for name, values, smallest in (("kernel_size", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                                   ("padding", padding, 0)):
        if min(values) < smallest:
            raise ValueError(f"{op}: {name} must be >= {smallest}, got {values} (input {tuple(shape)})")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        # torch checks the raw kernel, not the dilated one: padding wider than half a window would create
        # windows that see only padding.
        raise ValueError(
            f"{op}: padding {padding} is more than half the kernel {kernel} (input {tuple(shape)}); "
            f"use padding at most kernel_size // 2 = {(kernel[0] // 2, kernel[1] // 2)}"
        )
    in_size = (shape[-2], shape[-1])
    out_size = tuple(
        output_size(in_size[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode) for a in (0, 1)
    )
    if min(out_size) < 1:
        extent = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
        padded = tuple(in_size[a] + 2 * padding[a] for a in (0, 1))
        raise ValueError(
            f"{op}: the {extent[0]}x{extent[1]} window (kernel {kernel}, dilation {dilation}) does not fit "
            f"the padded {padded[0]}x{padded[1]} input (input {tuple(shape)}, padding {padding}), so the "
            f"output would be {out_size[0]}x{out_size[1]}; use a smaller kernel_size or dilation, more "
            f"padding, or a larger input"
        )
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    return WindowGeometry(kernel, stride, pads, dilation, in_size, out_size)


def pad_input(x: Any, geometry: WindowGeometry, fill: float = 0.0) -> Any:
    """``x: (N, C, H, W)`` inside a (N, C, Hp, Wp) array of ``fill`` (:attr:`WindowGeometry.padded_size`);
    ``x`` itself when there is nothing to pad."""
    if geometry.padded_size == geometry.in_size:
        return x
    xp = backend.xp_of(x)
    (top, _), (left, _) = geometry.pads
    height, width = geometry.in_size
    shape = (*x.shape[:2], *geometry.padded_size)
    padded = xp.zeros(shape, dtype=x.dtype) if fill == 0 else xp.full(shape, fill, dtype=x.dtype)
    padded[:, :, top : top + height, left : left + width] = x
    return padded


def crop(padded: Any, geometry: WindowGeometry) -> Any:
    """Undo :func:`pad_input`: the (N, C, H, W) interior of a padded array (a view)."""
    (top, _), (left, _) = geometry.pads
    height, width = geometry.in_size
    return padded[:, :, top : top + height, left : left + width]


def kernel_taps(geometry: WindowGeometry) -> Iterator[tuple[int, int, int]]:
    """Yield ``(tap, i, j)`` for every kernel tap, ``tap = i * kW + j``, in row-major order (torch's)."""
    kernel_h, kernel_w = geometry.kernel
    for i in range(kernel_h):
        for j in range(kernel_w):
            yield i * kernel_w + j, i, j


def tap_slice(padded: Any, i: int, j: int, geometry: WindowGeometry) -> Any:
    """Tap (i, j) of every window: the view ``padded[:, :, i*dH :: sH, j*dW :: sW]`` cut to (N, C, OH, OW)."""
    (stride_h, stride_w), (dilation_h, dilation_w) = geometry.stride, geometry.dilation
    out_h, out_w = geometry.out_size
    row, col = i * dilation_h, j * dilation_w
    return padded[:, :, row : row + stride_h * (out_h - 1) + 1 : stride_h,
                  col : col + stride_w * (out_w - 1) + 1 : stride_w]


def as_batched(x: Any, op: str) -> tuple[Any, bool]:
    """``x`` as (N, C, H, W), and whether it came unbatched as (C, H, W) (the pools, like torch, take both)."""
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: expected a 4-D input (N, C, H, W) or a 3-D input (C, H, W), got shape {tuple(x.shape)}; "
            f"reshape the input, e.g. x[None] to add a batch axis"
        )
    if x.dtype.kind != "f":
        raise TypeError(
            f"{op}: expected a floating-point input, got dtype {x.dtype}; cast it, e.g. x.astype('float32')"
        )
    return (x[None], True) if x.ndim == 3 else (x, False)


def check_grad_shape(op: str, grad_out: Any, expected: tuple) -> None:
    """Raise a ValueError naming ``op`` when ``grad_out`` is not shaped like the forward's output."""
    if tuple(grad_out.shape) != tuple(expected):
        raise ValueError(
            f"{op} backward: grad_out has shape {tuple(grad_out.shape)} but the forward output had shape "
            f"{tuple(expected)}; pass the gradient of this op's output"
        )
