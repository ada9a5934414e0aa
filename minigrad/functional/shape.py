"""Ops that move values around without arithmetic: reshape, permute, flatten, indexing."""

from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


class Reshape(Function):
    saves = ()

    def forward(self, x: Any, shape: tuple[int, ...]) -> Any:
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad: Any) -> Any:
        return grad.reshape(self.shape)


class Permute(Function):
    """Reorder the axes; the backward applies the inverse permutation."""

    saves = ()

    def forward(self, x: Any, dims: tuple[int, ...]) -> Any:
        self.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    def backward(self, grad: Any) -> Any:
        return grad.transpose(self.inverse)


class GetItem(Function):
    """``x[index]`` for basic (ints, slices, None, ...) and integer-array indexing.

    The backward scatters the gradient into zeros shaped like ``x``. With integer arrays an entry
    can be picked twice (``x[[0, 0]]``), so the scatter must *add* (``scatter_add``), not assign.
    On a GPU that is an atomic add per value: the gradient of an entry picked several times is summed in
    no fixed order, so reruns can differ in the last bits (GoogLeNet's training step does not use it).
    """

    saves = ()

    def forward(self, x: Any, index: Any) -> Any:
        self.shape, self.index = x.shape, index
        return x[index]

    def backward(self, grad: Any) -> Any:
        xp = backend.xp_of(grad)
        grad_x = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_basic(self.index):
            grad_x[self.index] = grad  # basic indexing never picks an entry twice
        else:
            backend.scatter_add(grad_x, self.index, grad)
        return grad_x


def _is_basic(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(part is None or part is Ellipsis or isinstance(part, (int, slice)) for part in parts)


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """The same values in a new shape (one entry may be -1)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    known = 1
    for size in shape:
        known *= size if size != -1 else 1
    if shape.count(-1) > 1 or (-1 not in shape and known != x.size) or (-1 in shape and (known == 0 or x.size % known)):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} values) into {shape}")
    return Reshape.apply(x, shape=shape)


def permute(x: Tensor, *dims: Any) -> Tensor:
    """Reorder the dimensions, e.g. ``permute(x, 0, 2, 3, 1)`` turns NCHW into NHWC."""
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)
    # Range first: the modulo below would quietly turn dim 5 of a 3-D tensor into dim 2.
    if any(not -x.ndim <= d < x.ndim for d in dims) or sorted(d % max(x.ndim, 1) for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {x.ndim} dimensions of shape {x.shape}")
    return Permute.apply(x, dims=tuple(d % x.ndim for d in dims))


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions."""
    for d in (dim0, dim1):
        if not -x.ndim <= d < x.ndim:
            raise IndexError(f"transpose: dim {d} is out of range for a tensor of shape {x.shape}")
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(x, *dims)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim..end_dim`` into one (``flatten(x, 1)`` keeps the batch axis)."""
    if x.ndim == 0:
        return reshape(x, 1)
    for d in (start_dim, end_dim):
        if not -x.ndim <= d < x.ndim:
            raise IndexError(f"flatten: dim {d} is out of range for a tensor of shape {x.shape}")
    start, end = start_dim % x.ndim, end_dim % x.ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}")
    merged = 1
    for size in x.shape[start : end + 1]:
        merged *= size
    return reshape(x, *x.shape[:start], merged, *x.shape[end + 1 :])


def _check_array_indices(x: Tensor, parts: tuple) -> None:
    """Raise IndexError for an integer-array index outside its axis.

    NumPy raises on its own, but CuPy wraps such indices around (``x[[0, 7]]`` of 4 rows reads row 3), so
    the check is made here, the same on every device.
    """
    def axes_used(part: Any) -> int:  # None adds an axis; a boolean mask covers as many axes as it has
        if part is None or part is Ellipsis:
            return 0
        return part.ndim if getattr(part, "dtype", None) is not None and part.dtype.kind == "b" else 1

    axis = 0
    for position, part in enumerate(parts):
        if part is Ellipsis:  # skip to the axes the parts after it index
            axis = x.ndim - sum(axes_used(later) for later in parts[position + 1 :])
            continue
        dtype = getattr(part, "dtype", None)
        if dtype is not None and dtype.kind in "iu" and part.size and axis < x.ndim:
            size = x.shape[axis]
            low, high = int(part.min()), int(part.max())
            if low < -size or high >= size:
                raise IndexError(
                    f"getitem: index {low if low < -size else high} is out of range for axis {axis} of size "
                    f"{size} (tensor of shape {x.shape}); indices must lie in [-{size}, {size - 1}]"
                )
        axis += axes_used(part)


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]``; tensors inside the index are used as integer (or boolean) arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(part.data if isinstance(part, Tensor) else part for part in parts)
    parts = tuple(x.xp.asarray(part) if isinstance(part, list) else part for part in parts)
    index = parts if isinstance(index, tuple) else parts[0]
    _check_array_indices(x, parts)
    try:
        return GetItem.apply(x, index=index)
    except IndexError as error:
        raise IndexError(f"getitem: index {index!r} does not fit a tensor of shape {x.shape}: {error}") from None
