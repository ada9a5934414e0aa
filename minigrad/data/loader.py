"""DataLoader: cut a dataset into (shuffled, augmented) batches of Tensors on a device.

    >>> loader = DataLoader(train_set, batch_size=128, shuffle=True, transform=augment, seed=0)
    >>> for images, labels in loader:        # images (128, 3, 32, 32) float32, labels (128,) int64
    ...     ...

All randomness (the order of each epoch and every augmentation) comes from the loader's own
``numpy.random.Generator``, seeded by ``seed``. ``state_dict()`` captures it as a plain JSON-able dict, so a
training run resumed from a checkpoint sees exactly the batches it would have seen without the stop,
even when the checkpoint was written in the middle of an epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy

from minigrad import backend
from minigrad.tensor import Tensor


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images (B, C, H, W) float32, labels (B,) int64)`` Tensors.

    DataLoader(dataset, batch_size, shuffle=False, drop_last=False, transform=None, seed=None, device=None,
               sampler=None)

    dataset:    a :class:`~minigrad.data.Dataset` (its ``get_batch`` gathers a whole batch at once), or any
                object with ``__len__`` and ``__getitem__`` returning ``(image (C, H, W), label)``
    shuffle:    a new random order every epoch (a fresh permutation from the loader's generator)
    drop_last:  drop the last batch when it is smaller than ``batch_size``
    transform:  ``transform(batch (B, C, H, W) float32, rng) -> batch``, see :mod:`minigrad.data.transforms`;
                applied to each batch on the CPU with the loader's generator
    seed:       seeds the generator (None: a fresh unpredictable seed)
    device:     where the Tensors are put, "cpu" (default) or "cuda"
    sampler:    which dataset indices an epoch visits, in order (instead of ``shuffle``): any sized iterable
                of ints, e.g. a :class:`~minigrad.distributed.DistributedSampler` (one rank's shard). A sampler
                with ``set_epoch`` is told the epoch (0, 1, 2, ...) when each epoch starts; PyTorch leaves
                that call to the training loop

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: Callable[[numpy.ndarray, numpy.random.Generator], numpy.ndarray] | None = None,
        seed: int | None = None,
        device: str | None = None,
        sampler: Any = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True exclude each other (the sampler chooses the "
                             "order); shuffle with the sampler instead, e.g. DistributedSampler(shuffle=True)")
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.device = backend.check_device(device or "cpu")
        if self.device == "cuda":
            backend.get_xp("cuda")  # fail now, with the install hint, rather than at the first batch
        self.generator = numpy.random.default_rng(seed)
        self.epoch = 0  # epochs started so far
        # Where the current epoch stands, for state_dict(): the generator state before its permutation
        # was drawn (so the same order can be drawn again) and how many batches were handed out.
        self._epoch_start_state: dict | None = None
        self._batches_done = 0
        self._resume: dict | None = None  # set by load_state_dict when a checkpoint stopped mid-epoch

    def __len__(self) -> int:
        count = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.drop_last:
            return count // self.batch_size
        return (count + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Start an epoch (or finish the one a loaded checkpoint stopped in) and return its batches."""
        resume, self._resume = self._resume, None
        if resume is not None:
            self.generator.bit_generator.state = resume["epoch_start_generator"]
        else:
            self.epoch += 1
        self._epoch_start_state = copy.deepcopy(self.generator.bit_generator.state)
        order = self._draw_order()
        first_batch = 0
        if resume is not None:
            # Same order as before the stop; now put the generator where it was, after the batches done.
            self.generator.bit_generator.state = resume["generator"]
            first_batch = resume["batches_done"]
        self._batches_done = first_batch
        return self._batches(order, first_batch)

    def _draw_order(self) -> numpy.ndarray:
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(self.epoch - 1)  # self.epoch counts the epochs started, from 1
            return numpy.fromiter(self.sampler, dtype=numpy.int64, count=len(self.sampler))
        count = len(self.dataset)
        if self.shuffle:
            return self.generator.permutation(count)
        return numpy.arange(count)

    def _batches(self, order: numpy.ndarray, first_batch: int) -> Iterator[tuple[Tensor, Tensor]]:
        for batch_index in range(first_batch, len(self)):
            indices = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            images, labels = self._gather(indices)
            if self.transform is not None:
                images = self.transform(images, self.generator)
                if images.dtype != numpy.float32:
                    raise TypeError(
                        f"DataLoader: transform {self.transform!r} returned dtype {images.dtype}; "
                        f"transforms must keep float32"
                    )
            # Counted before the yield: a checkpoint taken while the caller holds this batch records it done.
            self._batches_done = batch_index + 1
            yield Tensor(images, device=self.device), Tensor(labels, device=self.device)
        self._epoch_start_state = None
        self._batches_done = 0

    def _gather(self, indices: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        """(images (B, C, H, W) float32, labels (B,) int64) for ``indices``."""
        if hasattr(self.dataset, "get_batch"):
            images, labels = self.dataset.get_batch(indices)  # one gather, no loop over images
        else:  # a plain indexable object: stack its items one by one
            pairs = [self.dataset[int(index)] for index in indices]
            images = numpy.stack([numpy.asarray(image) for image, _ in pairs])
            labels = numpy.array([label for _, label in pairs])
        return numpy.asarray(images, dtype=numpy.float32), numpy.asarray(labels, dtype=numpy.int64)

    # ----- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The loader's position as a plain JSON-able dict (ints, strings, nested dicts).

        Taken between epochs (before ``iter(loader)``, or after its iterator is exhausted) it holds the
        generator state. Taken inside an epoch it also holds the generator state from before that epoch's
        permutation and the number of batches already handed out, so :meth:`load_state_dict` followed by
        ``iter(loader)`` yields exactly the remaining batches of that epoch (none if all were taken).
        """
        # Inside an epoch from iter() until the iterator is exhausted (even with 0 or all batches taken),
        # so that a resumed loader finishes exactly that epoch, however many batches it has left.
        in_epoch = self._epoch_start_state is not None
        return {
            "epoch": self.epoch,
            "generator": copy.deepcopy(self.generator.bit_generator.state),
            "epoch_start_generator": copy.deepcopy(self._epoch_start_state) if in_epoch else None,
            "batches_done": self._batches_done if in_epoch else 0,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the next ``iter(loader)`` continues from exactly that point."""
        missing = {"epoch", "generator", "epoch_start_generator", "batches_done"} - set(state)
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state is missing keys {sorted(missing)}")
        self.epoch = int(state["epoch"])
        self.generator.bit_generator.state = copy.deepcopy(state["generator"])
        self._epoch_start_state = None
        self._batches_done = 0
        if state["epoch_start_generator"] is not None:
            self._resume = copy.deepcopy(state)
        else:
            self._resume = None

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, transform={self.transform!r}, "
            f"device={self.device!r}" + ("" if self.sampler is None else f", sampler={self.sampler!r}") + ")"
        )
