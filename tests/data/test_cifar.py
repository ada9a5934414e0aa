"""CIFAR-10/100 readers on small archives built in the exact official format (no network).

The official batch files are Python 2 pickles (protocol 2): strings are raw byte strings
(SHORT_BINSTRING/BINSTRING opcodes) and arrays name ``numpy.core.multiarray._reconstruct``. The
pickler below writes the same bytes from Python 3, so these tests read what the real files hold.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request

import numpy
import pytest

from minigrad.data import cifar
from minigrad.data.cifar import CIFAR10, CIFAR100, ChecksumError, restricted_loads
from minigrad.testing.tolerance import assert_close

IMAGES_PER_BATCH = 10


class Python2StylePickler(pickle._Pickler):
    """Protocol-2 pickles as Python 2 wrote them: every str and bytes becomes a Python 2 byte string."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Python2StylePickler(buffer, protocol=2).dump(obj)
    # NumPy 2 names numpy._core; the official files (NumPy 1) name numpy.core.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_tar_gz(path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return cifar.md5_of_file(path)


def cifar10_members(rng) -> tuple[dict[str, bytes], dict[str, tuple]]:
    """Members of a small CIFAR-10 archive and the (data, labels) put in each batch."""
    members, contents = {}, {}
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (IMAGES_PER_BATCH, 3072), dtype=numpy.uint8)
        labels = [int(label) for label in rng.integers(0, 10, IMAGES_PER_BATCH)]
        batch = {
            b"batch_label": f"training batch {name}".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"image_{index}.png".encode() for index in range(IMAGES_PER_BATCH)],
        }
        members[f"cifar-10-batches-py/{name}"] = py2_pickle(batch)
        contents[name] = (data, labels)
    label_names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
                   b"truck"]
    meta = {b"num_cases_per_batch": IMAGES_PER_BATCH, b"label_names": label_names, b"num_vis": 3072}
    members["cifar-10-batches-py/batches.meta"] = py2_pickle(meta)
    return members, contents


@pytest.fixture
def cifar10_archive(tmp_path, monkeypatch):
    """A small official-format cifar-10-python.tar.gz in tmp_path, with the expected MD5 patched to it."""
    members, contents = cifar10_members(numpy.random.default_rng(0))
    md5 = make_tar_gz(tmp_path / CIFAR10.filename, members)
    monkeypatch.setattr(CIFAR10, "md5", md5)
    return tmp_path, contents


def test_cifar10_reads_official_layout(cifar10_archive):
    root, contents = cifar10_archive
    train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
    assert train.images.shape == (5 * IMAGES_PER_BATCH, 3, 32, 32) and train.images.dtype == numpy.uint8
    assert test.images.shape == (IMAGES_PER_BATCH, 3, 32, 32)
    assert train.labels.dtype == numpy.int64 and test.labels.dtype == numpy.int64
    expected_train_labels = sum((contents[f"data_batch_{index}"][1] for index in range(1, 6)), [])
    numpy.testing.assert_array_equal(train.labels, expected_train_labels)
    numpy.testing.assert_array_equal(test.labels, contents["test_batch"][1])
    assert train.classes[0] == "airplane" and train.classes[9] == "truck" and len(train.classes) == 10
    # Layout, checked pixel by pixel against the official description: row i holds 1024 red values,
    # then 1024 green, then 1024 blue, each plane row-major (index = channel*1024 + y*32 + x).
    data = contents["data_batch_2"][0]
    rng = numpy.random.default_rng(1)
    for _ in range(200):
        image, channel, y, x = rng.integers(0, IMAGES_PER_BATCH), rng.integers(3), rng.integers(32), rng.integers(32)
        assert train.images[IMAGES_PER_BATCH + image, channel, y, x] == data[image, channel * 1024 + y * 32 + x]
    # And the Dataset interface: float32 (C, H, W) in [0, 1] and an int label.
    image, label = test[3]
    assert image.dtype == numpy.float32 and image.shape == (3, 32, 32)
    assert_close(image, contents["test_batch"][0][3].reshape(3, 32, 32) / 255, "image", terms=2, elementwise=True)
    assert label == contents["test_batch"][1][3] and isinstance(label, int)


def test_cifar100_fine_and_coarse(tmp_path, monkeypatch):
    rng = numpy.random.default_rng(2)
    members, expected = {}, {}
    for split in ("train", "test"):
        data = rng.integers(0, 256, (IMAGES_PER_BATCH, 3072), dtype=numpy.uint8)
        fine = [int(label) for label in rng.integers(0, 100, IMAGES_PER_BATCH)]
        coarse = [int(label) for label in rng.integers(0, 20, IMAGES_PER_BATCH)]
        batch = {b"filenames": [b"x.png"] * IMAGES_PER_BATCH, b"batch_label": split.encode(),
                 b"fine_labels": fine, b"coarse_labels": coarse, b"data": data}
        members[f"cifar-100-python/{split}"] = py2_pickle(batch)
        expected[split] = (data, fine, coarse)
    meta = {b"fine_label_names": [f"fine{index}".encode() for index in range(100)],
            b"coarse_label_names": [f"coarse{index}".encode() for index in range(20)]}
    members["cifar-100-python/meta"] = py2_pickle(meta)
    monkeypatch.setattr(CIFAR100, "md5", make_tar_gz(tmp_path / CIFAR100.filename, members))

    fine_test = CIFAR100(tmp_path, train=False)
    coarse_train = CIFAR100(tmp_path, train=True, label="coarse")
    numpy.testing.assert_array_equal(fine_test.labels, expected["test"][1])
    numpy.testing.assert_array_equal(coarse_train.labels, expected["train"][2])
    numpy.testing.assert_array_equal(coarse_train.images.reshape(IMAGES_PER_BATCH, -1), expected["train"][0])
    assert len(fine_test.classes) == 100 and fine_test.classes[7] == "fine7"
    assert len(coarse_train.classes) == 20 and coarse_train.classes[19] == "coarse19"
    with pytest.raises(ValueError, match="'fine' or 'coarse'"):
        CIFAR100(tmp_path, label="medium")


def test_checksum_refusal_names_both_checksums(cifar10_archive):
    root, _ = cifar10_archive
    archive = root / CIFAR10.filename
    original = archive.read_bytes()
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0xFF
    for bad_bytes in (bytes(corrupted), original[: len(original) // 3]):  # corrupted, then truncated
        archive.write_bytes(bad_bytes)
        actual = cifar.md5_of_file(archive)
        with pytest.raises(ChecksumError) as error:
            CIFAR10(root)
        assert CIFAR10.md5 in str(error.value) and actual in str(error.value) and str(archive) in str(error.value)
        # download=True must not silently accept (or overwrite) a bad file already in place either.
        with pytest.raises(ChecksumError):
            CIFAR10(root, download=True)


def test_missing_archive_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10(tmp_path)
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(error.value) and "download=True" in str(error.value)


def test_offline_error_names_the_exact_path(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as error:
        CIFAR10(tmp_path / "data", download=True)
    message = str(error.value)
    assert str(tmp_path / "data" / "cifar-10-python.tar.gz") in message
    assert CIFAR10.url in message and CIFAR10.md5 in message and "offline" in message
    assert os.listdir(tmp_path / "data") == []  # no partial file left behind


class FakeResponse(io.BytesIO):
    """What urlopen returns, serving fixed bytes; optionally failing after ``fail_after`` bytes."""

    def __init__(self, content: bytes, fail_after: int | None = None) -> None:
        super().__init__(content)
        self.headers = {"Content-Length": str(len(content))}
        self.fail_after = fail_after

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        if self.fail_after is not None:
            size = min(size, self.fail_after - self.tell())
        return super().read(size)


def test_download_is_atomic_and_verified(tmp_path, monkeypatch):
    members, contents = cifar10_members(numpy.random.default_rng(3))
    source = tmp_path / "source.tar.gz"
    monkeypatch.setattr(CIFAR10, "md5", make_tar_gz(source, members))
    good_bytes = source.read_bytes()
    root = tmp_path / "root"
    requested = []

    def serve(content, fail_after=None):
        def urlopen(url, timeout=None):
            requested.append(url)
            return FakeResponse(content, fail_after)

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    # A connection that drops part-way, and a download whose bytes are corrupted: both leave nothing.
    serve(good_bytes, fail_after=len(good_bytes) // 2)
    with pytest.raises(RuntimeError, match="interrupted"):
        CIFAR10(root, download=True)
    assert os.listdir(root) == []
    corrupted = bytearray(good_bytes)
    corrupted[100] ^= 1
    serve(bytes(corrupted))
    with pytest.raises(ChecksumError, match=CIFAR10.md5):
        CIFAR10(root, download=True)
    assert os.listdir(root) == []

    # A good download lands at the final name and loads.
    serve(good_bytes)
    test = CIFAR10(root, train=False, download=True)
    assert requested[-1] == CIFAR10.url
    assert sorted(os.listdir(root)) == ["cifar-10-python.tar.gz"]
    numpy.testing.assert_array_equal(test.images.reshape(IMAGES_PER_BATCH, -1), contents["test_batch"][0])
    # Once there (and verified), it is not downloaded again.
    count = len(requested)
    CIFAR10(root, train=False, download=True)
    assert len(requested) == count


class Payload:
    """Unpickling this would call os.mkdir(path): the classic pickle code-execution trick."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="mkdir"):
        restricted_loads(payload)
    assert not marker.exists()

    # The same payload inside an archive whose checksum matches (a compromised mirror) is refused too.
    members, _ = cifar10_members(numpy.random.default_rng(4))
    members["cifar-10-batches-py/test_batch"] = payload
    monkeypatch.setattr(CIFAR10, "md5", make_tar_gz(tmp_path / CIFAR10.filename, members))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        CIFAR10(tmp_path, train=False)
    assert not marker.exists()


def test_restricted_unpickler_loads_plain_data():
    value = {b"a": [1, 2.5, b"x", (3, None)], b"array": numpy.arange(6, dtype=numpy.int64).reshape(2, 3)}
    for data in (py2_pickle(value), pickle.dumps(value, protocol=3), pickle.dumps(value, protocol=4)):
        loaded = restricted_loads(data)
        assert loaded[b"a"] == [1, 2.5, b"x", (3, None)]
        numpy.testing.assert_array_equal(loaded[b"array"], value[b"array"])
        assert loaded[b"array"].dtype == numpy.int64
