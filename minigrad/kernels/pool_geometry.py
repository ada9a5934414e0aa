"""What the pooling kernels share: argument checks, output sizes, padding, window slices, batch chunks.

The kernels are in :mod:`minigrad.kernels.max_pool` (max pooling) and :mod:`minigrad.kernels.avg_pool`
(average and adaptive average pooling). Every one takes ``x: (N, C, H, W)`` (or an unbatched ``(C, H, W)``,
like torch) and returns ``(out, ctx)``; the matching ``*_backward(grad_out, ctx)`` returns ``grad_x`` with
the shape of ``x``. The semantics are PyTorch's, divisor rules and tie-breaking included (the tests compare
with torch).

How a window is read without Python loops over pixels: pad the input once, then for each of the
``kH * kW`` kernel positions ``(i, j)`` take the strided slice (:func:`_window`)

    padded[:, :, i*d : i*d + s*(OH-1) + 1 : s,  j*d : j*d + s*(OW-1) + 1 : s]      shape (N, C, OH, OW)

which holds, for every output pixel at once, the input value under kernel tap ``(i, j)``. Pooling is a
reduction over those ``kH * kW`` slices (a running max, or a sum), and average pooling's backward is
``kH * kW`` strided adds into a zero gradient of the padded shape. Each slice touches distinct input
pixels, so a plain ``+=`` is exact; overlapping windows add up across the loop, as they should.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

from minigrad import backend


def _pair(value: Any, name: str, op: str) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(3, 2) -> (3, 2)``; anything else raises naming the op and the argument."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    try:
        if len(values) != 2 or any(isinstance(v, bool) for v in values):
            raise TypeError
        return (operator.index(values[0]), operator.index(values[1]))
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None


def _as_batched(x: Any, op: str) -> tuple[Any, bool]:
    """Return ``x`` as (N, C, H, W) and whether it came unbatched as (C, H, W) (torch accepts both)."""
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


def pool_output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Windows along one axis: ``floor((size + 2p - d(k-1) - 1) / s) + 1``, ``ceil`` with ceil_mode.

    In ceil mode the last window may hang past the padded input; PyTorch keeps it only if it *starts*
    inside the input or the left padding, i.e. drops it when ``(out - 1) * s >= size + p``.
    The result can be zero or negative when the window does not fit; callers check that.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1  # Python's // floors, like torch's div_rtn, also for negative spans
    out = -(-span // stride) + 1  # ceil(span / stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _Geometry(NamedTuple):
    """Everything about a pooling window, per axis as (height, width) pairs."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    padded_size: tuple[int, int]  # top/left padding is `padding`; the bottom/right gets the rest


def _geometry(
    op: str, shape: tuple, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> _Geometry:
    """Check the pooling arguments the way torch does and work out the output and padded sizes."""
    kernel = _pair(kernel_size, "kernel_size", op)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)  # torch: [] = default
    stride = kernel if no_stride else _pair(stride, "stride", op)
    padding = _pair(padding, "padding", op)
    dilation = _pair(dilation, "dilation", op)
    for name, values, smallest in (
        ("kernel_size", kernel, 1),
        ("stride", stride, 1),
        ("dilation", dilation, 1),
        ("padding", padding, 0),
    ):
        if min(values) < smallest:
            raise ValueError(f"{op}: {name} must be >= {smallest}, got {values} (input {tuple(shape)})")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        # torch checks the raw kernel, not the dilated one: padding wider than half a window would create
        # windows that see only padding.
        raise ValueError(
            f"{op}: padding {padding} is more than half the kernel {kernel} (input {tuple(shape)}); "
            f"use padding at most kernel_size // 2 = {(kernel[0] // 2, kernel[1] // 2)}"
        )
    input_size = (shape[-2], shape[-1])
    output_size = tuple(
        pool_output_size(input_size[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode) for a in (0, 1)
    )
    if min(output_size) < 1:
        extent = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
        padded = tuple(input_size[a] + 2 * padding[a] for a in (0, 1))
        raise ValueError(
            f"{op}: the {extent[0]}x{extent[1]} window (kernel {kernel}, dilation {dilation}) does not fit "
            f"the padded {padded[0]}x{padded[1]} input (input {tuple(shape)}, padding {padding}), so the "
            f"output would be {output_size[0]}x{output_size[1]}; use a smaller kernel_size or dilation, more "
            f"padding, or a larger input"
        )
    # The padded copy must reach the end of the last window, which in ceil mode can lie past H + p.
    padded_size = tuple(
        max(
            input_size[a] + 2 * padding[a],
            (output_size[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1,
        )
        for a in (0, 1)
    )
    return _Geometry(kernel, stride, padding, dilation, input_size, output_size, padded_size)


def _pad(x: Any, geometry: _Geometry, fill: float) -> Any:
    """Copy x: (N, C, H, W) into a (N, C, Hp, Wp) array filled with ``fill`` (no copy when nothing to pad)."""
    if geometry.padded_size == geometry.input_size:
        return x
    xp = backend.xp_of(x)
    (top, left), (height, width) = geometry.padding, geometry.input_size
    padded = xp.full(x.shape[:2] + geometry.padded_size, fill, dtype=x.dtype)
    padded[:, :, top : top + height, left : left + width] = x
    return padded


def _crop(padded: Any, geometry: _Geometry) -> Any:
    """Undo :func:`_pad`: the (N, C, H, W) interior of a padded array (a view)."""
    (top, left), (height, width) = geometry.padding, geometry.input_size
    return padded[:, :, top : top + height, left : left + width]


_CHUNK_ELEMENTS = 1 << 18  # output elements per batch chunk: ~1 MB of float32, fits in a CPU's L2 cache


def _batch_chunks(array: Any) -> list[slice]:
    """Slices of the batch axis, each small enough for one chunk's arrays to stay in the CPU cache.

    The kernels' tap loops read and write every array ``kH * kW`` times; a whole (32, 192, 32, 32) batch
    travels to main memory on each pass, a few images at a time stay in cache (about 2x faster on a CPU).
    On a GPU the whole batch is one chunk: there each pass is one kernel launch, and fewer is better.
    """
    batch, elements_per_sample = array.shape[0], math.prod(array.shape[1:])
    if backend.device_of(array) == "cuda":
        step = max(1, batch)
    else:
        step = max(1, _CHUNK_ELEMENTS // max(1, elements_per_sample))
    return [slice(start, start + step) for start in range(0, batch, step)]


def _kernel_taps(geometry: _Geometry):
    """Yield ``(position, i, j)`` for every kernel tap, in row-major order (the order torch scans)."""
    kernel_h, kernel_w = geometry.kernel
    for i in range(kernel_h):
        for j in range(kernel_w):
            yield i * kernel_w + j, i, j


def _window(padded: Any, i: int, j: int, geometry: _Geometry) -> Any:
    """View of the value under kernel tap (i, j) for every output pixel: (N, C, OH, OW), no copy."""
    (stride_h, stride_w), (dilation_h, dilation_w) = geometry.stride, geometry.dilation
    out_h, out_w = geometry.output_size
    row, col = i * dilation_h, j * dilation_w
    return padded[
        :,
        :,
        row : row + stride_h * (out_h - 1) + 1 : stride_h,
        col : col + stride_w * (out_w - 1) + 1 : stride_w,
    ]


def _check_grad(op: str, grad_out: Any, expected: tuple) -> None:
    if tuple(grad_out.shape) != tuple(expected):
        raise ValueError(
            f"{op} backward: grad_out has shape {tuple(grad_out.shape)} but the forward output had shape "
            f"{tuple(expected)}; pass the gradient of this op's output"
        )
