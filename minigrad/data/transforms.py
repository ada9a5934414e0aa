"""Batch-wise data augmentation and normalisation.

The protocol: a transform is any callable

    transform(batch, rng) -> batch

batch: (B, C, H, W) float32 NumPy array (the DataLoader hands over images in [0, 1])
rng:   a ``numpy.random.Generator``; every random choice comes from it, so the loader's seeded generator
       makes augmentation reproducible (and resumable) along with the shuffling.

A transform returns a float32 array and never changes ``batch`` in place (the caller may still hold it).
Each one works on the whole batch at once: a random choice *per image* is an array of B draws used in
one vectorised step, never a Python loop over images.

    >>> train_transform = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(mean, std)])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy

Transform = Callable[[numpy.ndarray, numpy.random.Generator], numpy.ndarray]


def _check_batch(name: str, batch: numpy.ndarray) -> None:
    if not isinstance(batch, numpy.ndarray) or batch.ndim != 4:
        shape = getattr(batch, "shape", type(batch).__name__)
        raise ValueError(f"{name}: expects a (B, C, H, W) NumPy array, got {shape}")


class Compose:
    """Apply transforms one after another: ``Compose([a, b])(batch, rng) == b(a(batch, rng), rng)``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, batch: numpy.ndarray, rng: numpy.random.Generator) -> numpy.ndarray:
        for transform in self.transforms:
            batch = transform(batch, rng)
        return batch

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(transform) for transform in self.transforms) + "])"


class RandomCrop:
    """Pad each image with zeros, then cut a ``size`` window at a random offset chosen per image.

    RandomCrop(size, padding=4)      size: int or (height, width)

    batch (B, C, H, W) -> (B, C, size_h, size_w)

    With CIFAR's 32x32 images, ``RandomCrop(32, padding=4)`` shifts every image by up to 4 pixels in each
    direction (the padded border is black). All crops are taken in one gather from a *window view* of the
    padded batch: ``windows[b, c, i, j]`` is the (size_h, size_w) window whose top-left corner is (i, j),
    so ``windows[arange(B), :, top, left]`` picks one window per image without copying the others.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 4) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be a positive int or (height, width), got {size!r}")
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, batch: numpy.ndarray, rng: numpy.random.Generator) -> numpy.ndarray:
        _check_batch("RandomCrop", batch)
        count, _, height, width = batch.shape
        crop_height, crop_width = self.size
        pad = self.padding
        if crop_height > height + 2 * pad or crop_width > width + 2 * pad:
            raise ValueError(
                f"RandomCrop: crop {self.size} is larger than the padded image "
                f"({height + 2 * pad}, {width + 2 * pad}) (batch {batch.shape}, padding {pad}); "
                f"use a smaller size or more padding"
            )
        padded = numpy.pad(batch, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        # top in [0, H + 2p - crop_h]: every window that fits inside the padded image is equally likely.
        top = rng.integers(0, height + 2 * pad - crop_height + 1, size=count)
        left = rng.integers(0, width + 2 * pad - crop_width + 1, size=count)
        windows = numpy.lib.stride_tricks.sliding_window_view(padded, (crop_height, crop_width), axis=(2, 3))
        # windows: (B, C, positions_h, positions_w, crop_h, crop_w). The two index arrays are split by
        # the channel slice, so NumPy puts their (B,) axis first: the result is (B, C, crop_h, crop_w).
        return windows[numpy.arange(count), :, top, left]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, chosen independently per image.

    batch (B, C, H, W) -> (B, C, H, W);  out[b] = batch[b, :, :, ::-1] if flip[b] else batch[b]
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, batch: numpy.ndarray, rng: numpy.random.Generator) -> numpy.ndarray:
        _check_batch("RandomHorizontalFlip", batch)
        flip = rng.random(len(batch)) < self.p
        return numpy.where(flip[:, None, None, None], batch[:, :, :, ::-1], batch)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """Standardise each channel: ``out[:, c] = (batch[:, c] - mean[c]) / std[c]``.

    batch (B, C, H, W) -> (B, C, H, W), float32. Deterministic: ``rng`` is accepted and ignored.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        # Stored as float32 (1, C, 1, 1) so the arithmetic broadcasts over B, H, W and stays float32.
        self.mean = numpy.asarray(mean, dtype=numpy.float32).reshape(1, -1, 1, 1)
        self.std = numpy.asarray(std, dtype=numpy.float32).reshape(1, -1, 1, 1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean has {self.mean.size} values but std has {self.std.size}")
        if numpy.any(self.std <= 0):
            raise ValueError(f"Normalize: every std must be > 0, got {list(std)}")

    def __call__(self, batch: numpy.ndarray, rng: numpy.random.Generator | None = None) -> numpy.ndarray:
        _check_batch("Normalize", batch)
        if batch.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"Normalize: batch {batch.shape} has {batch.shape[1]} channels but mean/std have "
                f"{self.mean.shape[1]}; give one mean and one std per channel"
            )
        return (batch - self.mean) / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"
