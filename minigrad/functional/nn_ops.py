"""The layers' differentiable ops: conv2d, pooling, batch_norm, dropout, cat, split.

Each Function here is a thin wrapper: its forward and backward call the hand-written kernels through
:mod:`minigrad.kernels.dispatch`, which runs the reference or the fast version of each. The kernels hold
the actual algorithms. Argument names and defaults are PyTorch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigrad.autograd import Function
from minigrad.kernels import dispatch as kernels
from minigrad.tensor import Tensor


# ----- convolution ----------------------------------------------------------------------------
class Conv2d(Function):
    def forward(self, x: Any, weight: Any, bias: Any, **options: Any) -> Any:
        out, self.ctx = kernels.conv2d_forward(x, weight, bias, **options)
        return out

    def backward(self, grad: Any) -> tuple:
        return kernels.conv2d_backward(grad, self.ctx, *self.needs_input_grad)


def conv2d(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
    dilation: Any = 1, groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) of input (N, C_in, H, W) with weight
    (C_out, C_in/groups, kH, kW) -> (N, C_out, H_out, W_out). ``padding``: int, pair, "same" or "valid"."""
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


# ----- pooling --------------------------------------------------------------------------------
class MaxPool2d(Function):
    def forward(self, x: Any, **options: Any) -> Any:
        # Without a gradient to come (evaluation, no_grad) the winners are not needed: the maxima alone.
        out, self.ctx = kernels.max_pool2d_forward(x, **options, need_argmax=self.needs_input_grad[0])
        return out

    def backward(self, grad: Any) -> Any:
        return kernels.max_pool2d_backward(grad, self.ctx)


class AvgPool2d(Function):
    def forward(self, x: Any, **options: Any) -> Any:
        out, self.ctx = kernels.avg_pool2d_forward(x, **options)
        return out

    def backward(self, grad: Any) -> Any:
        return kernels.avg_pool2d_backward(grad, self.ctx)


class AdaptiveAvgPool2d(Function):
    def forward(self, x: Any, output_size: Any) -> Any:
        out, self.ctx = kernels.adaptive_avg_pool2d_forward(x, output_size)
        return out

    def backward(self, grad: Any) -> Any:
        return kernels.adaptive_avg_pool2d_backward(grad, self.ctx)


def max_pool2d(
    input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """Max over each kH x kW window (padding counts as -inf); the gradient goes to each window's argmax."""
    return MaxPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                           ceil_mode=ceil_mode)


def avg_pool2d(
    input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override: int | None = None,
) -> Tensor:
    """Mean over each window, with PyTorch's divisor rules (``count_include_pad=True`` by default)."""
    return AvgPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                           count_include_pad=count_include_pad, divisor_override=divisor_override)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a fixed output size; window i spans [floor(i H / out), ceil((i + 1) H / out))."""
    return AdaptiveAvgPool2d.apply(input, output_size=output_size)


# ----- batch norm -----------------------------------------------------------------------------
class BatchNorm(Function):
    def forward(self, x: Any, gamma: Any, beta: Any, **options: Any) -> Any:
        out, self.ctx = kernels.batch_norm_forward(x, gamma, beta, **options)
        return out

    def backward(self, grad: Any) -> tuple:
        need_x, need_gamma, need_beta = self.needs_input_grad
        grad_x, grad_gamma, grad_beta = kernels.batch_norm_backward(
            grad, self.ctx, need_input_grad=need_x, need_affine_grad=need_gamma or need_beta
        )
        return grad_x, grad_gamma if need_gamma else None, grad_beta if need_beta else None


def batch_norm(
    input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
    bias: Tensor | None = None, training: bool = False, momentum: float | None = 0.1, eps: float = 1e-5,
    num_batches_tracked: int = 1,
) -> Tensor:
    """Batch normalisation with PyTorch's signature. In training the running statistics (arrays inside
    ``running_mean``/``running_var``) are updated in place; ``momentum=None`` is a cumulative average
    over ``num_batches_tracked`` batches. Running statistics never receive gradients."""
    for name, statistic in (("running_mean", running_mean), ("running_var", running_var)):
        if statistic is not None and statistic.device != input.device:
            raise ValueError(
                f"batch_norm: {name} {statistic.shape} is on {statistic.device} but the input {input.shape} is on "
                f"{input.device}; move them to one device (module.to({input.device!r}) moves a layer's buffers)"
            )
    return BatchNorm.apply(
        input, weight, bias,
        running_mean=None if running_mean is None else running_mean.data,
        running_var=None if running_var is None else running_var.data,
        training=training, momentum=momentum, eps=eps, num_batches_tracked=num_batches_tracked,
    )


# ----- dropout --------------------------------------------------------------------------------
class Dropout(Function):
    saves = ()

    def forward(self, x: Any, p: float, training: bool, generator: Any) -> Any:
        out, self.ctx = kernels.dropout_forward(x, p, training, generator)
        return out

    def backward(self, grad: Any) -> Any:
        return kernels.dropout_backward(grad, self.ctx)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, generator: Any = None) -> Tensor:
    """Inverted dropout: zero with probability p, scale the rest by 1/(1-p); identity when not training.
    ``generator``: a random generator for the mask (default: the device's, see ``minigrad.manual_seed``)."""
    return Dropout.apply(input, p=p, training=training, generator=generator)


# ----- concatenation --------------------------------------------------------------------------
class Cat(Function):
    saves = ()

    def forward(self, *xs: Any, dim: int) -> Any:
        self.dim, self.sizes = dim, [x.shape[dim] for x in xs]
        return kernels.concat(list(xs), dim)

    def backward(self, grad: Any) -> tuple:
        return tuple(kernels.concat_backward(grad, self.sizes, self.dim))


class Split(Function):
    saves = ()

    def forward(self, x: Any, split_size_or_sections: Any, dim: int) -> tuple:
        self.dim, self.like = dim, x
        pieces = kernels.split(x, split_size_or_sections, dim)
        self.sizes = [piece.shape[dim] for piece in pieces]
        return tuple(pieces)

    def backward(self, *grads: Any) -> Any:
        return kernels.split_backward(list(grads), self.sizes, self.dim, self.like)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along ``dim`` (all other dimensions must match); GoogLeNet joins its four branches."""
    tensors = list(tensors)
    if tensors:
        dim = dim % tensors[0].ndim if tensors[0].ndim else dim
    return Cat.apply(*tensors, dim=dim)


def split(tensor: Tensor, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
    """Cut ``tensor`` along ``dim`` into chunks of one size (int) or of the given sizes (list)."""
    dim = dim % tensor.ndim if tensor.ndim else dim
    sizes = split_size_or_sections if isinstance(split_size_or_sections, int) else list(split_size_or_sections)
    out = Split.apply(tensor, split_size_or_sections=sizes, dim=dim)
    return out if isinstance(out, tuple) else (out,)


__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "cat", "conv2d", "dropout", "max_pool2d", "split",
]
