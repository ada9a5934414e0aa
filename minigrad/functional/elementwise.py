"""Element-wise ops: + - * / neg pow exp log sqrt relu sigmoid tanh.

Binary ops broadcast like NumPy; their backward sums the gradient back down to each input's
shape (:func:`unbroadcast`), because an input that was broadcast was *used* several times.
"""

from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` down to ``shape``: over the leading axes broadcasting added, and over the
    axes where ``shape`` has size 1 but ``grad`` does not."""
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    axes = tuple(range(leading)) + tuple(
        leading + i for i, size in enumerate(shape) if size == 1 and grad.shape[leading + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


def check_broadcast(op: str, a: Tensor, b: Tensor) -> None:
    """Raise a readable error when two shapes cannot broadcast together."""
    try:
        backend.xp_of(a.data).broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together; each dimension, "
            f"compared from the right, must be equal or 1 (reshape one of them)"
        ) from None


class Add(Function):
    saves = ()

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad: Any) -> tuple:
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class Sub(Function):
    saves = ()

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad: Any) -> tuple:
        return unbroadcast(grad, self.shapes[0]), unbroadcast(-grad, self.shapes[1])


class Mul(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return a * b

    def backward(self, grad: Any) -> tuple:
        grad_a = unbroadcast(grad * self.b, self.a.shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return a / b

    def backward(self, grad: Any) -> tuple:
        grad_a = unbroadcast(grad / self.b, self.a.shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad * self.a / (self.b * self.b), self.b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Neg(Function):
    saves = ()

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, grad: Any) -> Any:
        return -grad


class Pow(Function):
    """x ** y; d/dx = y x^(y-1), d/dy = x^y log x."""

    saves = ("inputs", "outputs")

    def forward(self, x: Any, y: Any) -> Any:
        self.x, self.y = x, y
        self.out = x**y
        return self.out

    def backward(self, grad: Any) -> tuple:
        xp = backend.xp_of(grad)
        grad_x = unbroadcast(grad * self.y * self.x ** (self.y - 1), self.x.shape) if self.needs_input_grad[0] else None
        grad_y = unbroadcast(grad * self.out * xp.log(self.x), self.y.shape) if self.needs_input_grad[1] else None
        return grad_x, grad_y


class Exp(Function):
    saves = ("outputs",)

    def forward(self, x: Any) -> Any:
        self.out = backend.xp_of(x).exp(x)
        return self.out

    def backward(self, grad: Any) -> Any:
        return grad * self.out


class Log(Function):
    def forward(self, x: Any) -> Any:
        self.x = x
        return backend.xp_of(x).log(x)

    def backward(self, grad: Any) -> Any:
        return grad / self.x


class Sqrt(Function):
    saves = ("outputs",)

    def forward(self, x: Any) -> Any:
        self.out = backend.xp_of(x).sqrt(x)
        return self.out

    def backward(self, grad: Any) -> Any:
        return grad / (2 * self.out)


class ReLU(Function):
    """max(x, 0); the gradient passes where x > 0 (PyTorch's choice at exactly 0: no gradient).

    ``maximum`` is one pass (and keeps NaN, as torch does); the backward rebuilds the mask from the
    output, which the next layer keeps alive anyway, instead of storing a mask of its own.
    """

    saves = ("outputs",)

    def forward(self, x: Any, inplace: bool = False) -> Any:
        out = backend.xp_of(x).maximum(x, 0, out=x if inplace else None)
        if self.needs_input_grad[0]:
            self.out = out
        return out

    def backward(self, grad: Any) -> Any:
        return grad * (self.out > 0)


class Sigmoid(Function):
    """1 / (1 + e^-x); d/dx = s (1 - s).

    With e = exp(-|x|) <= 1 (never overflows): s = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
    The second form keeps full relative precision for very negative x, where 1 + tanh(x/2) would
    round to 0 in float32 (sigmoid(-20) = 2e-9, not 0).
    """

    saves = ("outputs",)

    def forward(self, x: Any) -> Any:
        xp = backend.xp_of(x)
        e = xp.exp(-xp.abs(x))
        self.out = xp.where(x >= 0, 1, e) / (1 + e)
        return self.out

    def backward(self, grad: Any) -> Any:
        return grad * self.out * (1 - self.out)


class Tanh(Function):
    saves = ("outputs",)

    def forward(self, x: Any) -> Any:
        self.out = backend.xp_of(x).tanh(x)
        return self.out

    def backward(self, grad: Any) -> Any:
        return grad * (1 - self.out * self.out)


def _binary(fn: type[Function], op: str, a: Any, b: Any) -> Tensor:
    a = a if isinstance(a, Tensor) else b.as_tensor(a)
    b = b if isinstance(b, Tensor) else a.as_tensor(b)
    # An integer tensor meets a float one: compute in the float dtype, as PyTorch does (NumPy would pick float64).
    if a.dtype.kind == "f" and b.dtype.kind != "f":
        b = b.to(dtype=a.dtype)
    elif b.dtype.kind == "f" and a.dtype.kind != "f":
        a = a.to(dtype=b.dtype)
    check_broadcast(op, a, b)
    return fn.apply(a, b)


def add(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a + b with broadcasting."""
    return _binary(Add, "add", a, b)


def sub(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a - b with broadcasting."""
    return _binary(Sub, "sub", a, b)


def mul(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a * b with broadcasting."""
    return _binary(Mul, "mul", a, b)


def div(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a / b with broadcasting."""
    return _binary(Div, "div", a, b)


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def pow(x: Tensor, exponent: Tensor | float) -> Tensor:  # noqa: A001  (PyTorch's name)
    """x ** exponent, where the exponent is a number or a tensor (then it gets a gradient too)."""
    return _binary(Pow, "pow", x, exponent)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(x)


def relu(x: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0). ``inplace=True`` (as in PyTorch) writes the result over ``x``'s array: no new array, and
    none kept alive for backward. It is safe where nothing needs ``x``'s old values, such as batch norm's
    output in ``BasicConv2d`` (batch norm's backward reads its input, not its output). Where something
    does, the change is caught: ``x.version`` goes up, and the backward of an op that saved ``x`` raises,
    naming that op, as PyTorch's does. Use the returned tensor from then on: ``x`` itself keeps its old
    place in the graph, so an op that would record a gradient through it raises too."""
    if inplace and x.requires_grad and x.is_leaf:
        raise RuntimeError(
            f"relu: inplace=True would overwrite a leaf tensor that requires grad (shape {x.shape}), whose "
            "values its gradient depends on; use relu(x) instead"
        )
    return ReLU.apply(x, inplace=inplace)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)
