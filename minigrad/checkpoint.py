"""Checkpoints that resume a training run bit-for-bit: one ``.npz``, written atomically, read with pickle off.

    save_checkpoint(out / "checkpoint.npz", model=model, optimizer=optimizer, scheduler=scheduler, loader=loader,
                    epochs_done=1, history=history)
    epochs_done, history, partial = restore(load_checkpoint(out / "checkpoint.npz"), model=model,
                                            optimizer=optimizer, scheduler=scheduler, loader=loader)

Everything a run needs to continue exactly where it stopped goes into ``checkpoint.npz``: the model,
the optimizer, the schedule, the data loader's position and random state, minigrad's random state
(dropout masks), the epoch and the metrics so far. A resumed run therefore ends with bit-for-bit the
same weights and metrics as an uninterrupted one. On a GPU too, by design: its generator is counter-based
and the training step's sums run in a fixed order (max pooling's backward adds tap by tap there, not with
atomics); this was checked on a simulated GPU, not yet on a real one. The file is an ``.npz`` read
with pickle disabled, written to a temporary file first and renamed, so a crash never leaves half a
checkpoint behind.

Inside the ``.npz``: ``model/<name>`` for each entry of the model's state dict, ``optimizer/<key>`` for
the optimizer's state dict flattened by :func:`minigrad.optim.flatten_state_dict`, and ``meta``: the
UTF-8 bytes of one JSON object (format version, epochs done, metrics so far, mid-epoch sums, the
schedule's, the loader's and the random state, the run's config).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy

from minigrad import backend
from minigrad.nn.module import Module

if TYPE_CHECKING:  # a type hint only: train.py imports this module, not the other way round
    from minigrad.train import TrainConfig

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupted, or from an incompatible run."""


@dataclass
class EpochProgress:
    """Running sums inside an epoch (saved in a checkpoint taken mid-epoch)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


def save_checkpoint(
    path: str | Path, *, model: Module, optimizer: Any, scheduler: Any = None, loader: Any = None,
    epochs_done: int = 0, history: list | None = None, partial: EpochProgress | None = None,
    config: TrainConfig | None = None,
) -> None:
    """Write everything needed to resume into ``path`` (``.npz``): temp file, flush, fsync, then rename."""
    from minigrad.optim import flatten_state_dict

    arrays: dict[str, numpy.ndarray] = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer/{k}": v for k, v in flatten_state_dict(optimizer.state_dict()).items()})
    meta = {
        "version": CHECKPOINT_VERSION,
        "epochs_done": epochs_done,
        "history": history or [],
        "partial_epoch": asdict(partial) if partial is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader": loader.state_dict() if loader is not None else None,
        "rng": backend.get_rng_state(),
        "config": asdict(config) if config is not None else None,
    }
    arrays["meta"] = numpy.frombuffer(json.dumps(meta).encode(), dtype=numpy.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            numpy.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: {"model", "optimizer", "meta"}.

    Raises :class:`CheckpointError` with a readable message for a missing, truncated or corrupted file.
    """
    from minigrad.optim import unflatten_state_dict

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; start without --resume, or point --out at the run's folder")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted ({type(error).__name__}: {error}); delete it and "
            f"start again without --resume"
        ) from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {meta.get('version')}, expected "
                              f"{CHECKPOINT_VERSION}")
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer_state = unflatten_state_dict({k[len("optimizer/"):]: v for k, v in arrays.items()
                                            if k.startswith("optimizer/")})
    return {"model": model_state, "optimizer": optimizer_state, "meta": meta}


def restore(checkpoint: dict[str, Any], *, model: Module, optimizer: Any, scheduler: Any = None,
            loader: Any = None) -> tuple[int, list, EpochProgress | None]:
    """Put a loaded checkpoint back into live objects; returns (epochs done, history, mid-epoch sums)."""
    meta = checkpoint["meta"]
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"the checkpoint does not fit this model/optimizer: {error}. Resume with the same "
                              f"options as the original run (see its config.json)") from None
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if loader is not None and meta["loader"] is not None:
        loader.load_state_dict(meta["loader"])
    backend.set_rng_state(meta["rng"])
    partial = EpochProgress(**meta["partial_epoch"]) if meta["partial_epoch"] else None
    return meta["epochs_done"], meta["history"], partial


class StopAfterStep:
    """Turn the first Ctrl-C into a request to stop after the current step (a second one aborts at once).

    Stopping between steps, never inside ``optimizer.step()``, is what makes the checkpoint written on
    Ctrl-C consistent, so that ``--resume`` continues bit-for-bit.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def __enter__(self) -> StopAfterStep:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step and writing a checkpoint (press Ctrl-C again to abort now)")

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
