"""Concatenation and splitting along one axis, each the other's backward.

An Inception block concatenates its four branches along the channel axis; the gradient of that
concatenation is the upstream gradient cut back into the branches' pieces. So:

    concat(xs, axis)     backward: split(grad, sizes, axis)     (sizes = each x's extent along axis)
    split(x, sizes, axis) backward: concat(grads, axis)          (a missing grad counts as zeros)
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from minigrad import backend


def _normalise_axis(op: str, axis: int, ndim: int, shapes: list) -> int:
    """``axis`` as a non-negative index, or a ValueError naming ``op`` and the shapes."""
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{op}: axis {axis} is out of range for {ndim}-D arrays (shapes {shapes}); "
            f"use an axis in [{-ndim}, {ndim - 1}]"
        )
    return axis % ndim


def _split_sizes(sizes: int | list[int], length: int, shape: tuple, axis: int) -> list[int]:
    """Turn ``sizes`` into the list of piece lengths along ``axis`` (which has ``length`` entries).

    An int is a chunk size as in ``torch.split``: pieces of that size, the last one possibly shorter.
    """
    if isinstance(sizes, Integral):
        sizes = int(sizes)
        if sizes <= 0:
            raise ValueError(f"split: chunk size must be a positive int, got {sizes} for shape {shape}")
        return [min(sizes, length - start) for start in range(0, length, sizes)] or [0]
    sizes = [int(size) for size in sizes]
    if any(size < 0 for size in sizes) or sum(sizes) != length:
        raise ValueError(
            f"split: sizes {sizes} must be non-negative and sum to {length}, the length of axis {axis} of "
            f"shape {shape} (they sum to {sum(sizes)}); pass sizes that add up to {length}"
        )
    return sizes


def concat(xs: list[Any], axis: int) -> Any:
    """Join arrays end to end along ``axis`` (like ``torch.cat``).

    xs: arrays of equal ndim and dtype whose shapes agree except along ``axis``;
    out: their shape with ``sum(x.shape[axis])`` along ``axis``. Example: branches (N, 64, H, W),
    (N, 128, H, W), (N, 32, H, W), (N, 32, H, W) with axis=1 give (N, 256, H, W).
    """
    if len(xs) == 0:
        raise ValueError("cat: expected a non-empty list of arrays; pass at least one array")
    shapes = [tuple(x.shape) for x in xs]
    ndims = {len(shape) for shape in shapes}
    if len(ndims) != 1:
        raise ValueError(f"cat: all arrays must have the same number of dimensions, got shapes {shapes}")
    ndim = ndims.pop()
    if ndim == 0:
        raise ValueError(f"cat: zero-dimensional arrays cannot be concatenated (shapes {shapes})")
    axis = _normalise_axis("cat", axis, ndim, shapes)
    for shape in shapes:
        if shape[:axis] + shape[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
            raise ValueError(
                f"cat: shapes {shapes} differ outside axis {axis}; every dimension except axis {axis} "
                f"must match (reshape or pad the inputs, or concatenate along another axis)"
            )
    dtypes = [x.dtype for x in xs]
    if any(dtype != dtypes[0] for dtype in dtypes):
        # NumPy would quietly promote float32 + float64 to float64; make the caller choose.
        raise TypeError(f"cat: arrays have different dtypes {[str(d) for d in dtypes]} (shapes {shapes}); "
                        f"cast them to one dtype first")
    return backend.xp_of(xs[0]).concatenate(xs, axis=axis)


def split(x: Any, sizes: int | list[int], axis: int) -> list[Any]:
    """Cut ``x`` into consecutive pieces along ``axis`` (like ``torch.split``); the pieces are views.

    x: any shape; sizes: a list of piece lengths summing to ``x.shape[axis]``, or one int = chunk size
    (the last piece may be shorter). Returns one array per piece, shaped like ``x`` except along axis.
    """
    shape = tuple(x.shape)
    if x.ndim == 0:
        raise ValueError("split: cannot split a zero-dimensional array; pass an array with at least one axis")
    axis = _normalise_axis("split", axis, x.ndim, [shape])
    sizes = _split_sizes(sizes, shape[axis], shape, axis)
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(x[index])
        start += size
    return pieces


def concat_backward(grad_out: Any, sizes: list[int], axis: int) -> list[Any]:
    """Gradient of :func:`concat`: ``grad_out`` cut back into the inputs' pieces.

    grad_out: the concatenated shape; sizes: each input's length along ``axis``. Returns views.
    """
    return split(grad_out, list(sizes), axis)


def split_backward(grads: list[Any], sizes: int | list[int], axis: int, like: Any) -> Any:
    """Gradient of :func:`split`: the pieces' gradients joined back; a None gradient counts as zeros.

    grads: one array (or None, for a piece that did not reach the loss) per piece; sizes: as given to
    :func:`split`; like: the array that was split (gives the shape, dtype and device of the result).
    Writing each piece into one preallocated array costs a single pass and never builds zero arrays.
    """
    shape = tuple(like.shape)
    axis = _normalise_axis("split", axis, like.ndim, [shape])
    sizes = _split_sizes(sizes, shape[axis], shape, axis)
    if len(grads) != len(sizes):
        raise ValueError(f"split: got {len(grads)} gradients for {len(sizes)} pieces {sizes} of shape {shape}; "
                         f"pass one gradient (or None) per piece")
    xp = backend.xp_of(like)
    grad_x = xp.empty(shape, dtype=like.dtype)
    for piece, grad in zip(split(grad_x, sizes, axis), grads):
        if grad is None:
            piece[...] = 0
        else:
            if tuple(grad.shape) != tuple(piece.shape):
                raise ValueError(f"split: a gradient has shape {tuple(grad.shape)} but its piece of {shape} "
                                 f"has shape {tuple(piece.shape)}; pass gradients shaped like the pieces")
            piece[...] = grad
    return grad_x
