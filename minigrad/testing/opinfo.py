"""What one registry entry holds (in the spirit of PyTorch's OpInfo).

An :class:`OpInfo` says how to call an op in minigrad and in torch, which inputs to try
(:class:`Sample`, always float64 NumPy arrays; the tests derive float32 versions), and which bad
inputs must fail and how (:class:`ErrorCase`). Adding an op to every check is adding one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy

from minigrad.tensor import Tensor


@dataclass
class Sample:
    """One set of arguments: ``inputs`` become tensors (in order), ``kwargs`` are passed as they are.

    Float arrays in ``inputs`` require grad unless ``no_grad`` lists their position; integer arrays
    (class targets, indices) never do. ``None`` stands for an absent optional input (a bias).
    """

    inputs: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    no_grad: tuple[int, ...] = ()

    def tensors(self, dtype: Any = numpy.float64, device: str = "cpu") -> list[Tensor | None]:
        """Fresh leaf tensors for this sample, float inputs cast to ``dtype``."""
        out: list[Tensor | None] = []
        for i, array in enumerate(self.inputs):
            if array is None:
                out.append(None)
                continue
            array = numpy.asarray(array)
            if array.dtype.kind == "f":
                out.append(Tensor(array.astype(dtype), requires_grad=i not in self.no_grad, device=device))
            else:
                out.append(Tensor(array, device=device))
        return out

    def describe(self) -> str:
        shapes = ", ".join("None" if a is None else str(tuple(numpy.shape(a))) for a in self.inputs)
        options = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if not isinstance(v, numpy.ndarray))
        return self.name or f"({shapes}){' ' + options if options else ''}"


@dataclass
class ErrorCase:
    """A bad call: ``sample`` must raise ``error`` with ``match`` (a regex) in its message."""

    sample: Sample
    error: type[Exception]
    match: str


@dataclass
class OpInfo:
    """One differentiable op.

    op:        minigrad call, ``op(*tensors, **kwargs)`` -> Tensor (or tuple of Tensors)
    ref:       torch call, ``ref(torch, *torch_tensors, **kwargs)``; None if torch has no twin
    samples:   ``samples(rng)`` -> iterable of Sample (float64 arrays), covering awkward cases
    errors:    ``errors(rng)`` -> iterable of ErrorCase
    gradcheck_tol: overrides for gradcheck's atol/rtol/eps (kinks, large magnitudes)
    float32_terms: the longest sum behind one output value, for float32 torch parity (None: the size of the
                   largest input, output or gradient; see minigrad/testing/tolerance.py)
    float64_tol:  (rtol, atol), element-wise, for float64 torch parity
    """

    name: str
    op: Callable[..., Any]
    ref: Callable[..., Any] | None
    samples: Callable[[numpy.random.Generator], Iterable[Sample]]
    errors: Callable[[numpy.random.Generator], Iterable[ErrorCase]] = lambda rng: ()
    gradcheck_tol: dict[str, float] = field(default_factory=dict)
    float32_terms: int | None = None
    float64_tol: tuple[float, float] = (1e-10, 1e-12)

    def sample_list(self, seed: int = 0) -> list[Sample]:
        return list(self.samples(numpy.random.default_rng(seed)))

    def error_list(self, seed: int = 0) -> list[ErrorCase]:
        return list(self.errors(numpy.random.default_rng(seed)))
