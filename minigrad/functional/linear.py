"""Matrix products: ``matmul`` and the fully connected layer ``linear``."""

from __future__ import annotations

from typing import Any

from minigrad.autograd import Function
from minigrad.functional.elementwise import unbroadcast
from minigrad.tensor import Tensor


def _swap_last(array: Any) -> Any:
    return array.swapaxes(-1, -2)


class MatMul(Function):
    """a @ b for a: (..., n, k), b: (..., k, m). d(a@b)/da = g @ b^T, d(a@b)/db = a^T @ g."""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad: Any) -> tuple:
        grad_a = unbroadcast(grad @ _swap_last(self.b), self.a.shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(_swap_last(self.a) @ grad, self.b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Linear(Function):
    """y = x W^T + b for x: (..., in), W: (out, in), b: (out,). One fused op saves two graph nodes."""

    def forward(self, x: Any, weight: Any, bias: Any) -> Any:
        self.x, self.weight = x, weight
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    def backward(self, grad: Any) -> tuple:
        grad_2d = grad.reshape(-1, grad.shape[-1])  # (rows, out)
        x_2d = self.x.reshape(-1, self.x.shape[-1])  # (rows, in)
        grad_x = grad @ self.weight if self.needs_input_grad[0] else None
        grad_weight = grad_2d.T @ x_2d if self.needs_input_grad[1] else None
        grad_bias = grad_2d.sum(axis=0) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules (1-D operands are treated as a row or a column)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a.shape} and {b.shape}")
    inner_a, inner_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if inner_a != inner_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied: the last dimension of the first "
            f"({inner_a}) must equal the {'second-to-last' if b.ndim > 1 else 'only'} dimension of the second "
            f"({inner_b})"
        )
    try:  # the batch dimensions (all but the last two) broadcast like NumPy's
        a.xp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} have batch dimensions {a.shape[:-2]} and {b.shape[:-2]} "
            f"that cannot be broadcast together; each must be equal or 1 (compared from the right)"
        ) from None
    if a.ndim == 1:
        return matmul(a.reshape(1, -1), b).reshape(*b.shape[:-2], b.shape[-1]) if b.ndim > 1 else (a * b).sum()
    if b.ndim == 1:
        return matmul(a, b.reshape(-1, 1)).reshape(*a.shape[:-1])
    return MatMul.apply(a, b)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The fully connected layer ``x @ weight.T + bias`` (PyTorch's layout: weight is (out, in))."""
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not fit weight of shape {weight.shape} (out, in): the "
            f"input's last dimension must be in={weight.shape[1] if weight.ndim == 2 else '?'}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias has shape {bias.shape} but weight {weight.shape} needs ({weight.shape[0]},)")
    return Linear.apply(x, weight, bias)
