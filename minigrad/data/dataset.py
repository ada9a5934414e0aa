"""Datasets: indexable collections of (image, label) pairs, stored as whole arrays for speed.

Storage convention (every dataset in this package follows it):

- ``images``: (N, C, H, W) ``uint8`` in [0, 255] (4x smaller than float32: CIFAR-10's 50,000 training
  images take 150 MB instead of 600 MB), or ``float32`` already in [0, 1].
- ``labels``: (N,) ``int64``.

What a dataset *returns* is always float32 in [0, 1]: ``dataset[i]`` gives one ``(image (C, H, W), label)``
pair, and ``dataset.get_batch(indices)`` gives a whole batch ``(images (B, C, H, W), labels (B,))`` with
one fancy-indexing gather, no Python loop over images. The DataLoader uses ``get_batch``.
"""

from __future__ import annotations

from typing import Any

import numpy

from minigrad import backend
from minigrad.tensor import Tensor


def to_float32_images(images: numpy.ndarray) -> numpy.ndarray:
    """Convert stored images to float32 in [0, 1]: uint8 is divided by 255, float32 passes through.

    images: (..., C, H, W) uint8 or float32  ->  same shape, float32
    """
    if images.dtype == numpy.uint8:
        return images.astype(numpy.float32) / numpy.float32(255)
    if images.dtype == numpy.float32:
        return images
    raise TypeError(f"images must be uint8 in [0, 255] or float32 in [0, 1], got dtype {images.dtype}")


class Dataset:
    """Base class: a dataset knows its length and returns ``(image (C, H, W) float32, int label)`` pairs.

    Subclasses implement ``__len__`` and ``__getitem__``. The default ``get_batch`` stacks items one by one
    (slow but always right); array-backed datasets (:class:`ArrayDataset`) override it with one gather.
    """

    classes: list[str] = []

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, index: int) -> tuple[numpy.ndarray, int]:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def get_batch(self, indices: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The items at ``indices`` as ``(images (B, C, H, W) float32, labels (B,) int64)``."""
        pairs = [self[int(index)] for index in indices]
        images = numpy.stack([numpy.asarray(image, dtype=numpy.float32) for image, _ in pairs])
        labels = numpy.array([label for _, label in pairs], dtype=numpy.int64)
        return images, labels


class ArrayDataset(Dataset):
    """A dataset held as two arrays: ``images`` (N, C, H, W) and ``labels`` (N,).

    ArrayDataset(images, labels, classes=None)

    images: (N, C, H, W) uint8 in [0, 255] or float32 in [0, 1] (a NumPy array or a minigrad Tensor)
    labels: (N,) integers, stored as int64
    classes: optional list of class names, ``classes[label]`` names a label

    ``TensorDataset`` is the same class under PyTorch's name.
    """

    def __init__(self, images: Any, labels: Any, classes: list[str] | None = None) -> None:
        images = _as_numpy(images)
        labels = _as_numpy(labels)
        if images.ndim != 4:
            raise ValueError(
                f"ArrayDataset: images must be (N, C, H, W), got shape {images.shape}; "
                f"add a channel axis for grey images (images[:, None])"
            )
        if images.dtype not in (numpy.uint8, numpy.float32):
            raise TypeError(
                f"ArrayDataset: images must be uint8 in [0, 255] or float32 in [0, 1], got dtype {images.dtype}; "
                f"convert with images.astype(numpy.float32)"
            )
        if labels.shape != (len(images),):
            raise ValueError(
                f"ArrayDataset: labels must be (N,) with N = {len(images)} images, got shape {labels.shape}"
            )
        if labels.dtype.kind not in "iu":
            raise TypeError(f"ArrayDataset: labels must be integers, got dtype {labels.dtype}")
        self.images = images
        self.labels = labels.astype(numpy.int64, copy=False)
        if classes is not None:
            self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[numpy.ndarray, int]:
        """One pair: ``(image (C, H, W) float32 in [0, 1], label int)``."""
        return to_float32_images(self.images[index]), int(self.labels[index])

    def get_batch(self, indices: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        """``(images (B, C, H, W) float32 in [0, 1], labels (B,) int64)`` gathered in one indexing step."""
        indices = numpy.asarray(indices, dtype=numpy.int64)
        # Fancy indexing copies, so the batch is a fresh array that transforms may change freely.
        return to_float32_images(self.images[indices]), self.labels[indices]

    def channel_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of all images (in [0, 1] units), for ``Normalize``.

        mean_c = average over (N, H, W) of images[:, c];  std_c likewise (the population std).
        """
        # One channel at a time, in float64 so the sum over millions of pixels stays exact.
        means, stds = [], []
        for channel in range(self.images.shape[1]):
            values = to_float32_images(self.images[:, channel : channel + 1]).astype(numpy.float64)
            means.append(float(values.mean()))
            stds.append(float(values.std()))
        return tuple(means), tuple(stds)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, images {tuple(self.images.shape)} {self.images.dtype}, "
            f"classes={len(self.classes) or 'unnamed'})"
        )


TensorDataset = ArrayDataset


def _as_numpy(array: Any) -> numpy.ndarray:
    """A NumPy array from a NumPy array, a list, or a minigrad Tensor (copied from the GPU if needed)."""
    if isinstance(array, Tensor):
        array = array.data
    return backend.to_numpy(array)
