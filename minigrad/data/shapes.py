"""SyntheticShapes: CIFAR-sized pictures of ten kinds of shape, drawn procedurally (no download needed).

The project's built-in offline dataset and the default for training. Each image shows one shape on a
textured background; the *kind* of shape is the label. Everything else is random per image: foreground
and background colours, position, size, a small rotation, the background texture and pixel noise. So the
class cannot be read from the colour or the position of any pixel: a linear classifier on raw pixels
stays near chance, while a small convolutional network, which sees edges and their arrangement, learns it.

How an image is drawn (all images at once, NumPy only):

1. Coordinate grids give every pixel's offset (dx, dy) from its image's shape centre, rotated by the
   image's angle: arrays of shape (N, H, W).
2. Each class has a *signed distance* function: sdf < 0 inside the shape, > 0 outside, measured in
   pixels (``circle: sqrt(dx^2 + dy^2) - radius``). Shapes combine with max (intersection) and min (union).
3. ``coverage = clip(0.5 - sdf, 0, 1)`` turns distance into an anti-aliased mask (a one-pixel soft edge).
4. ``image = background * (1 - coverage) + foreground * coverage + noise``.

    >>> train_set = SyntheticShapes(10_000, seed=0)
    >>> test_set = SyntheticShapes(2_000, seed=0, train=False)
    >>> save_examples(train_set, "shapes.png")
"""

from __future__ import annotations

import os

import numpy

from minigrad.data.dataset import ArrayDataset, to_float32_images

SQRT2 = numpy.float32(numpy.sqrt(2.0))
SQRT5 = numpy.float32(numpy.sqrt(5.0))


# ----- one signed distance function per class: (dx, dy, size, extra) -> sdf, all (n, H, W) in pixels ----
def _circle(dx, dy, size, extra):
    return numpy.hypot(dx, dy) - size


def _ring(dx, dy, size, extra):
    # An annulus of radii (0.5 size, 0.95 size): distance to the middle circle minus half the width.
    return numpy.abs(numpy.hypot(dx, dy) - 0.72 * size) - 0.23 * size


def _square(dx, dy, size, extra):
    return numpy.maximum(numpy.abs(dx), numpy.abs(dy)) - 0.85 * size


def _triangle(dx, dy, size, extra):
    # Apex (0, -size), base corners (+-size, size); y grows downwards as in images.
    # Each side is a half-plane; the distance to the line 2|x| - y = size is (2|x| - y - size) / sqrt(5).
    return numpy.maximum(dy - size, (2 * numpy.abs(dx) - dy - size) / SQRT5)


def _plus(dx, dy, size, extra):
    # The union (min) of a horizontal and a vertical bar, each of half-width 0.25 size.
    half_width = 0.25 * size
    horizontal_bar = numpy.maximum(numpy.abs(dy) - half_width, numpy.abs(dx) - size)
    vertical_bar = numpy.maximum(numpy.abs(dx) - half_width, numpy.abs(dy) - size)
    return numpy.minimum(horizontal_bar, vertical_bar)


def _diagonals(dx, dy):
    """Coordinates along the two diagonals (a 45 degree rotation)."""
    return (dx + dy) / SQRT2, (dy - dx) / SQRT2


def _cross(dx, dy, size, extra):
    return _plus(*_diagonals(dx, dy), size, extra)


def _diagonal_line(dx, dy, size, extra):
    # One bar along a diagonal; extra[:, 0] picks which one ("\" or "/"), so both directions are one class.
    along, across = _diagonals(dx, dy)
    flip = (extra[:, 0] < 0.5)[:, None, None]
    along, across = numpy.where(flip, across, along), numpy.where(flip, along, across)
    return numpy.maximum(numpy.abs(across) - 0.18 * size, numpy.abs(along) - 1.05 * size)


def _patch(dx, dy, size):
    return numpy.maximum(numpy.abs(dx), numpy.abs(dy)) - 0.9 * size


def _stripes(offset, extra):
    # Stripes of width w: sin(pi (offset + phase) / w) > 0 inside. Near an edge sin(pi t / w) ~ pi t / w,
    # so -sin(...) * w / pi is (close to) the signed distance to the nearest edge.
    width = extra[:, 1][:, None, None]
    phase = extra[:, 2][:, None, None] * 2 * width
    return -numpy.sin(numpy.pi * (offset + phase) / width) * width / numpy.pi


def _horizontal_stripes(dx, dy, size, extra):
    return numpy.maximum(_patch(dx, dy, size), _stripes(dy, extra))


def _vertical_stripes(dx, dy, size, extra):
    return numpy.maximum(_patch(dx, dy, size), _stripes(dx, extra))


def _checkerboard(dx, dy, size, extra):
    # A cell is inside when sin(pi x / c) * sin(pi y / c) > 0; the distance to the nearest cell edge is
    # about min(|sin|) * c / pi, as for the stripes.
    cell = 1.3 * extra[:, 1][:, None, None]
    phase = extra[:, 2][:, None, None] * 2 * cell
    sin_x = numpy.sin(numpy.pi * (dx + phase) / cell)
    sin_y = numpy.sin(numpy.pi * (dy + phase) / cell)
    inside_sign = numpy.sign(sin_x * sin_y)
    edge_distance = numpy.minimum(numpy.abs(sin_x), numpy.abs(sin_y)) * cell / numpy.pi
    return numpy.maximum(_patch(dx, dy, size), -inside_sign * edge_distance)


SHAPES = {
    "circle": _circle,
    "ring": _ring,
    "square": _square,
    "triangle": _triangle,
    "plus": _plus,
    "cross": _cross,
    "diagonal line": _diagonal_line,
    "horizontal stripes": _horizontal_stripes,
    "vertical stripes": _vertical_stripes,
    "checkerboard": _checkerboard,
}


class SyntheticShapes(ArrayDataset):
    """Procedurally drawn RGB images of ten shape classes (the class is the shape, nothing else).

    SyntheticShapes(n, image_size=32, num_classes=10, seed=0, train=True)

    images: (n, 3, image_size, image_size) uint8 (``dataset[i]`` and batches are float32 in [0, 1])
    labels: (n,) int64 in [0, num_classes), balanced (each class appears n // num_classes or one more times)

    The classes, in label order (``classes`` holds the names):

    0 circle               a filled disk
    1 ring                 an annulus (a disk with a hole)
    2 square               a filled square
    3 triangle             a filled triangle, apex up
    4 plus                 "+", two perpendicular bars
    5 cross                "x", the plus turned by 45 degrees
    6 diagonal line        one thick bar along either diagonal ("/" or "\\")
    7 horizontal stripes   a square patch of horizontal stripes
    8 vertical stripes     a square patch of vertical stripes
    9 checkerboard         a square patch of checkerboard

    Random per image: the background colour with a smooth texture, the foreground colour (kept
    distinguishable from the background), the centre, the size (radius 0.22 to 0.40 of the image), a
    rotation of up to +-15 degrees, the stripe or cell width and phase, and pixel noise.
    Every class looks the same mirrored left-right, so ``RandomHorizontalFlip`` is a safe augmentation.

    ``num_classes < 10`` keeps the first ``num_classes`` shapes. The same arguments always give identical
    arrays; ``train=False`` draws from a different stream, so a test set never repeats the
    training images.
    """

    def __init__(
        self, n: int, image_size: int = 32, num_classes: int = 10, seed: int = 0, train: bool = True
    ) -> None:
        if not 2 <= num_classes <= len(SHAPES):
            raise ValueError(f"SyntheticShapes: num_classes must be in [2, {len(SHAPES)}], got {num_classes}")
        if image_size < 8:
            raise ValueError(f"SyntheticShapes: image_size must be >= 8 pixels, got {image_size}")
        if n < 0:
            raise ValueError(f"SyntheticShapes: n must be >= 0, got {n}")
        self.image_size = image_size
        self.seed = seed
        self.train = train
        # [seed, split] seeds a SeedSequence: train and test streams are independent for every seed.
        rng = numpy.random.default_rng([seed, 0 if train else 1])
        images, labels = draw_shapes(n, image_size, num_classes, rng)
        super().__init__(images, labels, classes=list(SHAPES)[:num_classes])

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(n={len(self)}, image_size={self.image_size}, num_classes={len(self.classes)}, "
            f"seed={self.seed}, train={self.train})"
        )


def draw_shapes(
    n: int, image_size: int, num_classes: int, rng: numpy.random.Generator, chunk_size: int = 1000
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Draw ``n`` images: returns ``(images (n, 3, S, S) uint8, labels (n,) int64)``. See SyntheticShapes.

    Images are drawn ``chunk_size`` at a time (each chunk fully vectorised): the float32 temporaries then
    stay a few MB, which is faster than one pass over all images and keeps memory bounded.
    """
    # Balanced labels: 0, 1, ..., k-1, 0, 1, ... then shuffled.
    labels = rng.permutation(numpy.arange(n, dtype=numpy.int64) % num_classes)
    images = numpy.empty((n, 3, image_size, image_size), dtype=numpy.uint8)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        images[start:stop] = _draw_chunk(labels[start:stop], image_size, num_classes, rng)
    return images, labels


def _draw_chunk(
    labels: numpy.ndarray, image_size: int, num_classes: int, rng: numpy.random.Generator
) -> numpy.ndarray:
    """Draw one image per label: (n,) -> (n, 3, S, S) uint8."""
    float32 = numpy.float32
    n = len(labels)
    size_px = float32(image_size)
    # Per-image geometry, in pixels. The centre keeps the whole shape (radius `size`) inside the frame.
    size = (0.22 + 0.18 * rng.random(n, dtype=float32)) * size_px
    low, high = size - 0.5, size_px - 0.5 - size
    center_x = low + (high - low) * rng.random(n, dtype=float32)
    center_y = low + (high - low) * rng.random(n, dtype=float32)
    angle = numpy.deg2rad(rng.uniform(-15, 15, n)).astype(float32)
    # extra: [which diagonal, stripe width in pixels (2 to 3 at 32x32), pattern phase in [0, 1)]
    extra = rng.random((n, 3), dtype=float32)
    extra[:, 1] = (2.0 + extra[:, 1]) * size_px / 32

    # Pixel offsets from each image's centre, rotated by its angle: dx, dy are (n, S, S).
    grid = numpy.arange(image_size, dtype=float32)
    offset_x = grid[None, None, :] - center_x[:, None, None]
    offset_y = grid[None, :, None] - center_y[:, None, None]
    cos, sin = numpy.cos(angle)[:, None, None], numpy.sin(angle)[:, None, None]
    dx = cos * offset_x + sin * offset_y
    dy = cos * offset_y - sin * offset_x

    # Signed distance -> anti-aliased coverage in [0, 1], one class at a time (each a vectorised batch).
    coverage = numpy.empty((n, 1, image_size, image_size), dtype=float32)
    for label, shape_sdf in enumerate(list(SHAPES.values())[:num_classes]):
        members = numpy.flatnonzero(labels == label)
        sdf = shape_sdf(dx[members], dy[members], size[members, None, None], extra[members])
        coverage[members, 0] = numpy.clip(0.5 - sdf, 0, 1)

    # Colours: random background and foreground, redrawn as the opposite colour when the two are too close.
    background = rng.random((n, 3), dtype=float32)
    foreground = rng.random((n, 3), dtype=float32)
    too_close = numpy.linalg.norm(foreground - background, axis=1) < 0.45
    foreground[too_close] = (background[too_close] + 0.5) % 1
    # The background: its colour plus a smooth texture (5x5 random values per channel, upsampled).
    images = _upsample(rng.uniform(-0.15, 0.15, (n, 3, 5, 5)).astype(float32), image_size)
    images += background[:, :, None, None]
    # Blend in the shape, images = background * (1 - coverage) + foreground * coverage, written as one
    # in-place update: images += coverage * (foreground - images).
    images += coverage * (foreground[:, :, None, None] - images)
    # Pixel noise, uniform in [-0.09, 0.09] (std 0.05): uniform draws are several times cheaper than normal.
    noise = rng.random(images.shape, dtype=float32)
    noise -= 0.5
    noise *= 0.18
    images += noise
    numpy.clip(images, 0, 1, out=images)
    images *= 255
    images += 0.5  # round to nearest when truncating to uint8
    return images.astype(numpy.uint8)


def _upsample(low_resolution: numpy.ndarray, size: int) -> numpy.ndarray:
    """Bilinear upsampling by two small matrix products: (n, C, h, h) -> (n, C, size, size).

    Row i of ``weights`` (size, h) holds the interpolation weights of output pixel i, so
    out = weights @ low @ weights.T (the same separable interpolation along both axes).
    """
    low_size = low_resolution.shape[-1]
    position = numpy.linspace(0, low_size - 1, size, dtype=numpy.float32)
    weights = numpy.maximum(0, 1 - numpy.abs(position[:, None] - numpy.arange(low_size, dtype=numpy.float32)))
    return weights @ low_resolution @ weights.T


def save_examples(
    dataset: ArrayDataset, path: str | os.PathLike, per_class: int = 8, max_classes: int = 10, scale: float = 1.0
) -> str:
    """Save a grid of examples to a PNG: one row per class (the first ``per_class`` images of it).

    Works for any dataset with ``images`` (N, C, H, W), ``labels`` and ``classes`` (CIFAR too). Uses
    matplotlib's object API (no pyplot), so it runs without a display. Returns the path written.
    """
    from matplotlib.figure import Figure

    class_count = min(max_classes, len(dataset.classes) or int(dataset.labels.max()) + 1)
    _, channels, height, width = dataset.images.shape
    gap = 2
    mosaic = numpy.ones((class_count * (height + gap), per_class * (width + gap), 3), dtype=numpy.float32)
    for label in range(class_count):
        members = numpy.flatnonzero(dataset.labels == label)[:per_class]
        tiles = to_float32_images(dataset.images[members]).transpose(0, 2, 3, 1)  # (k, H, W, C)
        if channels == 1:
            tiles = numpy.repeat(tiles, 3, axis=3)
        for column, tile in enumerate(tiles):  # at most per_class x max_classes small copies: a figure
            top, left = label * (height + gap), column * (width + gap)
            mosaic[top : top + height, left : left + width] = tile
    figure = Figure(figsize=(scale * (1.5 + 0.45 * per_class), scale * 0.45 * class_count))
    axes = figure.add_axes((0.3, 0.02, 0.68, 0.96))
    axes.imshow(mosaic, interpolation="nearest")
    names = dataset.classes or [str(label) for label in range(class_count)]
    axes.set_yticks([label * (height + gap) + height / 2 for label in range(class_count)], names[:class_count])
    axes.set_xticks([])
    for side in axes.spines.values():
        side.set_visible(False)
    figure.savefig(path, dpi=100)
    return str(path)
