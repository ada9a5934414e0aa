"""Reading PyTorch ``.pth``/``.pt`` files without torch, through an unpickler that can only rebuild tensors.

    >>> state = read_torch_file("googlenet-1378be20.pth")    # {"conv1.conv.weight": ndarray, ...}

A file written by ``torch.save`` is a pickle plus raw tensor bytes. The pickle describes the object (a dict
of names to tensors); each tensor is a *view* of a *storage*, a flat 1-D buffer of one dtype, given by an
offset and a size and stride per axis, exactly as NumPy's ``as_strided`` describes a view. The storages'
bytes are kept outside the pickle, which refers to them by key through pickle's "persistent id" hook:
``("storage", torch.FloatStorage, "0", "cpu", numel)``. Two layouts exist:

* **zip** (torch >= 1.6, the default): ``NAME/data.pkl`` is the pickle, ``NAME/data/<key>`` holds each
  storage's bytes, ``NAME/byteorder`` says ``little`` or ``big`` (absent: little), plus version records.
* **legacy** (torch < 1.6, and ``_use_new_zipfile_serialization=False``; torchvision's older published
  weights, ``googlenet-1378be20.pth`` among them): four pickles back to back (a magic number, a protocol
  version, a dict of system info, the object itself), a pickled list of storage keys, and then, for each key
  in that order, an 8-byte little-endian element count and the storage's little-endian bytes.

**No code runs.** Unpickling can call any importable function, so the pickle is read with
:class:`TensorUnpickler` (an :class:`minigrad.safe_pickle.AllowListUnpickler`), which resolves only
``collections.OrderedDict``, torch's tensor-rebuilding functions (replaced by our own functions of the same
signature, which check every offset, size and stride against the storage before making a NumPy view), the
storage classes and the dtype names (inert markers here), and refuses every other global with an
``UnpicklingError`` naming the file and the global. torch is never imported.

Tensors come back as NumPy arrays that own their memory, C-contiguous, in their own dtype: float32/64/16,
int8/16/32/64, uint8/16/32/64, bool, complex64/128, and bfloat16 as float32 (NumPy has no bfloat16; every
bfloat16 value is exactly a float32). Parameters and tensor subclasses come back as plain arrays.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from collections import OrderedDict
from typing import Any

import numpy
from numpy.lib.stride_tricks import as_strided

from minigrad.safe_pickle import AllowListUnpickler

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy file
LEGACY_PROTOCOL_VERSION = 1001
BFLOAT16 = "bfloat16"  # stored as uint16 (the top half of a float32), read as float32

#: torch's dtypes by name -> NumPy type codes (little-endian where the byte order matters).
TORCH_DTYPES: dict[str, str | None] = {
    "float32": "<f4", "float": "<f4", "float64": "<f8", "double": "<f8", "float16": "<f2", "half": "<f2",
    "bfloat16": BFLOAT16, "int64": "<i8", "long": "<i8", "int32": "<i4", "int": "<i4", "int16": "<i2",
    "short": "<i2", "int8": "i1", "uint8": "u1", "uint16": "<u2", "uint32": "<u4", "uint64": "<u8",
    "bool": "?", "complex64": "<c8", "cfloat": "<c8", "complex128": "<c16", "cdouble": "<c16",
    # no NumPy equivalent: allowed as names (they run nothing), refused with a clear message when used
    "float8_e4m3fn": None, "float8_e5m2": None, "float8_e4m3fnuz": None, "float8_e5m2fnuz": None,
    "complex32": None, "chalf": None, "qint8": None, "quint8": None, "qint32": None, "quint4x2": None,
}
#: the legacy storage classes, one per dtype, as they appear in pickles (``torch.FloatStorage``).
STORAGE_CLASSES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class TorchFileError(ValueError):
    """A file that is not a readable PyTorch state dict: truncated, corrupt, or holding what we cannot read."""


# ----- inert stand-ins for torch's classes and the tensors being rebuilt ----------------------------------
class _Inert:
    """Refuses pickle's BUILD opcode, so a crafted file cannot rewrite the fields checked below."""

    def __setstate__(self, state: Any) -> None:
        raise TorchFileError(f"the pickle tries to set the state of {self!r}; only tensors' own fields are allowed")


class TorchName(_Inert):
    """A torch global that the unpickler may name but never calls: a storage class, a dtype, ``torch.Tensor``."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __repr__(self) -> str:
        return f"<torch {self.kind} {self.name}>"


class Storage(_Inert):
    """One flat buffer of ``numel`` elements of torch dtype ``dtype``; ``array`` is filled once its bytes are read."""

    def __init__(self, key: str, dtype: str, numel: int, byteorder: str = "little") -> None:
        self.key, self.dtype, self.numel, self.byteorder = key, dtype, numel, byteorder
        self.array: numpy.ndarray | None = None  # native byte order (bfloat16 already widened to float32)
        self.view_of: tuple[Storage, int] | None = None  # legacy storage views: (root storage, element offset)

    def elements(self) -> numpy.ndarray:
        if self.view_of is not None:
            root, offset = self.view_of
            return root.elements()[offset : offset + self.numel]
        if self.array is None:
            raise TorchFileError(f"storage {self.key} was never read: the file is truncated or corrupt")
        return self.array

    def __repr__(self) -> str:
        return f"<storage {self.key}: {self.numel} x {self.dtype}>"


class TensorRecord(_Inert):
    """A tensor to be made once every storage is read: a view (offset, size, stride) of ``storage``."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None) -> None:
        if not isinstance(storage, Storage):
            raise TorchFileError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
        if not isinstance(size, tuple) or not isinstance(stride, tuple):
            raise TorchFileError(f"a tensor's size {size!r:.40} and stride {stride!r:.40} must be tuples")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype = dtype  # _rebuild_tensor_v3: the dtype of a tensor viewing an untyped (byte) storage


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> TensorRecord:
    return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> TensorRecord:
    return TensorRecord(storage, storage_offset, size, stride)  # gradients and hooks do not travel


def _rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                       backward_hooks: Any, dtype: Any, metadata: Any = None) -> TensorRecord:
    if not (isinstance(dtype, TorchName) and dtype.kind == "dtype"):
        raise TorchFileError(f"_rebuild_tensor_v3 got {dtype!r} where a dtype belongs")
    return TensorRecord(storage, storage_offset, size, stride, dtype=dtype.name)


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None,
                       state: Any = None) -> Any:
    return data  # an nn.Parameter is its tensor, for our purposes


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """A tensor subclass or a tensor with Python attributes: rebuild the plain tensor, drop the rest."""
    if func not in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter):
        raise TorchFileError(f"_rebuild_from_type_v2 asked to call {func!r}, which is not a tensor rebuilder")
    if not isinstance(args, tuple):
        raise TorchFileError("_rebuild_from_type_v2: its arguments are not a tuple")
    return func(*args)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): TorchName("class", "Tensor"),
        ("torch.nn.parameter", "Parameter"): TorchName("class", "Parameter"),
    }
    for name in STORAGE_CLASSES:
        allowed[("torch", name)] = TorchName("storage", name)
    for module in ("torch", "torch.storage"):
        allowed[(module, "UntypedStorage")] = TorchName("storage", "UntypedStorage")
    for name in TORCH_DTYPES:
        allowed[("torch", name)] = TorchName("dtype", name)
    return allowed


class TensorUnpickler(AllowListUnpickler):
    """Unpickles the object part of a torch file; storages come from ``load_storage(key, dtype, numel)``."""

    allowed = _allowed_globals()
    hint = ("a state dict may hold only tensors, dicts, lists and numbers. A whole pickled model or an "
            "optimizer with custom classes cannot be read without running its code: save model.state_dict() "
            "instead")

    def __init__(self, file: Any, *, source: str, load_storage: Any) -> None:
        super().__init__(file, source=source, encoding="utf-8")
        self.load_storage = load_storage
        self.storages: dict[str, Storage] = {}

    def persistent_load(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchFileError(f"unknown persistent id {pid!r:.80} (only storages are expected)")
        storage_type, key, _location, numel = pid[1:5]
        if not (isinstance(storage_type, TorchName) and storage_type.kind == "storage"):
            raise TorchFileError(f"persistent id names {storage_type!r} where a storage class belongs")
        if not (isinstance(key, str) and isinstance(numel, int) and numel >= 0):
            raise TorchFileError(f"malformed storage record {pid!r:.80}")
        dtype = STORAGE_CLASSES.get(storage_type.name, "uint8")  # UntypedStorage: bytes
        if key not in self.storages:
            self.storages[key] = self.load_storage(key, dtype, numel)
        storage = self.storages[key]
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        view_key, offset, view_size = view  # legacy storage views: a slice of the root storage
        if not (isinstance(offset, int) and isinstance(view_size, int) and 0 <= offset
                and offset + view_size <= numel):
            raise TorchFileError(f"storage view {view!r} lies outside storage {key} of {numel} elements")
        sliced = Storage(f"{key}[{offset}:{offset + view_size}]", dtype, view_size)
        sliced.view_of = (storage, offset)
        return self.storages.setdefault(str(view_key), sliced)


# ----- from records to NumPy arrays ---------------------------------------------------------------------
def numpy_dtype(torch_dtype: str, byteorder: str = "little") -> numpy.dtype:
    """The NumPy dtype that holds a storage of ``torch_dtype`` on disk (bfloat16: its raw uint16)."""
    code = TORCH_DTYPES.get(torch_dtype)
    if code is None:
        raise TorchFileError(f"dtype {torch_dtype} has no NumPy equivalent; convert the tensor to float32 "
                             f"(tensor.float()) before saving")
    dtype = numpy.dtype("<u2" if code == BFLOAT16 else code)
    return dtype.newbyteorder("<" if byteorder == "little" else ">") if dtype.itemsize > 1 else dtype


def storage_array(raw: bytes, torch_dtype: str, numel: int, byteorder: str, where: str) -> numpy.ndarray:
    """A storage's bytes as a native-endian NumPy array of ``numel`` elements (bfloat16 widened to float32)."""
    dtype = numpy_dtype(torch_dtype, byteorder)
    if len(raw) < numel * dtype.itemsize:
        raise TorchFileError(f"{where} holds {len(raw)} bytes, but its tensor needs {numel} x {dtype.itemsize}: "
                             f"the file is truncated or corrupt")
    array = numpy.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="))
    if torch_dtype == BFLOAT16:  # a bfloat16 is the upper 16 bits of a float32
        array = (array.astype(numpy.uint32) << 16).view(numpy.float32)
    return array


def tensor_array(record: TensorRecord, name: str) -> numpy.ndarray:
    """The tensor a record describes, as a native-endian C-contiguous array that owns its memory.

    Every index the view can reach, ``offset + sum_i (size_i - 1) * stride_i``, must lie inside the
    storage: a crafted file cannot make ``as_strided`` read memory that is not the storage's.
    """
    elements = record.storage.elements()
    if record.dtype is not None:  # an untyped (byte) storage, viewed as the tensor's dtype
        dtype = numpy_dtype(record.dtype, record.storage.byteorder)
        if elements.dtype != numpy.uint8 or elements.size % dtype.itemsize:
            raise TorchFileError(f"{name}: a storage of {elements.size} x {elements.dtype} cannot hold "
                                 f"{record.dtype} elements")
        elements = elements.view(dtype)
    offset, size, stride = record.offset, record.size, record.stride
    integers = all(isinstance(value, int) and not isinstance(value, bool) for value in (offset, *size, *stride))
    if not integers or len(size) != len(stride) or offset < 0 or min((*size, *stride), default=0) < 0:
        raise TorchFileError(f"{name}: malformed view (offset {offset!r}, size {size!r}, stride {stride!r})")
    if 0 in size:
        array = numpy.zeros(size, dtype=elements.dtype)
    else:
        last = offset + sum((length - 1) * step for length, step in zip(size, stride))
        if last >= elements.size:
            raise TorchFileError(f"{name}: a view reaching element {last} of a storage of {elements.size} "
                                 f"elements (offset {offset}, size {size}, stride {stride}); the file is corrupt")
        view = as_strided(elements[offset:], shape=size, strides=[step * elements.itemsize for step in stride])
        array = numpy.array(view, order="C")
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if record.dtype == BFLOAT16:
        array = (array.astype(numpy.uint32) << 16).view(numpy.float32)
    return array


def materialise(value: Any, name: str = "") -> Any:
    """Replace every TensorRecord in nested dicts, lists and tuples by its array (dicts become plain dicts)."""
    if isinstance(value, TensorRecord):
        return tensor_array(value, name or "the tensor")
    if isinstance(value, dict):
        return {key: materialise(item, f"{name}.{key}" if name else str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [materialise(item, f"{name}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (TorchName, Storage)):
        raise TorchFileError(f"{name or 'the file'} holds a bare {value!r}, not a tensor")
    return value


# ----- the two file layouts -------------------------------------------------------------------------------
def read_torch_file(path: str | os.PathLike) -> Any:
    """The object a ``torch.save`` file holds, tensors as NumPy arrays; torch is not needed and no code runs.

    Raises ``pickle.UnpicklingError`` for a pickle that names anything but tensors and containers (naming
    the file and the global), and :class:`TorchFileError` for a truncated, corrupt or unsupported file.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        head = file.read(4)
    if not head:
        raise TorchFileError(f"{path} is empty (0 bytes): the save was interrupted; save the file again")
    try:
        if head.startswith(b"PK"):
            return _read_zip(path)
        if head[:1] == b"\x80":  # a pickle's PROTO opcode: the legacy layout
            return _read_legacy(path)
    except pickle.UnpicklingError as error:
        if str(error).startswith("refusing"):  # names the file and the global already
            raise
        raise TorchFileError(f"{path} is truncated or corrupt (UnpicklingError: {error}); download or save it "
                             f"again") from None
    except TorchFileError as error:
        if path in str(error):
            raise
        raise TorchFileError(f"{path}: {error}") from None
    except (zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RecursionError) as error:
        raise TorchFileError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}); download or "
                             f"save it again") from None
    if tarfile.is_tarfile(path):
        raise TorchFileError(f"{path} is in the tar format of torch < 0.4, which minigrad does not read; load it "
                             f"with torch and re-save it: torch.save(torch.load(PATH), NEW_PATH)")
    raise TorchFileError(f"{path} is not a PyTorch file (it starts with bytes {head!r}, neither a zip archive nor "
                         f"a pickle); read_state_dict reads .pth/.pt, .npz and .safetensors")


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any("/code/" in name or name.endswith("/constants.pkl") for name in names):
            raise TorchFileError(f"{path} is a TorchScript archive (torch.jit.save), not a state dict; save "
                                 f"model.state_dict() with torch.save instead")
        pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(f"{path} is a zip archive without exactly one <name>/data.pkl; is it a file "
                                 f"written by torch.save?")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise TorchFileError(f"{path}: unknown byte order {byteorder!r} in {prefix}byteorder")

        def load_storage(key: str, dtype: str, numel: int) -> Storage:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFileError(f"{path} has no storage {member}: the file is truncated or corrupt")
            storage = Storage(key, dtype, numel, byteorder)
            storage.array = storage_array(archive.read(member), dtype, numel, byteorder, f"{path}:{member}")
            return storage

        unpickler = TensorUnpickler(io.BytesIO(archive.read(pickles[0])), source=path, load_storage=load_storage)
        return materialise(unpickler.load())


def _read_legacy(path: str) -> Any:
    """The layout of torch < 1.6: header pickles, the object, the storage keys, then the storages in order."""
    with open(path, "rb") as file:
        def header() -> Any:
            return TensorUnpickler(file, source=path, load_storage=None).load()

        if header() != LEGACY_MAGIC_NUMBER:
            raise TorchFileError(f"{path} starts with a pickle but is not a torch.save file (wrong magic number)")
        if header() != LEGACY_PROTOCOL_VERSION:
            raise TorchFileError(f"{path} uses a legacy protocol minigrad does not know; load it with torch and "
                                 f"re-save it (torch.save(torch.load(PATH), NEW_PATH))")
        system = header()
        if not isinstance(system, dict) or not system.get("little_endian", True):
            raise TorchFileError(f"{path} was written on a big-endian machine in the legacy format; re-save it "
                                 f"with a current torch (torch.save(torch.load(PATH), NEW_PATH))")
        pending: dict[str, Storage] = {}

        def defer(key: str, dtype: str, numel: int) -> Storage:
            pending[key] = Storage(key, dtype, numel)  # its bytes come after the object
            return pending[key]

        obj = TensorUnpickler(file, source=path, load_storage=defer).load()
        keys = header()
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(pending):
            raise TorchFileError(f"{path}: the storage list does not match the tensors; the file is corrupt")
        for key in keys:
            storage = pending[str(key)]
            count = int.from_bytes(file.read(8), "little", signed=True)
            if count != storage.numel:
                raise TorchFileError(f"{path}: storage {key} should hold {storage.numel} elements, its header "
                                     f"says {count}; the file is truncated or corrupt")
            itemsize = numpy_dtype(storage.dtype).itemsize
            where = f"{path} (storage {key})"
            if count * itemsize > os.fstat(file.fileno()).st_size - file.tell():  # before allocating that much
                raise TorchFileError(f"{where} needs {count} x {itemsize} bytes, more than the rest of the file: "
                                     f"the file is truncated or corrupt")
            storage.array = storage_array(file.read(count * itemsize), storage.dtype, count, "little", where)
    return materialise(obj)
