"""Batch-wise transforms against naive per-image references."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.data import transforms
from minigrad.testing.tolerance import assert_close


def random_batch(shape=(9, 3, 8, 7), seed=0) -> numpy.ndarray:
    return numpy.random.default_rng(seed).random(shape, dtype=numpy.float32) + 0.1  # no zeros: see below


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(1, 6), height=st.integers(3, 9), width=st.integers(3, 9), padding=st.integers(0, 3),
    shrink=st.integers(0, 2), seed=st.integers(0, 2**16),
)
def test_random_crop_is_a_sub_window_of_the_padded_image(count, height, width, padding, shrink, seed):
    batch = random_batch((count, 2, height, width), seed)
    size = (height - shrink, width + padding - shrink)
    out = transforms.RandomCrop(size, padding=padding)(batch, numpy.random.default_rng(seed))
    assert out.shape == (count, 2, *size) and out.dtype == numpy.float32
    padded = numpy.pad(batch, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for image, crop in zip(padded, out):
        # Naive reference: the offsets at which this crop matches the padded image exactly.
        matches = [
            (top, left)
            for top in range(image.shape[1] - size[0] + 1)
            for left in range(image.shape[2] - size[1] + 1)
            if numpy.array_equal(image[:, top : top + size[0], left : left + size[1]], crop)
        ]
        assert matches, "the crop is not a window of the zero-padded image"


def test_random_crop_offsets_are_per_image_and_cover_the_range():
    batch = random_batch((400, 1, 4, 4))
    out = transforms.RandomCrop(4, padding=2)(batch, numpy.random.default_rng(1))
    # The image's top-left pixel (never zero: values >= 0.1) lands at (2 - top, 2 - left) in the crop; find it.
    offsets = set()
    for image, crop in zip(batch, out):
        hits = numpy.argwhere(crop[0] == image[0, 0, 0])
        if len(hits):
            offsets.add((int(hits[0, 0]), int(hits[0, 1])))
    # Shifts of -2..2 in each direction: the pixel shows at rows and columns 0..2 (when it is visible at all),
    # and every one of those 9 places occurs.
    assert offsets == {(row, column) for row in range(3) for column in range(3)}


def test_random_crop_reproducible_and_rejects_too_large():
    batch = random_batch()
    crop = transforms.RandomCrop(8, padding=4)
    numpy.testing.assert_array_equal(crop(batch, numpy.random.default_rng(5)), crop(batch, numpy.random.default_rng(5)))
    with pytest.raises(ValueError, match="larger than the padded image"):
        transforms.RandomCrop(20, padding=1)(batch, numpy.random.default_rng(0))


def test_horizontal_flip_per_image():
    batch = random_batch((200, 3, 4, 5))
    before = batch.copy()
    out = transforms.RandomHorizontalFlip(p=0.5)(batch, numpy.random.default_rng(2))
    numpy.testing.assert_array_equal(batch, before)  # input untouched
    assert out.dtype == numpy.float32 and out.shape == batch.shape
    flipped = [numpy.array_equal(o, b[:, :, ::-1]) for o, b in zip(out, batch)]
    kept = [numpy.array_equal(o, b) for o, b in zip(out, batch)]
    assert all(f != k for f, k in zip(flipped, kept))  # every image exactly flipped or exactly kept
    assert 60 < sum(flipped) < 140  # about half, chosen per image
    rng = numpy.random.default_rng(0)
    numpy.testing.assert_array_equal(transforms.RandomHorizontalFlip(p=1.0)(batch, rng), batch[..., ::-1])
    numpy.testing.assert_array_equal(transforms.RandomHorizontalFlip(p=0.0)(batch, rng), batch)


def test_normalize_math_and_dtype():
    batch = random_batch()
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    out = transforms.Normalize(mean, std)(batch, numpy.random.default_rng(0))
    assert out.dtype == numpy.float32
    for channel in range(3):
        expected = (batch[:, channel].astype(numpy.float64) - mean[channel]) / std[channel]
        assert_close(out[:, channel], expected, f"channel {channel}", terms=3)  # a subtraction, a division, a cast
    with pytest.raises(ValueError, match="3 channels but mean/std have 2"):
        transforms.Normalize((0.5, 0.5), (0.2, 0.2))(batch, None)
    with pytest.raises(ValueError, match="std must be > 0"):
        transforms.Normalize((0.5,), (0.0,))


def test_compose_applies_in_order_with_one_rng():
    batch = random_batch()
    normalize = transforms.Normalize([0.5] * 3, [0.25] * 3)
    pipeline = transforms.Compose([transforms.RandomCrop(8, padding=2), transforms.RandomHorizontalFlip(), normalize])
    out = pipeline(batch, numpy.random.default_rng(4))
    rng = numpy.random.default_rng(4)
    step = transforms.RandomCrop(8, padding=2)(batch, rng)
    step = transforms.RandomHorizontalFlip()(step, rng)
    assert_close(out, (step - 0.5) / 0.25, "pipeline", terms=3)
    assert out.dtype == numpy.float32 and "RandomCrop" in repr(pipeline)
