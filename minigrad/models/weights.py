"""Moving weights between PyTorch and minigrad: ``.pth``/``.pt``, ``.safetensors`` and ``.npz``, none needing torch.

minigrad's GoogLeNet uses torchvision's parameter names, so a state dict moves with no renaming table:
``load_torch_state_dict(model, "googlenet-1378be20.pth")``. :func:`read_state_dict` reads

* a PyTorch ``.pth``/``.pt`` written by ``torch.save`` (the zip layout, and the legacy layout of torch < 1.6
  that torchvision's older weights use) **without torch**, through :mod:`minigrad.models.torch_pickle`: its
  unpickler rebuilds only tensors, dicts, lists and numbers and refuses every other global by name, so
  loading a file from the internet runs no code from it;
* a ``.safetensors`` file, through the ``safetensors`` package's NumPy API (``pip install safetensors``, or
  ``pip install 'minigrad[weights]'``); the format holds raw arrays and a JSON header, nothing executable;
* an ``.npz``, with NumPy's pickle support disabled.

``minigrad convert-weights IN OUT`` writes OUT as ``.npz`` or ``.safetensors`` (by its extension), whole or
not at all: to a temporary file in the same folder first, then renamed over OUT.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy

from minigrad.models.torch_pickle import read_torch_file
from minigrad.nn.module import Module, as_numpy

WRAPPER_KEYS = ("state_dict", "model")  # training scripts often save {"state_dict": ..., "epoch": ...}
OUTPUT_FORMATS = (".npz", ".safetensors")


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, numpy.ndarray]:
    """A state dict as NumPy arrays, from a mapping or a ``.pth``/``.pt``, ``.safetensors`` or ``.npz`` file.

    A checkpoint that wraps the weights (``{"state_dict": ...}`` or ``{"model": ...}``) is unwrapped, and
    the ``module.`` prefix that ``torch.nn.DataParallel`` adds to every key is removed. torch is never
    needed; see the module docstring for why reading a ``.pth`` this way runs no code.
    """
    label = "the mapping"
    if isinstance(source, Mapping):
        state: Any = source
    else:
        path = label = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"read_state_dict: no file at {path!r}")
        if path.endswith(".npz"):
            state = _read_npz(path)
        elif path.endswith(".safetensors"):
            state = _read_safetensors(path)
        else:
            state = read_torch_file(path)
    if not isinstance(state, Mapping):
        raise TypeError(f"read_state_dict: {label!r} holds a {type(state).__name__}, not a state dict; save "
                        f"model.state_dict() rather than the model or a single tensor")
    for key in WRAPPER_KEYS:
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
    arrays = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        array = as_numpy(value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"read_state_dict: {label!r} entry {key!r} is a {type(value).__name__}, not a tensor; "
                            f"a state dict maps names to tensors")
        arrays[name] = array
    return arrays


def _read_npz(path: str) -> dict[str, numpy.ndarray]:
    import zipfile

    try:
        with numpy.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ValueError(f"read_state_dict: {path} is truncated or corrupt ({type(error).__name__}: {error})") from None


def _safetensors_numpy(path: str) -> Any:
    try:
        import safetensors.numpy  # only here: .pth and .npz files must never need it
    except ImportError as error:
        raise ImportError(f"{path}: .safetensors files need the safetensors package: pip install safetensors "
                          f"(or pip install 'minigrad[weights]')") from error
    return safetensors.numpy


def _read_safetensors(path: str) -> dict[str, numpy.ndarray]:
    api = _safetensors_numpy(path)
    try:
        return api.load_file(path)
    except TypeError as error:  # a dtype NumPy lacks, such as bfloat16
        raise TypeError(f"read_state_dict: {path} holds a dtype NumPy cannot represent ({error}); convert the "
                        f"tensors to float32 before saving") from None
    except Exception as error:  # safetensors' own SafetensorError: a bad header or a short file
        raise ValueError(f"read_state_dict: {path} is not a readable .safetensors file ({error}); it may be "
                         f"truncated or corrupt") from None


def load_torch_state_dict(
    model: Module, path_or_dict: str | os.PathLike | Mapping[str, Any], strict: bool = True
) -> tuple[list[str], list[str]]:
    """Load a PyTorch state dict (a ``.pth``, ``.safetensors``, ``.npz`` or a dict) into ``model``.

    Returns (missing, unexpected) keys as :meth:`Module.load_state_dict` does; with ``strict=True`` any
    mismatch is an error listing the keys. For torchvision's pretrained googlenet build the model with
    ``inception_v1(variant="torchvision", transform_input=True)``.
    """
    return model.load_state_dict(read_state_dict(path_or_dict), strict=strict)


def convert_weights(in_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Convert a state dict file (``.pth``, ``.safetensors`` or ``.npz``) to ``.npz`` or ``.safetensors``.

    The output format follows ``out_path``'s extension. The file is written to a temporary name in the same
    folder, flushed to disk and then renamed, so an interrupted conversion never leaves a half-written
    ``out_path`` (nor touches one that was there). Returns the number of arrays written.
    """
    out_path = os.fspath(out_path)
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in OUTPUT_FORMATS:
        raise ValueError(f"convert_weights: cannot write {out_path!r}; the output must end in .npz or .safetensors")
    if extension == ".safetensors":
        api = _safetensors_numpy(out_path)  # before the slow read: a missing package fails at once
    state = read_state_dict(in_path)
    if extension == ".safetensors":
        # C order, as safetensors needs (not numpy.ascontiguousarray: it turns a 0-d array into shape (1,))
        payload = api.save({key: value if value.flags.c_contiguous else value.copy(order="C")
                            for key, value in state.items()})
    folder = os.path.dirname(os.path.abspath(out_path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".convert-", suffix=extension)
    try:
        with os.fdopen(handle, "wb") as file:
            if extension == ".npz":
                numpy.savez(file, **state)
            else:
                file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by their owner only
        os.replace(temporary, out_path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return len(state)


def convert_weights_command(args: argparse.Namespace) -> int:
    """``minigrad convert-weights IN OUT``: print what was written, or one line saying what is wrong."""
    import pickle
    import sys

    try:
        count = convert_weights(args.input, args.output)
    except (OSError, ValueError, TypeError, ImportError, KeyError, pickle.UnpicklingError) as error:
        print(f"minigrad convert-weights: {error}", file=sys.stderr)
        return 1
    print(f"wrote {count} arrays to {args.output}")
    return 0


def register_command(subparsers: Any) -> None:
    """Add ``convert-weights IN OUT`` to the ``minigrad`` command line (``subparsers`` from add_subparsers)."""
    parser = subparsers.add_parser(
        "convert-weights", help="convert a state dict (.pth, .safetensors, .npz) to .npz or .safetensors",
        description="Convert a state dict (e.g. torchvision's googlenet weights, a .pth) to a NumPy .npz or a "
        ".safetensors file, chosen by OUT's extension. Reading a .pth needs no torch and runs no code from it.",
    )
    parser.add_argument("input", help="the .pth/.pt, .safetensors or .npz file to read")
    parser.add_argument("output", help="the .npz or .safetensors file to write")
    parser.set_defaults(handler=convert_weights_command)
