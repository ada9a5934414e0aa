"""Pooling kernels: max, average and adaptive average pooling, forward and backward, on raw arrays.

Every function takes ``x: (N, C, H, W)`` (or an unbatched ``(C, H, W)``, like torch) and returns
``(out, ctx)``; the matching ``*_backward(grad_out, ctx)`` returns ``grad_x`` with the shape of ``x``.
The semantics are PyTorch's, divisor rules and tie-breaking included (the tests compare with torch).

How a window is read without Python loops over pixels: pad the input once, then for each of the
``kH * kW`` kernel positions ``(i, j)`` take the strided slice

    padded[:, :, i*d : i*d + s*(OH-1) + 1 : s,  j*d : j*d + s*(OW-1) + 1 : s]      shape (N, C, OH, OW)

which holds, for every output pixel at once, the input value under kernel tap ``(i, j)``. Pooling is a
reduction over those ``kH * kW`` slices (a running max, or a sum), and average pooling's backward is
``kH * kW`` strided adds into a zero gradient of the padded shape. Each slice touches distinct input
pixels, so a plain ``+=`` is exact; overlapping windows add up across the loop, as they should.

Where that plain form is slow, a faster one computes the same numbers (the tests hold both to torch):

* max pooling, stride 1 (every branch 4 of GoogLeNet): the padded chunk as one flat 1-D array, rows
  first, then columns (:func:`_max_pool_stride_1`);
* max pooling backward: one scatter-add of each window's gradient to the pixel that won it
  (:func:`max_pool2d_backward`), as torch does;
* average pooling with a large window on a small map (the auxiliary heads' 5x5/3): two matrix
  multiplies, since averaging is linear and separable (:func:`_average_by_matrices`).
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

from minigrad import backend

# ---------------------------------------------------------------------------
# Shared helpers: argument checks, output sizes, padding and window slices.
# ---------------------------------------------------------------------------


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

    The tap loops below read and write every array ``kH * kW`` times; a whole (32, 192, 32, 32) batch
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


# ---------------------------------------------------------------------------
# Max pooling.
# ---------------------------------------------------------------------------


def max_pool2d_forward(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple[Any, dict]:
    """Max over each window: x: (N, C, H, W) -> out: (N, C, OH, OW), plus ctx for the backward.

    ``stride=None`` means ``stride = kernel_size``. Padding counts as ``-inf`` (it never wins).
    ``ctx["argmax"]`` holds, per output pixel, the kernel tap (``i * kW + j``) that won. Ties go to the
    first maximum in row-major order, and a window with NaN outputs NaN with the last NaN as its argmax,
    exactly as torch's CPU kernel. Deliberate difference: a window made only of padding (possible with
    dilation) outputs -inf in both, but its gradient is dropped here, where torch sends it to a bogus index.
    """
    xp = backend.xp_of(x)
    batched, unbatched = _as_batched(x, "max_pool2d")
    geometry = _geometry("max_pool2d", batched.shape, kernel_size, stride, padding, dilation, ceil_mode)
    taps = geometry.kernel[0] * geometry.kernel[1]
    index_dtype = xp.int8 if taps <= 127 else xp.int32  # int8 moves a quarter of the bytes of int32
    out_shape = batched.shape[:2] + geometry.output_size
    out = xp.empty(out_shape, dtype=x.dtype)
    argmax = xp.empty(out_shape, dtype=index_dtype)
    for batch in _batch_chunks(out):
        _max_pool_chunk(batched[batch], geometry, out[batch], argmax[batch])
    out = out[0] if unbatched else out
    return out, {"argmax": argmax, "geometry": geometry, "unbatched": unbatched, "out_shape": out.shape}


def _max_pool_chunk(x: Any, geometry: _Geometry, best: Any, argmax: Any) -> None:
    """Fill ``best`` (n, C, OH, OW) with the window maxima of x: (n, C, H, W) and ``argmax`` with their taps."""
    xp = backend.xp_of(x)
    padded = _pad(x, geometry, fill=-float("inf"))
    if geometry.stride == (1, 1):
        _max_pool_stride_1(padded, geometry, best, argmax)
    else:
        windows = [_window(padded, i, j, geometry) for _, i, j in _kernel_taps(geometry)]
        _running_max(windows, best, argmax)
    if xp.isnan(best).any():
        # `maximum` carried the NaN into `best`, but `greater` never picks a NaN; torch's rule is that the
        # last NaN of a window wins. Rare, so done as a second pass only when needed.
        for position, i, j in _kernel_taps(geometry):
            xp.copyto(argmax, argmax.dtype.type(position), where=xp.isnan(_window(padded, i, j, geometry)))


def _running_max(windows: list, best: Any, argmax: Any, codes: list | None = None) -> None:
    """``best`` = the elementwise max of ``windows`` (arrays shaped like ``best``); ``argmax`` = the code of
    the first window that holds it.

    codes: what ``argmax`` records for each window: its index by default, or arrays (one value per
    element); they must grow from window to window, since the update below keeps the largest code won.
    """
    xp = backend.xp_of(best)
    if codes is None:
        codes = [argmax.dtype.type(position) for position in range(len(windows))]
    best[...] = windows[0]  # the running max starts at tap 0
    argmax[...] = codes[0]
    wins = xp.empty(best.shape, dtype=bool)
    tap_if_won = xp.empty(best.shape, dtype=argmax.dtype)
    for window, code in zip(windows[1:], codes[1:]):
        # Strictly greater: of equal maxima the first one keeps its place, as in torch. Compare *before*
        # updating the running max.
        xp.greater(window, best, out=wins)
        xp.maximum(best, window, out=best)
        # argmax = where(wins, code, argmax), written as a max: codes grow from window to window, so the
        # last one that won is the largest. (Masked writes such as copyto(where=) are ~10x slower in NumPy.)
        # The booleans are read as int8 0/1: multiplying int8 by int8 skips a bool -> int8 conversion.
        xp.multiply(wins.view(xp.int8), code, out=tap_if_won)
        xp.maximum(argmax, tap_if_won, out=argmax)


def _max_pool_stride_1(padded: Any, geometry: _Geometry, best: Any, argmax: Any) -> None:
    """The window maxima of a stride-1 pool, computed on the padded chunk seen as one long 1-D array, one
    axis at a time.

    Flat: with stride 1, output ``(oh, ow)``'s window starts at padded pixel ``(oh, ow)``, so kernel tap
    ``(i, j)`` of *every* output of every plane is the flattened padded chunk shifted by
    ``i * dH * Wp + j * dW``: one contiguous slice. Maxima are computed at every padded pixel and the ones
    past the last output row or column (their windows wrap into the next row or plane) are thrown away:
    13% more work at 32x32, 56% at 8x8, but a contiguous 1-D loop runs about 3x faster than the strided
    windows, whose rows of 8 to 32 outputs make NumPy restart its inner loop at every row.

    Separable: the max over a kH x kW window is the max over its kH rows of each row's max over kW
    columns, so 3x3 takes 2 + 2 comparison steps instead of 8 (1.4x faster). The tie rule survives:
    the first row that holds the maximum wins, and within it the first column, which is exactly the first
    maximum in row-major order; the winning tap is ``i * kW + j``, j taken from the winning row.
    """
    xp = backend.xp_of(padded)
    (kernel_h, kernel_w), (dilation_h, dilation_w) = geometry.kernel, geometry.dilation
    row_step = dilation_h * geometry.padded_size[1]  # from one kernel row to the next in the flat array
    flat = padded.reshape(-1)
    # 1. Along the rows: at every position, the max of the kW taps to its right, and which one (j) won.
    row_length = flat.size - (kernel_w - 1) * dilation_w
    row_best = xp.empty(row_length, dtype=best.dtype)
    row_tap = xp.empty(row_length, dtype=argmax.dtype)
    _running_max([flat[j * dilation_w : j * dilation_w + row_length] for j in range(kernel_w)], row_best, row_tap)
    # 2. Down the columns: the max of the kH row maxima below every position; tap i * kW + that row's j.
    length = row_length - (kernel_h - 1) * row_step  # every position whose whole window is in the chunk
    wide_best = xp.empty(padded.shape, dtype=best.dtype)  # an output at every padded pixel
    wide_argmax = xp.empty(padded.shape, dtype=argmax.dtype)
    rows = [slice(i * row_step, i * row_step + length) for i in range(kernel_h)]
    _running_max([row_best[row] for row in rows], wide_best.reshape(-1)[:length], wide_argmax.reshape(-1)[:length],
                 codes=[row_tap[row] + argmax.dtype.type(i * kernel_w) for i, row in enumerate(rows)])
    out_h, out_w = geometry.output_size
    best[...] = wide_best[:, :, :out_h, :out_w]  # all real outputs lie before `length`
    argmax[...] = wide_argmax[:, :, :out_h, :out_w]


def max_pool2d_backward(grad_out: Any, ctx: dict) -> Any:
    """Send each output gradient to the pixel that won its window: grad_out (N, C, OH, OW) -> (N, C, H, W).

    ``dL/dx[p] = sum over windows w whose argmax is p of dL/dout[w]`` (overlapping windows add up).

    Every output sends its whole gradient to exactly one input pixel, so the backward is one scatter-add:
    turn each window's winning tap into the flat index of that pixel in the padded input, then add every
    gradient at its index at once (``add.at``: repeated indices add up, as overlapping windows need). This
    is torch's method too (it keeps the flat index itself), and it adds in the same order, so the results
    agree bit for bit. A loop over the kH * kW taps with masks, the way the forward runs, reads every
    gradient kH * kW times and was 3-4x slower.

    On a GPU the scatter-add is an atomic add per value, and atomic adds to one pixel land in any order:
    float sums would change from run to run in the last bits. There the tap loop
    (:func:`_add_winners_by_tap`) runs instead: the same sums in a fixed order.
    """
    _check_grad("max_pool2d", grad_out, ctx["out_shape"])
    xp = backend.xp_of(grad_out)
    geometry, argmax = ctx["geometry"], ctx["argmax"]
    grad_out = grad_out[None] if ctx["unbatched"] else grad_out
    chunks = _batch_chunks(grad_out)
    images_per_chunk = min(chunks[0].stop, grad_out.shape[0]) if chunks else 0  # chunk 0 is the largest
    window_starts = _window_start_indices(xp, images_per_chunk, grad_out.shape[1], geometry)
    tap_offsets = xp.asarray(_tap_offsets(geometry), dtype=xp.int64)
    grad_x = xp.empty(grad_out.shape[:2] + geometry.input_size, dtype=grad_out.dtype)
    grad_padded = xp.empty((images_per_chunk, grad_out.shape[1]) + geometry.padded_size, dtype=grad_out.dtype)
    for batch in chunks:
        images = grad_out[batch].shape[0]  # the last chunk may hold fewer
        winners = xp.take(tap_offsets, argmax[batch])  # (n, C, OH, OW): where each winner sits in its window
        winners += window_starts[:images]  # ... and in the padded chunk
        chunk_grad_padded = grad_padded[:images]
        chunk_grad_padded[...] = 0
        if backend.device_of(grad_out) == "cuda":
            _add_winners_by_tap(chunk_grad_padded, grad_out[batch], argmax[batch], geometry)
        else:
            backend.scatter_add(chunk_grad_padded.reshape(-1), winners.reshape(-1), grad_out[batch].reshape(-1))
        grad_x[batch] = _crop(chunk_grad_padded, geometry)
    return grad_x[0] if ctx["unbatched"] else grad_x


def _add_winners_by_tap(grad_padded: Any, grad_out: Any, argmax: Any, geometry: _Geometry) -> None:
    """``grad_padded`` += each output's gradient at its window's winning pixel, one kernel tap at a time.

    grad_padded: (n, C, Hp, Wp), zeroed; grad_out, argmax: (n, C, OH, OW). For one tap the windows of
    different outputs sit on different pixels, so each tap is a plain strided ``+=`` with no collisions:
    deterministic, unlike an atomic scatter-add. Used on the GPU; the tests compare it with the scatter-add.
    """
    for tap, i, j in _kernel_taps(geometry):
        _window(grad_padded, i, j, geometry)[...] += grad_out * (argmax == tap)


def _tap_offsets(geometry: _Geometry) -> list[int]:
    """Flat offset of each kernel tap from its window's top-left corner in a padded plane, in tap order.

    Tap ``(i, j)`` (number ``i * kW + j``, as in ``argmax``) sits ``i * dH`` rows and ``j * dW`` columns
    in, that is ``i * dH * Wp + j * dW`` elements along a row-major plane of width ``Wp``.
    """
    padded_w = geometry.padded_size[1]
    (dilation_h, dilation_w) = geometry.dilation
    return [i * dilation_h * padded_w + j * dilation_w for _, i, j in _kernel_taps(geometry)]


def _window_start_indices(xp: Any, images: int, channels: int, geometry: _Geometry) -> Any:
    """Flat index of every window's top-left corner in a padded (images, C, Hp, Wp) array: (images, C, OH, OW).

    Plane ``(n, c)`` starts at ``(n * C + c) * Hp * Wp``; window ``(oh, ow)`` at row ``oh * sH``, column
    ``ow * sW`` of its plane.
    """
    padded_h, padded_w = geometry.padded_size
    (stride_h, stride_w), (out_h, out_w) = geometry.stride, geometry.output_size
    planes = xp.arange(images * channels, dtype=xp.int64).reshape(images, channels, 1, 1) * (padded_h * padded_w)
    rows = xp.arange(out_h, dtype=xp.int64).reshape(out_h, 1) * (stride_h * padded_w)
    cols = xp.arange(out_w, dtype=xp.int64) * stride_w
    return planes + rows + cols


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
