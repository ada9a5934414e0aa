"""Tensor: an array (NumPy or CuPy) plus what autograd needs to send gradients back to it.

A Tensor made by an op remembers its ``creator`` (the Function that made it); a Tensor you make
yourself is a *leaf*. ``loss.backward()`` fills ``.grad`` of every leaf with ``requires_grad=True``.
The arithmetic methods below only route to the differentiable ops in :mod:`minigrad.functional`.

Every tensor also counts the in-place changes of its array (:attr:`Tensor.version`), as PyTorch does, so
that backward can refuse to use an array that was overwritten after an op saved it (see
:mod:`minigrad.autograd`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from minigrad import backend

if TYPE_CHECKING:
    from minigrad.autograd import Function

float32 = numpy.dtype("float32")
float64 = numpy.dtype("float64")
int64 = numpy.dtype("int64")


def _functional() -> Any:
    # Imported on first use: functional builds on this module, not the other way round.
    from minigrad import functional

    return functional


class VersionCounter:
    """How many times an array has been changed in place. Tensors whose arrays share memory (a view and
    its base, an in-place op's input and output, a tensor and its ``detach()``) share one counter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class Tensor:
    """An n-dimensional array that can take part in automatic differentiation.

    Tensor(data, requires_grad=False, dtype=None, device=None)

    ``data`` is a Python number or (nested) list, a NumPy/CuPy array, or a Tensor. Python floats
    become float32 (as in PyTorch); arrays keep their dtype, so float64 stays float64 for gradient
    checks. ``device`` is "cpu" or "cuda"; None keeps the data where it is (Python data goes to "cpu").
    """

    __array_ufunc__ = None  # so that `ndarray * tensor` calls Tensor.__rmul__ instead of NumPy's loop

    def __init__(
        self, data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None
    ) -> None:
        source = data if isinstance(data, Tensor) else None
        if source is not None:
            data = source.data
        if device is None:
            device = backend.device_of(data)
        xp = backend.get_xp(device)
        if isinstance(data, numpy.generic):  # a NumPy scalar (e.g. from a full reduction) keeps its dtype
            data = numpy.asarray(data)
        elif not (isinstance(data, numpy.ndarray) or backend.is_cupy_array(data)):
            data = numpy.asarray(data)
            if data.dtype.kind == "f" and dtype is None:
                dtype = float32  # Python floats are float64 in NumPy; deep learning defaults to 32
        data = backend.to_device(data, device)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        elif not isinstance(data, xp.ndarray):
            data = xp.asarray(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(
                f"Tensor: only floating-point tensors can require gradients, got dtype {data.dtype}; "
                f"create it with dtype=minigrad.float32 (or float64)"
            )
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad: Tensor | None = None
        self.creator: Function | None = None  # the Function that produced this tensor, if any
        self.output_index = 0  # which output of its creator this tensor is
        self.retains_grad = False
        # Tensor(t) keeps t's array, so it keeps t's count of in-place changes too.
        shared = source is not None and data is source.data
        self.version_counter = source.version_counter if shared else VersionCounter()
        self.creator_version = 0  # the version when the creator made it (see autograd's stale-tensor check)

    # ----- what it is -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> numpy.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def xp(self) -> Any:
        """The array module (numpy or cupy) that owns ``data``."""
        return backend.xp_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    @property
    def version(self) -> int:
        """How many in-place changes this tensor's array has seen (PyTorch's ``tensor._version``)."""
        return self.version_counter.value

    def bump_version(self) -> None:
        """Count one in-place change of ``data``. Every in-place operation calls it: ``relu(x, inplace=True)``,
        optimizer steps, ``nn.init`` fills, ``load_state_dict``, gradient accumulation."""
        self.version_counter.value += 1

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = numpy.array2string(self.numpy(), separator=", ", prefix="tensor(", threshold=50)
        extras = [] if self.dtype == float32 else [f"dtype={self.dtype}"]
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.creator is not None:
            extras.append(f"creator={type(self.creator).__name__}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extras]) + ")"

    # ----- moving and copying -----------------------------------------------------------------
    def numpy(self) -> numpy.ndarray:
        """A NumPy copy of the values, whatever the device (never shares memory with ``data``)."""
        return numpy.array(backend.to_numpy(self.data), copy=True)

    def item(self) -> float | int | bool:
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors can be turned into a number, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def to(self, device: str | None = None, dtype: Any = None) -> Tensor:
        """This tensor on ``device`` and/or with ``dtype`` (a new leaf, or ``self`` if nothing changes)."""
        data = self.data if device is None else backend.to_device(self.data, device)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad and data.dtype.kind == "f")  # ints hold no grad

    def float(self) -> Tensor:
        return self.to(dtype=float32)

    def double(self) -> Tensor:
        return self.to(dtype=float64)

    def detach(self) -> Tensor:
        """The same values (shared memory, and so the same version counter) cut off from the graph."""
        detached = Tensor(self.data)
        detached.version_counter = self.version_counter
        return detached

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"requires_grad_: dtype {self.dtype} cannot require gradients; use a float dtype")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor too (leaves always keep theirs)."""
        self.retains_grad = True

    # ----- autograd ---------------------------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Send gradients back through the graph; see :func:`minigrad.autograd.backward`."""
        from minigrad.autograd import backward

        backward(self, grad, retain_graph=retain_graph)

    def accumulate_grad(self, grad: Any) -> None:
        """``self.grad += grad`` (creating it the first time); gradients add up across backward calls."""
        if grad.dtype != self.dtype:
            raise TypeError(f"gradient dtype {grad.dtype} does not match tensor dtype {self.dtype} (a bug in an op)")
        if self.grad is None:
            self.grad = Tensor(grad.copy())
        else:
            self.grad.data += grad
            self.grad.bump_version()

    # ----- arithmetic (each routes to a Function in minigrad.functional) -----------------------
    def as_tensor(self, other: Any) -> Tensor:
        """``other`` as a Tensor: a Tensor as it is, a Python number or array as a constant of this
        tensor's dtype and device (the other operand of ``x + 2``)."""
        if isinstance(other, Tensor):
            return other
        other = self.xp.asarray(other)
        # A float next to an integer tensor gives float32 (as in PyTorch), never a value truncated to int.
        dtype = float32 if self.dtype.kind != "f" and other.dtype.kind == "f" else self.dtype
        return Tensor(other.astype(dtype, copy=False))

    def __add__(self, other: Any) -> Tensor:
        return _functional().add(self, self.as_tensor(other))

    def __radd__(self, other: Any) -> Tensor:
        return _functional().add(self.as_tensor(other), self)

    def __sub__(self, other: Any) -> Tensor:
        return _functional().sub(self, self.as_tensor(other))

    def __rsub__(self, other: Any) -> Tensor:
        return _functional().sub(self.as_tensor(other), self)

    def __mul__(self, other: Any) -> Tensor:
        return _functional().mul(self, self.as_tensor(other))

    def __rmul__(self, other: Any) -> Tensor:
        return _functional().mul(self.as_tensor(other), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _functional().div(self, self.as_tensor(other))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _functional().div(self.as_tensor(other), self)

    def __neg__(self) -> Tensor:
        return _functional().neg(self)

    def __pow__(self, exponent: Any) -> Tensor:
        return _functional().pow(self, exponent)

    def __matmul__(self, other: Tensor) -> Tensor:
        return _functional().matmul(self, other)

    def __getitem__(self, index: Any) -> Tensor:
        return _functional().getitem(self, index)

    # ----- methods, with PyTorch's names (dim, keepdim) ------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _functional().sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _functional().mean(self, dim, keepdim)

    def max(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _functional().max(self, dim, keepdim)

    def argmax(self, dim: int | None = None) -> Tensor:
        """Indices of the maxima (not differentiable)."""
        return Tensor(self.xp.argmax(self.data, axis=dim))

    def reshape(self, *shape: Any) -> Tensor:
        return _functional().reshape(self, *shape)

    def view(self, *shape: Any) -> Tensor:
        return _functional().reshape(self, *shape)

    def permute(self, *dims: Any) -> Tensor:
        return _functional().permute(self, *dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return _functional().transpose(self, dim0, dim1)

    @property
    def T(self) -> Tensor:  # noqa: N802  (PyTorch's name)
        return _functional().permute(self, *reversed(range(self.ndim)))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _functional().flatten(self, start_dim, end_dim)

    def exp(self) -> Tensor:
        return _functional().exp(self)

    def log(self) -> Tensor:
        return _functional().log(self)

    def sqrt(self) -> Tensor:
        return _functional().sqrt(self)

    def relu(self) -> Tensor:
        return _functional().relu(self)

    def sigmoid(self) -> Tensor:
        return _functional().sigmoid(self)

    def tanh(self) -> Tensor:
        return _functional().tanh(self)

    def softmax(self, dim: int = -1) -> Tensor:
        return _functional().softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return _functional().log_softmax(self, dim)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None) -> Tensor:
    """Make a leaf Tensor, like ``torch.tensor``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def _shape(shape: tuple) -> tuple[int, ...]:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def zeros(*shape: Any, dtype: Any = float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    return Tensor(backend.get_xp(device).zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    return Tensor(backend.get_xp(device).ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def randn(*shape: Any, dtype: Any = float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """Standard normal values from the device's seeded generator (see ``minigrad.manual_seed``)."""
    data = backend.rng(device).standard_normal(_shape(shape), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None, device: str = "cpu") -> Tensor:
    """Evenly spaced values like ``torch.arange``: int64 for integer arguments, float32 otherwise."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, int) for v in (start, stop, step)) else float32
    return Tensor(backend.get_xp(device).arange(start, stop, step, dtype=dtype))
