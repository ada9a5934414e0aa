"""The one place that chooses between the reference kernels and the fast ones.

Every op in :mod:`minigrad.functional` calls its kernels through the functions here. Each runs the
reference kernel (:mod:`minigrad.kernels.conv`, ``max_pool``, ``avg_pool``, ``batchnorm``, ...: the
formulas, short enough to read beside the tutorials) or the fast one (:mod:`minigrad.kernels.fast`: the
same numbers, every speed trick), by the current mode:

    MINIGRAD_KERNELS=reference python -m pytest       # everything on the reference kernels
    minigrad.kernels.use("reference")                 # the same, from here on
    with minigrad.kernels.use("reference"): ...       # ... or only inside the block

The default is ``"fast"``. A backward always runs the implementation whose forward made its ``ctx`` (the
contexts are different classes), so switching between a forward and its backward is safe.

The hand-written CUDA C im2col/col2im (:mod:`minigrad.kernels.fast.cuda_im2col`) are chosen here too, for
the fast convolution on CuPy float32/float64 arrays, when ``MINIGRAD_CUDA_KERNELS=1`` is set (read on
every call). Dropout and concatenation have one version, which is both.
"""

from __future__ import annotations

import os
from typing import Any

from minigrad.kernels import avg_pool, batchnorm, conv, max_pool
from minigrad.kernels import im2col as reference_im2col
from minigrad.kernels.concat import concat, concat_backward, split, split_backward
from minigrad.kernels.dropout import dropout_backward, dropout_forward
from minigrad.kernels.fast import avg_pool as fast_avg_pool
from minigrad.kernels.fast import batchnorm as fast_batchnorm
from minigrad.kernels.fast import conv as fast_conv
from minigrad.kernels.fast import cuda_im2col
from minigrad.kernels.fast import im2col as fast_im2col
from minigrad.kernels.fast import max_pool as fast_max_pool
from minigrad.kernels.fast.im2col import ARRAY_COLUMNS, ColumnKernels
from minigrad.kernels.geometry import window_geometry

MODES = ("fast", "reference")
ENVIRONMENT_SWITCH = "MINIGRAD_KERNELS"  # "fast" (the default) or "reference"
CUDA_KERNELS_SWITCH = "MINIGRAD_CUDA_KERNELS"  # "1": the CUDA C im2col/col2im on the GPU

_chosen: str | None = None  # set by use(); None: the environment (or the default) decides


def _check_mode(name: Any, where: str) -> str:
    if name not in MODES:
        raise ValueError(f"{where} must be one of {MODES}, got {name!r}; 'fast' is the default")
    return name


def mode() -> str:
    """The kernels in use: ``"fast"`` or ``"reference"`` (set by :func:`use`, else ``MINIGRAD_KERNELS``)."""
    if _chosen is not None:
        return _chosen
    return _check_mode(os.environ.get(ENVIRONMENT_SWITCH) or "fast", f"the environment variable {ENVIRONMENT_SWITCH}")


class use:
    """Run the kernels of ``mode_name`` ("fast" or "reference") from now on, or, as a context manager,
    until the ``with`` block ends (then the previous choice comes back).

        minigrad.kernels.use("reference")
        with minigrad.kernels.use("fast"): ...
    """

    def __init__(self, mode_name: str) -> None:
        global _chosen
        self.previous = _chosen
        _chosen = _check_mode(mode_name, "minigrad.kernels.use: the mode")

    def __enter__(self) -> use:
        return self

    def __exit__(self, *exception: Any) -> None:
        global _chosen
        _chosen = self.previous


def cuda_kernels_enabled() -> bool:
    """True when ``MINIGRAD_CUDA_KERNELS`` is set to anything but "" or "0" (read on every call)."""
    return os.environ.get(CUDA_KERNELS_SWITCH, "") not in ("", "0")


def use_cuda_kernels(array: Any) -> bool:
    """Whether the fast im2col/col2im of ``array`` run the CUDA C kernels: fast mode, the switch
    :data:`CUDA_KERNELS_SWITCH` on, and an array they can take (CuPy, float32 or float64)."""
    return mode() == "fast" and cuda_kernels_enabled() and cuda_im2col.can_take(array)


def column_kernels(array: Any) -> ColumnKernels:
    """The im2col/col2im pair the fast convolution of ``array`` copies its windows with."""
    return cuda_im2col.CUDA_COLUMNS if use_cuda_kernels(array) else ARRAY_COLUMNS


# ----- im2col / col2im --------------------------------------------------------------------------
def im2col(x: Any, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, *,
           out: Any = None) -> Any:
    """:func:`minigrad.kernels.im2col.im2col` by the current mode, written into ``out`` when given."""
    if mode() == "reference":
        cols = reference_im2col.im2col(x, kernel_size, stride, padding, dilation)
        return cols if out is None else _copy_into(out, cols, "im2col")
    if use_cuda_kernels(x):
        geometry = window_geometry(x.shape, kernel_size, stride, padding, dilation, op="im2col")
        cols = fast_im2col.output_array(out, reference_im2col.columns_shape(x.shape, geometry), x, "im2col")
        return cuda_im2col.im2col_cuda(x, geometry, cols)
    return fast_im2col.im2col(x, kernel_size, stride, padding, dilation, out=out)


def col2im(cols: Any, x_shape: tuple, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           *, out: Any = None) -> Any:
    """:func:`minigrad.kernels.im2col.col2im` by the current mode, written into ``out`` when given."""
    if mode() == "reference":
        result = reference_im2col.col2im(cols, x_shape, kernel_size, stride, padding, dilation)
        return result if out is None else _copy_into(out, result, "col2im")
    if use_cuda_kernels(cols):
        geometry = window_geometry(x_shape, kernel_size, stride, padding, dilation, op="col2im")
        reference_im2col.check_columns(cols, x_shape, geometry)
        result = fast_im2col.output_array(out, tuple(x_shape), cols, "col2im")
        return cuda_im2col.col2im_cuda(cols, tuple(x_shape), geometry, result)
    return fast_im2col.col2im(cols, x_shape, kernel_size, stride, padding, dilation, out=out)


def _copy_into(out: Any, result: Any, op: str) -> Any:
    fast_im2col.output_array(out, result.shape, result, op)[...] = result
    return out


# ----- convolution -----------------------------------------------------------------------------
def conv2d_forward(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                   groups: int = 1) -> tuple[Any, Any]:
    """:func:`minigrad.kernels.conv.conv2d_forward` by the current mode."""
    if mode() == "reference":
        return conv.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    return fast_conv.conv2d_forward(x, weight, bias, stride, padding, dilation, groups, columns=column_kernels(x))


def conv2d_backward(grad_out: Any, ctx: Any, need_input_grad: bool = True, need_weight_grad: bool = True,
                    need_bias_grad: bool = True) -> tuple[Any, Any, Any]:
    """:func:`minigrad.kernels.conv.conv2d_backward`, by the implementation whose forward made ``ctx``."""
    kernels = fast_conv if isinstance(ctx, fast_conv.ConvContext) else conv
    return kernels.conv2d_backward(grad_out, ctx, need_input_grad, need_weight_grad, need_bias_grad)


# ----- pooling ---------------------------------------------------------------------------------
def max_pool2d_forward(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                       ceil_mode: bool = False, need_argmax: bool = True) -> tuple[Any, Any]:
    """:func:`minigrad.kernels.max_pool.max_pool2d_forward` by the current mode. ``need_argmax=False`` (no
    gradient will be asked for) lets the fast kernel skip the winners; the reference always keeps them."""
    if mode() == "reference":
        return max_pool.max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
    return fast_max_pool.max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode,
                                            need_argmax=need_argmax)


def max_pool2d_backward(grad_out: Any, ctx: Any) -> Any:
    """:func:`minigrad.kernels.max_pool.max_pool2d_backward`, by the implementation that made ``ctx``."""
    kernels = fast_max_pool if isinstance(ctx, fast_max_pool.MaxPoolContext) else max_pool
    return kernels.max_pool2d_backward(grad_out, ctx)


def avg_pool2d_forward(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                       count_include_pad: bool = True, divisor_override: int | None = None) -> tuple[Any, Any]:
    """:func:`minigrad.kernels.avg_pool.avg_pool2d_forward` by the current mode."""
    kernels = avg_pool if mode() == "reference" else fast_avg_pool
    return kernels.avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                      divisor_override)


def avg_pool2d_backward(grad_out: Any, ctx: Any) -> Any:
    """:func:`minigrad.kernels.avg_pool.avg_pool2d_backward`, by the implementation that made ``ctx``."""
    kernels = fast_avg_pool if isinstance(ctx, fast_avg_pool.AvgPoolContext) else avg_pool
    return kernels.avg_pool2d_backward(grad_out, ctx)


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, Any]:
    """:func:`minigrad.kernels.avg_pool.adaptive_avg_pool2d_forward` by the current mode."""
    kernels = avg_pool if mode() == "reference" else fast_avg_pool
    return kernels.adaptive_avg_pool2d_forward(x, output_size)


def adaptive_avg_pool2d_backward(grad_out: Any, ctx: Any) -> Any:
    """:func:`minigrad.kernels.avg_pool.adaptive_avg_pool2d_backward`, by the implementation that made ``ctx``."""
    kernels = fast_avg_pool if isinstance(ctx, fast_avg_pool.AdaptiveAvgPoolContext) else avg_pool
    return kernels.adaptive_avg_pool2d_backward(grad_out, ctx)


# ----- batch norm ------------------------------------------------------------------------------
def batch_norm_forward(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool,
                       momentum: float | None = 0.1, eps: float = 1e-5,
                       num_batches_tracked: int = 1) -> tuple[Any, Any]:
    """:func:`minigrad.kernels.batchnorm.batch_norm_forward` by the current mode."""
    kernels = batchnorm if mode() == "reference" else fast_batchnorm
    return kernels.batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps,
                                      num_batches_tracked)


def batch_norm_backward(grad_out: Any, ctx: Any, need_input_grad: bool = True,
                        need_affine_grad: bool = True) -> tuple[Any, Any, Any]:
    """:func:`minigrad.kernels.batchnorm.batch_norm_backward`, by the implementation that made ``ctx``."""
    kernels = fast_batchnorm if isinstance(ctx, fast_batchnorm.BatchNormContext) else batchnorm
    return kernels.batch_norm_backward(grad_out, ctx, need_input_grad, need_affine_grad)


__all__ = [
    "MODES", "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "avg_pool2d_backward",
    "avg_pool2d_forward", "batch_norm_backward", "batch_norm_forward", "col2im", "column_kernels", "concat",
    "concat_backward", "conv2d_backward", "conv2d_forward", "cuda_kernels_enabled", "dropout_backward",
    "dropout_forward", "im2col", "max_pool2d_backward", "max_pool2d_forward", "mode", "split",
    "split_backward", "use", "use_cuda_kernels",
]
