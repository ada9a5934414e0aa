"""The training loop: exact resumption (after an epoch and after Ctrl-C mid-epoch), checkpoints that are
atomic and pickle-free and fail with clear errors, divergence detection, and the four files a run writes.

Every run here is tiny (width 0.125, 128 training images in 4 batches of 32, 2 epochs) but otherwise the
real thing: dropout on (so minigrad's random state must be saved), augmentation on (so the loader's
generator must be saved mid-epoch), the default onecycle schedule with cycling momentum, SGD with
Nesterov momentum and weight decay. "Bit for bit" means every array of the final checkpoint (weights,
running statistics, momentum buffers) and every metric except the timing columns is identical.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from pathlib import Path

import numpy
import pytest

from minigrad import data, train
from minigrad.models import inception_v1
from minigrad.optim import SGD
from minigrad.train import CheckpointError, TrainConfig, TrainingDiverged

TIMING_KEYS = {"images_per_s", "seconds"}  # wall-clock measurements: they may differ between runs


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Run this module's training with one BLAS thread, then give the previous count back.

    A tiny GoogLeNet step makes hundreds of small matrix multiplies; on a 2-core machine busy with other
    work, each multithreaded call can wait for a descheduled helper thread, and this module took 90-150 s
    instead of ~30 s. Results do not depend on it: every comparison here is between runs made alike.
    """
    from benchmarks.common import blas_info, set_blas_threads

    threads = blas_info()["threads"]
    try:
        set_blas_threads(1)
    except RuntimeError:  # not OpenBLAS: leave it as it is
        yield
        return
    yield
    set_blas_threads(threads)


def tiny_config(out: Path, **overrides) -> TrainConfig:
    """A run of a few seconds on 2 cores that still uses every moving part of the default one."""
    options = dict(width=0.125, train_size=128, test_size=64, batch_size=32, epochs=2, stem="cifar",
                   progress=False, out=str(out))
    options.update(overrides)
    return TrainConfig(**options)


def without_timings(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMING_KEYS} for row in rows]


def read_checkpoint_raw(out: Path) -> tuple[dict[str, numpy.ndarray], dict]:
    """Every array of ``out/checkpoint.npz`` and its decoded metadata, without going through train.py."""
    with numpy.load(out / "checkpoint.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(bytes(arrays.pop("meta")).decode())
    return arrays, meta


def assert_same_run(resumed: Path, reference: Path) -> None:
    """The final checkpoints and metrics of two runs agree bit for bit (timings aside)."""
    arrays, meta = read_checkpoint_raw(resumed)
    expected_arrays, expected_meta = read_checkpoint_raw(reference)
    assert sorted(arrays) == sorted(expected_arrays)
    different = [name for name in expected_arrays
                 if arrays[name].dtype != expected_arrays[name].dtype
                 or arrays[name].tobytes() != expected_arrays[name].tobytes()]
    assert not different, f"{len(different)} arrays differ after resuming, e.g. {different[:5]}"
    assert without_timings(meta["history"]) == without_timings(expected_meta["history"])
    for key in ("epochs_done", "partial_epoch", "scheduler", "loader", "rng"):
        assert meta[key] == expected_meta[key], f"checkpoint metadata {key!r} differs after resuming"
    with open(resumed / "metrics.csv") as file, open(reference / "metrics.csv") as expected_file:
        assert without_timings(list(csv.DictReader(file))) == without_timings(list(csv.DictReader(expected_file)))


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int | None) -> list[int]:
    """Make run()'s fit() press Ctrl-C (a real SIGINT) from its on_step callback at ``step`` (None: never);
    returns the list that collects the step numbers fit() reports."""
    steps_seen: list[int] = []
    original_fit = train.fit

    def on_step(step_number: int, loss: float) -> None:
        steps_seen.append(step_number)
        if step_number == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: original_fit(*args, on_step=on_step, **kwargs))
    return steps_seen


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, TrainConfig, list[dict]]:
    """One uninterrupted tiny run (onecycle schedule) that the resumed runs must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    config = tiny_config(out)
    history = train.run(config)
    return out, config, history


# ---------------------------------------------------------------------------------------------
# --resume gives bit-for-bit the run that never stopped
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stop_step", [3, 4, 6], ids=["mid-epoch-1", "end-of-epoch-1", "mid-epoch-2"])
def test_ctrl_c_then_resume_is_bit_identical(stop_step, reference_run, tmp_path, monkeypatch):
    """Ctrl-C at ``stop_step`` (4 batches per epoch), then ``--resume`` alone (epochs=None: the run's own
    plan), ends exactly as the run that never stopped."""
    reference, config, history = reference_run
    steps_seen = interrupt_at(monkeypatch, stop_step)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny_config(tmp_path))
    assert steps_seen == list(range(1, stop_step + 1)), "the loop must stop right after the step where Ctrl-C came"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "fit must restore the Ctrl-C handler"

    _, meta = read_checkpoint_raw(tmp_path)
    steps_per_epoch = 4
    assert meta["epochs_done"] == stop_step // steps_per_epoch
    if stop_step % steps_per_epoch:  # mid-epoch: the checkpoint carries the loader position and the sums
        assert meta["loader"]["batches_done"] == stop_step % steps_per_epoch
        assert meta["partial_epoch"]["seen"] == 32 * (stop_step % steps_per_epoch)
    else:  # the epoch's last step: the epoch is finished (evaluated, in metrics.csv) before stopping
        assert meta["partial_epoch"] is None
        assert len(meta["history"]) == stop_step // steps_per_epoch
        # Another length for a schedule laid out over the run (onecycle) is refused before anything runs.
        before = (tmp_path / "checkpoint.npz").read_bytes()
        with pytest.raises(CheckpointError, match=r"planned for 2 epochs and its onecycle schedule"):
            train.run(tiny_config(tmp_path, epochs=3, resume=True))
        assert (tmp_path / "checkpoint.npz").read_bytes() == before, "a refused resume must not touch the run"

    monkeypatch.undo()
    resumed_steps = interrupt_at(monkeypatch, None)
    resumed_history = train.run(tiny_config(tmp_path, epochs=None, resume=True))
    assert resumed_steps == list(range(stop_step + 1, 9)), "step numbers continue where the run stopped"
    assert without_timings(resumed_history) == without_timings(history)
    assert_same_run(tmp_path, reference)


def test_constant_schedule_run_can_be_extended_bit_identically(tmp_path):
    """With a schedule that does not depend on the run's length, 1 epoch + resume to 2 == 2 epochs."""
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    history = train.run(tiny_config(straight, schedule="constant", train_size=64))
    train.run(tiny_config(extended, schedule="constant", train_size=64, epochs=1))
    resumed_history = train.run(tiny_config(extended, schedule="constant", train_size=64, epochs=2, resume=True))
    assert without_timings(resumed_history) == without_timings(history)
    assert_same_run(extended, straight)


# ---------------------------------------------------------------------------------------------
# The files a run writes
# ---------------------------------------------------------------------------------------------
def test_run_writes_metrics_curves_checkpoint_and_config(reference_run):
    out, config, history = reference_run
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "curves.png", "metrics.csv"]

    with open(out / "metrics.csv") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"]
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for row, expected in zip(rows, history):
        for column in reader.fieldnames:
            assert float(row[column]) == pytest.approx(expected[column], rel=1e-12), column
        assert 0 <= float(row["train_acc"]) <= 1 and 0 <= float(row["test_acc"]) <= 1
        assert numpy.isfinite(float(row["train_loss"])) and float(row["images_per_s"]) > 0

    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    picture = matplotlib.image.imread(out / "curves.png")
    assert picture.ndim == 3 and picture.shape[0] > 100 and picture.shape[1] > 100
    assert picture[..., :3].std() > 0.01, "curves.png is blank"

    saved = json.loads((out / "config.json").read_text())
    assert TrainConfig(**saved) == config

    arrays, meta = read_checkpoint_raw(out)
    assert meta["epochs_done"] == 2 and meta["config"] == saved
    model = train.build_model(config, num_classes=10)
    assert sorted(key[len("model/"):] for key in arrays if key.startswith("model/")) == sorted(model.state_dict())


def test_fit_from_python_without_an_output_folder(tmp_path):
    """The tutorials' use: build the pieces, call fit(), get one metrics row per epoch, no files."""
    config = tiny_config(tmp_path / "unused", epochs=1, train_size=64)
    train_set, test_set = train.build_datasets(config)
    train_loader, test_loader = train.build_loaders(config, train_set, test_set)
    model = train.build_model(config, num_classes=len(train_set.classes))
    optimizer = train.build_optimizer(config, model)
    before = model.state_dict()
    history = train.fit(model, train_loader, test_loader, optimizer, epochs=1, progress=False)
    assert len(history) == 1 and history[0]["epoch"] == 1
    assert any(not numpy.array_equal(before[key], value) for key, value in model.state_dict().items())
    assert not (tmp_path / "unused").exists()


# ---------------------------------------------------------------------------------------------
# Checkpoints: pickle-free, atomic, clear errors
# ---------------------------------------------------------------------------------------------
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
    train.save_checkpoint(path, model=model, optimizer=optimizer, loader=loader, epochs_done=1,
                          history=[{"epoch": 1, "train_loss": 2.0}])
    return path


def test_checkpoint_round_trip_restores_every_array(good_checkpoint):
    model, optimizer, loader = small_training_state()
    fresh_model, fresh_optimizer, fresh_loader = small_training_state(seed=1)
    fresh_optimizer.state.clear()
    epochs_done, history, partial = train.restore(train.load_checkpoint(good_checkpoint), model=fresh_model,
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
    train.load_checkpoint(good_checkpoint)
    assert calls and all(call.get("allow_pickle") is False for call in calls)
    monkeypatch.undo()

    # A file smuggling a pickled object in must be refused, not unpickled.
    with numpy.load(good_checkpoint) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["model/evil"] = numpy.array([{"not": "an array"}], dtype=object)
    evil = tmp_path / "checkpoint.npz"
    numpy.savez(evil, allow_pickle=True, **arrays)
    with pytest.raises(CheckpointError, match="corrupted"):
        train.load_checkpoint(evil)


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
        train.save_checkpoint(path, model=model, optimizer=optimizer, loader=loader, epochs_done=2)
    assert path.read_bytes() == old_bytes, "a failed save must leave the previous checkpoint untouched"
    assert os.listdir(tmp_path) == ["checkpoint.npz"], "a failed save must not leave a temporary file"
    train.load_checkpoint(path)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*checkpoint\.npz.*without --resume"):
        train.load_checkpoint(tmp_path / "checkpoint.npz")


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
        train.load_checkpoint(path)


def test_checkpoint_of_another_model_is_a_clear_error(good_checkpoint):
    model, optimizer, loader = small_training_state(width=0.25)
    with pytest.raises(CheckpointError, match=r"does not fit this model.*shape mismatch.*config\.json"):
        train.restore(train.load_checkpoint(good_checkpoint), model=model, optimizer=optimizer, loader=loader)
    no_aux = inception_v1(num_classes=10, stem="cifar", width=0.125, aux_logits=False, seed=0)
    with pytest.raises(CheckpointError, match=r"does not fit.*aux1"):
        train.restore(train.load_checkpoint(good_checkpoint), model=no_aux,
                      optimizer=SGD(list(no_aux.parameters()), lr=0.1, momentum=0.9))


# ---------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_value, bad_step", [(float("nan"), 3), (float("inf"), 2)])
def test_nan_or_inf_loss_stops_the_run_naming_the_step(bad_value, bad_step, tmp_path, monkeypatch):
    """3 batches per epoch: step 3 is the epoch's last batch (once misreported as step 0)."""
    calls = []
    original_loss = train.compute_loss

    def loss_that_breaks(*args, **kwargs):
        loss = original_loss(*args, **kwargs)
        calls.append(1)
        return loss * bad_value if len(calls) == bad_step else loss

    monkeypatch.setattr(train, "compute_loss", loss_that_breaks)
    config = tiny_config(tmp_path, train_size=96, epochs=1)
    with pytest.raises(TrainingDiverged, match=rf"became {bad_value} at step {bad_step} \(epoch 1\).*lower --lr"):
        train.run(config)
    assert len(calls) == bad_step, "the run must stop at the first non-finite loss"


# ---------------------------------------------------------------------------------------------
# Schedules for every run length
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
def test_every_schedule_runs_for_short_runs_of_any_length(schedule):
    """A quick demo (e.g. --train-size 256 --epochs 1: 4 steps) must not crash inside the schedule; OneCycleLR
    (like PyTorch's) divides by pct_start * total_steps - 1, which is 0 at 4 steps with pct_start 0.25."""
    model = inception_v1(num_classes=10, stem="cifar", width=0.125, aux_logits=False, seed=0)
    for total_steps in range(1, 13):
        for epochs, steps_per_epoch in {(1, total_steps), (total_steps, 1)}:
            config = TrainConfig(schedule=schedule, epochs=epochs)
            optimizer = train.build_optimizer(config, model)
            scheduler = train.build_scheduler(config, optimizer, steps_per_epoch)
            rates = []
            for _ in range(total_steps):  # as fit() does: train with the current rate, then step the schedule
                rates.append(optimizer.param_groups[0]["lr"])
                if scheduler is not None:
                    scheduler.step()
            assert all(0 < rate <= config.lr * (1 + 1e-12) for rate in rates), (schedule, total_steps, rates)
