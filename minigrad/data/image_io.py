"""Image files in, (3, H, W) float32 arrays out: reading with Pillow, RGB conversion, resize and center crop.

    >>> image = open_rgb("cat.jpg")                       # a PIL image in mode "RGB", upright
    >>> image = center_crop(resize_shorter_side(image, 256), 224)
    >>> array = to_chw_float(image)                       # (3, 224, 224) float32 in [0, 1]

The resize and crop follow torchvision's ``Resize(256)`` and ``CenterCrop(224)`` on PIL images exactly (the
same size arithmetic, and Pillow's own bilinear filter, which averages over the whole footprint when it
shrinks), so preprocessing here matches what torchvision's pretrained weights were evaluated with.

Modes: every image becomes 8-bit RGB. Grey ("L", "1") is repeated over three channels; 16- and 32-bit
integer grey ("I;16", "I") is scaled from 0..65535 to 0..255 (Pillow's own conversion would clip it to
white); a palette is expanded; CMYK, YCbCr and LAB are converted by Pillow; an alpha channel (RGBA, LA,
a palette with transparency) is composited over white, so transparent areas read as white paper rather
than as whatever colour the invisible pixels happen to hold. The EXIF orientation of phone photos is
applied, so the image is seen upright, as a viewer shows it. Pillow is imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

import numpy


def _pillow() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError as error:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError("reading image files needs Pillow: pip install pillow") from error
    return Image, ImageOps


def open_rgb(path: str | os.PathLike) -> Any:
    """Read an image file into a PIL image in mode ``"RGB"`` (see the module docstring for the conversions).

    Raises FileNotFoundError for a missing path and ValueError, naming the file, for a file that is not an
    image Pillow can read or whose data is truncated.
    """
    Image, ImageOps = _pillow()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file" + (" (it is a folder)" if os.path.isdir(path) else ""))
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, inside the try
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except Image.UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP, "
                         f"...)") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's truncated-file and bad-header errors
        raise ValueError(f"{path} is truncated or corrupt ({error}); open it in an image viewer, or save it "
                         f"again") from None


def to_rgb(image: Any) -> Any:
    """A PIL image of any mode as 8-bit RGB: 16/32-bit grey rescaled, alpha composited over white."""
    Image, _ = _pillow()
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = numpy.asarray(image, dtype=numpy.float64)
        top = 255.0 if image.mode in ("I", "F") and values.max(initial=0) <= 255 else 65535.0
        grey = numpy.clip(numpy.rint(values * (255.0 / top)), 0, 255).astype(numpy.uint8)
        return Image.fromarray(grey).convert("RGB")  # a mode-"L" image from a 2-D uint8 array
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def resize_shorter_side(image: Any, size: int) -> Any:
    """Scale so the shorter side is ``size`` pixels, keeping the aspect ratio (torchvision's ``Resize(size)``).

    The longer side becomes ``int(size * long / short)`` (truncated, as torchvision computes it); Pillow's
    bilinear filter does the resampling.
    """
    Image, _ = _pillow()
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image if new_size == image.size else image.resize(new_size, Image.BILINEAR)


def center_crop(image: Any, size: int | tuple[int, int]) -> Any:
    """The central ``size`` (or (height, width)) window, as torchvision's ``CenterCrop``.

    The top-left corner is ``round((H - h) / 2), round((W - w) / 2)``; an image smaller than the window is
    first padded with black on every side (the odd pixel on the bottom/right), as torchvision does.
    """
    Image, _ = _pillow()
    crop_height, crop_width = (size, size) if isinstance(size, int) else size
    width, height = image.size
    if crop_width > width or crop_height > height:
        padded = Image.new(image.mode, (max(width, crop_width), max(height, crop_height)))
        padded.paste(image, (max(crop_width - width, 0) // 2, max(crop_height - height, 0) // 2))
        image, (width, height) = padded, padded.size
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return image.crop((left, top, left + crop_width, top + crop_height))


def to_chw_float(image: Any) -> numpy.ndarray:
    """An RGB PIL image as a (3, H, W) float32 array in [0, 1] (torchvision's ``ToTensor``: divide by 255)."""
    pixels = numpy.asarray(image, dtype=numpy.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"to_chw_float: expected an RGB image, got an array of shape {pixels.shape}")
    return pixels.transpose(2, 0, 1).astype(numpy.float32) / numpy.float32(255)
