"""Reading torch.save files without torch: every dtype and view as torch wrote it, both layouts, byte orders,
and files that are malicious, malformed, truncated or of another kind refused with a message naming them."""

from __future__ import annotations

import collections
import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from minigrad.models.torch_pickle import TorchFileError, read_torch_file

LAYOUTS = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}}


def expected_array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def tensors_of_every_kind() -> dict:
    torch.manual_seed(0)
    base = torch.arange(60, dtype=torch.float64).reshape(5, 12)
    with_attribute = torch.randn(3)
    with_attribute.note = "kept out"  # pickled through torch._tensor._rebuild_from_type_v2
    return collections.OrderedDict(
        float32=torch.randn(3, 4), float64=base, float16=torch.randn(7).half(),
        bfloat16=torch.randn(2, 3).bfloat16(), int64=torch.tensor(12), int32=torch.arange(-4, 4, dtype=torch.int32),
        int16=torch.arange(6, dtype=torch.int16), int8=torch.arange(-3, 3, dtype=torch.int8),
        uint8=torch.arange(250, 256, dtype=torch.uint8), boolean=torch.tensor([True, False, True]),
        complex64=torch.randn(2, dtype=torch.complex64), uint16=torch.arange(5).to(torch.uint16),
        # views of one storage: an offset, a step, a transpose, a column; torch saves the storage once
        rows=base[1:3], every_other=base[:, ::2], transposed=base.t(), column=base[:, 5],
        bfloat16_view=torch.randn(4, 4).bfloat16()[1:, 2], empty=torch.zeros(0, 3),
        parameter=torch.nn.Parameter(torch.randn(2, 2)), with_attribute=with_attribute,
        nested=[torch.ones(2), {"inner": torch.zeros(1, dtype=torch.int64)}],
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_dtype_and_view_reads_as_torch_wrote_it(layout, tmp_path):
    state = tensors_of_every_kind()
    path = tmp_path / "state.pth"
    torch.save(state, path, **LAYOUTS[layout])
    loaded = read_torch_file(path)
    assert list(loaded) == list(state)  # the order of the keys too
    for key, tensor in state.items():
        if key == "nested":
            np.testing.assert_array_equal(loaded[key][0], tensor[0].numpy())
            assert loaded[key][1]["inner"].dtype == np.int64
            continue
        expected = expected_array(tensor)
        assert loaded[key].dtype == expected.dtype, key
        assert loaded[key].shape == expected.shape, key
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)
        assert loaded[key].flags.c_contiguous and loaded[key].flags.owndata, key
    loaded["rows"][0, 0] = -1  # views come back as copies: writing one leaves the others alone
    assert loaded["float64"][1, 0] == 12


def rewrite_zip(source, target, change) -> None:
    """Copy a zip member by member, replacing members through ``change(name, data) -> data``."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy:
        for info in original.infolist():
            copy.writestr(info.filename, change(info.filename, original.read(info.filename)))


def test_big_endian_files_are_byteswapped(tmp_path):
    state = {"weight": torch.randn(3, 5), "count": torch.tensor(7), "half": torch.randn(4).half(),
             "brain": torch.randn(3).bfloat16(), "u16": torch.arange(3).to(torch.uint16)}
    torch.save(state, tmp_path / "little.pth")
    itemsizes = {}  # storage key -> element size, from the order torch wrote them
    for index, tensor in enumerate(state.values()):
        itemsizes[f"data/{index}"] = tensor.element_size()

    def to_big_endian(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        suffix = name.split("/", 1)[1]
        if suffix in itemsizes and itemsizes[suffix] > 1:
            return np.frombuffer(data, dtype=f"<u{itemsizes[suffix]}").astype(f">u{itemsizes[suffix]}").tobytes()
        return data

    rewrite_zip(tmp_path / "little.pth", tmp_path / "big.pth", to_big_endian)
    big = read_torch_file(tmp_path / "big.pth")
    for key, tensor in state.items():
        assert big[key].dtype.isnative, key
        np.testing.assert_array_equal(big[key], expected_array(tensor), err_msg=key)


# ----- pickles that try to run code ---------------------------------------------------------------------
class RunsCode:
    """Unpickling this calls os.system: what a malicious .pth would do."""

    def __init__(self, marker) -> None:
        self.command = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"conv.weight": RunsCode(marker)}, protocol=2)
    pickle.loads(payload)  # the payload is real: plain pickle runs it and the marker appears ...
    assert marker.exists()
    marker.unlink()

    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "genuine.pth")
    rewrite_zip(tmp_path / "genuine.pth", tmp_path / "evil.pth",
                lambda name, data: payload if name.endswith("/data.pkl") else data)
    with pytest.raises(pickle.UnpicklingError) as refused:
        read_torch_file(tmp_path / "evil.pth")
    message = str(refused.value)
    assert str(tmp_path / "evil.pth") in message and f"{os.system.__module__}.system" in message
    assert "state_dict()" in message  # and what to do instead
    assert not marker.exists()  # ... but read_torch_file runs nothing

    legacy = io.BytesIO()  # the same payload in the legacy layout, after a genuine header
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, legacy, protocol=2)
    (tmp_path / "evil-legacy.pth").write_bytes(legacy.getvalue() + payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global .*system"):
        read_torch_file(tmp_path / "evil-legacy.pth")
    assert not marker.exists()


def test_a_whole_pickled_model_is_refused_with_the_fix(tmp_path):
    torch.save(torch.nn.Linear(2, 3), tmp_path / "model.pth")  # the module object, not its state dict
    with pytest.raises(pickle.UnpicklingError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict\(\)"):
        read_torch_file(tmp_path / "model.pth")


# ----- crafted views: the checks that keep as_strided inside the storage ---------------------------------
class CraftedTensor:
    def __init__(self, offset, size, stride) -> None:
        self.args = (offset, size, stride)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (STORAGE, *self.args, False, collections.OrderedDict()))


STORAGE = object()  # stands for the one float32 storage of 6 elements in crafted files


def write_crafted(path, value, storage_bytes: bytes = np.arange(6, dtype="<f4").tobytes()) -> None:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 6) if obj is STORAGE else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(value)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", storage_bytes)


def test_crafted_views_are_read_when_inside_the_storage(tmp_path):
    write_crafted(tmp_path / "ok.pth", {"a": CraftedTensor(1, (2, 2), (3, 1)), "b": CraftedTensor(5, (), ())})
    loaded = read_torch_file(tmp_path / "ok.pth")
    np.testing.assert_array_equal(loaded["a"], [[1, 2], [4, 5]])
    assert loaded["b"].shape == () and loaded["b"] == 5


@pytest.mark.parametrize("offset, size, stride, what", [
    (5, (2,), (1,), "reaching element 6"),          # one past the end
    (0, (2, 3), (4, 1), "reaching element 6"),     # a row stride that overshoots
    (6, (), (), "reaching element 6"),
    (-1, (2,), (1,), "malformed view"),
    (0, (2,), (-1,), "malformed view"),
    (0, (2, 2), (1,), "malformed view"),
    (0, (2.0,), (1,), "malformed view"),
])
def test_crafted_views_outside_the_storage_are_refused(offset, size, stride, what, tmp_path):
    path = tmp_path / "crafted.pth"
    write_crafted(path, {"w": CraftedTensor(offset, size, stride)})
    with pytest.raises(TorchFileError, match=what) as error:
        read_torch_file(path)
    assert str(path) in str(error.value)


def test_a_storage_shorter_than_its_record_is_truncation(tmp_path):
    path = tmp_path / "short.pth"
    write_crafted(path, {"w": CraftedTensor(0, (6,), (1,))}, storage_bytes=b"\0" * 20)
    with pytest.raises(TorchFileError, match="holds 20 bytes, but its tensor needs 6 x 4.*truncated"):
        read_torch_file(path)


# ----- truncated, corrupt and foreign files ---------------------------------------------------------------
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("keep", [0.5, 0.97, 40])
def test_truncated_files_name_the_path(layout, keep, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.randn(64, 64), "b": torch.randn(64)}, path, **LAYOUTS[layout])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(TorchFileError, match="truncated or corrupt") as error:
        read_torch_file(path)
    assert str(path) in str(error.value)


def test_a_flipped_byte_in_a_zip_storage_is_caught_by_its_checksum(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.randn(256)}, path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TorchFileError, match=r"weights\.pth is truncated or corrupt.*CRC"):
        read_torch_file(path)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_empty_foreign_and_ancient_files_say_what_they_are(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(TorchFileError, match="empty.pth is empty"):
        read_torch_file(tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("not weights at all")
    with pytest.raises(TorchFileError, match="text.pth is not a PyTorch file"):
        read_torch_file(tmp_path / "text.pth")
    with tarfile.open(tmp_path / "ancient.pth", "w") as tar:  # torch < 0.4 saved tar archives
        info = tarfile.TarInfo("sys_info")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(TorchFileError, match=r"ancient.pth is in the tar format.*re-save"):
        read_torch_file(tmp_path / "ancient.pth")
    with zipfile.ZipFile(tmp_path / "other.pth", "w") as archive:
        archive.writestr("readme.txt", "a zip, but not torch's")
    with pytest.raises(TorchFileError, match="other.pth is a zip archive without exactly one"):
        read_torch_file(tmp_path / "other.pth")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    with pytest.raises(TorchFileError, match="scripted.pt is a TorchScript archive"):
        read_torch_file(tmp_path / "scripted.pt")


def test_dtypes_without_a_numpy_equivalent_are_named(tmp_path):
    torch.save({"w": torch.zeros(3, dtype=torch.float8_e4m3fn)}, tmp_path / "fp8.pth")
    with pytest.raises(TorchFileError, match="fp8.pth: dtype float8_e4m3fn has no NumPy equivalent"):
        read_torch_file(tmp_path / "fp8.pth")
