"""Checkpoints (minigrad/checkpoint.py): a round trip restores every array, the file is read with pickle
disabled and written atomically, and a missing, corrupted or mismatched checkpoint fails with a clear error.

Resuming a whole run bit-for-bit from these checkpoints is tested in tests/test_train.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy
import pytest

from minigrad import data
from minigrad.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from minigrad.models import inception_v1
from minigrad.optim import SGD


def small_training_state(width: float = 0.125, seed: int = 0):
    """A model, optimizer (with momentum buffers after one fake step) and loader, without training."""
    model = inception_v1(num_classes=10, stem="cifar", width=width, seed=seed)
    optimizer = SGD(list(model.parameters()), lr=0.1, momentum=0.9)
    for number, param in enumerate(model.parameters()):
        param.grad = type(param)(numpy.full(param.shape, 0.01 * (number + 1), dtype=param.dtype))
    optimizer.step()
    loader = data.DataLoader(data.SyntheticShapes(8, seed=0), batch_size=4, shuffle=True, seed=0)
    return model, optimizer, loader


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.npz"
    model, optimizer, loader = small_training_state()
    save_checkpoint(path, model=model, optimizer=optimizer, loader=loader, epochs_done=1,
                    history=[{"epoch": 1, "train_loss": 2.0}])
    return path


def test_checkpoint_round_trip_restores_every_array(good_checkpoint):
    model, optimizer, loader = small_training_state()
    fresh_model, fresh_optimizer, fresh_loader = small_training_state(seed=1)
    fresh_optimizer.state.clear()
    epochs_done, history, partial = restore(load_checkpoint(good_checkpoint), model=fresh_model,
                                            optimizer=fresh_optimizer, loader=fresh_loader)
    assert (epochs_done, history, partial) == (1, [{"epoch": 1, "train_loss": 2.0}], None)
    for key, value in model.state_dict().items():
        assert numpy.array_equal(fresh_model.state_dict()[key], value), key
    for param, fresh_param in zip(model.parameters(), fresh_model.parameters()):
        buffer = optimizer.state[id(param)]["momentum_buffer"]
        assert numpy.array_equal(fresh_optimizer.state[id(fresh_param)]["momentum_buffer"], buffer)
    assert fresh_loader.state_dict() == loader.state_dict()


def test_checkpoint_is_read_with_pickle_disabled(good_checkpoint, tmp_path, monkeypatch):
    calls = []
    original_load = numpy.load
    monkeypatch.setattr(numpy, "load", lambda *args, **kwargs: calls.append(kwargs) or original_load(*args, **kwargs))
    load_checkpoint(good_checkpoint)
    assert calls and all(call.get("allow_pickle") is False for call in calls)
    monkeypatch.undo()

    # A file smuggling a pickled object in must be refused, not unpickled.
    with numpy.load(good_checkpoint) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["model/evil"] = numpy.array([{"not": "an array"}], dtype=object)
    evil = tmp_path / "checkpoint.npz"
    numpy.savez(evil, allow_pickle=True, **arrays)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(evil)


def test_checkpoint_write_is_atomic(good_checkpoint, tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    shutil.copy(good_checkpoint, path)
    old_bytes = path.read_bytes()
    model, optimizer, loader = small_training_state(seed=5)

    def savez_that_dies_midway(file, **arrays):
        file.write(b"PK\x03\x04 half a zip file")  # some bytes reach the disk, then the "disk is full"
        raise OSError("No space left on device")

    monkeypatch.setattr(numpy, "savez", savez_that_dies_midway)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model=model, optimizer=optimizer, loader=loader, epochs_done=2)
    assert path.read_bytes() == old_bytes, "a failed save must leave the previous checkpoint untouched"
    assert os.listdir(tmp_path) == ["checkpoint.npz"], "a failed save must not leave a temporary file"
    load_checkpoint(path)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*checkpoint\.npz.*without --resume"):
        load_checkpoint(tmp_path / "checkpoint.npz")


def corruptions(good: bytes) -> dict[str, bytes]:
    middle = len(good) // 2
    flipped = bytearray(good)
    flipped[middle : middle + 64] = bytes(255 - byte for byte in flipped[middle : middle + 64])
    return {
        "empty": b"",
        "first-10-bytes": good[:10],
        "first-half": good[:middle],
        "all-but-the-last-100-bytes": good[:-100],
        "bytes-flipped-in-the-middle": bytes(flipped),
        "not-a-zip": b"epoch,loss\n1,2.0\n" * 100,
    }


@pytest.mark.parametrize("damage", list(corruptions(b"0123456789" * 20)))
def test_corrupted_checkpoint_is_a_clear_error(damage, good_checkpoint, tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(corruptions(good_checkpoint.read_bytes())[damage])
    with pytest.raises(CheckpointError, match=r"truncated or corrupted.*without --resume"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_is_a_clear_error(good_checkpoint):
    model, optimizer, loader = small_training_state(width=0.25)
    with pytest.raises(CheckpointError, match=r"does not fit this model.*shape mismatch.*config\.json"):
        restore(load_checkpoint(good_checkpoint), model=model, optimizer=optimizer, loader=loader)
    no_aux = inception_v1(num_classes=10, stem="cifar", width=0.125, aux_logits=False, seed=0)
    with pytest.raises(CheckpointError, match=r"does not fit.*aux1"):
        restore(load_checkpoint(good_checkpoint), model=no_aux,
                optimizer=SGD(list(no_aux.parameters()), lr=0.1, momentum=0.9))
