"""ImageFolder: a dataset of image files laid out one folder per class, decoded once into a uint8 array.

    root/cat/0001.jpg            ImageFolder("root").classes        == ["cat", "dog"]   (sorted)
    root/cat/0002.png            ImageFolder("root").class_to_idx   == {"cat": 0, "dog": 1}
    root/dog/a/kennel.jpeg       files in subfolders of a class folder belong to that class

This is torchvision's ``ImageFolder`` convention, the way Kaggle-style and course datasets (and a
student's own photos) arrive. Every file is read with Pillow (PNG, JPEG, GIF, BMP, TIFF, WebP, ...) and
converted to 8-bit RGB (grey, 16-bit, palette and alpha images as :mod:`minigrad.data.image_io` says),
then brought to ``size`` x ``size`` pixels:

- ``resize="crop"`` (default): scale the shorter side to ``size``, keep the aspect ratio, cut the centre
  (torchvision's ``Resize(size)`` then ``CenterCrop(size)``; ``minigrad predict`` prepares images this way);
- ``resize="stretch"``: scale both sides to ``size``, distorting the aspect ratio but keeping all of it.

Decoding runs once, with a progress bar, into ``images`` (N, 3, size, size) uint8 (the storage convention
of :mod:`minigrad.data.dataset`), so every later epoch costs no decoding. With ``cache=True`` (a file in
``root/.minigrad-cache/``) or ``cache="some/dir"`` the array is also kept on disk, and the next run loads it
in a second. The cache file records every image file's path, size and modification time, and is decoded
again whenever one of them changes (a file added, removed, edited or renamed) or the settings differ. It
is written to a temporary file and renamed, so an interrupted run never leaves half a cache.

A file that is not an image Pillow can read, or is truncated, stops the scan with a message naming it
(``bad_files="error"``, the default); ``bad_files="skip"`` leaves such files out, counts them in
``skipped`` and warns once. Hidden files and folders (``.name``) are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy

from minigrad.data.dataset import ArrayDataset

CACHE_VERSION = 1
CACHE_FOLDER = ".minigrad-cache"
RESIZE_MODES = ("crop", "stretch")
BAD_FILE_CHOICES = ("error", "skip")


class ImageFolder(ArrayDataset):
    """Images in ``root/<class>/...`` as an :class:`ArrayDataset`: ``images`` (N, 3, size, size) uint8, ``labels`` (N,).

    ImageFolder(root, size=32, resize="crop", classes=None, bad_files="error", cache=False, progress=True)

    root:      the folder that holds one subfolder per class
    size:      the side of the square images (32 for GoogLeNet's CIFAR stem)
    resize:    "crop" (shorter side to ``size``, centre crop) or "stretch" (both sides to ``size``)
    classes:   the class names the folder must hold, in label order (a test set passes its training set's
               ``classes`` so that label 3 means the same class in both); None: the sorted subfolder names
    bad_files: "error" (a clear error naming the first unreadable file) or "skip" (leave it out, count it)
    cache:     False (decode in memory only), True (a cache file in ``root/.minigrad-cache/``) or a folder
    progress:  show a progress bar while decoding

    Attributes: ``classes`` (list of names), ``class_to_idx`` (name -> label), ``files`` (one path per image,
    in label order), ``skipped`` (list of (path, reason) left out with ``bad_files="skip"``), ``cache_path``.
    """

    def __init__(
        self, root: str | os.PathLike, size: int = 32, resize: str = "crop", classes: list[str] | None = None,
        bad_files: str = "error", cache: bool | str | os.PathLike = False, progress: bool = True,
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"ImageFolder: size must be a positive int (the side in pixels), got {size!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"ImageFolder: resize must be one of {RESIZE_MODES}, got {resize!r}")
        if bad_files not in BAD_FILE_CHOICES:
            raise ValueError(f"ImageFolder: bad_files must be 'error' or 'skip', got {bad_files!r}")
        self.root = Path(root).expanduser()
        self.size, self.resize, self.bad_files = size, resize, bad_files
        found = find_classes(self.root)
        if classes is not None and list(classes) != found:
            missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
            raise ValueError(
                f"ImageFolder: {self.root} must hold the class folders {list(classes)} (those of the training "
                f"set); missing {missing}, unexpected {extra}. Give both folders the same class subfolders"
            )
        files_by_class = {name: list_files(self.root / name) for name in found}
        for name, files in files_by_class.items():
            if not files:
                raise ValueError(f"ImageFolder: class folder {self.root / name} holds no files; put its images "
                                 f"in it or remove it (every subfolder of {self.root} is a class)")
        paths = [path for name in found for path in files_by_class[name]]
        labels = numpy.repeat(numpy.arange(len(found), dtype=numpy.int64), [len(files_by_class[n]) for n in found])
        settings = {"size": size, "resize": resize, "bad_files": bad_files, "classes": found}
        self.cache_path = _cache_path(self.root, cache, settings) if cache else None
        manifest = _manifest_digest(self.root, paths)
        cached = _read_cache(self.cache_path, settings, manifest) if self.cache_path is not None else None
        if cached is not None:
            images, keep, self.skipped = cached
        else:
            images, keep, self.skipped = _decode_all(paths, size, resize, bad_files, progress, str(self.root))
            if self.cache_path is not None:
                _write_cache(self.cache_path, images, keep, self.skipped, settings, manifest)
        labels = labels[keep]
        self.files = [path for path, kept in zip(paths, keep) if kept]
        empty = [name for index, name in enumerate(found) if not numpy.any(labels == index)]
        if empty:
            raise ValueError(f"ImageFolder: class folder {self.root / empty[0]} holds no readable image (all "
                             f"{len(files_by_class[empty[0]])} of its files were skipped as unreadable)")
        if self.skipped:
            names = ", ".join(str(path) for path, _ in self.skipped[:3])
            warnings.warn(f"ImageFolder: skipped {len(self.skipped)} unreadable file(s) in {self.root} "
                          f"(bad_files='skip'): {names}{', ...' if len(self.skipped) > 3 else ''}", stacklevel=2)
        super().__init__(images, labels, classes=found)
        self.class_to_idx = {name: index for index, name in enumerate(found)}

    def __repr__(self) -> str:
        skipped = f", skipped={len(self.skipped)}" if self.skipped else ""
        return (f"ImageFolder(root={str(self.root)!r}, n={len(self)}, size={self.size}, "
                f"classes={len(self.classes)}{skipped})")


def find_classes(root: Path) -> list[str]:
    """The sorted names of the non-hidden subfolders of ``root``, with an error that says what was expected."""
    if not root.exists():
        raise FileNotFoundError(f"ImageFolder: {root} does not exist; give the folder that holds one subfolder "
                                f"per class ({root}/<class>/<image>)")
    if not root.is_dir():
        raise NotADirectoryError(f"ImageFolder: {root} is a file, not a folder of class subfolders")
    entries = [entry for entry in os.scandir(root) if not entry.name.startswith(".")]
    classes = sorted(entry.name for entry in entries if entry.is_dir())
    if not classes:
        loose = sum(entry.is_file() for entry in entries)
        hint = f" (it holds {loose} loose file(s): put each image in its class's subfolder)" if loose else ""
        raise ValueError(f"ImageFolder: {root} has no class folders{hint}; expected one subfolder per class, "
                         f"e.g. {root}/cat/0001.jpg and {root}/dog/0001.jpg")
    return classes


def list_files(folder: Path) -> list[Path]:
    """Every non-hidden file under ``folder`` (subfolders too, following links), sorted by relative path."""
    found = []
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(Path(directory) / name for name in names if not name.startswith("."))
    return sorted(found, key=lambda path: path.relative_to(folder).parts)


def load_image(path: str | os.PathLike, size: int, resize: str = "crop") -> numpy.ndarray:
    """One image file as (3, size, size) uint8 RGB, converted and resized as :class:`ImageFolder` does.

    Raises ValueError naming the file when Pillow cannot read it (see :func:`image_io.open_rgb`).
    """
    from minigrad.data import image_io

    image = image_io.open_rgb(path)
    if resize == "crop":
        image = image_io.center_crop(image_io.resize_shorter_side(image, size), size)
    elif image.size != (size, size):
        from PIL import Image

        image = image.resize((size, size), Image.BILINEAR)
    return numpy.asarray(image, dtype=numpy.uint8).transpose(2, 0, 1)


def _decode_all(paths: list[Path], size: int, resize: str, bad_files: str, progress: bool,
                what: str) -> tuple[numpy.ndarray, numpy.ndarray, list[tuple[str, str]]]:
    """Decode every file: (images (kept, 3, size, size) uint8, keep (N,) bool, skipped [(path, reason)])."""
    from tqdm import tqdm

    images = numpy.zeros((len(paths), 3, size, size), dtype=numpy.uint8)
    keep = numpy.ones(len(paths), dtype=bool)
    skipped: list[tuple[str, str]] = []
    for index, path in enumerate(tqdm(paths, desc=f"decoding {what}", unit="img", disable=not progress)):
        try:
            images[index] = load_image(path, size, resize)
        except ValueError as error:
            if bad_files == "error":
                raise ValueError(f"ImageFolder: {error}. Remove or replace the file, or pass bad_files='skip' "
                                 f"(minigrad train --skip-bad-images) to leave unreadable files out") from None
            keep[index] = False
            skipped.append((str(path), str(error)))
    return images[keep], keep, skipped


# ----- the cache file -------------------------------------------------------------------------------
def _cache_path(root: Path, cache: bool | str | os.PathLike, settings: dict) -> Path:
    """Where the cache for ``root`` with ``settings`` lives: one file per (folder, settings)."""
    folder = root / CACHE_FOLDER if cache is True else Path(cache).expanduser()
    key = hashlib.sha256(json.dumps([str(root.resolve()), settings, CACHE_VERSION]).encode()).hexdigest()[:16]
    name = "".join(char if char.isalnum() or char in "-_" else "_" for char in root.resolve().name) or "root"
    return folder / f"{name}-{settings['size']}px-{key}.npz"


def _manifest_digest(root: Path, paths: list[Path]) -> str:
    """A digest of every file's relative path, size and modification time: it changes when any file does."""
    digest = hashlib.sha256()
    for path in paths:
        status = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_cache(path: Path, settings: dict, manifest: str) -> tuple | None:
    """(images, keep, skipped) from a cache that matches the folder as it is now; None otherwise."""
    if not path.is_file():
        return None
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive["meta"]).decode())
            if meta.get("version") != CACHE_VERSION or meta.get("settings") != settings \
                    or meta.get("manifest") != manifest:
                return None  # the files (or the settings) changed since it was written: decode again
            images, keep = archive["images"], archive["keep"]
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, json.JSONDecodeError) as error:
        warnings.warn(f"ImageFolder: ignoring the unreadable cache {path} ({type(error).__name__}: {error}); "
                      f"decoding the images again", stacklevel=3)
        return None
    return images, keep, [tuple(pair) for pair in meta["skipped"]]


def _write_cache(path: Path, images: numpy.ndarray, keep: numpy.ndarray, skipped: list, settings: dict,
                 manifest: str) -> None:
    """Write the cache whole (temporary file, fsync, rename) or not at all; a read-only place only warns."""
    meta = {"version": CACHE_VERSION, "settings": settings, "manifest": manifest, "skipped": skipped}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as error:
        warnings.warn(f"ImageFolder: cannot write the cache {path} ({error}); the images stay decoded in memory "
                      f"only. Pass cache='a/writable/folder' to keep a cache elsewhere", stacklevel=3)
        return
    try:
        with os.fdopen(handle, "wb") as file:
            numpy.savez(file, images=images, keep=keep,
                        meta=numpy.frombuffer(json.dumps(meta).encode(), dtype=numpy.uint8))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if not isinstance(error, OSError):
            raise
        warnings.warn(f"ImageFolder: could not write the cache {path} ({error}); the images stay decoded in memory "
                      f"only", stacklevel=3)


# ----- train/ and test/ of one data folder ----------------------------------------------------------
def train_test_folders(data_dir: str | os.PathLike, **options) -> tuple[ImageFolder, ImageFolder]:
    """``(ImageFolder(data_dir/train), ImageFolder(data_dir/test))``, or ``data_dir/val`` when there is no test/.

    The test set is read with the training set's classes (the same label for the same name). ``options``
    go to both :class:`ImageFolder` s.
    """
    data_dir = Path(data_dir).expanduser()
    test_dir = next((data_dir / name for name in ("test", "val") if (data_dir / name).is_dir()), None)
    if not (data_dir / "train").is_dir() or test_dir is None:
        found = sorted(entry.name for entry in os.scandir(data_dir) if entry.is_dir()) if data_dir.is_dir() else []
        lacking = "train/" if not (data_dir / "train").is_dir() else "test/ or val/"
        raise FileNotFoundError(
            f"folder dataset: {data_dir} has no {lacking} folder (looked for {data_dir / 'train'} and "
            f"{data_dir / 'test'} or {data_dir / 'val'}; found {found or 'no subfolders'}). Lay it out as "
            f"{data_dir}/train/<class>/<image> and {data_dir}/test/<class>/<image>"
        )
    train_set = ImageFolder(data_dir / "train", **options)
    return train_set, ImageFolder(test_dir, classes=train_set.classes, **options)
