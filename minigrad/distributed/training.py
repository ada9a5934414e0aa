"""``mpiexec -n N python -m minigrad train --distributed [--sync-bn]``: one training run over N ranks.

    mpiexec -n 2 python -m minigrad train --distributed --sync-bn --threads 1     # 2 processes, 1 core each
    mpiexec -n 2 python -m minigrad train --distributed --resume                   # the same world size only

What changes against ``minigrad train`` (the loop itself is :func:`minigrad.train.fit`, unchanged):

- ``--batch-size`` stays the *global* batch: each rank trains on ``batch_size / N`` samples per step, its
  shard from a :class:`~minigrad.distributed.DistributedSampler`, and the gradients are averaged over the
  ranks (:class:`~minigrad.distributed.DistributedOptimizer`) before every update;
- ``--sync-bn`` turns every batch norm into a :class:`~minigrad.distributed.SyncBatchNorm`. Then, with
  ``--dropout 0 --no-augment``, N ranks end with the weights of one process (``--distributed`` without
  mpiexec) with the same global batch, up to float32 rounding. Without it each rank normalises with its
  own shard's statistics, and its running statistics follow its own shard: at the end of each epoch (and
  at a checkpoint) every rank takes rank 0's, as PyTorch's DDP broadcasts rank 0's buffers;
- each rank augments its shard with its own generator (seeded from ``seed`` and its rank) and draws its
  own dropout masks; the test set is split between the ranks and the results summed;
- only rank 0 prints and writes ``metrics.csv``, ``curves.png``, ``config.json`` and ``checkpoint.npz``. The
  checkpoint holds every rank's loader position and random state, so ``--resume`` continues bit-for-bit,
  under the same number of ranks (another number is refused: the shards would change);
- an error on any rank ends the whole job (``MPI_Abort``) with a message naming the rank; a collective that
  waits longer than ``--collective-timeout`` seconds names the ranks that never reached it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy

from minigrad import backend
from minigrad.builders import DatasetUnavailable, build_datasets, build_model, build_optimizer, build_scheduler
from minigrad.checkpoint import CheckpointError, EpochProgress, load_checkpoint, restore
from minigrad.data import DataLoader
from minigrad.distributed.gradients import DistributedOptimizer, broadcast_buffers, broadcast_parameters
from minigrad.distributed.sampler import DistributedSampler
from minigrad.distributed.sync_batchnorm import convert_sync_batchnorm
from minigrad.distributed.world import DistributedError, World, init
from minigrad.nn.module import Module
from minigrad.train import (
    TrainConfig,
    TrainingDiverged,
    build_loaders,
    evaluate,
    fit,
    resumed_config,
    set_blas_threads,
)


def add_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """The options of ``minigrad train`` for data-parallel runs."""
    parser.add_argument("--distributed", action="store_true",
                        help="one rank of a data-parallel run: start with mpiexec -n N (needs minigrad[mpi]; "
                             "default: one process)")
    parser.add_argument("--sync-bn", action="store_true",
                        help="with --distributed: batch norm statistics over the whole batch of every rank "
                             "(default: each rank's own shard)")
    parser.add_argument("--collective-timeout", type=float, default=defaults.collective_timeout,
                        help="with --distributed: seconds a rank waits for the others before the job is ended")


class RankCoordinator:
    """What :func:`minigrad.train.fit` asks of the ranks of a data-parallel run (its ``coordinator``)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on at least one."""
        return bool(self.world.all_reduce(numpy.array([int(flag)]), "max")[0])

    def totals(self, state: EpochProgress) -> EpochProgress:
        """An epoch's sums over the ranks; its time is the slowest rank's."""
        sums = self.world.all_reduce(numpy.array([state.loss_sum, state.correct, state.seen], dtype=numpy.float64))
        seconds = self.world.all_reduce(numpy.array([state.seconds]), "max")[0]
        return EpochProgress(float(sums[0]), int(round(sums[1])), int(round(sums[2])), float(seconds))

    def evaluate(self, model: Module, loader: DataLoader) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole test set: rank 0's running statistics first, then each rank
        evaluates its part (``loader``) and the sums are added up."""
        broadcast_buffers(model, 0, self.world)
        loss, accuracy = evaluate(model, loader)
        count = len(loader.sampler)
        sums = self.world.all_reduce(numpy.array([loss * count, accuracy * count, count], dtype=numpy.float64))
        return float(sums[0] / max(sums[2], 1)), float(sums[1] / max(sums[2], 1))

    def checkpoint_loader(self, model: Module, loader: DataLoader) -> _EveryRank:
        """Rank 0's running statistics on every rank, and every rank's loader position and random state, in
        the form a checkpoint stores as its loader state."""
        broadcast_buffers(model, 0, self.world)
        states = self.world.all_gather_object({"loader": loader.state_dict(), "rng": backend.get_rng_state()})
        return _EveryRank({"world_size": self.world.size, "ranks": [state["loader"] for state in states],
                           "rng": [state["rng"] for state in states]})


class _EveryRank:
    """The loader state of a data-parallel checkpoint: ``{"world_size", "ranks": [loader state per rank],
    "rng": [random state per rank]}``."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def state_dict(self) -> dict:
        return self.state


class _SameOnEveryRank(Exception):
    """An error every rank raises at the same point (decided together): reported once, by rank 0."""


def check_world_size(checkpoint: dict[str, Any], world_size: int, out: Path) -> None:
    """Refuse a checkpoint of a single-process run, or of a data-parallel run over another number of ranks."""
    loader = checkpoint["meta"].get("loader") or {}
    saved = loader.get("world_size")
    path = out / "checkpoint.npz"
    if saved is None:
        raise CheckpointError(f"{path} was written by a run without --distributed; resume it the same way: "
                              f"python -m minigrad train --resume --out {out}")
    if saved != world_size:
        raise CheckpointError(
            f"{path} was written by a data-parallel run over {saved} rank(s), and this run has {world_size}: the "
            f"shards of every batch and each rank's random state belong to that number. Resume with mpiexec -n "
            f"{saved} python -m minigrad train --distributed --resume --out {out}, or start a new run in another "
            f"--out folder")


def run_distributed(config: TrainConfig) -> list[dict[str, float]]:
    """:func:`minigrad.train.run` for one rank of a data-parallel run; returns the history on rank 0 and
    ``[]`` on the other ranks.

    An error decided by every rank alike (a checkpoint refused, a batch that does not split) is raised on
    rank 0 and ends the other ranks with ``SystemExit(1)``; any other error ends the whole job through
    ``MPI_Abort`` after printing it with the rank's number.
    """
    world = init(config.collective_timeout, use_mpi=True)
    try:
        return _train(world, config)
    except _SameOnEveryRank as error:
        if world.rank == 0:
            raise DistributedError(str(error)) from None
        raise SystemExit(1) from None
    except Exception as error:  # (Ctrl-C is no Exception: the ranks agreed on the step to stop after, see fit)
        if world.size == 1:
            raise
        known = isinstance(error, (CheckpointError, DistributedError, TrainingDiverged, DatasetUnavailable))
        details = "" if known else "\n" + traceback.format_exc()
        print(f"minigrad train: rank {world.rank} of {world.size}: {error}{details}\nminigrad train: ending every "
              f"rank of the job", file=sys.stderr, flush=True)
        world.abort(1)
        raise


def _train(world: World, config: TrainConfig) -> list[dict[str, float]]:
    rank, size = world.rank, world.size
    out = Path(config.out)
    checkpoint = None
    if config.resume:  # rank 0 reads the file (other machines may not have it) and sends it to the others
        problem = None
        if rank == 0:
            try:
                checkpoint = load_checkpoint(out / "checkpoint.npz")
                check_world_size(checkpoint, size, out)
                resumed_config(config, checkpoint)
            except CheckpointError as error:
                problem = str(error)
        problem = world.broadcast_object(problem)
        if problem:
            raise _SameOnEveryRank(problem)
        checkpoint = world.broadcast_object(checkpoint)
        config = resumed_config(config, checkpoint)
    if config.epochs is None:
        config = replace(config, epochs=TrainConfig.epochs)
    if config.batch_size % size:
        below, above = config.batch_size - config.batch_size % size, config.batch_size + size - config.batch_size % size
        raise _SameOnEveryRank(f"--batch-size {config.batch_size} is the global batch and does not split evenly over "
                               f"{size} ranks; use a multiple of {size} (e.g. {below or above} or {above})")
    threads_note = set_blas_threads(config)
    backend.manual_seed(config.seed)
    if rank == 0:  # rank 0 first: it may download the data set, which the others then find on disk
        train_set, test_set = build_datasets(config)
    world.barrier(timeout=None)
    if rank != 0:
        train_set, test_set = build_datasets(config)
    train_loader, test_loader = build_loaders(config, train_set, test_set)
    sampler = DistributedSampler(train_set, size, rank, shuffle=True, seed=config.seed)
    rank_seed = int(numpy.random.SeedSequence([config.seed, rank]).generate_state(1)[0])
    train_loader = _with_sampler(train_loader, sampler, config.batch_size // size, seed=rank_seed)
    test_loader = _with_sampler(test_loader, range(rank, len(test_set), size), test_loader.batch_size, seed=None)
    model = build_model(config, num_classes=len(train_set.classes))  # the same weights on every rank (seeded)
    if config.sync_bn:
        model = convert_sync_batchnorm(model, world)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, len(train_loader))
    backend.manual_seed(rank_seed)  # each rank its own dropout masks
    start_epoch, history, partial = 0, [], None
    if checkpoint is not None:
        start_epoch, history, partial = restore(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        state = checkpoint["meta"]["loader"]
        train_loader.load_state_dict(state["ranks"][rank])
        backend.set_rng_state(state["rng"][rank])
        if partial is not None and rank != 0:  # the epoch's sums so far are over every rank: rank 0 carries them
            partial = EpochProgress()
    broadcast_parameters(model, 0, world)  # the same start everywhere, whatever each rank built
    pids = world.all_gather_object(os.getpid())
    progress = config.progress and rank == 0
    if progress:
        if checkpoint is not None:
            print(f"resuming from {out / 'checkpoint.npz'} after {start_epoch} epoch(s)")
        params = sum(p.size for p in model.parameters())
        print(f"GoogLeNet ({config.variant}, {config.stem} stem, width {config.width}): {params:,} parameters; "
              f"{config.dataset}: {len(train_set)} train / {len(test_set)} test images; device {config.device}"
              f"{threads_note}\ndata-parallel over {size} rank(s) (PIDs {', '.join(map(str, pids))}): "
              f"{config.batch_size // size} images per rank per step, batch norm "
              f"{'synchronised (SyncBatchNorm)' if config.sync_bn else 'per rank'}")
    history = fit(model, train_loader, test_loader, DistributedOptimizer(optimizer, world), scheduler,
                  epochs=config.epochs, aux_weight=config.aux_weight, label_smoothing=config.label_smoothing,
                  out_dir=out if rank == 0 else None, config=config, history=history, start_epoch=start_epoch,
                  epoch_progress=partial, progress=progress, coordinator=RankCoordinator(world))
    return history if rank == 0 else []


def _with_sampler(loader: DataLoader, sampler: Any, batch_size: int, seed: int | None) -> DataLoader:
    """``loader`` (as :func:`minigrad.train.build_loaders` made it: its transform, device, drop_last) over
    ``sampler``'s indices in batches of ``batch_size``."""
    return DataLoader(loader.dataset, batch_size, drop_last=loader.drop_last, transform=loader.transform, seed=seed,
                      device=loader.device, sampler=sampler)
