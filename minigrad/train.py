"""Training GoogLeNet in class: the loop, metrics, curves, and the ``minigrad train`` command.

    minigrad train                          # the class demo: SyntheticShapes, offline, 3-6 minutes on 2 cores
    minigrad train --dataset cifar10 --data-dir data --download --width 1 --epochs 30
    minigrad train --resume --out runs/demo # carry on from runs/demo/checkpoint.npz

From Python (the tutorials do this):

    >>> history = fit(model, train_loader, test_loader, optimizer, scheduler, epochs=3)

After every epoch, and on Ctrl-C, a run writes ``checkpoint.npz``: everything it needs to continue
exactly where it stopped, so that ``--resume`` ends with bit-for-bit the same weights and metrics as a
run that never stopped. What the file holds, and how it is written and read, is in
:mod:`minigrad.checkpoint`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from minigrad import backend, blas, budget
from minigrad.autograd import no_grad
from minigrad.builders import build_datasets, build_model, build_optimizer, build_scheduler
from minigrad.checkpoint import CheckpointError, EpochProgress, StopAfterStep, load_checkpoint, restore, save_checkpoint
from minigrad.metrics import plot_curves, write_metrics_csv
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Configuration: every option of `minigrad train`, with the class-demo defaults.
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    dataset: str = "shapes"
    data_dir: str = "data"
    download: bool = False
    train_size: int = 6000  # SyntheticShapes only: how many images to draw for training
    test_size: int = 1000
    limit_train: int | None = None  # use only the first N training images (quick runs)
    variant: str = "paper"
    stem: str = "cifar"
    width: float = 0.125
    aux_weight: float = 0.3
    dropout: float | None = None
    epochs: int | None = 3  # None: with resume, the checkpoint's planned epochs; without, 3
    batch_size: int = 64
    lr: float = 0.004  # AdamW's; with --optimizer sgd use about 0.05
    optimizer: str = "adamw"
    momentum: float = 0.9
    schedule: str = "onecycle"
    weight_decay: float = 0.01  # AdamW's decoupled decay; with sgd use about 5e-4
    label_smoothing: float = 0.0
    augment: bool = True
    device: str = "cpu"
    threads: int = 0  # BLAS threads on the CPU (0: the BLAS's default, one per core); see minigrad/blas.py
    seed: int = 0
    out: str = "runs/shapes"
    resume: bool = False
    progress: bool = True
    # Data-parallel runs under mpiexec (minigrad/distributed/training.py)
    distributed: bool = False
    sync_bn: bool = False
    collective_timeout: float = 300.0  # seconds any collective may wait for the slowest rank
    extra: dict[str, Any] = field(default_factory=dict)
    image_size: int = 32  # folder: images are resized (shorter side) and centre-cropped to this square
    skip_bad_images: bool = False  # folder: leave out and count unreadable files (default: stop, naming the file)
    cache_dir: str | None = None  # folder: keep the decoded images in a cache file in this folder
    time_budget: float | None = None  # minutes: measure the speed, then size the run to end within them
    total_steps: int | None = None  # the run's length when a time budget sized it (None: epochs x batches)
    classes: list[str] | None = None  # the class names in label order, filled in from the training set


# ---------------------------------------------------------------------------------------------
# Building blocks of a run (datasets, model, optimizer and schedule: minigrad/builders.py)
# ---------------------------------------------------------------------------------------------
def build_loaders(config: TrainConfig, train_set: Any, test_set: Any) -> tuple[Any, Any]:
    """Shuffled, augmented training batches and plain test batches, normalised with the training statistics."""
    from minigrad import data
    from minigrad.data import transforms

    mean, std = train_set.channel_mean_std()
    normalize = transforms.Normalize(mean, std)
    augment = [transforms.RandomCrop(train_set.images.shape[-1], padding=4), transforms.RandomHorizontalFlip()]
    train_transform = transforms.Compose([*augment, normalize] if config.augment else [normalize])
    train_loader = data.DataLoader(train_set, config.batch_size, shuffle=True, drop_last=True,
                                   transform=train_transform, seed=config.seed, device=config.device)
    test_loader = data.DataLoader(test_set, 256, transform=normalize, device=config.device)
    return train_loader, test_loader


# ---------------------------------------------------------------------------------------------
# One epoch, evaluation, the loop
# ---------------------------------------------------------------------------------------------
def compute_loss(model: Module, outputs: Any, labels: Tensor, aux_weight: float, label_smoothing: float) -> Tensor:
    """The paper's loss: main cross-entropy plus ``aux_weight`` times each auxiliary head's."""
    from minigrad.models import googlenet_loss

    return googlenet_loss(outputs, labels, aux_weight=aux_weight, label_smoothing=label_smoothing)


def _logits(outputs: Any) -> Tensor:
    return outputs.logits if hasattr(outputs, "logits") else outputs


def evaluate(model: Module, loader: Any) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in eval mode over ``loader``."""
    import minigrad.functional as F

    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with no_grad():
        for images, labels in loader:
            logits = _logits(model(images))
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((backend.to_numpy(logits.data).argmax(axis=1) == labels.numpy()).sum())
            count += len(labels)
    model.train(was_training)
    return total_loss / max(count, 1), correct / max(count, 1)


def fit(
    model: Module,
    train_loader: Any,
    test_loader: Any,
    optimizer: Any,
    scheduler: Any = None,
    *,
    epochs: int,
    total_steps: int | None = None,
    aux_weight: float = 0.3,
    label_smoothing: float = 0.0,
    out_dir: str | Path | None = None,
    config: TrainConfig | None = None,
    history: list[dict[str, float]] | None = None,
    start_epoch: int = 0,
    epoch_progress: EpochProgress | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    coordinator: Any = None,
) -> list[dict[str, float]]:
    """Train for ``epochs`` epochs (starting after ``start_epoch`` completed ones); return one metrics row per epoch.

    With ``out_dir`` it writes ``metrics.csv``, ``curves.png``, ``config.json`` and ``checkpoint.npz`` after
    every epoch, and a checkpoint on Ctrl-C before re-raising. A NaN or infinite loss stops the run with
    :class:`TrainingDiverged`, naming the step. With ``total_steps`` the run stops after that many steps in
    all (counted from the first epoch), cutting the last epoch short: a time-budget run's length.

    ``coordinator`` (a :class:`minigrad.distributed.training.RankCoordinator`) makes this process one rank of
    a data-parallel run: the ranks stop at the same step, the epoch's sums and the evaluation (each rank
    takes its part of the test set) are combined over the ranks, and every rank takes part in a checkpoint
    that only the rank given ``out_dir`` writes.
    """
    from tqdm import tqdm

    history = list(history or [])
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if config is not None:
            tmp = out / "config.json.tmp"
            tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
            os.replace(tmp, out / "config.json")

    def save(epoch_done: int, partial: EpochProgress | None) -> None:
        # Every rank of a data-parallel run takes part (its loader's position goes into the file).
        loader = train_loader if coordinator is None else coordinator.checkpoint_loader(model, train_loader)
        if out is not None:
            save_checkpoint(out / "checkpoint.npz", model=model, optimizer=optimizer, scheduler=scheduler,
                            loader=loader, epochs_done=epoch_done, history=history, partial=partial,
                            config=config)

    def totals(state: EpochProgress) -> EpochProgress:
        return state if coordinator is None else coordinator.totals(state)

    def stop_now() -> bool:  # Ctrl-C, on any rank: every rank stops after the same step
        return stop.requested if coordinator is None else coordinator.any_rank(stop.requested)

    ranks = 1 if coordinator is None else coordinator.world.size

    with StopAfterStep() as stop:
        for epoch in range(start_epoch, epochs):
            model.train()
            state = epoch_progress or EpochProgress()
            epoch_progress = None
            # iter() first: a loader restored from a mid-epoch checkpoint then knows how many batches are done.
            batches = iter(train_loader)
            batches_done = train_loader.state_dict()["batches_done"]
            epoch_steps = len(train_loader) if total_steps is None else min(len(train_loader),
                                                                            total_steps - epoch * len(train_loader))
            bar = tqdm(total=epoch_steps, initial=batches_done, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=True, dynamic_ncols=True, file=sys.stdout)
            for images, labels in batches:
                started = time.perf_counter()
                batches_done += 1
                step = epoch * len(train_loader) + batches_done  # counted from 1 over the whole run
                outputs = model(images)
                loss = compute_loss(model, outputs, labels, aux_weight, label_smoothing)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    bar.close()
                    lr = optimizer.param_groups[0]["lr"]
                    raise TrainingDiverged(
                        f"the loss became {loss_value} at step {step} (epoch {epoch + 1}) with learning rate "
                        f"{lr:.4g}; try a lower --lr (e.g. {lr / 10:.4g}) or a longer warm-up"
                    )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                state.seconds += time.perf_counter() - started
                state.loss_sum += loss_value * len(labels)
                state.correct += int((backend.to_numpy(_logits(outputs).data).argmax(axis=1) == labels.numpy()).sum())
                state.seen += len(labels)
                if on_step is not None:
                    on_step(step, loss_value)
                bar.update(1)
                bar.set_postfix(loss=f"{state.loss_sum / state.seen:.3f}", acc=f"{state.correct / state.seen:.3f}",
                                img_s=f"{ranks * state.seen / max(state.seconds, 1e-9):.0f}",
                                lr=f"{optimizer.param_groups[0]['lr']:.3g}")
                if stop_now() and batches_done < epoch_steps:  # at the epoch's end: finish it first
                    bar.close()
                    save(epoch, totals(state))
                    if out is not None:
                        print(f"checkpoint written to {out / 'checkpoint.npz'}; continue with --resume")
                    raise KeyboardInterrupt
                if batches_done == epoch_steps < len(train_loader):  # the run's last step, inside an epoch
                    break
            bar.close()
            test_loss, test_acc = (evaluate if coordinator is None else coordinator.evaluate)(model, test_loader)
            state = totals(state)
            row = {
                "epoch": epoch + 1,
                "train_loss": state.loss_sum / max(state.seen, 1),
                "train_acc": state.correct / max(state.seen, 1),
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": state.seen / max(state.seconds, 1e-9),
            }
            history.append(row)
            if progress:
                print(f"epoch {epoch + 1}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                      f"test loss {test_loss:.4f} acc {test_acc:.3f} | {row['images_per_s']:.0f} img/s")
            if out is not None:
                write_metrics_csv(history, out / "metrics.csv")
                plot_curves(history, out / "curves.png")
            save(epoch + 1, None)
            if stop_now():
                raise KeyboardInterrupt
    return history


# ---------------------------------------------------------------------------------------------
# The whole run, and the command line
# ---------------------------------------------------------------------------------------------
def run(config: TrainConfig) -> list[dict[str, float]]:
    """Build everything from ``config`` and train; resume from ``<out>/checkpoint.npz`` when asked."""
    if config.distributed:  # one rank of `mpiexec -n N ... --distributed`
        from minigrad.distributed.training import run_distributed

        return run_distributed(config)
    started = budget.clock()  # a time budget counts from here: loading the data is part of the class period
    out = Path(config.out)
    checkpoint = None
    if config.resume:
        checkpoint = load_checkpoint(out / "checkpoint.npz")  # fail before any slow set-up
        config = resumed_config(config, checkpoint)
        if config.distributed:  # the shards and each rank's random state are in the file: resume as started
            ranks = (checkpoint["meta"]["loader"] or {}).get("world_size", "N")
            raise CheckpointError(f"{out / 'checkpoint.npz'} was written by a data-parallel run over {ranks} ranks; "
                                  f"resume it the same way: mpiexec -n {ranks} python -m minigrad train --distributed "
                                  f"--resume --out {out}")
    if config.epochs is None:
        config = replace(config, epochs=TrainConfig.epochs)
    threads_note = set_blas_threads(config)
    backend.manual_seed(config.seed)
    train_set, test_set = build_datasets(config)
    if checkpoint is not None and config.classes not in (None, list(train_set.classes)):
        raise CheckpointError(f"the checkpoint's run learned the classes {config.classes}, but the data now has "
                              f"{list(train_set.classes)}; resume with the run's data, or start a new run")
    config = replace(config, classes=list(train_set.classes))  # config.json names them for `minigrad predict`
    train_loader, test_loader = build_loaders(config, train_set, test_set)
    # Recorded for `minigrad predict`, to prepare a new image exactly as this run prepares its test images.
    normalize = test_loader.transform
    config = replace(config, extra={**config.extra, "preprocess": {"size": list(train_set.images.shape[-2:]),
                     "mean": normalize.mean.ravel().tolist(), "std": normalize.std.ravel().tolist()}})
    model = build_model(config, num_classes=len(train_set.classes))
    optimizer = build_optimizer(config, model)
    plan_note = ""
    if config.time_budget is not None and config.total_steps is None:  # a new time-budget run: size it now
        config, plan, speed = budget.size_run(config, started, len(train_set.classes), train_loader, test_loader)
        plan_note = "\n" + budget.describe(config, plan, speed, len(train_loader))
    scheduler = build_scheduler(config, optimizer, len(train_loader))
    start_epoch, history, partial = 0, [], None
    if checkpoint is not None:
        start_epoch, history, partial = restore(checkpoint, model=model, optimizer=optimizer,
                                                scheduler=scheduler, loader=train_loader)
        if config.progress:
            print(f"resuming from {out / 'checkpoint.npz'} after {start_epoch} epoch(s)")
    if config.progress:
        params = sum(p.size for p in model.parameters())
        print(f"GoogLeNet ({config.variant}, {config.stem} stem, width {config.width}): {params:,} parameters; "
              f"{config.dataset}: {len(train_set)} train / {len(test_set)} test images; device {config.device}"
              f"{threads_note}{plan_note}")
    history = fit(model, train_loader, test_loader, optimizer, scheduler, epochs=config.epochs,
                  total_steps=config.total_steps, aux_weight=config.aux_weight, label_smoothing=config.label_smoothing,
                  out_dir=out, config=config, history=history, start_epoch=start_epoch, epoch_progress=partial,
                  progress=config.progress)
    if config.progress and config.time_budget is not None:
        print(f"time budget {config.time_budget:g} min: this run took {(budget.clock() - started) / 60:.1f} min")
    return history


def resumed_config(config: TrainConfig, checkpoint: dict[str, Any]) -> TrainConfig:
    """The config of a resumed run: the checkpoint's, with only how far to train and how to run it from
    ``config``; a CheckpointError when ``config`` asks for another length of a schedule laid out over the run."""
    saved = checkpoint["meta"]["config"] or {}
    # The run's identity comes from the checkpoint; only how far to train may change (epochs=None:
    # finish the original plan).
    keep = {"epochs", "resume", "progress", "device", "threads", "out", "collective_timeout"}
    given = {k: v for k, v in asdict(config).items() if k in keep and v is not None}
    config = TrainConfig(**{**saved, **given})
    planned = saved.get("epochs")
    if planned is not None and config.epochs != planned and (config.schedule != "constant" or config.total_steps):
        # onecycle, cosine and step are laid out over the whole run, and a time budget fixed its length:
        # another length is another run.
        sized = f" ({config.total_steps} steps, sized to its time budget)" if config.total_steps else ""
        raise CheckpointError(
            f"the checkpoint's run was planned for {planned} epochs{sized} and its {config.schedule} schedule is "
            f"laid out over that length; resume with --epochs {planned} (or without --epochs), or start a new "
            f"run (only a --schedule constant run without --time-budget can be extended)"
        )
    return config


def set_blas_threads(config: TrainConfig) -> str:
    """Give NumPy's BLAS ``config.threads`` threads (CPU runs; 0, the default, leaves the BLAS's own count,
    one per core); returns a note for the run's first line. On a machine busy with other work a multithreaded
    product waits for whichever thread lost its core, and ``--threads 1`` is then much faster."""
    if config.device != "cpu" or config.threads == 0:
        return ""
    if not blas.set_threads(config.threads):
        return f" (could not set {config.threads} BLAS thread(s): not OpenBLAS; set OPENBLAS_NUM_THREADS instead)"
    return f", {config.threads} BLAS thread{'s' if config.threads > 1 else ''}"
