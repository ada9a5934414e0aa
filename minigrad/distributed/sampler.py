"""DistributedSampler: which samples each rank trains on, with PyTorch's rules.

    sampler = DistributedSampler(train_set, num_replicas=4, rank=1, seed=0)
    loader = DataLoader(train_set, batch_size=16, sampler=sampler, drop_last=True)   # 16 per rank, 64 in all

One permutation of the whole dataset is drawn from ``seed + epoch``, so every rank draws the *same* one
without talking to the others. It is padded to a multiple of ``num_replicas`` by repeating its first
indices (or, with ``drop_last=True``, cut down to one), and rank ``r`` takes every ``num_replicas``-th index
starting at ``r``: ``indices[r::num_replicas]``. The shards are disjoint (apart from the padding), equally
long, and interleaved, so the ranks' ``k``-th batches of ``b`` samples together are exactly positions
``k N b .. (k+1) N b - 1`` of the permutation: the ``k``-th batch of ``N b`` samples that one process with
the same sampler (``num_replicas=1``) would take.

The permutation comes from NumPy's ``default_rng(seed + epoch)``, where PyTorch uses ``torch.randperm``
with a ``torch.Generator`` seeded the same way: same rules, other numbers. One more difference: minigrad's
:class:`~minigrad.data.DataLoader` calls ``set_epoch`` itself at the start of each epoch (0, 1, 2, ...), so
a forgotten call cannot silently reuse one order for every epoch, and a resumed run gets the order right.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy


class DistributedSampler:
    """The indices of one rank's shard of ``dataset`` for the current epoch.

    DistributedSampler(dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False)

    num_replicas, rank: default to the world's size and this process's rank (:mod:`minigrad.distributed`)
    shuffle:   a new permutation each epoch, from ``seed + epoch``; False keeps the dataset's order
    drop_last: cut the tail so shards split evenly, instead of padding by repeating the first indices

    ``len(sampler)`` is the shard's length, ``ceil(len(dataset) / num_replicas)`` (with ``drop_last``,
    ``ceil((len(dataset) - num_replicas) / num_replicas)`` when it does not divide).
    """

    def __init__(
        self, dataset: Any, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
        seed: int = 0, drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            from minigrad.distributed.world import get_world

            world = get_world()
            num_replicas = world.size if num_replicas is None else num_replicas
            rank = world.rank if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank!r}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        count = len(dataset)
        if count == 0:
            raise ValueError("DistributedSampler: the dataset is empty; there is nothing to split over the ranks")
        if drop_last and count < num_replicas:
            raise ValueError(f"DistributedSampler: a dataset of {count} samples cannot give each of "
                             f"{num_replicas} ranks one with drop_last=True; use fewer ranks or drop_last=False")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        if drop_last and count % num_replicas:
            self.num_samples = math.ceil((count - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(count / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation (``seed + epoch``) from now on."""
        self.epoch = int(epoch)

    def indices(self) -> numpy.ndarray:
        """This rank's shard for the current epoch: (num_samples,) int64."""
        count = len(self.dataset)
        if self.shuffle:
            order = numpy.random.default_rng(self.seed + self.epoch).permutation(count)
        else:
            order = numpy.arange(count)
        if self.drop_last:
            order = order[: self.total_size]
        else:  # pad by repeating from the start, as often as needed (a dataset smaller than the world)
            repeats = math.ceil(self.total_size / count)
            order = numpy.tile(order, repeats)[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas].astype(numpy.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"DistributedSampler(rank {self.rank} of {self.num_replicas}, {self.num_samples} of "
                f"{len(self.dataset)} samples, shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, "
                f"drop_last={self.drop_last})")
