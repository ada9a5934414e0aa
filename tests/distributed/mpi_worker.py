"""What each rank runs in tests/distributed/test_mpiexec.py: ``mpiexec -n N python -m tests.distributed.mpi_worker
SCENARIO OUT_DIR``. Each rank writes what it saw to ``OUT_DIR/<scenario>_rank<r>.npz``; the tests compare.

Also imported by the tests (without MPI) for the model, the data and the loop, so that the one-process
references run exactly the code the ranks run, with a world of one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import minigrad
import minigrad.functional as F
from minigrad import data, distributed, nn, optim

GLOBAL_BATCH = 12  # splits over 2 and 3 ranks
SAMPLES = 48  # 4 steps per epoch
EPOCHS = 2
SEED = 5


def small_model() -> nn.Module:
    """Conv, batch norm (2-D and 1-D), ReLU, average pool, linear: every kind of layer a rank must agree on."""
    minigrad.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(8), nn.Linear(8, 5),
    )
    return model.double()


def small_dataset() -> data.ArrayDataset:
    rng = np.random.default_rng(0)
    return data.ArrayDataset(rng.random((SAMPLES, 3, 8, 8), dtype=np.float32), rng.integers(0, 5, SAMPLES))


def train(model: nn.Module, optimizer, loader: data.DataLoader, shards: int = 1) -> list[float]:
    """EPOCHS epochs of SGD in float64; ``shards > 1`` splits each batch as that many ranks would
    (interleaved) and averages their losses: one process computing what ranks with per-rank batch norm do."""
    losses = []
    for _ in range(EPOCHS):
        for images, labels in loader:
            x, y = images.numpy().astype(np.float64), labels.numpy()
            pieces = [F.cross_entropy(model(minigrad.tensor(x[r::shards])), minigrad.tensor(y[r::shards]))
                      for r in range(shards)]
            loss = pieces[0]
            for piece in pieces[1:]:
                loss = loss + piece
            loss = loss * (1.0 / shards)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def make_optimizer(model: nn.Module) -> optim.SGD:
    return optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-3)


def equality(world: distributed.World, out: Path) -> None:
    """Train the small model with and without SyncBatchNorm; save each rank's weights and buffers. Also
    every collective's result."""
    dataset = small_dataset()
    results: dict[str, np.ndarray] = {}
    for name, sync in (("sync", True), ("plain", False)):
        model = small_model()
        if sync:
            model = distributed.convert_sync_batchnorm(model)
        distributed.broadcast_parameters(model)
        optimizer = distributed.DistributedOptimizer(make_optimizer(model))
        sampler = distributed.DistributedSampler(dataset, seed=SEED)
        loader = data.DataLoader(dataset, GLOBAL_BATCH // world.size, sampler=sampler, drop_last=True)
        results[f"{name}/losses"] = np.array(train(model, optimizer, loader))
        results.update({f"{name}/{key}": value for key, value in model.state_dict().items()})
    local = np.arange(5.0) * (world.rank + 1) - world.rank
    for op in distributed.world.REDUCE_OPS:
        results[f"all_reduce/{op}"] = world.all_reduce(local, op)
    results["broadcast"] = world.broadcast(local, root=world.size - 1)
    results["broadcast_object"] = np.array(world.broadcast_object({"from": world.rank}, root=1)["from"])
    results["all_gather_object"] = np.array([item["rank"] for item in world.all_gather_object({"rank": world.rank})])
    np.savez(out / f"equality_rank{world.rank}.npz", **results)


def hang(world: distributed.World, out: Path) -> None:
    """Rank 1 never comes to the second all-reduce; the others must give up and name it."""
    world.all_reduce(np.ones(3))
    if world.rank == 1:
        time.sleep(60)
    _report(world, lambda: world.all_reduce(np.ones(3)))


def mismatch(world: distributed.World, out: Path) -> None:
    """Rank 1 calls a broadcast where the others call an all-reduce."""
    _report(world, lambda: world.broadcast(np.ones(3)) if world.rank == 1 else world.all_reduce(np.ones(3)))


def _report(world: distributed.World, collective) -> None:
    try:
        collective()
    except distributed.CollectiveTimeout as error:
        print(f"rank {world.rank}: {error}", flush=True)
        world.abort(1)


SCENARIOS = {"equality": equality, "hang": hang, "mismatch": mismatch}

if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    if scenario != "equality":
        distributed.world.GRACE_SECONDS = 1.0  # the time the other ranks get to answer, shortened for the test
    world = distributed.init(timeout=1.0 if scenario != "equality" else 60.0, use_mpi=True)
    SCENARIOS[scenario](world, out_dir)
