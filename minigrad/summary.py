"""``minigrad.summary``: a torchinfo-like table of a model, one row per module.

    >>> from minigrad.summary import summary
    >>> print(summary(model, (2, 3, 224, 224)))

How it works: one forward pass, in eval mode and under ``no_grad``, on a seeded random input. A
forward hook on every module records what that module returned; the parameter counts come from
the modules themselves, and the multiply-adds from the hooked output shapes (rules below). The
model's train/eval flags are put back and every hook is removed afterwards, even when the forward
raises.

The totals come in two sets, printed under different labels.

**torchinfo's figures** (:attr:`Summary.torchinfo`), printed under torchinfo's own labels and computed
by torchinfo's rules, so that they equal what ``torchinfo.summary`` prints for the same model in torch:
:mod:`minigrad.torchinfo_figures` lists those rules.

**minigrad's own figures** (the attributes of :class:`Summary`), under labels that say what they count:

* **Dot-product mult-adds** (``Summary.total_mult_adds``): the dot products of convolutions and linear
  layers, for the whole batch (``Summary.mult_adds_per_image`` divides by the batch size):

  - Conv2d: ``output elements * (C_in / groups) * kH * kW`` (each output value is one dot product
    over a ``C_in/groups x kH x kW`` window);
  - Linear: ``output elements * in_features`` (one dot product of length ``in_features`` per value).

  Bias additions, batch norm, pooling, ReLU, dropout and concatenation count as 0: they are cheap next
  to the dot products. This is half of what ``torch.utils.flop_counter.FlopCounterMode`` counts, and it
  is what the tutorials derive by hand. To count another layer, add a rule to :data:`MULT_ADDS`.
* **Parameters** of a row are the module's *own* (``recurse=False``): a container such as an
  Inception block has none of its own, so the column sums to the total. A parameter shared by two
  modules is counted at the first one only.
* **Memory** is in MB = 10^6 bytes, as torchinfo counts. "Every module's output, once" is the size of
  every module output, each tensor counted once (a Sequential returns its last layer's tensor: it is
  not counted twice); "activations and their gradients" is twice that, each output kept for backward
  and given a gradient of the same size. It ignores the scratch buffers inside ops (im2col columns,
  batch-norm's normalised input, dropout masks), so real training peaks higher. "All parameters" counts
  every parameter, run or not, and "buffers" the batch-norm running statistics.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy

from minigrad import backend
from minigrad.autograd import no_grad
from minigrad.models.fuse import Fused1x1Conv
from minigrad.nn.layers import Conv2d, Linear
from minigrad.nn.module import Module
from minigrad.tensor import Tensor
from minigrad.torchinfo_figures import MB, TorchinfoFigures, torchinfo_mult_adds, torchinfo_share

__all__ = ["MULT_ADDS", "Summary", "SummaryRow", "TorchinfoFigures", "register_command", "summary",
           "summary_command", "torchinfo_mult_adds"]


# ----- multiply-adds: one rule per layer type ---------------------------------------------------
def conv2d_mult_adds(module: Conv2d, output: Tensor) -> int:
    """output (N, C_out, H_out, W_out): every value is a dot product over (C_in/groups) * kH * kW inputs."""
    kernel_height, kernel_width = module.kernel_size
    return output.size * (module.in_channels // module.groups) * kernel_height * kernel_width


def linear_mult_adds(module: Linear, output: Tensor) -> int:
    """output (..., out_features): every value is a dot product of length in_features."""
    return output.size * module.in_features


def fused_1x1_mult_adds(module: Fused1x1Conv, output: Tensor) -> int:
    """each output piece (N, C_i, H, W) of one stacked 1x1 convolution: a dot product over C_in per value."""
    return output.size * module.in_channels


#: Layer type -> function(module, output tensor) -> multiply-adds for the whole batch (called once per
#: output tensor of each call).
MULT_ADDS: dict[type, Callable[[Any, Tensor], int]] = {
    Conv2d: conv2d_mult_adds, Linear: linear_mult_adds, Fused1x1Conv: fused_1x1_mult_adds,
}


def _mult_adds_rule(module: Module) -> Callable[[Any, Tensor], int] | None:
    for cls in type(module).__mro__:  # a subclass of Conv2d is counted as a Conv2d
        if cls in MULT_ADDS:
            return MULT_ADDS[cls]
    return None


def _tensors_in(value: Any) -> list[Tensor]:
    """Every Tensor inside a module's output: a Tensor, or (named) tuples, lists and dicts of them."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors_in(item)]
    return []


# ----- the result -------------------------------------------------------------------------------
@dataclass
class SummaryRow:
    """One module of the model, as seen in the forward pass."""

    name: str  # dotted path, e.g. "inception3a.branch2.1.conv"; "" for the model itself
    depth: int  # 0 for the model, 1 for its children, ...
    layer_type: str  # the class name, e.g. "Conv2d"
    output_shapes: list[tuple[int, ...]]  # one shape per output tensor; empty if never called
    num_params: int  # the module's own parameters (not its sub-modules')
    trainable_params: int  # those of them with requires_grad
    mult_adds: int  # this module's own dot-product multiply-adds for the whole batch (see MULT_ADDS)
    output_bytes: int  # size of what the module returned
    calls: int  # how many times the forward called it (0: not used, e.g. aux heads in eval mode)
    # torchinfo's share of this module (see minigrad.torchinfo_figures); 0 for containers and modules that did not run
    torchinfo_mult_adds: int = 0  # torchinfo's mult-adds, every call
    torchinfo_output_bytes: int = 0  # the output torchinfo's pass size counts (layers with parameters), every call
    torchinfo_param_bytes: int = 0  # the parameters torchinfo's params size counts (a leaf module that ran)


@dataclass
class Summary:
    """What :func:`summary` measured; ``str()`` is the table.

    Its fields are minigrad's own figures (the module docstring says what each counts); ``.torchinfo``
    holds the figures torchinfo prints, by torchinfo's rules.
    """

    model_type: str
    input_shape: tuple[int, ...]
    input_bytes: int
    rows: list[SummaryRow]
    total_params: int
    trainable_params: int
    total_mult_adds: int  # dot-product mult-adds (MULT_ADDS rules) for the whole batch; torchinfo's: .torchinfo
    activation_bytes: int  # every module output once
    param_bytes: int  # every parameter, run or not
    buffer_bytes: int
    depth: int | None = None  # rows deeper than this are left out of the table (never out of the totals)

    @property
    def batch_size(self) -> int:
        return self.input_shape[0] if self.input_shape else 1

    @property
    def mult_adds_per_image(self) -> float:
        return self.total_mult_adds / self.batch_size

    @property
    def forward_backward_bytes(self) -> int:
        """Every module output plus its gradient: 2 x ``activation_bytes`` (printed as "activations and
        their gradients"). torchinfo's "Forward/backward pass size" counts fewer outputs: ``.torchinfo``."""
        return 2 * self.activation_bytes

    @property
    def total_bytes(self) -> int:
        """Input + activations and their gradients + all parameters + buffers. torchinfo's "Estimated
        Total Size" leaves out buffers and what did not run: ``.torchinfo.total_bytes``."""
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes + self.buffer_bytes

    @property
    def torchinfo(self) -> TorchinfoFigures:
        """The totals torchinfo prints for this model, by its rules (minigrad.torchinfo_figures lists them)."""
        return TorchinfoFigures(
            total_params=self.total_params,
            trainable_params=self.trainable_params,
            total_mult_adds=sum(row.torchinfo_mult_adds for row in self.rows),
            input_bytes=self.input_bytes,
            forward_backward_bytes=2 * sum(row.torchinfo_output_bytes for row in self.rows),
            param_bytes=sum(row.torchinfo_param_bytes for row in self.rows),
        )

    def __str__(self) -> str:
        header = ("Module", "Type", "Output shape", "Params", "Dot-product mult-adds", "Output MB")
        lines = [header]
        for row in self.rows:
            if self.depth is not None and row.depth > self.depth:
                continue
            path = "  " * row.depth + (row.name or "(model)")
            shape = ", ".join(str(list(s)) for s in row.output_shapes) if row.calls else "-- (not called)"
            if row.calls > 1:
                shape += f" x{row.calls} calls"
            lines.append((
                path, row.layer_type, shape,
                f"{row.num_params:,}" if row.num_params else "--",
                f"{row.mult_adds:,}" if row.mult_adds else "--",
                f"{row.output_bytes / MB:.3f}" if row.calls else "--",
            ))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

        def format_line(cells: Sequence[str]) -> str:
            left = [cell.ljust(width) for cell, width in zip(cells[:3], widths)]
            right = [cell.rjust(width) for cell, width in zip(cells[3:], widths[3:])]
            return "  ".join(left + right).rstrip()

        rule = "=" * len(format_line(["x" * w for w in widths]))
        table = [rule, format_line(header), rule, *(format_line(line) for line in lines[1:]), rule]
        n = self.batch_size
        table += self.torchinfo.lines(divider=rule)
        table += [
            rule,
            "minigrad's own counts:",
            f"Dot-product mult-adds (G): {self.total_mult_adds / 1e9:.2f}"
            f" ({self.total_mult_adds:,} for the batch of {n}; MULT_ADDS rules: conv and linear weights)",
            f"Dot-product mult-adds per image (G): {self.mult_adds_per_image / 1e9:.2f}",
            f"Every module's output, once (MB): {self.activation_bytes / MB:.2f}",
            f"Activations and their gradients (MB): {self.forward_backward_bytes / MB:.2f}"
            " (2 x every module's output)",
            f"All parameters (MB): {self.param_bytes / MB:.2f} (also those of modules that did not run)",
            f"Buffers (MB): {self.buffer_bytes / MB:.2f} (batch-norm running statistics)",
            f"Input + activations + gradients + all parameters + buffers (MB): {self.total_bytes / MB:.2f}",
            rule,
            "The first block is torchinfo's figures, by its rules: its mult-adds include biases and batch norm,",
            "its pass size counts the outputs of layers with parameters, its params size the layers that ran.",
        ]
        if any(row.calls == 0 for row in self.rows):
            table.append("'-- (not called)': the module did not run in this eval-mode forward (e.g. aux heads).")
        if self.depth is not None:
            table.append(f"Rows deeper than depth {self.depth} are hidden; the totals include them.")
        return "\n".join(table)

    __repr__ = __str__


# ----- the measurement --------------------------------------------------------------------------
def summary(
    model: Module,
    input_shape: Sequence[int],
    *,
    batch_size: int | None = None,
    device: str | None = None,
    dtype: Any = None,
    depth: int | None = None,
    seed: int = 0,
) -> Summary:
    """Run one eval-mode forward of ``model`` on a random input and tabulate every module.

    input_shape: the full input shape, e.g. ``(2, 3, 224, 224)``; or, with ``batch_size``, the shape
    of one example, e.g. ``(3, 224, 224)``. ``device``/``dtype`` of the input default to those of the
    model's parameters (cpu, float32 for a fresh model). ``depth`` hides deeper rows from the table.
    The input is drawn from a private generator seeded with ``seed`` (the global RNG is untouched).
    """
    shape = tuple(int(size) for size in input_shape)
    if batch_size is not None:
        shape = (int(batch_size), *shape)
    if not shape or any(size <= 0 for size in shape):
        raise ValueError(f"summary: input_shape must be positive sizes such as (2, 3, 224, 224), got {shape}")
    first_parameter = next(iter(model.parameters()), None)
    if device is None:
        device = first_parameter.device if first_parameter is not None else "cpu"
    if dtype is None:
        dtype = first_parameter.dtype if first_parameter is not None else numpy.float32
    values = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x = Tensor(backend.to_device(values, device))

    named_modules = list(model.named_modules())
    calls: dict[int, list[Any]] = {id(module): [] for _, module in named_modules}  # id -> outputs

    def record(module: Module, inputs: tuple, output: Any) -> None:
        # Keeping the outputs alive also keeps their id()s unique until we have counted them.
        calls[id(module)].append(output)

    saved_modes = [(module, module.training) for _, module in named_modules]
    removers = [module.register_forward_hook(record) for _, module in named_modules]
    try:
        model.eval()
        with no_grad():
            model(x)
    except Exception as error:
        error.add_note(f"(raised inside minigrad.summary's forward pass on an input of shape {shape})")
        raise
    finally:
        for remove in removers:
            remove()
        for module, training in saved_modes:
            module.training = training

    rows: list[SummaryRow] = []
    # torchinfo looks only at leaf modules: a container's work is done by its children.
    is_leaf = {id(module): not any(True for _ in module.children()) for _, module in named_modules}
    seen_parameters: set[int] = set()
    counted_tensors: set[int] = {id(x)}  # a module returning its input (Identity) adds no activation
    activation_bytes = 0
    for name, module in named_modules:
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen_parameters]
        seen_parameters.update(id(p) for p in own)
        outputs = calls[id(module)]
        rule = _mult_adds_rule(module)
        mult_adds = output_bytes = 0
        output_shapes: list[tuple[int, ...]] = []
        for output in outputs:
            tensors = _tensors_in(output)
            output_shapes = [t.shape for t in tensors]
            output_bytes = sum(t.data.nbytes for t in tensors)
            if rule is not None:
                mult_adds += sum(rule(module, t) for t in tensors)
            for tensor in tensors:
                if id(tensor) not in counted_tensors:
                    counted_tensors.add(id(tensor))
                    activation_bytes += tensor.data.nbytes
        torchinfo_macs, torchinfo_output_bytes, torchinfo_param_bytes = torchinfo_share(
            module, outputs, is_leaf[id(module)])
        rows.append(SummaryRow(
            name=name, depth=name.count(".") + 1 if name else 0, layer_type=type(module).__name__,
            output_shapes=output_shapes, num_params=sum(p.size for p in own),
            trainable_params=sum(p.size for p in own if p.requires_grad), mult_adds=mult_adds,
            output_bytes=output_bytes, calls=len(outputs), torchinfo_mult_adds=torchinfo_macs,
            torchinfo_output_bytes=torchinfo_output_bytes, torchinfo_param_bytes=torchinfo_param_bytes,
        ))
    parameters = list(model.parameters())
    return Summary(
        model_type=type(model).__name__,
        input_shape=shape,
        input_bytes=x.data.nbytes,
        rows=rows,
        total_params=sum(p.size for p in parameters),
        trainable_params=sum(p.size for p in parameters if p.requires_grad),
        total_mult_adds=sum(row.mult_adds for row in rows),
        activation_bytes=activation_bytes,
        param_bytes=sum(p.data.nbytes for p in parameters),
        buffer_bytes=sum(b.data.nbytes for b in model.buffers()),
        depth=depth,
    )


# ----- the command line: `minigrad summary` -----------------------------------------------------
def summary_command(args: argparse.Namespace) -> int:
    """Build ``inception_v1`` from the command-line options and print its summary table."""
    from minigrad.models import inception_v1  # imported here: `minigrad --help` must not build models

    model = inception_v1(
        num_classes=args.num_classes, aux_logits=not args.no_aux, variant=args.variant, stem=args.stem,
        width=args.width,
    )
    size = args.input_size or (224 if args.stem == "imagenet" else 32)
    print(summary(model, (args.batch_size, 3, size, size), depth=args.depth))
    return 0


def register_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``minigrad summary`` to the CLI's subparsers (``parser.add_subparsers()``)."""
    parser = subparsers.add_parser(
        "summary", help="print GoogLeNet's layers, output shapes, parameters and multiply-adds",
        description="Build minigrad.models.inception_v1 with these options and print a torchinfo-like table.",
    )
    parser.add_argument("--variant", choices=["paper", "torchvision"], default="paper",
                        help="paper: biased convs + BN, a true 5x5 branch; torchvision: its googlenet layout")
    parser.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet",
                        help="imagenet: the paper's 7x7/2 stem; cifar: one 3x3 conv for 32x32 inputs")
    parser.add_argument("--width", type=float, default=1.0, help="multiply every channel count (default 1.0)")
    parser.add_argument("--num-classes", type=int, default=1000, help="outputs of the classifier (default 1000)")
    parser.add_argument("--no-aux", action="store_true", help="leave out the two auxiliary classifiers")
    parser.add_argument("--input-size", type=int, default=None,
                        help="image height = width (default 224 for the imagenet stem, 32 for cifar)")
    parser.add_argument("--batch-size", type=int, default=1, help="images in the batch (default 1)")
    parser.add_argument("--depth", type=int, default=None, help="hide rows deeper than this (default: show all)")
    parser.set_defaults(handler=summary_command)
    return parser
