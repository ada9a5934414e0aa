"""Batch normalisation made fast: replaces :mod:`minigrad.kernels.batchnorm`, with the same numbers (the
tests hold them equal). The formulas are the reference's; what differs is how many passes over memory
they take:

- every array is viewed as ``(N, C, S)`` with ``S`` the number of spatial positions (1 for ``(N, C)``
  inputs), so every per-channel sum is a reduction over axes 0 and 2, and those sums go through
  ``einsum``: ``"ncs->c"`` and ``"ncs,ncs->c"`` read their inputs once and build no temporary array
  (``(dy * centered).sum()`` would write a whole product array first);
- ``gamma`` and ``inv_std`` fold into one per-channel scale, so the big array is multiplied once, and
  ``x_hat`` is never stored: the context keeps ``centered = x - mean``, and ``x_hat = centered * inv_std``;
- per-channel values are laid out as a contiguous (C, S) block before they meet an (N, C, S) array
  (:func:`_per_channel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minigrad import backend
from minigrad.kernels.batchnorm import check_batch_norm_inputs, check_batch_size, update_running_stats


@dataclass(frozen=True)
class BatchNormContext:
    """What :func:`batch_norm_backward` needs from the forward pass.

    centered: (N, C, S) the input minus the mean it was normalised with (``x_hat = centered * inv_std``);
    inv_std: (C,) ``1 / sqrt(var + eps)``; gamma: (C,) or None; has_beta: whether a shift was applied;
    used_batch_stats: True when the statistics came from the batch (so they depend on ``x``);
    input_shape: the shape of ``x``, to give ``grad_x`` back in it.
    """

    centered: Any
    inv_std: Any
    gamma: Any
    has_beta: bool
    used_batch_stats: bool
    input_shape: tuple


def _per_channel(values: Any, spatial: int) -> Any:
    """Spread per-channel values (C,) over a contiguous (C, S) block, ready to broadcast against (N, C, S).

    Why not ``values[:, None]``? NumPy then runs N*C inner loops of only S values each (64 at 8x8), and
    the loop overhead dominates; against a contiguous (C, S) block it fuses C and S into one long loop.
    The block costs only 1/N of the array's memory.
    """
    xp = backend.xp_of(values)
    return xp.ascontiguousarray(xp.broadcast_to(values[:, None], (values.shape[0], spatial)))


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
    """:func:`minigrad.kernels.batchnorm.batch_norm_forward`, in fewer passes: the same arguments, the same
    ``(out, ctx)``, the running statistics updated IN PLACE the same way."""
    check_batch_norm_inputs(x, gamma, beta, running_mean, running_var)
    xp = backend.xp_of(x)
    batch, channels = x.shape[:2]
    x3 = x.reshape(batch, channels, -1)  # (N, C, S): a view when x is contiguous
    spatial = x3.shape[2]
    count = batch * spatial  # m: values per channel
    use_batch_stats = training or running_mean is None

    if use_batch_stats:
        check_batch_size(x)
        mean = xp.einsum("ncs->c", x3) / count
        # Two passes (mean first, then squares of the centred values) rather than E[x^2] - mean^2,
        # which loses every digit in float32 when |mean| is large next to the spread.
        centered = x3 - _per_channel(mean, spatial)
        var = xp.einsum("ncs,ncs->c", centered, centered) / count  # biased: divides by m
        if training and running_mean is not None:
            update_running_stats(running_mean, running_var, mean, var, count, momentum, num_batches_tracked)
    else:
        mean, var = running_mean, running_var
        centered = x3 - _per_channel(mean, spatial)

    inv_std = 1 / xp.sqrt(var + eps)
    # out = gamma * centered * inv_std + beta: scale first folds gamma and inv_std into one per-channel
    # factor, so the whole array is multiplied once and x_hat itself is never stored.
    scale = inv_std if gamma is None else gamma * inv_std
    out = centered * _per_channel(scale, spatial)
    if beta is not None:
        out += _per_channel(beta, spatial)
    ctx = BatchNormContext(centered, inv_std, gamma, beta is not None, use_batch_stats, tuple(x.shape))
    return out.reshape(x.shape), ctx


def batch_norm_backward(
    grad_out: Any, ctx: BatchNormContext, need_input_grad: bool = True, need_affine_grad: bool = True
) -> tuple[Any, Any, Any]:
    """:func:`minigrad.kernels.batchnorm.batch_norm_backward` (its docstring derives the formula), in three
    passes over the big arrays for dx: ``(grad_x, grad_gamma, grad_beta)``, None where not needed or absent.

    ``dx = (gamma * inv_std / m) * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))`` with batch statistics,
    ``dx = dy * gamma * inv_std`` with running ones; ``x_hat = centered * inv_std``.
    """
    xp = backend.xp_of(grad_out)
    centered, inv_std = ctx.centered, ctx.inv_std
    dy = grad_out.reshape(centered.shape)
    spatial = centered.shape[2]
    count = centered.shape[0] * spatial
    scale = inv_std if ctx.gamma is None else ctx.gamma * inv_std  # gamma * inv_std

    need_gamma = need_affine_grad and ctx.gamma is not None
    need_beta = need_affine_grad and ctx.has_beta
    need_sums = need_gamma or need_beta or (need_input_grad and ctx.used_batch_stats)
    if need_sums:
        sum_dy = xp.einsum("ncs->c", dy)
        sum_dy_x_hat = xp.einsum("ncs,ncs->c", dy, centered) * inv_std

    grad_x = None
    if need_input_grad:
        grad_x = dy * _per_channel(scale, spatial)
        if ctx.used_batch_stats:
            # (scale / m) * (m*dy - sum_dy - x_hat * sum_dy_x_hat), with x_hat = centered * inv_std
            grad_x -= centered * _per_channel(scale * inv_std * sum_dy_x_hat / count, spatial)
            grad_x -= _per_channel(scale * sum_dy / count, spatial)
        grad_x = grad_x.reshape(ctx.input_shape)
    grad_gamma = sum_dy_x_hat if need_gamma else None
    grad_beta = sum_dy if need_beta else None
    return grad_x, grad_gamma, grad_beta
