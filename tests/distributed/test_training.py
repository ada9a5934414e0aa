"""What ``minigrad train --distributed`` adds, without MPI: its options, the message without mpi4py, the
world-size check of a resumed run, the batch that must split, and the coordinator of a world of one rank.
(Runs under mpiexec: tests/distributed/test_mpiexec.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from minigrad import data
from minigrad.checkpoint import CheckpointError, EpochProgress
from minigrad.cli import build_parser, main
from minigrad.distributed import training
from minigrad.distributed import world as world_module
from minigrad.train import TrainConfig
from tests.distributed.stand_in import StandInWorld


def test_the_options_reach_the_config():
    args = build_parser().parse_args(["train", "--distributed", "--sync-bn", "--collective-timeout", "30"])
    assert (args.distributed, args.sync_bn, args.collective_timeout) == (True, True, 30.0)
    defaults = build_parser().parse_args(["train"])
    assert (defaults.distributed, defaults.sync_bn, defaults.collective_timeout) == (False, False, 300.0)


def test_without_mpi4py_distributed_says_what_to_install(monkeypatch, capsys, single_world):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(world_module, "_world", None)
    assert main(["train", "--distributed", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("minigrad train: data-parallel training needs mpi4py") and "minigrad[mpi]" in error, error


def checkpoint_with(loader_state) -> dict:
    return {"meta": {"loader": loader_state}}


def test_a_checkpoint_of_another_world_size_is_refused():
    out = Path("runs/x")
    with pytest.raises(CheckpointError, match=r"over 2 rank\(s\), and this run has 3.*mpiexec -n 2 python -m minigrad "
                                              r"train --distributed --resume --out runs/x"):
        training.check_world_size(checkpoint_with({"world_size": 2}), 3, out)
    with pytest.raises(CheckpointError, match="written by a run without --distributed"):
        training.check_world_size(checkpoint_with({"epoch": 1, "generator": {}}), 2, out)
    training.check_world_size(checkpoint_with({"world_size": 3}), 3, out)  # the same size: no complaint


def test_the_global_batch_must_split_over_the_ranks():
    with pytest.raises(training._SameOnEveryRank, match=r"--batch-size 64 .* over 3 ranks; use a multiple of 3 "
                                                        r"\(e.g. 63 or 66\)"):
        training._train(StandInWorld(3), TrainConfig(batch_size=64))


def test_the_coordinator_of_one_rank_changes_nothing():
    coordinator = training.RankCoordinator(world_module.World())
    state = EpochProgress(loss_sum=3.5, correct=2, seen=8, seconds=1.25)
    assert coordinator.totals(state) == state
    assert coordinator.any_rank(True) and not coordinator.any_rank(False)
    from minigrad import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    test_set = data.ArrayDataset(np.random.default_rng(0).random((10, 1, 2, 2), dtype=np.float32), np.arange(10) % 3)
    loader = data.DataLoader(test_set, 4, sampler=range(10))
    from minigrad.train import evaluate

    assert coordinator.evaluate(model, loader) == pytest.approx(evaluate(model, loader), rel=1e-12)
    saved = coordinator.checkpoint_loader(model, loader).state_dict()
    assert saved["world_size"] == 1 and saved["ranks"] == [loader.state_dict()] and len(saved["rng"]) == 1


def test_two_stand_in_ranks_add_up_the_epoch_and_take_the_slowest_time():
    coordinator = training.RankCoordinator(StandInWorld(2))
    coordinator.world.all_reduce = lambda array, op="sum": array * 2 if op == "sum" else array + 1
    assert coordinator.totals(EpochProgress(1.5, 3, 4, 2.0)) == EpochProgress(3.0, 6, 8, 3.0)
