"""Module and Parameter: how layers hold their weights, buffers and sub-layers.

Assigning a :class:`Parameter`, a :class:`Module`, or calling :meth:`Module.register_buffer` inside
``__init__`` registers it by its attribute name, so ``named_parameters()`` and ``state_dict()``
find everything with dotted names (``inception3a.branch2.1.bn.running_var``), as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy

from minigrad import backend
from minigrad.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and trains (``requires_grad=True`` by default)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def as_numpy(value: Any) -> numpy.ndarray:
    """A NumPy array from a NumPy/CuPy array, a minigrad Tensor or a torch tensor (a state dict's values)."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, without importing torch
        return value.detach().cpu().numpy()
    return backend.to_numpy(value)


class Module:
    """Base class of every layer and model. Subclasses set attributes in ``__init__`` and define ``forward``."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", [])

    # ----- registration by attribute ---------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning {name!r}")
        if isinstance(value, (Parameter, Module)):
            self.__dict__.pop(name, None)  # else a plain attribute of the same name would win on lookup
            target = self._parameters if isinstance(value, Parameter) else self._modules
            for table in (self._parameters, self._buffers, self._modules):
                if table is not target:
                    table.pop(name, None)
            target[name] = value  # a name already there keeps its place (and its state-dict position), as in torch
            return
        # A registered name keeps its kind. A plain value there would silently drop out of parameters()
        # and state_dict(), so it is an error (as in PyTorch); None marks the entry absent (bias=False).
        for table, kind, expected in (
            (self._parameters, "parameter", "an nn.Parameter"),
            (self._modules, "sub-module", "an nn.Module"),
            (self._buffers, "buffer", "a Tensor"),
        ):
            if name in table:
                if value is not None and not (kind == "buffer" and isinstance(value, Tensor)):
                    raise TypeError(
                        f"{type(self).__name__}: cannot assign {type(value).__name__} to {kind} {name!r}; "
                        f"assign {expected} or None, or `del` it first"
                    )
                table[name] = value
                return
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:  # called only when normal lookup fails
        for table in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(table, {})
            if name in values:
                return values[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """A tensor that belongs in the state dict but is not trained (e.g. BatchNorm's running_mean)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor

    def register_parameter(self, name: str, parameter: Parameter | None) -> None:
        """Register ``parameter`` (None for an absent one, e.g. ``bias=False``)."""
        self.__dict__.pop(name, None)
        self._parameters[name] = parameter

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    # ----- running -----------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.forward(*args, **kwargs)
        for hook in self._forward_hooks:
            hook(self, args, output)
        return output

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], None]) -> Callable[[], None]:
        """Call ``hook(module, inputs, output)`` after every forward (used by ``minigrad.summary``).
        Returns a function that removes the hook."""
        self._forward_hooks.append(hook)
        return lambda: self._forward_hooks.remove(hook) if hook in self._forward_hooks else None

    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) for this module and every sub-module."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: running statistics, no dropout."""
        return self.train(False)

    # ----- walking the tree --------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, depth first, with dotted names ("" for self)."""
        stack = [(prefix, self)]
        seen: set[int] = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, table: str, recurse: bool) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        modules = self.named_modules() if recurse else iter([("", self)])
        for module_name, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", recurse)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters(recurse):
            yield parameter

    def named_buffers(self, recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse):
            yield buffer

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every sub-module (depth first, in order) and then on this one, as PyTorch does
        (used for custom initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ----- state ------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    def _state_entries(self) -> Iterator[tuple[str, Tensor]]:
        """Every parameter and buffer under *every* dotted name that reaches it, depth first: PyTorch's
        state-dict rule, so a module shared in two places is written under both names (``named_parameters``
        lists it once, as torch's does)."""
        stack: list[tuple[str, Module, frozenset[int]]] = [("", self, frozenset())]
        while stack:
            prefix, module, ancestors = stack.pop()
            for table in (module._parameters, module._buffers):
                for name, value in table.items():
                    if value is not None:
                        yield (f"{prefix}.{name}" if prefix else name), value
            inside = ancestors | {id(module)}
            children = [(f"{prefix}.{name}" if prefix else name, child, inside)
                        for name, child in module._modules.items() if child is not None and id(child) not in inside]
            stack.extend(reversed(children))

    def state_dict(self) -> dict[str, numpy.ndarray]:
        """Every parameter and buffer as a NumPy copy, keyed by dotted name (PyTorch's key layout; a shared
        module appears under each of its names, as in torch)."""
        return {key: value.numpy() for key, value in self._state_entries()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy values in (NumPy arrays, minigrad or torch tensors); returns (missing, unexpected) keys.

        Shapes must match exactly. With ``strict=True`` any missing or unexpected key is an error that
        lists them all. Values are cast to each parameter's dtype and stay on its device.
        """
        own = dict(self._state_entries())
        missing = [key for key in own if key not in state]
        unexpected = [key for key in state if key not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict into {type(self).__name__}: missing keys {missing}, unexpected keys "
                f"{unexpected}; pass strict=False to load the keys that match"
            )
        mismatched = [
            f"{key}: checkpoint {tuple(numpy.shape(as_numpy(state[key])))} vs model {own[key].shape}"
            for key in own
            if key in state and tuple(numpy.shape(as_numpy(state[key]))) != own[key].shape
        ]
        if mismatched:
            raise ValueError(f"load_state_dict into {type(self).__name__}: shape mismatch for " + "; ".join(mismatched))
        for key, target in own.items():
            if key in state:
                value = as_numpy(state[key]).astype(target.dtype, copy=False)
                target.data[...] = backend.to_device(value, target.device)
                target.bump_version()
        return missing, unexpected

    def to(self, device: str | None = None, dtype: Any = None) -> Module:
        """Move (and/or cast floating-point) parameters, their gradients and buffers in place; returns self."""

        def moved(data: Any) -> Any:
            data = data if device is None else backend.to_device(data, device)
            return data.astype(dtype, copy=False) if dtype is not None and data.dtype.kind == "f" else data

        for tensor in [*self.parameters(), *self.buffers()]:
            tensor.data = moved(tensor.data)
            if tensor.grad is not None:
                tensor.grad.data = moved(tensor.grad.data)
        return self

    def double(self) -> Module:
        return self.to(dtype=numpy.float64)

    def float(self) -> Module:
        return self.to(dtype=numpy.float32)

    # ----- printing ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's own settings, shown inside the parentheses of its repr."""
        return ""

    def __repr__(self) -> str:
        children = [f"({name}): " + repr(module).replace("\n", "\n  ") for name, module in self.named_children()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = ([self.extra_repr()] if self.extra_repr() else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"
