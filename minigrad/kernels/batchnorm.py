"""Batch normalisation (Ioffe & Szegedy, 2015): forward and backward on raw arrays.

Each channel ``c`` is normalised over every value it takes in the batch (all ``N`` samples and all
spatial positions), then scaled and shifted by learned ``gamma[c]`` and ``beta[c]``:

    mean  = sum(x) / m                       m = N * H * W values per channel
    var   = sum((x - mean)**2) / m           the *biased* variance, as PyTorch normalises with
    x_hat = (x - mean) / sqrt(var + eps)
    out   = gamma * x_hat + beta

In training the batch statistics are used and folded into running averages; in evaluation the running
averages are used instead, so the output of a sample no longer depends on the rest of its batch.
Inputs may be (N, C), (N, C, L) or (N, C, H, W): the sums run over every axis but the channels' (axis 1).

These are the reference kernels. The fast ones (:mod:`minigrad.kernels.fast.batchnorm`: fewer passes over
memory, no stored ``x_hat``) give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad import backend


@dataclass(frozen=True)
class BatchNormContext:
    """What :func:`batch_norm_backward` needs from the forward pass.

    x_hat: the normalised input (the shape of x); inv_std: (C,) ``1 / sqrt(var + eps)``; gamma: (C,) or None;
    has_beta: whether a shift was applied; used_batch_stats: True when the statistics came from the batch
    (so they depend on ``x``).
    """

    x_hat: Any
    inv_std: Any
    gamma: Any
    has_beta: bool
    used_batch_stats: bool


def check_batch_norm_inputs(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any) -> None:
    """Raise a ValueError naming the shapes when batch_norm cannot be applied to these arrays."""
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"batch_norm: expected a 2-D (N, C), 3-D (N, C, L) or 4-D (N, C, H, W) input, got shape "
            f"{tuple(x.shape)}; reshape the input so channels are on axis 1"
        )
    channels = x.shape[1]
    for name, array in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                        ("running_var", running_var)):
        if array is not None and tuple(array.shape) != (channels,):
            raise ValueError(
                f"batch_norm: {name} has shape {tuple(array.shape)} but the input {tuple(x.shape)} has "
                f"{channels} channels; pass a {name} of shape ({channels},) or change num_features"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "batch_norm: running_mean and running_var must both be arrays or both be None, got "
            f"running_mean {None if running_mean is None else tuple(running_mean.shape)} and running_var "
            f"{None if running_var is None else tuple(running_var.shape)}"
        )


def check_batch_size(x: Any) -> None:
    """Raise torch's error when a channel has a single value: its batch variance would be 0 / 0."""
    if x.size // x.shape[1] == 1:
        raise ValueError(
            f"batch_norm: Expected more than 1 value per channel when training, got input of shape "
            f"{tuple(x.shape)}; use a batch of at least 2 (or spatial size > 1), or call eval()"
        )


def update_running_stats(running_mean: Any, running_var: Any, mean: Any, var: Any, count: int,
                         momentum: float | None, num_batches_tracked: int) -> None:
    """PyTorch's running averages, IN PLACE: ``r = (1 - momentum) * r + momentum * batch_stat``, the variance
    folded in being the *unbiased* one, ``var * m / (m - 1)``; ``momentum=None``: factor 1/num_batches_tracked."""
    factor = 1.0 / num_batches_tracked if momentum is None else momentum
    running_mean *= 1 - factor
    running_mean += factor * mean
    running_var *= 1 - factor
    running_var += factor * (count / (count - 1)) * var


def batch_norm_forward(
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: int = 1,
) -> tuple[Any, BatchNormContext]:
    """Normalise each channel of ``x``, then scale by ``gamma`` and shift by ``beta``.

    x: (N, C), (N, C, L) or (N, C, H, W); gamma, beta: (C,) or None (no scale / no shift);
    running_mean, running_var: (C,) arrays, updated IN PLACE in training, or both None (then the batch
    statistics are always used, as torch does with ``track_running_stats=False``).
    Returns ``(out, ctx)``: out has the shape and dtype of ``x``; ctx feeds :func:`batch_norm_backward`.
    ``momentum=None`` gives a cumulative average, factor ``1 / num_batches_tracked`` (the caller counts this
    batch in first).
    """
    check_batch_norm_inputs(x, gamma, beta, running_mean, running_var)
    xp = backend.xp_of(x)
    axes = (0, *range(2, x.ndim))  # every axis but the channels
    per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # (C,) values shaped to broadcast against x
    use_batch_stats = training or running_mean is None
    if use_batch_stats:
        check_batch_size(x)
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(per_channel)) ** 2).mean(axis=axes)  # biased: divides by m
        if training and running_mean is not None:
            update_running_stats(running_mean, running_var, mean, var, x.size // x.shape[1], momentum,
                                 num_batches_tracked)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
    out = x_hat if gamma is None else gamma.reshape(per_channel) * x_hat
    if beta is not None:
        out = out + beta.reshape(per_channel)
    return out, BatchNormContext(x_hat, inv_std, gamma, beta is not None, use_batch_stats)


def batch_norm_backward(
    grad_out: Any, ctx: BatchNormContext, need_input_grad: bool = True, need_affine_grad: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of batch norm: ``(grad_x, grad_gamma, grad_beta)``, None where not needed or absent.

    grad_out: the shape of x; grad_x: the shape of x; grad_gamma, grad_beta: (C,).

    Derivation, per channel, with m values, dy = grad_out and sums over those m values:

    1. out = gamma * x_hat + beta, so grad_beta = sum(dy), grad_gamma = sum(dy * x_hat) and the
       gradient reaching x_hat is g = gamma * dy.
    2. x_hat_i = (x_i - mean) * inv_std depends on x_i directly, and on every x_j through mean and
       inv_std = (var + eps)^(-1/2), var = sum((x_j - mean)^2) / m:
           d mean / d x_j    = 1 / m
           d var / d x_j     = 2 (x_j - mean) / m            (the terms through mean sum to zero)
           d inv_std / d x_j = -1/2 (var + eps)^(-3/2) * 2 (x_j - mean) / m = -inv_std^2 x_hat_j / m
    3. Chain rule, dx_j = sum_i g_i * d x_hat_i / d x_j, with
           d x_hat_i / d x_j = inv_std * ([i == j] - 1/m) + (x_i - mean) * d inv_std / d x_j
                             = inv_std * ([i == j] - 1/m - x_hat_i x_hat_j / m)
       gives dx_j = inv_std * (g_j - sum(g) / m - x_hat_j * sum(g * x_hat) / m).
    4. Put g = gamma * dy back:  dx = (gamma * inv_std / m) * (m * dy - sum(dy) - x_hat * sum(dy * x_hat)).

    In evaluation mean and inv_std are constants, so only step 1 remains: dx = dy * gamma * inv_std.
    """
    x_hat, dy = ctx.x_hat, grad_out
    axes = (0, *range(2, x_hat.ndim))
    per_channel = (1, x_hat.shape[1]) + (1,) * (x_hat.ndim - 2)
    count = x_hat.size // x_hat.shape[1]  # m
    scale = ctx.inv_std if ctx.gamma is None else ctx.gamma * ctx.inv_std  # gamma * inv_std
    sum_dy = dy.sum(axis=axes)
    sum_dy_x_hat = (dy * x_hat).sum(axis=axes)
    grad_x = None
    if need_input_grad:
        if ctx.used_batch_stats:
            grad_x = (scale / count).reshape(per_channel) * (
                count * dy - sum_dy.reshape(per_channel) - x_hat * sum_dy_x_hat.reshape(per_channel))
        else:
            grad_x = dy * scale.reshape(per_channel)
    grad_gamma = sum_dy_x_hat if need_affine_grad and ctx.gamma is not None else None
    grad_beta = sum_dy if need_affine_grad and ctx.has_beta else None
    return grad_x, grad_gamma, grad_beta
