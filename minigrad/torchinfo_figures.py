"""The totals ``torchinfo.summary`` prints, computed by torchinfo's own rules, for ``minigrad.summary``.

``Summary.torchinfo`` prints these under torchinfo's labels, so that they equal what torchinfo prints for
the same model in torch; the rest of a summary is minigrad's own figures, under labels that say what
they count (:mod:`minigrad.summary`). Apart from the parameter count, torchinfo looks only at *leaf*
modules (no sub-modules) that ran, at every call of them:

* **Total params**: every parameter of the model, each once (the aux heads too, though they do not run
  in eval mode). torchinfo counts a parameter shared by two modules once per module; minigrad once.
* **Total mult-adds**: for each parameter of a leaf module, its size times how often it is used:
  the parameters of a layer whose class name contains ``Conv`` (weight *and* bias) once per output
  position (``N * H_out * W_out``), those of any other layer (Linear, BatchNorm2d) once per entry of
  the output's first axis (``N``). So a conv's weight gives the dot products, its bias one
  multiply-add per output value, a batch norm ``N * 2 * C`` and a Linear ``N * (in * out + out)`` (a
  Linear on ``(N, L, in)`` is counted for ``N`` rows, not ``N * L``: torchinfo's rule).
* **Forward/backward pass size**: twice the outputs of the leaf modules that hold parameters (convs,
  batch norms, linears: not pools, ReLUs, dropout or concatenations): each output and its gradient.
* **Params size**: the parameters of the leaf modules that ran, each module once. A module that did
  not run (the aux heads in eval mode) and a container's own parameters are left out.
* **Input size**: the input tensor's bytes. (torchinfo measures it with ``sys.getsizeof`` of the
  tensor's storage, which adds the few dozen bytes of that Python object's header; a 2-decimal MB
  figure does not show them.)
* **Estimated Total Size**: input + forward/backward pass + params (buffers are not counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from minigrad.nn.module import Module
from minigrad.tensor import Tensor

MB = 1e6  # bytes in a megabyte, as torchinfo counts


def torchinfo_mult_adds(module: Module, output_shape: Sequence[int]) -> int:
    """torchinfo's multiply-adds of one call of a leaf module, from the parameters it holds.

    output_shape: the shape torchinfo reads, e.g. (N, C_out, H_out, W_out). Each parameter named
    ``weight`` or ``bias`` counts its size once per output position (N * H_out * W_out) in a layer whose
    class name contains "Conv", once per entry of the output's first axis (N) in any other layer; a
    parameter whose name merely contains "weight" or "bias" (an RNN's ``weight_ih_l0``) counts once per
    entry of the first two axes. Any other parameter counts 0.
    """
    shape = [int(size) for size in output_shape]
    total = 0
    for name, parameter in module.named_parameters(recurse=False):
        if name in ("weight", "bias"):
            uses = math.prod(shape[:1] + shape[2:]) if "Conv" in type(module).__name__ else math.prod(shape[:1])
        elif "weight" in name or "bias" in name:
            uses = math.prod(shape[:2])
        else:
            uses = 0
        total += parameter.size * uses
    return total


def torchinfo_output(value: Any) -> Tensor | None:
    """The one tensor of a module's output that torchinfo measures: the first of a tuple or list (nested
    ones too), the last value of a dict."""
    if isinstance(value, dict):
        return torchinfo_output(list(value.values())[-1]) if value else None
    if isinstance(value, (tuple, list)):
        return torchinfo_output(value[0]) if value else None
    return value if isinstance(value, Tensor) else None


def torchinfo_share(module: Module, outputs: list[Any], is_leaf: bool) -> tuple[int, int, int]:
    """One module's part of torchinfo's totals: (mult-adds, pass-size output bytes, params bytes).

    outputs: what each call of ``module`` returned. Containers and modules that did not run count 0.
    """
    if not is_leaf or not outputs:
        return 0, 0, 0
    parameters = list(module.parameters(recurse=False))
    mult_adds = output_bytes = 0
    for output in outputs:
        measured = torchinfo_output(output)
        mult_adds += torchinfo_mult_adds(module, measured.shape if measured is not None else ())
        if parameters and measured is not None:
            output_bytes += measured.data.nbytes
    return mult_adds, output_bytes, sum(p.data.nbytes for p in parameters)


@dataclass
class TorchinfoFigures:
    """The totals ``torchinfo.summary`` prints, computed by its rules (see the module docstring)."""

    total_params: int
    trainable_params: int
    total_mult_adds: int  # for the whole batch, bias and batch norm included
    input_bytes: int
    forward_backward_bytes: int  # 2 x the outputs of the leaf modules that hold parameters
    param_bytes: int  # the parameters of the leaf modules that ran

    @property
    def total_bytes(self) -> int:
        """torchinfo's "Estimated Total Size": input + forward/backward pass + params (no buffers)."""
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes

    def lines(self, divider: str = "=" * 40) -> list[str]:
        """The figures as torchinfo prints them: the same labels, units and digits, and its divider."""
        return [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            f"Total mult-adds {torchinfo_count(self.total_mult_adds)}",
            divider,
            f"Input size (MB): {self.input_bytes / MB:.2f}",
            f"Forward/backward pass size (MB): {self.forward_backward_bytes / MB:.2f}",
            f"Params size (MB): {self.param_bytes / MB:.2f}",
            f"Estimated Total Size (MB): {self.total_bytes / MB:.2f}",
        ]


def torchinfo_count(count: int) -> str:
    """A count as torchinfo writes it: in T from 10^12, G from 10^9, else M; 2 decimals unless whole."""
    unit, scale = ("T", 1e12) if count >= 1e12 else ("G", 1e9) if count >= 1e9 else ("M", 1e6)
    value = count / scale
    return f"({unit}): {int(value):,}" if value.is_integer() else f"({unit}): {value:,.2f}"
