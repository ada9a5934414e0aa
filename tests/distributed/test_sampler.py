"""DistributedSampler follows PyTorch's rules (padding, drop_last, interleaving, set_epoch), and with the
DataLoader the ranks' k-th batches together are the one-process k-th batch, epoch after epoch and on resume."""

from __future__ import annotations

import numpy as np
import pytest

from minigrad import data
from minigrad.distributed import DistributedSampler


def dataset(count: int) -> data.ArrayDataset:
    return data.ArrayDataset(np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1) / 255,
                             np.arange(count) % 7)


CASES = [(10, 3, False), (10, 3, True), (9, 3, False), (2, 5, False), (7, 2, True), (1, 4, False), (12, 1, False)]


@pytest.mark.parametrize(("count", "replicas", "drop_last"), CASES)
def test_unshuffled_shards_are_torchs(torch, count, replicas, drop_last):
    from torch.utils.data.distributed import DistributedSampler as TorchSampler

    for rank in range(replicas):
        ours = DistributedSampler(dataset(count), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(range(count), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs), (count, replicas, rank, drop_last)


@pytest.mark.parametrize(("count", "replicas", "drop_last"), CASES)
def test_shuffled_shards_interleave_one_padded_permutation(count, replicas, drop_last):
    samplers = [DistributedSampler(dataset(count), replicas, rank, seed=4, drop_last=drop_last)
                for rank in range(replicas)]
    for sampler in samplers:
        sampler.set_epoch(2)
    permutation = np.random.default_rng(4 + 2).permutation(count)
    total = samplers[0].total_size
    padded = np.tile(permutation, -(-total // count))[:total]  # repeated from the start, as torch pads
    interleaved = np.empty(total, dtype=np.int64)
    for rank, sampler in enumerate(samplers):
        assert len(sampler) == total // replicas
        interleaved[rank::replicas] = sampler.indices()
    np.testing.assert_array_equal(interleaved, padded)
    if count >= replicas and not drop_last:  # disjoint but for the padding
        assert len(set(interleaved[:count].tolist())) == count


def test_set_epoch_reshuffles_and_the_same_epoch_repeats():
    sampler = DistributedSampler(dataset(50), 2, 1, seed=0)
    first = sampler.indices()
    sampler.set_epoch(1)
    second = sampler.indices()
    assert not np.array_equal(first, second)
    sampler.set_epoch(0)
    np.testing.assert_array_equal(sampler.indices(), first)


def test_the_ranks_batches_together_are_the_one_process_batches_every_epoch():
    train_set, ranks, per_rank = dataset(36), 3, 4
    one = data.DataLoader(train_set, ranks * per_rank, sampler=DistributedSampler(train_set, 1, 0, seed=9),
                          drop_last=True)
    shards = [data.DataLoader(train_set, per_rank, sampler=DistributedSampler(train_set, ranks, r, seed=9),
                              drop_last=True) for r in range(ranks)]
    assert len(one) == len(shards[0]) == 3
    for _ in range(3):  # the loaders call set_epoch themselves: a new order every epoch
        parts = [[images.numpy().ravel() * 255 for images, _ in loader] for loader in shards]
        ones = [images.numpy().ravel() * 255 for images, _ in one]
        for step, batch in enumerate(ones):
            together = np.empty_like(batch)
            for rank in range(ranks):
                together[rank::ranks] = parts[rank][step]
            np.testing.assert_array_equal(together, batch)
    assert shards[0].sampler.epoch == 2


def test_a_loader_resumed_mid_epoch_finishes_that_epoch_in_the_same_order():
    train_set = dataset(40)
    loader = data.DataLoader(train_set, 4, sampler=DistributedSampler(train_set, 2, 1, seed=3), drop_last=True)
    list(loader)  # epoch 0
    batches = iter(loader)  # epoch 1
    next(batches)
    state = loader.state_dict()
    rest = [labels.numpy() for _, labels in batches]
    resumed = data.DataLoader(train_set, 4, sampler=DistributedSampler(train_set, 2, 1, seed=3), drop_last=True)
    resumed.load_state_dict(state)
    again = [labels.numpy() for _, labels in resumed]
    assert resumed.sampler.epoch == 1 and len(again) == len(rest) == 4
    for a, b in zip(again, rest):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"invalid rank 3, rank should be in the interval \[0, 2\]"):
        DistributedSampler(dataset(10), 3, 3)
    with pytest.raises(ValueError, match="num_replicas must be a positive int"):
        DistributedSampler(dataset(10), 0, 0)
    with pytest.raises(ValueError, match="the dataset is empty"):
        DistributedSampler(dataset(0), 2, 0)
    with pytest.raises(ValueError, match="cannot give each of 4 ranks one with drop_last=True"):
        DistributedSampler(dataset(3), 4, 0, drop_last=True)
    with pytest.raises(ValueError, match="sampler and shuffle=True exclude each other"):
        data.DataLoader(dataset(10), 2, shuffle=True, sampler=DistributedSampler(dataset(10), 2, 0))


def test_world_defaults_are_rank_0_of_1_without_mpi(single_world):
    sampler = DistributedSampler(dataset(5))
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    assert sorted(sampler) == list(range(5))
