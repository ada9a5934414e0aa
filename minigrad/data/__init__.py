"""Datasets, the DataLoader and batch-wise transforms.

    >>> from minigrad.data import DataLoader, SyntheticShapes, transforms
    >>> train_set = SyntheticShapes(10_000, seed=0)
    >>> augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    >>> loader = DataLoader(train_set, batch_size=128, shuffle=True, transform=augment, seed=0)

Datasets store ``images`` (N, C, H, W) uint8 and ``labels`` (N,) int64; batches come out as float32 in [0, 1].
"""

from minigrad.data import transforms
from minigrad.data.cifar import CIFAR10, CIFAR100, ChecksumError, download
from minigrad.data.dataset import ArrayDataset, Dataset, TensorDataset, to_float32_images
from minigrad.data.folder import ImageFolder
from minigrad.data.loader import DataLoader
from minigrad.data.shapes import SyntheticShapes, save_examples

__all__ = [
    "CIFAR10", "CIFAR100", "ArrayDataset", "ChecksumError", "DataLoader", "Dataset", "ImageFolder", "SyntheticShapes",
    "TensorDataset", "download", "save_examples", "to_float32_images", "transforms",
]
