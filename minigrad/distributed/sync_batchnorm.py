"""SyncBatchNorm: batch normalisation whose statistics span the whole batch, over every rank.

    model = convert_sync_batchnorm(model)    # every BatchNorm1d/2d becomes a SyncBatchNorm, same weights

Why plain batch norm breaks data parallelism: in training, batch norm normalises each channel with the
mean and variance *of the batch it is given*. Each rank is given only its shard of ``b = B / N`` samples,
so it normalises with the shard's statistics: noisier, and different on every rank. The outputs, the loss
and every gradient are then those of ``N`` separate small batches (what is sometimes called "ghost batch
norm"), not those of the one big batch, and averaging the gradients does not bring that back.

SyncBatchNorm sums the per-channel statistics over the ranks (the forward formulas of
:mod:`minigrad.kernels.batchnorm`, with every sum over ``m = N b H W`` values):

    forward:   mean = all_reduce(sum x) / m;  var = all_reduce(sum (x - mean)^2) / m   (two passes, as one process)
    backward:  dx = (gamma inv_std / m) (m dy - all_reduce(sum dy) - x_hat all_reduce(sum dy x_hat))

The backward needs the global sums because each ``x_i`` moves the mean and variance that *every* rank's
outputs were normalised with. ``grad_gamma`` and ``grad_beta`` stay each rank's own sums: the gradient
all-reduce of :mod:`minigrad.distributed.gradients` averages them with all the other gradients. That is
three small all-reduces of ``C`` numbers per layer and step (two forward, one backward).

The layer keeps BatchNorm's parameters and buffers under the same names, so a state dict (a checkpoint)
moves between ``BatchNorm2d`` and ``SyncBatchNorm`` unchanged. In eval mode it is plain batch norm with
the running statistics (no communication). In a world of one rank it computes what ``BatchNorm2d`` does.
Every rank must call it the same number of times in the same order (it is a collective).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

from minigrad import backend
from minigrad.autograd import Function
from minigrad.distributed.world import World, get_world
from minigrad.nn.layers import BatchNormBase
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


@dataclass(frozen=True)
class SyncBatchNormContext:
    """What the backward needs: centered (N, C, S), the input minus the mean of every rank's batch;
    inv_std (C,); gamma (C,) or None; input_shape, the shape of x."""

    centered: Any
    inv_std: Any
    gamma: Any
    input_shape: tuple


def per_channel(values: Any) -> Any:
    """(C,) values as (C, 1), to broadcast against (N, C, S)."""
    return values[:, None]


class SyncBatchNormFunction(Function):
    """Batch norm with statistics summed over the ranks of ``world``; x: (N, C, ...), gamma, beta: (C,) or None."""

    def forward(self, x: Any, gamma: Any, beta: Any, *, running_mean: Any, running_var: Any, training: bool,
                momentum: float | None, eps: float, num_batches_tracked: int, world: World) -> Any:
        xp = backend.xp_of(x)
        batch, channels = x.shape[:2]
        x3 = x.reshape(batch, channels, -1)  # (N, C, S) as in the one-process kernel
        spatial = x3.shape[2]
        # The sums and this rank's count travel in one float64 message; float64 keeps the count exact.
        local = xp.concatenate([xp.einsum("ncs->c", x3).astype(numpy.float64),
                                xp.asarray([batch * spatial], dtype=numpy.float64)])
        totals = world.all_reduce(local)
        count = float(totals[channels])
        if count <= 1:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel when training, got {int(count)} over "
                f"{world.size} rank(s) (this rank's input {tuple(x.shape)}); use a larger batch, or call eval()")
        mean = (totals[:channels] / count).astype(x.dtype)
        centered = x3 - per_channel(mean)
        squares = world.all_reduce(xp.einsum("ncs,ncs->c", centered, centered).astype(numpy.float64))
        var = (squares / count).astype(x.dtype)  # biased: divides by m, as the one-process kernel
        if training and running_mean is not None:
            factor = 1.0 / num_batches_tracked if momentum is None else momentum
            running_mean *= 1 - factor
            running_mean += factor * mean
            running_var *= 1 - factor
            running_var += factor * (count / (count - 1)) * var  # unbiased, over all m values
        inv_std = 1 / xp.sqrt(var + eps)
        scale = inv_std if gamma is None else gamma * inv_std
        out = centered * per_channel(scale)
        if beta is not None:
            out += per_channel(beta)
        self.ctx = SyncBatchNormContext(centered, inv_std, gamma, tuple(x.shape))
        self.count, self.world = count, world
        return out.reshape(x.shape)

    def backward(self, grad: Any) -> tuple:
        need_x, need_gamma, need_beta = self.needs_input_grad
        ctx = self.ctx
        xp = backend.xp_of(grad)
        dy = grad.reshape(ctx.centered.shape)
        channels = ctx.centered.shape[1]
        sum_dy = xp.einsum("ncs->c", dy)  # this rank's sums
        sum_dy_x_hat = xp.einsum("ncs,ncs->c", dy, ctx.centered) * ctx.inv_std
        grad_x = None
        if need_x:
            totals = self.world.all_reduce(xp.concatenate([sum_dy, sum_dy_x_hat]))  # over all m values
            all_dy, all_dy_x_hat = totals[:channels], totals[channels:]
            scale = ctx.inv_std if ctx.gamma is None else ctx.gamma * ctx.inv_std
            grad_x = dy * per_channel(scale)
            grad_x -= ctx.centered * per_channel(scale * ctx.inv_std * all_dy_x_hat / self.count)
            grad_x -= per_channel(scale * all_dy / self.count)
            grad_x = grad_x.reshape(ctx.input_shape)
        return grad_x, sum_dy_x_hat if need_gamma else None, sum_dy if need_beta else None


class SyncBatchNorm(BatchNormBase):
    """Batch norm over the whole batch of every rank: input (N, C), (N, C, L) or (N, C, H, W).

    SyncBatchNorm(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, world=None)

    Parameters, buffers and their names are BatchNorm's (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``). ``world`` defaults to the process's
    (:func:`minigrad.distributed.get_world`), looked up at each call.
    """

    expected_ndim = (2, 3, 4)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, world: World | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.world = world

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and self.running_mean is not None:
            return super().forward(x)  # running statistics: nothing to share
        self.check_input(x)
        updating = self.training and self.track_running_stats
        batches = int(self.num_batches_tracked.item()) + 1 if updating else 1
        out = SyncBatchNormFunction.apply(
            x, self.weight, self.bias,
            running_mean=self.running_mean.data if updating else None,
            running_var=self.running_var.data if updating else None,
            training=self.training, momentum=self.momentum, eps=self.eps, num_batches_tracked=batches,
            world=self.world or get_world(),
        )
        if updating:
            self.num_batches_tracked.data += 1
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, world: World | None = None) -> Module:
        """PyTorch's spelling of :func:`convert_sync_batchnorm`."""
        return convert_sync_batchnorm(module, world)


def convert_sync_batchnorm(module: Module, world: World | None = None) -> Module:
    """Replace every BatchNorm1d/2d in ``module`` (or ``module`` itself) by a SyncBatchNorm; returns the result.

    The new layers take over the *same* Parameter and buffer objects (an optimizer built before the
    conversion still trains them) and the training/eval mode; the state-dict keys do not change.
    """
    return _convert(module, world, {})


def _convert(module: Module, world: World | None, done: dict[int, Module]) -> Module:
    if id(module) in done:  # one layer used in two places stays one layer
        return done[id(module)]
    result = module
    if isinstance(module, BatchNormBase) and not isinstance(module, SyncBatchNorm):
        result = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, world)
        for name in ("weight", "bias"):
            result.register_parameter(name, module._parameters[name])
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            result.register_buffer(name, module._buffers[name])
        result.train(module.training)
    else:
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = _convert(child, world, done)
    done[id(module)] = result
    return result
