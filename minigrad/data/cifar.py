"""CIFAR-10 and CIFAR-100, read from the official "python version" archives.

    >>> train_set = CIFAR10("~/data", train=True, download=True)
    >>> train_set.images.shape, train_set.images.dtype      # (50000, 3, 32, 32) uint8

The archive is the file published at https://www.cs.toronto.edu/~kriz/cifar.html, unchanged:

- ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5``, ``test_batch``
  (10,000 images each) and ``batches.meta`` (the class names);
- ``cifar-100-python.tar.gz`` holds ``cifar-100-python/train`` (50,000), ``test`` (10,000) and ``meta``.

Each member is a pickled dict with ``b"data"``: (N, 3072) uint8, one image per row as three 32x32 planes
R, G, B, each row-major, so ``data.reshape(N, 3, 32, 32)`` is already NCHW; and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` and ``b"coarse_labels"`` (CIFAR-100), lists of ints. Members are read straight from the
tar, never extracted, so a crafted member name cannot write outside ``root``.

Why a restricted unpickler: unpickling runs code. A pickle may name any importable function
(``os.system``, say) and ask for it to be called while loading, so ``pickle.load`` on a file from the
internet is as dangerous as running a script from it. The MD5 check guards against a corrupted download,
not against a malicious file placed by hand or a compromised mirror. :class:`RestrictedUnpickler` therefore
allows only what the official files need (dicts, lists, bytes, ints, and the two NumPy functions that
rebuild an array) and refuses everything else before it can run.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy

from minigrad.data.dataset import ArrayDataset
from minigrad.safe_pickle import AllowListUnpickler

CHUNK_BYTES = 1 << 20


class ChecksumError(ValueError):
    """A file's MD5 is not the published one (a corrupted, truncated or different file)."""


# ----- safe unpickling ---------------------------------------------------------------------------
def _numpy_array_rebuilders() -> dict[tuple[str, str], Any]:
    """The globals a pickled NumPy array names, mapped to the objects themselves.

    The official files were written by NumPy 1 under Python 2 and name ``numpy.core.multiarray._reconstruct``;
    NumPy 2 moved it to ``numpy._core``. We take the function from ``ndarray.__reduce__`` instead of importing
    either private module by name.
    """
    reconstruct = numpy.zeros(1).__reduce__()[0]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): numpy.ndarray,
        ("numpy", "dtype"): numpy.dtype,
    }


class RestrictedUnpickler(AllowListUnpickler):
    """An unpickler that can rebuild only dicts, lists, tuples, bytes, str, numbers and NumPy arrays.

    Every global a pickle names goes through ``find_class`` (:class:`minigrad.safe_pickle.AllowListUnpickler`);
    anything not on the allow-list raises ``pickle.UnpicklingError`` before it could be called.
    """

    allowed = _numpy_array_rebuilders()
    hint = "only NumPy arrays, dicts, lists and bytes are allowed. Is this the official file?"


def restricted_loads(data: bytes, source: str = "a dataset pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; Python 2 strings load as bytes, as in CIFAR."""
    return RestrictedUnpickler(io.BytesIO(data), source=source, encoding="bytes").load()


# ----- checksums and downloads ---------------------------------------------------------------------
def md5_of_file(path: str | os.PathLike) -> str:
    """The MD5 hex digest of a file, read in 1 MB chunks."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum against corruption, not a security hash
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: str | os.PathLike, expected_md5: str) -> None:
    """Raise :class:`ChecksumError` naming both checksums when ``path``'s MD5 is not ``expected_md5``."""
    actual_md5 = md5_of_file(path)
    if actual_md5 != expected_md5:
        raise ChecksumError(
            f"{path} is corrupted or incomplete: its MD5 is {actual_md5} but the published MD5 is "
            f"{expected_md5} ({os.path.getsize(path)} bytes). Delete it and download it again."
        )


def download(url: str, path: str | os.PathLike, md5: str, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` unless a file with the right MD5 is already there; return the path.

    The bytes go to a temporary file in the same directory, are checked against ``md5``, and only then
    renamed to ``path`` with ``os.replace`` (atomic on one file system). An interrupted or corrupted
    download therefore never leaves a file at ``path`` that looks complete.
    """
    path = Path(path).expanduser()
    if path.exists():
        check_md5(path, md5)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as file:
            _fetch(url, file, path, md5, progress)
        check_md5(temporary_name, md5)
        os.replace(temporary_name, path)
    finally:
        if os.path.exists(temporary_name):
            os.remove(temporary_name)
    return path


_download_file = download  # the datasets' `download` argument hides the function's name inside them


def _fetch(url: str, file: Any, path: Path, md5: str, progress: bool) -> None:
    """Stream ``url`` into the open ``file`` with a tqdm progress bar."""
    from tqdm import tqdm

    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RuntimeError(
            f"could not download {url} ({reason}). If this machine is offline, download that file on "
            f"another machine and put it at {path} (MD5 {md5}), then run again."
        ) from error
    with response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    file.write(chunk)
                    bar.update(len(chunk))
            except OSError as error:  # the connection dropped part-way (urllib's errors are OSErrors)
                raise RuntimeError(
                    f"the download of {url} was interrupted after {bar.n} bytes ({error}); nothing was "
                    f"written to {path}. Run again, or put the file there by hand (MD5 {md5})."
                ) from error


# ----- the datasets --------------------------------------------------------------------------------
class _CIFAR(ArrayDataset):
    """Shared reading logic; subclasses give the archive's name, URL, MD5 and members."""

    url: str
    filename: str
    md5: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    meta_member: str

    def __init__(self, root: str | os.PathLike, train: bool = True, download: bool = False) -> None:
        self.root = Path(root).expanduser()
        self.train = train
        archive = self.root / self.filename
        if download:
            _download_file(self.url, archive, self.md5)  # checks the MD5, of a new or an existing file
        elif archive.exists():
            check_md5(archive, self.md5)  # always, also for a file placed by hand
        else:
            raise FileNotFoundError(
                f"{type(self).__name__}: {archive} not found. Pass download=True, or download {self.url} "
                f"yourself and put it at {archive} (MD5 {self.md5})."
            )
        members = self.train_members if train else self.test_members
        with tarfile.open(archive, "r:gz") as tar:
            batches = [self._read_member(tar, name) for name in members]
            meta = self._read_member(tar, self.meta_member)
        images = numpy.concatenate([self._images_of(batch, name) for batch, name in zip(batches, members)])
        labels = numpy.concatenate([self._labels_of(batch, name) for batch, name in zip(batches, members)])
        super().__init__(images, labels, classes=self._class_names(meta))

    def _read_member(self, tar: tarfile.TarFile, name: str) -> dict:
        try:
            file = tar.extractfile(name)
        except KeyError:
            file = None
        if file is None:
            raise ValueError(f"{type(self).__name__}: the archive has no file {name}; is it the official one?")
        content = restricted_loads(file.read(), source=f"{self.filename}:{name}")
        if not isinstance(content, dict):
            raise ValueError(f"{type(self).__name__}: {name} holds a {type(content).__name__}, expected a dict")
        return content

    def _images_of(self, batch: dict, name: str) -> numpy.ndarray:
        """(N, 3072) uint8 rows of R, G, B planes -> (N, 3, 32, 32), a reshape with no copy."""
        data = batch.get(b"data")
        is_rows = isinstance(data, numpy.ndarray) and data.dtype == numpy.uint8 and data.ndim == 2
        if not is_rows or data.shape[1] != 3072:
            found = f"{data.dtype} {data.shape}" if isinstance(data, numpy.ndarray) else type(data).__name__
            raise ValueError(f"{type(self).__name__}: {name}[b'data'] must be (N, 3072) uint8, got {found}")
        return data.reshape(-1, 3, 32, 32)

    def _labels_of(self, batch: dict, name: str) -> numpy.ndarray:
        key = self._label_key()
        if key not in batch:
            raise ValueError(f"{type(self).__name__}: {name} has no key {key!r}; keys are {sorted(batch)}")
        labels = numpy.asarray(batch[key], dtype=numpy.int64)
        if labels.shape != (len(batch[b"data"]),):
            raise ValueError(
                f"{type(self).__name__}: {name} has {labels.shape} labels for {len(batch[b'data'])} images"
            )
        return labels

    def _label_key(self) -> bytes:
        raise NotImplementedError

    def _class_names(self, meta: dict) -> list[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, train={self.train}, n={len(self)})"


class CIFAR10(_CIFAR):
    """CIFAR-10: 32x32 colour images in 10 classes, 50,000 for training and 10,000 for testing.

    CIFAR10(root, train=True, download=False)

    root:     the folder that holds (or will hold) ``cifar-10-python.tar.gz``
    download: fetch the archive when it is missing (its MD5 is checked either way)

    images (N, 3, 32, 32) uint8, labels (N,) int64, classes: ["airplane", "automobile", ...]
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    md5 = "c58f30108f718f92721af3b95e74349a"
    train_members = tuple(f"cifar-10-batches-py/data_batch_{index}" for index in range(1, 6))
    test_members = ("cifar-10-batches-py/test_batch",)
    meta_member = "cifar-10-batches-py/batches.meta"
    # Per-channel statistics of the training images, for transforms.Normalize.
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    # The names in batches.meta, in label order (for code that has a trained model but not the archive).
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def _label_key(self) -> bytes:
        return b"labels"

    def _class_names(self, meta: dict) -> list[str]:
        return [name.decode() for name in meta[b"label_names"]]


class CIFAR100(_CIFAR):
    """CIFAR-100: 32x32 colour images in 100 fine classes grouped into 20 coarse superclasses.

    CIFAR100(root, train=True, download=False, label="fine")

    label: "fine" (100 classes) or "coarse" (20 superclasses); ``classes`` names the chosen ones.
    Otherwise as :class:`CIFAR10`.
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_members = ("cifar-100-python/train",)
    test_members = ("cifar-100-python/test",)
    meta_member = "cifar-100-python/meta"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    # The fine label names in meta, in label order (alphabetical).
    class_names = (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
        "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
        "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
        "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
        "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
        "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose",
        "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel",
        "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    )

    def __init__(
        self, root: str | os.PathLike, train: bool = True, download: bool = False, label: str = "fine"
    ) -> None:
        if label not in ("fine", "coarse"):
            raise ValueError(f"CIFAR100: label must be 'fine' or 'coarse', got {label!r}")
        self.label = label
        super().__init__(root, train=train, download=download)

    def _label_key(self) -> bytes:
        return b"fine_labels" if self.label == "fine" else b"coarse_labels"

    def _class_names(self, meta: dict) -> list[str]:
        key = b"fine_label_names" if self.label == "fine" else b"coarse_label_names"
        return [name.decode() for name in meta[key]]
