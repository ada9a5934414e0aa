"""Image files to arrays: every odd mode becomes 8-bit RGB with the right values, EXIF orientation is applied,
bad files are named, and resize/center-crop follow torchvision's size arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from minigrad.data.image_io import center_crop, open_rgb, resize_shorter_side, to_chw_float


def saved(tmp_path, image: Image.Image, name: str, **options) -> str:
    path = tmp_path / name
    image.save(path, **options)
    return str(path)


def test_odd_modes_become_rgb_with_the_right_values(tmp_path):
    grey = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    rgb = open_rgb(saved(tmp_path, Image.fromarray(grey), "grey.png"))
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb), np.repeat(grey[..., None], 3, axis=2))

    deep = np.array([[0, 257 * 128], [65535, 257]], dtype=np.uint16)  # 16-bit grey: scaled, not clipped
    image = Image.fromarray(deep)
    assert image.mode.startswith("I;16")
    loaded = np.asarray(open_rgb(saved(tmp_path, image, "deep.png")))
    assert np.array_equal(loaded[..., 0], [[0, 128], [255, 1]]) and (loaded[..., 0] == loaded[..., 2]).all()

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white paper
    rgba[1, 0] = (0, 0, 0, 128)  # half transparent black over white: mid grey
    loaded = np.asarray(open_rgb(saved(tmp_path, Image.fromarray(rgba, "RGBA"), "alpha.png")))
    assert loaded[0, 0].tolist() == [10, 20, 30] and loaded[0, 1].tolist() == [255, 255, 255]
    assert 125 <= loaded[1, 0, 0] <= 129

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    loaded = np.asarray(open_rgb(saved(tmp_path, palette, "palette.png")))
    assert loaded[0, 0].tolist() == [255, 0, 0] and loaded[0, 1].tolist() == [0, 0, 255]
    loaded = np.asarray(open_rgb(saved(tmp_path, palette, "palette-transparent.png", transparency=1)))
    assert loaded[0, 0].tolist() == [255, 0, 0] and loaded[0, 1].tolist() == [255, 255, 255]

    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(open_rgb(saved(tmp_path, cmyk, "cmyk.jpg", quality=100)))[0, 0, 0] > 240
    bilevel = Image.fromarray(np.array([[True, False]]))
    assert np.asarray(open_rgb(saved(tmp_path, bilevel, "bilevel.png"))).tolist() == [[[255] * 3, [0] * 3]]


def test_exif_orientation_is_applied(tmp_path):
    picture = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = saved(tmp_path, picture, "phone.jpg", exif=exif)
    assert Image.open(path).size == (40, 20)
    assert open_rgb(path).size == (20, 40)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png: no such image file"):
        open_rgb(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        open_rgb(tmp_path)
    (tmp_path / "notes.png").write_text("these are notes, not pixels")
    with pytest.raises(ValueError, match="notes.png is not an image file Pillow can read"):
        open_rgb(tmp_path / "notes.png")
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for name in ("cut.png", "cut.jpg"):
        path = tmp_path / name
        Image.fromarray(noise).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(ValueError, match=f"{name} is truncated or corrupt"):
            open_rgb(path)


@pytest.mark.parametrize("size, expected", [
    ((300, 200), (384, 256)),   # landscape: the height becomes 256
    ((200, 300), (256, 384)),   # portrait
    ((333, 250), (340, 256)),   # 256 * 333 / 250 = 340.99: truncated, as torchvision does
    ((256, 256), (256, 256)),   # already there: unchanged
])
def test_resize_shorter_side_follows_torchvision(size, expected):
    assert resize_shorter_side(Image.new("RGB", size), 256).size == expected


def test_resize_is_pillows_bilinear():
    picture = Image.fromarray((np.random.default_rng(1).random((30, 50, 3)) * 255).astype(np.uint8))
    resized = resize_shorter_side(picture, 12)
    assert np.array_equal(np.asarray(resized), np.asarray(picture.resize((20, 12), Image.BILINEAR)))


def test_center_crop_rounds_and_pads_as_torchvision():
    ramp = Image.fromarray(np.tile(np.arange(227, dtype=np.uint8), (230, 1)))  # pixel value = column
    crop = np.asarray(center_crop(ramp, 224))
    assert crop.shape == (224, 224) and crop[0, 0] == 2  # left = round(3 / 2) = 2 (round half to even)
    assert np.asarray(center_crop(ramp.crop((0, 0, 225, 230)), 224))[0, 0] == 0  # round(1 / 2) = 0
    small = Image.new("L", (3, 2), 255)
    padded = np.asarray(center_crop(small, (4, 6)))
    assert padded.shape == (4, 6)
    assert padded[1:3, 1:4].min() == 255 and padded.sum() == 255 * 6  # 1 column left, 2 right; 1 row each side


def test_to_chw_float_is_to_tensor():
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    array = to_chw_float(Image.fromarray(pixels))
    assert array.shape == (3, 2, 4) and array.dtype == np.float32
    assert np.array_equal(array, pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
