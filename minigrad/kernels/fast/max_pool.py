"""Max pooling made fast: replaces :mod:`minigrad.kernels.max_pool`, with the same numbers (the tests hold
them equal, ties and NaN included).

``max_pool2d_forward`` takes ``x: (N, C, H, W)`` (or an unbatched ``(C, H, W)``) and returns ``(out, ctx)``;
``max_pool2d_backward(grad_out, ctx)`` returns ``grad_x`` with the shape of ``x``. What differs from the
reference's running max over the ``kH * kW`` tap slices:

* cache-sized batch chunks on a CPU (:mod:`minigrad.kernels.fast.batch_chunks`);
* the running max keeps the winners as growing "codes" combined with ``maximum`` instead of a masked
  ``where``, in int8 where the taps fit (:func:`_running_max`), with NaN fixed up in a second pass only when
  a NaN is there;
* separable: the max over a kH x kW window is the max over its kH rows of each row's max over kW columns,
  2 + 2 steps for 3x3 instead of 8, the winning tap carried through both (:func:`_max_pool_separable`);
* stride 1 (every branch 4 of GoogLeNet): the padded chunk as one flat 1-D array, rows first, then columns
  (:func:`_max_pool_stride_1`);
* no winners when no gradient will be asked for (``need_argmax=False``: evaluation, ``no_grad``): the
  maxima alone, separable too (:func:`_window_maxima`), about a third of the passes;
* the backward: one scatter-add of each window's gradient to the pixel that won it, as torch does
  (:func:`max_pool2d_backward`); where the scatter-add is not deterministic (a GPU), tap by tap in a fixed
  order instead (:func:`_add_winners_by_tap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad import backend
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
class MaxPoolContext:
    """What :func:`max_pool2d_backward` needs: the winning tap (``i * kW + j``) of every window,
    (N, C, OH, OW) in int8 where the taps fit, where the windows lie, whether the input was unbatched."""

    argmax: Any  # None when the forward ran with need_argmax=False
    geometry: WindowGeometry
    unbatched: bool


def max_pool2d_forward(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
    *, need_argmax: bool = True,
) -> tuple[Any, MaxPoolContext]:
    """:func:`minigrad.kernels.max_pool.max_pool2d_forward`, fast: x: (N, C, H, W) -> out: (N, C, OH, OW),
    plus ctx for the backward (``ctx.argmax``: the winning tap of every window).

    ``need_argmax=False``: only the maxima (the same values), and a ctx without winners that
    :func:`max_pool2d_backward` refuses; for a forward whose gradient nobody will ask for.
    """
    xp = backend.xp_of(x)
    batched, unbatched = as_batched(x, "max_pool2d")
    geometry = pool_window_geometry("max_pool2d", batched.shape, kernel_size, stride, padding, dilation,
                                    ceil_mode)
    taps = geometry.kernel[0] * geometry.kernel[1]
    index_dtype = xp.int8 if taps <= 127 else xp.int32  # int8 moves a quarter of the bytes of int32
    out_shape = batched.shape[:2] + geometry.out_size
    out = xp.empty(out_shape, dtype=x.dtype)
    argmax = xp.empty(out_shape, dtype=index_dtype) if need_argmax else None
    for batch in batch_chunks(out):
        if need_argmax:
            _max_pool_chunk(batched[batch], geometry, out[batch], argmax[batch])
        else:
            _window_maxima(pad_input(batched[batch], geometry, fill=-float("inf")), geometry, out[batch])
    return (out[0] if unbatched else out), MaxPoolContext(argmax, geometry, unbatched)


def _max_pool_chunk(x: Any, geometry: WindowGeometry, best: Any, argmax: Any) -> None:
    """Fill ``best`` (n, C, OH, OW) with the window maxima of x: (n, C, H, W) and ``argmax`` with their taps."""
    xp = backend.xp_of(x)
    padded = pad_input(x, geometry, fill=-float("inf"))
    if geometry.stride == (1, 1):
        _max_pool_stride_1(padded, geometry, best, argmax)
    else:
        _max_pool_separable(padded, geometry, best, argmax)
    if xp.isnan(best).any():
        # `maximum` carried the NaN into `best`, but `greater` never picks a NaN; torch's rule is that the
        # last NaN of a window wins. Rare, so done as a second pass only when needed.
        for position, i, j in kernel_taps(geometry):
            xp.copyto(argmax, argmax.dtype.type(position), where=xp.isnan(tap_slice(padded, i, j, geometry)))


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
        # last one that won is the largest. (Masked writes such as copyto(where=) are much slower in NumPy.)
        # The booleans are read as int8 0/1: multiplying int8 by int8 skips a bool -> int8 conversion.
        xp.multiply(wins.view(xp.int8), code, out=tap_if_won)
        xp.maximum(argmax, tap_if_won, out=argmax)


def _column_taps(padded: Any, geometry: WindowGeometry) -> list:
    """Kernel column j of every window, at every padded row: ``padded[..., j * dW :: sW]`` cut to W_out
    columns, one (n, C, Hp, OW) view per j."""
    stride_w, dilation_w, out_w = geometry.stride[1], geometry.dilation[1], geometry.out_size[1]
    return [padded[..., j * dilation_w : j * dilation_w + stride_w * (out_w - 1) + 1 : stride_w]
            for j in range(geometry.kernel[1])]


def _row_taps(rows: Any, geometry: WindowGeometry) -> list:
    """Kernel row i of every window: ``rows[:, :, i * dH :: sH]`` cut to H_out rows, one view per i."""
    stride_h, dilation_h, out_h = geometry.stride[0], geometry.dilation[0], geometry.out_size[0]
    return [rows[:, :, i * dilation_h : i * dilation_h + stride_h * (out_h - 1) + 1 : stride_h]
            for i in range(geometry.kernel[0])]


def _max_pool_separable(padded: Any, geometry: WindowGeometry, best: Any, argmax: Any) -> None:
    """The window maxima and their taps for any stride: first the max over each window row's kW columns at
    every padded row (which column j won), then the max over the kH row maxima (tap ``i * kW + j``).

    The first row that holds the maximum wins, and within it the first column: the first maximum in
    row-major order, torch's rule. 3x3 takes 2 + 2 comparison steps instead of 8.
    """
    xp = backend.xp_of(padded)
    columns = _column_taps(padded, geometry)
    row_best = xp.empty(columns[0].shape, dtype=best.dtype)
    row_tap = xp.empty(columns[0].shape, dtype=argmax.dtype)
    _running_max(columns, row_best, row_tap)
    kernel_w = geometry.kernel[1]
    codes = [tap + argmax.dtype.type(i * kernel_w) for i, tap in enumerate(_row_taps(row_tap, geometry))]
    _running_max(_row_taps(row_best, geometry), best, argmax, codes=codes)


def _window_maxima(padded: Any, geometry: WindowGeometry, best: Any) -> None:
    """``best`` = the max of every window of ``padded`` (NaN where the window holds one, as ``maximum``
    keeps it), no winners: separable like :func:`_max_pool_separable`, on one flat array for stride 1
    like :func:`_max_pool_stride_1`."""
    xp = backend.xp_of(padded)

    def maximum_of(views: list, out: Any) -> None:
        out[...] = views[0]
        for view in views[1:]:
            xp.maximum(out, view, out=out)

    if geometry.stride == (1, 1):
        (kernel_h, kernel_w), (dilation_h, dilation_w) = geometry.kernel, geometry.dilation
        flat, row_step = padded.reshape(-1), dilation_h * geometry.padded_size[1]
        row_length = flat.size - (kernel_w - 1) * dilation_w
        row_best = xp.empty(row_length, dtype=best.dtype)
        maximum_of([flat[j * dilation_w : j * dilation_w + row_length] for j in range(kernel_w)], row_best)
        length = row_length - (kernel_h - 1) * row_step
        wide = xp.empty(padded.shape, dtype=best.dtype)
        maximum_of([row_best[i * row_step : i * row_step + length] for i in range(kernel_h)],
                   wide.reshape(-1)[:length])
        out_h, out_w = geometry.out_size
        best[...] = wide[:, :, :out_h, :out_w]
        return
    columns = _column_taps(padded, geometry)
    row_best = xp.empty(columns[0].shape, dtype=best.dtype)
    maximum_of(columns, row_best)
    maximum_of(_row_taps(row_best, geometry), best)


def _max_pool_stride_1(padded: Any, geometry: WindowGeometry, best: Any, argmax: Any) -> None:
    """The window maxima of a stride-1 pool, computed on the padded chunk seen as one long 1-D array, one
    axis at a time.

    Flat: with stride 1, output ``(oh, ow)``'s window starts at padded pixel ``(oh, ow)``, so kernel tap
    ``(i, j)`` of *every* output of every plane is the flattened padded chunk shifted by
    ``i * dH * Wp + j * dW``: one contiguous slice. Maxima are computed at every padded pixel and the ones
    past the last output row or column (their windows wrap into the next row or plane) are thrown away:
    13% more work at 32x32 (3x3, padding 1), 56% at 8x8, but one contiguous 1-D loop runs much faster than
    the strided windows, whose rows of 8 to 32 outputs make NumPy restart its inner loop at every row.

    Separable: the max over a kH x kW window is the max over its kH rows of each row's max over kW
    columns, so 3x3 takes 2 + 2 comparison steps instead of 8. The tie rule survives:
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
    out_h, out_w = geometry.out_size
    best[...] = wide_best[:, :, :out_h, :out_w]  # all real outputs lie before `length`
    argmax[...] = wide_argmax[:, :, :out_h, :out_w]


def max_pool2d_backward(grad_out: Any, ctx: MaxPoolContext) -> Any:
    """:func:`minigrad.kernels.max_pool.max_pool2d_backward` as one scatter-add: grad_out (N, C, OH, OW) ->
    (N, C, H, W), ``dL/dx[p] = sum over windows w whose argmax is p of dL/dout[w]``.

    Every output sends its whole gradient to exactly one input pixel, so the backward is one scatter-add:
    turn each window's winning tap into the flat index of that pixel in the padded input, then add every
    gradient at its index at once (``add.at``: repeated indices add up, as overlapping windows need). This
    is torch's method too (it keeps the flat index itself), and it adds in the same order, so the results
    agree bit for bit. The reference's loop over the kH * kW taps reads every gradient kH * kW times.

    Where the scatter-add is an atomic add per value (a GPU), atomic adds to one pixel land in any order and
    float sums would change from run to run in the last bits. There the tap loop
    (:func:`_add_winners_by_tap`) runs instead: the same sums in a fixed order.
    """
    geometry, argmax = ctx.geometry, ctx.argmax
    if argmax is None:
        raise ValueError(
            "max_pool2d backward: the forward ran with need_argmax=False, so it kept no winners to send the "
            "gradient to; run the forward with need_argmax=True (the default) when a gradient will be needed"
        )
    check_grad_shape("max_pool2d", grad_out, argmax.shape[1:] if ctx.unbatched else argmax.shape)
    xp = backend.xp_of(grad_out)
    grad_out = grad_out[None] if ctx.unbatched else grad_out
    chunks = batch_chunks(grad_out)
    images_per_chunk = min(chunks[0].stop, grad_out.shape[0]) if chunks else 0  # chunk 0 is the largest
    window_starts = _window_start_indices(xp, images_per_chunk, grad_out.shape[1], geometry)
    tap_offsets = xp.asarray(_tap_offsets(geometry), dtype=xp.int64)
    grad_x = xp.empty(grad_out.shape[:2] + geometry.in_size, dtype=grad_out.dtype)
    grad_padded = xp.empty((images_per_chunk, grad_out.shape[1]) + geometry.padded_size, dtype=grad_out.dtype)
    for batch in chunks:
        images = grad_out[batch].shape[0]  # the last chunk may hold fewer
        winners = xp.take(tap_offsets, argmax[batch])  # (n, C, OH, OW): where each winner sits in its window
        winners += window_starts[:images]  # ... and in the padded chunk
        chunk_grad_padded = grad_padded[:images]
        chunk_grad_padded[...] = 0
        if backend.scatter_add_is_deterministic(grad_out):
            backend.scatter_add(chunk_grad_padded.reshape(-1), winners.reshape(-1), grad_out[batch].reshape(-1))
        else:
            _add_winners_by_tap(chunk_grad_padded, grad_out[batch], argmax[batch], geometry)
        grad_x[batch] = crop(chunk_grad_padded, geometry)
    return grad_x[0] if ctx.unbatched else grad_x


def _add_winners_by_tap(grad_padded: Any, grad_out: Any, argmax: Any, geometry: WindowGeometry) -> None:
    """``grad_padded`` += each output's gradient at its window's winning pixel, one kernel tap at a time.

    grad_padded: (n, C, Hp, Wp), zeroed; grad_out, argmax: (n, C, OH, OW). For one tap the windows of
    different outputs sit on different pixels, so each tap is a plain strided ``+=`` with no collisions:
    deterministic, unlike an atomic scatter-add. Used on a GPU; the tests compare it with the scatter-add.
    """
    for tap, i, j in kernel_taps(geometry):
        tap_slice(grad_padded, i, j, geometry)[...] += grad_out * (argmax == tap)


def _tap_offsets(geometry: WindowGeometry) -> list[int]:
    """Flat offset of each kernel tap from its window's top-left corner in a padded plane, in tap order.

    Tap ``(i, j)`` (number ``i * kW + j``, as in ``argmax``) sits ``i * dH`` rows and ``j * dW`` columns
    in, that is ``i * dH * Wp + j * dW`` elements along a row-major plane of width ``Wp``.
    """
    padded_w = geometry.padded_size[1]
    (dilation_h, dilation_w) = geometry.dilation
    return [i * dilation_h * padded_w + j * dilation_w for _, i, j in kernel_taps(geometry)]


def _window_start_indices(xp: Any, images: int, channels: int, geometry: WindowGeometry) -> Any:
    """Flat index of every window's top-left corner in a padded (images, C, Hp, Wp) array: (images, C, OH, OW).

    Plane ``(n, c)`` starts at ``(n * C + c) * Hp * Wp``; window ``(oh, ow)`` at row ``oh * sH``, column
    ``ow * sW`` of its plane.
    """
    padded_h, padded_w = geometry.padded_size
    (stride_h, stride_w), (out_h, out_w) = geometry.stride, geometry.out_size
    planes = xp.arange(images * channels, dtype=xp.int64).reshape(images, channels, 1, 1) * (padded_h * padded_w)
    rows = xp.arange(out_h, dtype=xp.int64).reshape(out_h, 1) * (stride_h * padded_w)
    cols = xp.arange(out_w, dtype=xp.int64) * stride_w
    return planes + rows + cols
