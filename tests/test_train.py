"""The training loop: exact resumption (after an epoch and after Ctrl-C mid-epoch), divergence detection,
and the four files a run writes. The checkpoint file itself (atomic, pickle-free, clear errors) is tested in
tests/test_checkpoint.py.

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
import signal
from dataclasses import replace
from pathlib import Path

import numpy
import pytest

from minigrad import train
from minigrad.checkpoint import CheckpointError
from minigrad.models import inception_v1
from minigrad.train import TrainConfig, TrainingDiverged

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
    """Every array of ``out/checkpoint.npz`` and its decoded metadata, without going through minigrad.checkpoint."""
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
    assert saved["classes"] == list(train.build_datasets(config)[0].classes), "for `minigrad predict`"
    arrays, meta = read_checkpoint_raw(out)
    assert meta["epochs_done"] == 2 and meta["config"] == saved
    # The run adds how its test images were prepared, for `minigrad predict`: their size and the training
    # set's channel statistics, as the float32 values its Normalize used.
    preprocess = saved["extra"].pop("preprocess")
    assert TrainConfig(**saved) == replace(config, classes=saved["classes"])
    train_set, _ = train.build_datasets(config)
    mean, std = train_set.channel_mean_std()
    assert preprocess == {"size": [32, 32], "mean": numpy.float32(mean).tolist(), "std": numpy.float32(std).tolist()}
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


@pytest.mark.parametrize("device, threads, expected_calls, note", [
    ("cpu", 1, [1], ", 1 BLAS thread"),       # what a busy machine wants
    ("cpu", 3, [3], ", 3 BLAS threads"),
    ("cpu", 0, [], ""),                       # 0, the default: the BLAS keeps its own count
    ("cuda", 1, [], ""),                      # the GPU does the products; the CPU's BLAS is left alone
])
def test_run_sets_the_blas_threads_it_is_asked_for(monkeypatch, tmp_path, device, threads, expected_calls, note):
    calls = []
    monkeypatch.setattr(train.blas, "set_threads", lambda count: calls.append(count) or True)
    config = tiny_config(tmp_path, device=device, threads=threads)
    assert train.set_blas_threads(config) == note and calls == expected_calls
    assert TrainConfig().threads == 0


def test_threads_that_cannot_be_set_are_named_not_fatal(monkeypatch, tmp_path):
    monkeypatch.setattr(train.blas, "set_threads", lambda count: False)  # not OpenBLAS
    assert "could not set 2 BLAS thread(s)" in train.set_blas_threads(tiny_config(tmp_path, threads=2))
