"""Keeping every rank's copy of the model the same: one broadcast at the start, one averaged gradient per step.

    broadcast_parameters(model)                      # rank 0's weights and buffers on every rank
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1))
    loss.backward(); optimizer.step()                # averages .grad over the ranks, then SGD's step

Why averaging is right: rank ``r`` computes the gradient of the mean loss over its shard of ``b`` samples,
``g_r = (1/b) sum_{i in shard r} grad l_i``. With ``N`` shards of equal size the mean of the ``g_r`` is
``(1/(N b)) sum_i grad l_i``, the gradient of the mean loss over the whole batch of ``N b`` samples. So N
ranks that start equal and apply the same averaged gradient stay equal, step after step, and follow the
trajectory of one process training on the whole batch (up to the order of the additions).

The gradients travel in **buckets**: consecutive parameters (in ``model.parameters()`` order, the same on
every rank) are copied into one flat buffer of at most ``bucket_bytes`` (25 MiB, PyTorch DDP's default
``bucket_cap_mb``), and each buffer is summed with one all-reduce. A few large messages cost far less than
hundreds of small ones (each message pays a fixed latency), and a fixed layout in a fixed order means the
sums never depend on which rank finished its backward first. DDP and Horovod go further and start each
bucket's all-reduce while the backward pass is still computing the next one; here the all-reduce comes
after the backward, which is simpler to follow and gives the same numbers.

This is ChainerMN's ``create_multi_node_optimizer`` and Horovod's ``DistributedOptimizer``: the training
loop stays as it is, and only the optimizer knows there are other ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy

from minigrad import backend
from minigrad.distributed.world import DistributedError, World, get_world
from minigrad.nn.module import Module
from minigrad.tensor import Tensor

DEFAULT_BUCKET_BYTES = 25 * 2**20


def broadcast_parameters(model: Module, root: int = 0, world: World | None = None) -> None:
    """Overwrite every parameter and buffer of ``model`` with rank ``root``'s, in state-dict order.

    Call it once after building the model (and after loading a checkpoint on ``root``): every rank then
    starts from the same weights, whatever its own random initialisation drew.
    """
    world = world or get_world()
    if world.size == 1:
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data[...] = world.broadcast(tensor.data, root)


def broadcast_buffers(model: Module, root: int = 0, world: World | None = None) -> None:
    """Overwrite every buffer (batch norm's running statistics) with rank ``root``'s."""
    world = world or get_world()
    if world.size == 1:
        return
    for tensor in model.buffers():
        tensor.data[...] = world.broadcast(tensor.data, root)


def bucket_plan(parameters: Sequence[Tensor], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list[list[int]]:
    """Group parameter indices into buckets: consecutive, one dtype and device each, at most ``bucket_bytes``
    (a parameter larger than that gets a bucket of its own). Depends only on the parameters' order, shapes
    and dtypes, so every rank makes the same plan.

    >>> bucket_plan([minigrad.zeros(1000), minigrad.zeros(1000), minigrad.zeros(10)], bucket_bytes=6000)
    [[0], [1, 2]]
    """
    if bucket_bytes < 1:
        raise ValueError(f"bucket_plan: bucket_bytes must be positive, got {bucket_bytes}")
    buckets: list[list[int]] = []
    kind, filled = None, 0
    for index, parameter in enumerate(parameters):
        size = parameter.size * parameter.dtype.itemsize
        this_kind = (str(parameter.dtype), parameter.device)
        if not buckets or this_kind != kind or filled + size > bucket_bytes:
            buckets.append([])
            kind, filled = this_kind, 0
        buckets[-1].append(index)
        filled += size
    return buckets


def allreduce_gradients(
    parameters: Iterable[Tensor], world: World | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> int:
    """Replace each parameter's ``.grad`` by its mean over all ranks, bucket by bucket; returns the number of
    all-reduces of gradients made.

    Parameters whose ``.grad`` is None on every rank are left out; one that has a gradient on some ranks and
    not on others is an error (the ranks ran different graphs), found by a first small all-reduce.
    """
    world = world or get_world()
    parameters = list(parameters)
    if world.size == 1:
        return 0
    has_grad = numpy.array([p.grad is not None for p in parameters], dtype=numpy.int64)
    ranks_with_grad = world.all_reduce(has_grad)
    uneven = numpy.flatnonzero((ranks_with_grad > 0) & (ranks_with_grad < world.size))
    if uneven.size:
        raise DistributedError(
            f"allreduce_gradients: parameters {uneven[:10].tolist()} (shapes "
            f"{[parameters[i].shape for i in uneven[:10]]}) have a gradient on {ranks_with_grad[uneven[:10]].tolist()} "
            f"of {world.size} ranks; every rank must run the same forward and backward (same mode, same layers)")
    with_grad = [p for p in parameters if p.grad is not None]
    buckets = bucket_plan(with_grad, bucket_bytes)
    for bucket in buckets:
        grads = [with_grad[i].grad.data for i in bucket]
        xp = backend.xp_of(grads[0])
        flat = xp.concatenate([grad.reshape(-1) for grad in grads])  # one buffer, one message
        flat = world.all_reduce(flat)
        flat /= world.size
        offset = 0
        for grad in grads:
            grad[...] = flat[offset : offset + grad.size].reshape(grad.shape)
            offset += grad.size
    return len(buckets)


class DistributedOptimizer:
    """An optimizer whose ``step()`` first averages every gradient over the ranks, then steps as usual.

    DistributedOptimizer(optimizer, world=None, bucket_bytes=25 MiB)

    Everything else (``param_groups``, ``zero_grad``, ``state_dict``, ``load_state_dict``, ``state``) is the
    wrapped optimizer's, so schedulers (built on the wrapped one) and checkpoints work unchanged.
    """

    def __init__(self, optimizer: Any, world: World | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.optimizer = optimizer
        self.world = world or get_world()
        self.bucket_bytes = bucket_bytes

    def parameters(self) -> list[Tensor]:
        """Every parameter of every group, in the wrapped optimizer's order (the same on every rank)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def step(self) -> None:
        allreduce_gradients(self.parameters(), self.world, self.bucket_bytes)
        self.optimizer.step()

    def __getattr__(self, name: str) -> Any:  # only reached for names this class does not define
        if name == "optimizer":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, {self.world!r})"
