"""2-D convolution (cross-correlation, as in PyTorch), forward and backward, as im2col + matrix multiply.

For every group g of channels (``groups=1``: one group holding them all), with
``W_mat = weight.reshape(C_out, C_in/groups * kH * kW)`` and ``cols[g]`` the rows of group g's channels:

    cols      = im2col(x)                        # (C_in * kH * kW, N * H_out * W_out)
    Y_mat[g]  = W_mat[g] @ cols[g]               # (C_out/groups, N * H_out * W_out)
    out       = Y_mat.reshape(C_out, N, H_out, W_out).transpose(1, 0, 2, 3) + bias

Backward, with ``dY`` the upstream gradient laid out like ``Y_mat``:

    dW[g]     = dY[g] @ cols[g].T                # every window of every sample, times its output's gradient
    dcols[g]  = W_mat[g].T @ dY[g]
    dx        = col2im(dcols)                    # overlapping windows add up
    db        = dY summed over (N, H_out, W_out)

These are the reference kernels: the formulas as written. The fast ones (:mod:`minigrad.kernels.fast.conv`:
reused buffers, batch chunks, the 1x1 shortcut, the faster GEMM orientation) compute the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.kernels.geometry import Pads, WindowGeometry, pads_per_side, pair, window_geometry
from minigrad.kernels.im2col import col2im, im2col


@dataclass(frozen=True)
class ConvContext:
    """What :func:`conv2d_backward` needs from the forward pass: the input (its columns are made again, not
    kept: they are kH*kW times larger), the weight, whether there was a bias, the windows and the groups."""

    x: Any
    weight: Any
    has_bias: bool
    geometry: WindowGeometry
    groups: int


def by_group(matrix: Any, groups: int) -> Any:
    """View a (rows, columns) matrix as (groups, rows/groups, columns): one block of rows per group."""
    rows, columns = matrix.shape
    return matrix.reshape(groups, rows // groups, columns)


def conv2d_forward(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
) -> tuple[Any, ConvContext]:
    """2-D convolution: x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None
    -> (out (N, C_out, H_out, W_out), ctx for :func:`conv2d_backward`).

    ``out[n, o] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]``
    with c running over the input channels of o's group. ``H_out = floor((H + pads - d(kH-1) - 1)/s) + 1``.
    """
    geometry = conv2d_geometry(x, weight, bias, stride, padding, dilation, groups)
    n, out_channels = x.shape[0], weight.shape[0]
    out_h, out_w = geometry.out_size
    cols = im2col(x, geometry.kernel, geometry.stride, geometry.pads, geometry.dilation)
    weight_matrix = weight.reshape(out_channels, -1)  # (C_out, C_in/groups * kH * kW)
    out_matrix = by_group(weight_matrix, groups) @ by_group(cols, groups)  # Y_mat[g] = W_mat[g] @ cols[g]
    out = out_matrix.reshape(out_channels, n, out_h, out_w).transpose(1, 0, 2, 3)
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1, 1)
    return backend.xp_of(x).ascontiguousarray(out), ConvContext(x, weight, bias is not None, geometry, groups)


def conv2d_backward(
    grad_out: Any,
    ctx: ConvContext,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d_forward`: grad_out (N, C_out, H_out, W_out) -> (grad_x, grad_weight,
    grad_bias) with the shapes of x, weight and bias; entries not needed (or no bias) are None.

    ``dW = dY @ cols.T``, ``dcols = W_mat.T @ dY``, ``dx = col2im(dcols)``, ``db = sum of dY``, per group.
    """
    x, weight, geometry, groups = ctx.x, ctx.weight, ctx.geometry, ctx.groups
    out_channels = weight.shape[0]
    expected = (x.shape[0], out_channels, *geometry.out_size)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"conv2d backward: grad_out has shape {tuple(grad_out.shape)}, expected {expected}")
    grad_out = grad_out.astype(x.dtype, copy=False)
    window = (geometry.kernel, geometry.stride, geometry.pads, geometry.dilation)
    grad_matrix = by_group(grad_out.transpose(1, 0, 2, 3).reshape(out_channels, -1), groups)  # dY: like Y_mat
    grad_x = grad_weight = grad_bias = None
    if need_weight_grad:
        cols = by_group(im2col(x, *window), groups)  # the forward's columns, made again
        grad_weight = (grad_matrix @ cols.transpose(0, 2, 1)).reshape(weight.shape)  # dW = dY @ cols.T
    if need_input_grad:
        weight_matrix = by_group(weight.reshape(out_channels, -1), groups)
        grad_cols = weight_matrix.transpose(0, 2, 1) @ grad_matrix  # dcols = W_mat.T @ dY
        grad_x = col2im(grad_cols.reshape(-1, grad_cols.shape[-1]), x.shape, *window)  # dx = col2im(dcols)
    if need_bias_grad and ctx.has_bias:
        grad_bias = grad_out.sum(axis=(0, 2, 3))
    return grad_x, grad_weight, grad_bias


def normalize_padding(padding: Any, kernel_size: Any, stride: Any, dilation: Any, op: str = "conv2d") -> Pads:
    """Padding as pads per side ``((top, bottom), (left, right))``.

    ``padding``: an int, a pair ``(pH, pW)``, pads per side, ``"valid"`` (no padding) or ``"same"`` (output
    as large as the input; stride 1 only). For "same" the total pad along an axis is ``d * (k - 1)``; when
    it is odd (even kernels) the extra pixel goes on the bottom/right, as in PyTorch.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if pair(stride, "stride", op, minimum=1) != (1, 1):
            raise ValueError(
                f"{op}: padding='same' needs stride 1, got stride {stride!r} (PyTorch has the same rule); "
                f"pass the padding as numbers instead"
            )
        kernel = pair(kernel_size, "kernel_size", op, minimum=1)
        dilation = pair(dilation, "dilation", op, minimum=1)
        totals = [dilation[axis] * (kernel[axis] - 1) for axis in range(2)]
        return ((totals[0] // 2, totals[0] - totals[0] // 2), (totals[1] // 2, totals[1] - totals[1] // 2))
    return pads_per_side(padding, op)


def conv2d_geometry(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> WindowGeometry:
    """Validate conv2d's arguments (raising errors that name the shapes and the fix); return the geometry."""
    if x.ndim != 4:
        raise ValueError(
            f"conv2d: expected a 4-D input (N, C_in, H, W), got shape {tuple(x.shape)}; "
            f"add a batch axis with x[None] or reshape the input"
        )
    if weight.ndim != 4:
        raise ValueError(
            f"conv2d: expected a 4-D weight (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}"
        )
    for name, array in (("input", x), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        if array.dtype.kind != "f":
            raise TypeError(f"conv2d: {name} must be floating point, got dtype {array.dtype}; cast it first")
        if array.dtype != x.dtype:
            raise TypeError(
                f"conv2d: {name} has dtype {array.dtype} but the input has {x.dtype}; cast both to one dtype"
            )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    in_channels, out_channels = x.shape[1], weight.shape[0]
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide both in_channels={in_channels} and out_channels={out_channels} "
            f"(input {tuple(x.shape)}, weight {tuple(weight.shape)}); choose groups that divides both"
        )
    if weight.shape[1] * groups != in_channels:
        raise ValueError(
            f"conv2d: input has {in_channels} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {weight.shape[1] * groups} (input {tuple(x.shape)}); pass an input with "
            f"{weight.shape[1] * groups} channels or a weight of shape "
            f"({out_channels}, {in_channels // groups}, {weight.shape[2]}, {weight.shape[3]})"
        )
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(
            f"conv2d: bias must have shape (C_out,) = ({out_channels},), got {tuple(bias.shape)}"
        )
    kernel = tuple(weight.shape[2:])
    stride = pair(stride, "stride", "conv2d", minimum=1)
    dilation = pair(dilation, "dilation", "conv2d", minimum=1)
    pads = normalize_padding(padding, kernel, stride, dilation, op="conv2d")
    return window_geometry(x.shape, kernel, stride, pads, dilation, op="conv2d")
