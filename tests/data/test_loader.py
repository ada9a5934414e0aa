"""DataLoader: batch shapes and dtypes, drop_last, reproducible shuffling, mid-epoch resume, devices."""

from __future__ import annotations

import json

import numpy
import pytest

from minigrad import Tensor
from minigrad.data import ArrayDataset, DataLoader, Dataset, TensorDataset, transforms
from minigrad.testing.tolerance import assert_close


def make_dataset(count=23, dtype=numpy.uint8, seed=0) -> ArrayDataset:
    rng = numpy.random.default_rng(seed)
    if dtype == numpy.uint8:
        images = rng.integers(0, 256, (count, 3, 6, 5), dtype=numpy.uint8)
    else:
        images = rng.random((count, 3, 6, 5), dtype=numpy.float32)
    # Label = index, so every batch tells exactly which items it holds.
    return ArrayDataset(images, numpy.arange(count))


def batches_of(loader):
    return [(images.numpy(), labels.numpy()) for images, labels in loader]


def test_batches_shapes_dtypes_and_values():
    dataset = make_dataset()
    loader = DataLoader(dataset, batch_size=5)
    batches = list(loader)
    assert len(loader) == 5 == len(batches)
    assert [labels.shape for _, labels in batches] == [(5,)] * 4 + [(3,)]
    for index, (images, labels) in enumerate(batches):
        assert isinstance(images, Tensor) and images.shape == (len(labels.numpy()), 3, 6, 5)
        assert images.dtype == numpy.float32 and labels.dtype == numpy.int64 and images.device == "cpu"
        expected = dataset.images[index * 5 : index * 5 + 5].astype(numpy.float64) / 255
        assert_close(images.numpy(), expected, "images", terms=2, elementwise=True)  # one division, one cast
        numpy.testing.assert_array_equal(labels.numpy(), numpy.arange(index * 5, index * 5 + len(expected)))


def test_float32_dataset_passes_through_and_tensor_dataset_alias():
    dataset = make_dataset(dtype=numpy.float32)
    images, _ = next(iter(DataLoader(dataset, batch_size=4)))
    numpy.testing.assert_array_equal(images.numpy(), dataset.images[:4])
    same = TensorDataset(Tensor(dataset.images), Tensor(numpy.arange(23)))
    numpy.testing.assert_array_equal(same.images, dataset.images)


def test_drop_last():
    loader = DataLoader(make_dataset(), batch_size=5, drop_last=True)
    batches = batches_of(loader)
    assert len(loader) == 4 == len(batches)
    assert all(labels.shape == (5,) for _, labels in batches)
    assert len(DataLoader(make_dataset(20), batch_size=5, drop_last=True)) == 4
    assert len(DataLoader(make_dataset(20), batch_size=5)) == 4


def test_shuffle_is_a_permutation_reproducible_and_new_each_epoch():
    dataset = make_dataset()
    loader = DataLoader(dataset, batch_size=4, shuffle=True, seed=7)
    epoch1 = numpy.concatenate([labels for _, labels in batches_of(loader)])
    epoch2 = numpy.concatenate([labels for _, labels in batches_of(loader)])
    assert sorted(epoch1) == list(range(23)) and sorted(epoch2) == list(range(23))
    assert not numpy.array_equal(epoch1, epoch2)  # a new order every epoch
    again = DataLoader(dataset, batch_size=4, shuffle=True, seed=7)
    numpy.testing.assert_array_equal(numpy.concatenate([labels for _, labels in batches_of(again)]), epoch1)
    numpy.testing.assert_array_equal(numpy.concatenate([labels for _, labels in batches_of(again)]), epoch2)
    other = DataLoader(dataset, batch_size=4, shuffle=True, seed=8)
    assert not numpy.array_equal(numpy.concatenate([labels for _, labels in batches_of(other)]), epoch1)
    # The images travel with their labels.
    for images, labels in batches_of(DataLoader(dataset, batch_size=4, shuffle=True, seed=7)):
        assert_close(images, dataset.images[labels] / 255, "images", terms=2, elementwise=True)


def augmenting_loader(dataset, seed=3):
    augment = transforms.Compose([transforms.RandomCrop(6, padding=2), transforms.RandomHorizontalFlip()])
    return DataLoader(dataset, batch_size=4, shuffle=True, transform=augment, seed=seed)


@pytest.mark.parametrize("stop_after", [0, 1, 3, 6])
def test_state_dict_resume_gives_the_same_remaining_batches(stop_after):
    """Run 2 epochs straight; separately stop after `stop_after` batches of epoch 2, save, resume in a new loader."""
    dataset = make_dataset()
    reference = augmenting_loader(dataset)
    batches_of(reference)
    expected_epoch2 = batches_of(reference)
    expected_epoch3 = batches_of(reference)

    interrupted = augmenting_loader(dataset)
    batches_of(interrupted)
    iterator = iter(interrupted)
    for _ in range(stop_after):
        next(iterator)
    state = json.loads(json.dumps(interrupted.state_dict()))  # a checkpoint is JSON: plain types only

    resumed = augmenting_loader(dataset, seed=999)  # a different seed: everything must come from the state
    resumed.load_state_dict(state)
    remaining = batches_of(resumed)
    assert len(remaining) == len(expected_epoch2) - stop_after
    for (images, labels), (expected_images, expected_labels) in zip(remaining, expected_epoch2[stop_after:]):
        numpy.testing.assert_array_equal(labels, expected_labels)
        numpy.testing.assert_array_equal(images, expected_images)  # same crops and flips too
    # And the epoch after continues identically.
    for (images, labels), (expected_images, expected_labels) in zip(batches_of(resumed), expected_epoch3):
        numpy.testing.assert_array_equal(labels, expected_labels)
        numpy.testing.assert_array_equal(images, expected_images)


def test_state_dict_between_epochs():
    dataset = make_dataset()
    loader = augmenting_loader(dataset)
    batches_of(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 0 and state["epoch_start_generator"] is None
    expected = batches_of(loader)
    resumed = augmenting_loader(dataset, seed=5)
    resumed.load_state_dict(state)
    for (_, labels), (_, expected_labels) in zip(batches_of(resumed), expected):
        numpy.testing.assert_array_equal(labels, expected_labels)
    with pytest.raises(ValueError, match="missing keys"):
        resumed.load_state_dict({"epoch": 1})


class ItemOnlyDataset(Dataset):
    """A dataset with only __len__ and __getitem__: the loader falls back to stacking items."""

    def __len__(self):
        return 7

    def __getitem__(self, index):
        return numpy.full((1, 2, 2), index / 10, dtype=numpy.float32), index % 3


def test_item_only_dataset():
    images, labels = next(iter(DataLoader(ItemOnlyDataset(), batch_size=4, device="cpu")))
    assert images.shape == (4, 1, 2, 2) and images.dtype == numpy.float32 and labels.dtype == numpy.int64
    assert_close(images.numpy()[:, 0, 0, 0], numpy.array([0, 0.1, 0.2, 0.3]), "images", terms=2, elementwise=True)
    numpy.testing.assert_array_equal(labels.numpy(), [0, 1, 2, 0])


def test_device(device):
    images, labels = next(iter(DataLoader(make_dataset(), batch_size=4, device=device)))
    assert images.device == device and labels.device == device


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(make_dataset(), batch_size=0)
    with pytest.raises(ValueError, match="unknown device"):
        DataLoader(make_dataset(), batch_size=2, device="tpu")
    with pytest.raises(ValueError, match=r"labels must be \(N,\)"):
        ArrayDataset(numpy.zeros((3, 1, 2, 2), numpy.uint8), numpy.zeros(4, numpy.int64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ArrayDataset(numpy.zeros((3, 2, 2), numpy.uint8), numpy.zeros(3, numpy.int64))
    with pytest.raises(TypeError, match="uint8 in"):
        ArrayDataset(numpy.zeros((3, 1, 2, 2)), numpy.zeros(3, numpy.int64))


def test_transform_must_keep_float32():
    loader = DataLoader(make_dataset(), batch_size=4, transform=lambda batch, rng: batch.astype(numpy.float64))
    with pytest.raises(TypeError, match="float32"):
        next(iter(loader))


def test_channel_mean_std():
    dataset = make_dataset()
    mean, std = dataset.channel_mean_std()
    pixels = dataset.images.transpose(1, 0, 2, 3).reshape(3, -1) / 255
    # float32 sums over every pixel of a channel (the tolerance policy; float64 as tight as before)
    assert_close(mean, pixels.mean(axis=1), "mean", terms=pixels.shape[1], float64=(1e-6, 0))
    assert_close(std, pixels.std(axis=1), "std", terms=pixels.shape[1], float64=(1e-6, 0))
