"""Data-parallel training on several processes or machines, over MPI (mpi4py), the way ChainerMN did it.

    mpiexec -n 4 python -m minigrad train --distributed --sync-bn      # the command line
    mpiexec -n 4 python my_training.py                                  # or your own loop:

    from minigrad import distributed
    world = distributed.init()                                          # rank 0..3 of 4 (1 of 1 without MPI)
    model = distributed.convert_sync_batchnorm(build_model())
    distributed.broadcast_parameters(model)                             # every rank starts from rank 0's weights
    optimizer = distributed.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1))
    sampler = distributed.DistributedSampler(train_set, seed=0)         # this rank's shard, reshuffled per epoch
    loader = DataLoader(train_set, batch_size=64 // world.size, sampler=sampler, drop_last=True)
    for images, labels in loader:                                       # the usual loop, unchanged
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(); loss.backward(); optimizer.step()        # step() averages the gradients first

Every rank holds the whole model and trains on its own shard of each batch; after the backward pass the
gradients are averaged over the ranks, so every copy takes the same step, the step one process would take on
the whole batch. Batch norm is the one layer that looks across a batch, hence :class:`SyncBatchNorm`.

- :mod:`~minigrad.distributed.world`: :func:`init`, :func:`rank`, :func:`world_size`, :func:`all_reduce`,
  the :class:`World` and its collectives with timeouts that name a missing rank;
- :mod:`~minigrad.distributed.gradients`: :func:`broadcast_parameters`, :func:`allreduce_gradients` (bucketed,
  fixed order), :class:`DistributedOptimizer`;
- :mod:`~minigrad.distributed.sampler`: :class:`DistributedSampler` (PyTorch's rules);
- :mod:`~minigrad.distributed.sync_batchnorm`: :class:`SyncBatchNorm`, :func:`convert_sync_batchnorm`;
- :mod:`~minigrad.distributed.training`: what ``minigrad train --distributed`` adds to a run.
"""

from minigrad.distributed.gradients import (
    DistributedOptimizer,
    allreduce_gradients,
    broadcast_buffers,
    broadcast_parameters,
    bucket_plan,
)
from minigrad.distributed.sampler import DistributedSampler
from minigrad.distributed.sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from minigrad.distributed.world import (
    CollectiveTimeout,
    DistributedError,
    MPIUnavailable,
    World,
    all_reduce,
    get_world,
    init,
    rank,
    world_size,
)

__all__ = [
    "CollectiveTimeout", "DistributedError", "DistributedOptimizer", "DistributedSampler", "MPIUnavailable",
    "SyncBatchNorm", "World", "all_reduce", "allreduce_gradients", "broadcast_buffers", "broadcast_parameters",
    "bucket_plan", "convert_sync_batchnorm", "get_world", "init", "rank", "world_size",
]
