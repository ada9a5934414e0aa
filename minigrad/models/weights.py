"""Moving weights between PyTorch and minigrad: read a ``.pth`` state dict, convert it to ``.npz`` once.

minigrad's GoogLeNet uses torchvision's parameter names, so a state dict moves with no renaming
table: ``load_torch_state_dict(model, "googlenet.pth")``. Reading a ``.pth`` needs torch (it is a
pickle, read with ``weights_only=True`` so no code runs); ``minigrad convert-weights IN.pth OUT.npz``
converts it once, and from then on the ``.npz`` loads with plain NumPy, pickle disabled.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy

from minigrad.nn.module import Module, _as_array

WRAPPER_KEYS = ("state_dict", "model")  # training scripts often save {"state_dict": ..., "epoch": ...}


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, numpy.ndarray]:
    """A state dict as NumPy arrays, from a mapping, a ``.npz`` file or a PyTorch ``.pth``/``.pt`` file.

    A checkpoint that wraps the weights (``{"state_dict": ...}`` or ``{"model": ...}``) is unwrapped, and
    the ``module.`` prefix that ``torch.nn.DataParallel`` adds to every key is removed.
    """
    if isinstance(source, Mapping):
        state: Mapping[str, Any] = source
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"read_state_dict: no file at {path!r}")
        if path.endswith(".npz"):
            with numpy.load(path, allow_pickle=False) as archive:
                state = {key: archive[key] for key in archive.files}
        else:
            state = _torch_load(path)
    for key in WRAPPER_KEYS:
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
    arrays = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        arrays[name] = _as_array(value)
    return arrays


def _torch_load(path: str) -> Mapping[str, Any]:
    try:
        import torch  # only here: reading a .npz must never need torch
    except ImportError as error:
        raise ImportError(
            f"read_state_dict: {path!r} is a PyTorch file and reading it needs torch (pip install torch); "
            f"or convert it once where torch is installed with `minigrad convert-weights {path} OUT.npz`"
        ) from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise TypeError(
            f"read_state_dict: {path!r} holds a {type(state).__name__}, not a state dict; save "
            f"model.state_dict() rather than the model"
        )
    return state


def load_torch_state_dict(
    model: Module, path_or_dict: str | os.PathLike | Mapping[str, Any], strict: bool = True
) -> tuple[list[str], list[str]]:
    """Load a PyTorch state dict (a ``.pth``, a converted ``.npz`` or a dict) into ``model``.

    Returns (missing, unexpected) keys as :meth:`Module.load_state_dict` does; with ``strict=True`` any
    mismatch is an error listing the keys. For torchvision's pretrained googlenet build the model with
    ``inception_v1(variant="torchvision", transform_input=True)``.
    """
    return model.load_state_dict(read_state_dict(path_or_dict), strict=strict)


def convert_weights(in_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Convert a state dict file (``.pth`` or ``.npz``) to an ``.npz`` that loads without torch or pickle.

    The file is written to a temporary name in the same folder and then renamed, so an interrupted
    conversion never leaves a half-written ``out_path``. Returns the number of arrays written.
    """
    state = read_state_dict(in_path)
    out_path = os.fspath(out_path)
    folder = os.path.dirname(os.path.abspath(out_path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".convert-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as file:
            numpy.savez(file, **state)
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by their owner only
        os.replace(temporary, out_path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return len(state)


def convert_weights_command(args: argparse.Namespace) -> int:
    """``minigrad convert-weights IN.pth OUT.npz``."""
    count = convert_weights(args.input, args.output)
    print(f"wrote {count} arrays to {args.output}")
    return 0


def register_command(subparsers: Any) -> None:
    """Add ``convert-weights IN OUT`` to the ``minigrad`` command line (``subparsers`` from add_subparsers)."""
    parser = subparsers.add_parser(
        "convert-weights", help="convert a PyTorch state dict (.pth) to .npz, loadable without torch",
        description="Convert a PyTorch state dict (e.g. torchvision's googlenet weights) to a NumPy .npz "
        "that minigrad.models.load_torch_state_dict reads with pickle disabled.",
    )
    parser.add_argument("input", help="the .pth (or .npz) file to read")
    parser.add_argument("output", help="the .npz file to write")
    parser.set_defaults(handler=convert_weights_command)
