"""Reductions over axes: sum, mean, max (PyTorch's ``dim`` / ``keepdim`` names)."""

from __future__ import annotations

import builtins
from typing import Any

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


def normalize_dims(op: str, dim: Any, ndim: int) -> tuple[int, ...]:
    """``dim`` (None, an int or a sequence, negatives allowed) as a sorted tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    for d in dims:
        if not -ndim <= d < builtins.max(ndim, 1):
            raise IndexError(f"{op}: dim {d} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(d % builtins.max(ndim, 1) for d in dims))


def expand_back(grad: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdim: bool) -> Any:
    """Undo a reduction's shape: put the reduced axes back (size 1) and broadcast to ``shape``."""
    xp = backend.xp_of(grad)
    if not keepdim:
        grad = xp.expand_dims(grad, axes) if axes else grad
    return xp.broadcast_to(grad, shape)


class Sum(Function):
    saves = ()

    def forward(self, x: Any, axes: tuple, keepdim: bool) -> Any:
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, grad: Any) -> Any:
        return expand_back(grad, self.shape, self.axes, self.keepdim)


class Mean(Function):
    saves = ()

    def forward(self, x: Any, axes: tuple, keepdim: bool) -> Any:
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        self.count = 1
        for axis in axes:
            self.count *= x.shape[axis]
        return x.mean(axis=axes, keepdims=keepdim)

    def backward(self, grad: Any) -> Any:
        return expand_back(grad / self.count, self.shape, self.axes, self.keepdim)


class Max(Function):
    """The largest value over ``axes``. Ties share the gradient equally (as ``torch.amax`` does)."""

    saves = ()

    def forward(self, x: Any, axes: tuple, keepdim: bool) -> Any:
        self.axes, self.keepdim = axes, keepdim
        out = x.max(axis=axes, keepdims=True)
        self.is_max = x == out
        return out if keepdim else out.squeeze(axis=axes)

    def backward(self, grad: Any) -> Any:
        count = self.is_max.sum(axis=self.axes, keepdims=True)
        grad = grad if self.keepdim else backend.xp_of(grad).expand_dims(grad, self.axes)
        return (grad / count.astype(grad.dtype)) * self.is_max


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``dim`` (an int, a tuple, or None for all)."""
    return Sum.apply(x, axes=normalize_dims("sum", dim, x.ndim), keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` (an int, a tuple, or None for all)."""
    if x.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating-point tensor, got dtype {x.dtype}; convert with .float()")
    return Mean.apply(x, axes=normalize_dims("mean", dim, x.ndim), keepdim=keepdim)


def max(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``dim`` (values only, like ``torch.amax``; use ``Tensor.argmax`` for indices)."""
    if x.size == 0:
        raise ValueError(f"max: cannot take the maximum of an empty tensor of shape {x.shape}")
    return Max.apply(x, axes=normalize_dims("max", dim, x.ndim), keepdim=keepdim)
