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

import argparse
import csv
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from minigrad import backend, blas
from minigrad.autograd import no_grad
from minigrad.checkpoint import CheckpointError, EpochProgress, load_checkpoint, restore, save_checkpoint
from minigrad.cli import DefaultsHelpFormatter
from minigrad.distributed.world import DistributedError
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be read: its archive is missing or corrupted, or the download failed."""


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


# ---------------------------------------------------------------------------------------------
# Building blocks of a run
# ---------------------------------------------------------------------------------------------
def build_datasets(config: TrainConfig) -> tuple[Any, Any]:
    """(train set, test set) for ``config.dataset``."""
    from minigrad import data

    if config.dataset == "shapes":
        train_set = data.SyntheticShapes(config.train_size, seed=config.seed, train=True)
        test_set = data.SyntheticShapes(config.test_size, seed=config.seed, train=False)  # a separate stream
    elif config.dataset in ("cifar10", "cifar100"):
        cls = data.CIFAR10 if config.dataset == "cifar10" else data.CIFAR100
        try:
            train_set = cls(config.data_dir, train=True, download=config.download)
            test_set = cls(config.data_dir, train=False, download=config.download)
        except FileNotFoundError as error:  # no archive and no --download: the message says where it goes
            raise DatasetUnavailable(f"{error} On the command line: add --download.") from error
        except (data.ChecksumError, RuntimeError) as error:  # a damaged archive, or the download failed
            raise DatasetUnavailable(str(error)) from error
    else:
        raise ValueError(f"train: unknown dataset {config.dataset!r}; use shapes, cifar10 or cifar100")
    if config.limit_train is not None:
        train_set = data.ArrayDataset(train_set.images[: config.limit_train], train_set.labels[: config.limit_train],
                                      classes=list(train_set.classes))
    return train_set, test_set


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


def build_model(config: TrainConfig, num_classes: int) -> Module:
    from minigrad.models import fuse_inception_1x1, inception_v1

    model = inception_v1(num_classes=num_classes, aux_logits=config.aux_weight > 0, variant=config.variant,
                         stem=config.stem, width=config.width, dropout=config.dropout, seed=config.seed)
    return fuse_inception_1x1(model).to(config.device)


def build_optimizer(config: TrainConfig, model: Module) -> Any:
    from minigrad import optim

    params = list(model.parameters())
    if config.optimizer == "sgd":
        return optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                         weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"train: unknown optimizer {config.optimizer!r}; use sgd, adam or adamw")


def build_scheduler(config: TrainConfig, optimizer: Any, steps_per_epoch: int) -> Any:
    """A schedule stepped once per batch (so it is smooth even for a few epochs)."""
    from minigrad.optim import lr_scheduler

    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        # OneCycleLR (as PyTorch's) divides by pct_start * total - 1: zero for a 4-step run, so warm up 2 steps.
        pct_start = 0.25 if total != 4 else 0.5
        return lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=pct_start,
                                       cycle_momentum=config.optimizer == "sgd" and config.momentum > 0)
    if config.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if config.schedule == "constant":
        return None
    raise ValueError(f"train: unknown schedule {config.schedule!r}; use onecycle, cosine, step or constant")


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


class _StopAfterStep:
    """Turn the first Ctrl-C into a request to stop after the current step (a second one aborts at once).

    Stopping between steps, never inside ``optimizer.step()``, is what makes the checkpoint written on
    Ctrl-C consistent, so that ``--resume`` continues bit-for-bit.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def __enter__(self) -> _StopAfterStep:
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


def fit(
    model: Module,
    train_loader: Any,
    test_loader: Any,
    optimizer: Any,
    scheduler: Any = None,
    *,
    epochs: int,
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
    :class:`TrainingDiverged`, naming the step.

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

    with _StopAfterStep() as stop:
        for epoch in range(start_epoch, epochs):
            model.train()
            state = epoch_progress or EpochProgress()
            epoch_progress = None
            # iter() first: a loader restored from a mid-epoch checkpoint then knows how many batches are done.
            batches = iter(train_loader)
            batches_done = train_loader.state_dict()["batches_done"]
            bar = tqdm(total=len(train_loader), initial=batches_done, desc=f"epoch {epoch + 1}/{epochs}",
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
                if stop_now() and batches_done < len(train_loader):  # at the epoch's end: finish it first
                    bar.close()
                    save(epoch, totals(state))
                    if out is not None:
                        print(f"checkpoint written to {out / 'checkpoint.npz'}; continue with --resume")
                    raise KeyboardInterrupt
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
# Metrics on disk
# ---------------------------------------------------------------------------------------------
METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"]


def write_metrics_csv(history: list[dict[str, float]], path: str | Path) -> None:
    """One row per epoch (written whole each time, through a temporary file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def plot_curves(history: list[dict[str, float]], path: str | Path) -> None:
    """Loss and accuracy, train and test, per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split, style in (("train", "-o"), ("test", "--s")):
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split)
        acc_axis.plot(epochs, [100 * row[f"{split}_acc"] for row in history], style, label=split)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The whole run, and the command line
# ---------------------------------------------------------------------------------------------
def run(config: TrainConfig) -> list[dict[str, float]]:
    """Build everything from ``config`` and train; resume from ``<out>/checkpoint.npz`` when asked."""
    if config.distributed:  # one rank of `mpiexec -n N ... --distributed`
        from minigrad.distributed.training import run_distributed

        return run_distributed(config)
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
    threads_note = _set_blas_threads(config)
    backend.manual_seed(config.seed)
    train_set, test_set = build_datasets(config)
    train_loader, test_loader = build_loaders(config, train_set, test_set)
    # Recorded for `minigrad predict`, to prepare a new image exactly as this run prepares its test images.
    normalize = test_loader.transform
    config = replace(config, extra={**config.extra, "preprocess": {"size": list(train_set.images.shape[-2:]),
                     "mean": normalize.mean.ravel().tolist(), "std": normalize.std.ravel().tolist()}})
    model = build_model(config, num_classes=len(train_set.classes))
    optimizer = build_optimizer(config, model)
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
              f"{threads_note}")
    return fit(model, train_loader, test_loader, optimizer, scheduler, epochs=config.epochs,
               aux_weight=config.aux_weight, label_smoothing=config.label_smoothing, out_dir=out, config=config,
               history=history, start_epoch=start_epoch, epoch_progress=partial, progress=config.progress)


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
    if planned is not None and config.epochs != planned and config.schedule != "constant":
        # onecycle, cosine and step are laid out over the whole run: another length is another run.
        raise CheckpointError(
            f"the checkpoint's run was planned for {planned} epochs and its {config.schedule} schedule is laid "
            f"out over that length; resume with --epochs {planned} (or without --epochs), or start a new run "
            f"(only --schedule constant can be extended)"
        )
    return config


def _set_blas_threads(config: TrainConfig) -> str:
    """Give NumPy's BLAS ``config.threads`` threads (CPU runs; 0, the default, leaves the BLAS's own count,
    one per core); returns a note for the run's first line. On a machine busy with other work a multithreaded
    product waits for whichever thread lost its core, and ``--threads 1`` is then much faster."""
    if config.device != "cpu" or config.threads == 0:
        return ""
    if not blas.set_threads(config.threads):
        return f" (could not set {config.threads} BLAS thread(s): not OpenBLAS; set OPENBLAS_NUM_THREADS instead)"
    return f", {config.threads} BLAS thread{'s' if config.threads > 1 else ''}"


def register_command(commands: Any) -> None:
    """Add ``minigrad train`` to the CLI's subcommands."""
    defaults = TrainConfig()
    parser = commands.add_parser("train", help="train GoogLeNet (default: the offline SyntheticShapes class demo)",
                                 formatter_class=DefaultsHelpFormatter)
    add = parser.add_argument
    add("--dataset", choices=["shapes", "cifar10", "cifar100"], default=defaults.dataset,
        help="shapes: the built-in SyntheticShapes, no download; cifar10/cifar100: the official archives")
    add("--data-dir", default=defaults.data_dir, help="where CIFAR archives live (or are downloaded to)")
    add("--download", action="store_true", help="download CIFAR if it is not in --data-dir (default: never download)")
    add("--train-size", type=int, default=defaults.train_size, help="SyntheticShapes training images")
    add("--test-size", type=int, default=defaults.test_size, help="SyntheticShapes test images")
    add("--limit-train", type=int, default=None, help="use only the first N training images (default: all)")
    add("--variant", choices=["paper", "torchvision"], default=defaults.variant,
        help="paper: Szegedy et al.'s layout; torchvision: its googlenet (3x3 in the '5x5' branch)")
    add("--stem", choices=["cifar", "imagenet"], default=defaults.stem,
        help="cifar: one 3x3 conv for 32x32 images; imagenet: the paper's 7x7/2 stem")
    add("--width", type=float, default=defaults.width, help="channel multiplier (1 = the full GoogLeNet)")
    add("--aux-weight", type=float, default=defaults.aux_weight, help="weight of each auxiliary loss (0: no aux)")
    add("--dropout", type=float, default=None,
        help="main dropout (default: the variant's, 0.4 paper / 0.2 torchvision)")
    add("--epochs", type=int, default=None,
        help=f"how many epochs (default: {defaults.epochs} for a new run; with --resume, the checkpoint's)")
    add("--batch-size", type=int, default=defaults.batch_size, help="images per training step")
    add("--lr", type=float, default=defaults.lr, help="(peak) learning rate; about 0.05 for --optimizer sgd")
    add("--optimizer", choices=["sgd", "adam", "adamw"], default=defaults.optimizer, help="sgd uses Nesterov momentum")
    add("--momentum", type=float, default=defaults.momentum, help="SGD's momentum (not used by Adam/AdamW)")
    add("--schedule", choices=["onecycle", "cosine", "step", "constant"], default=defaults.schedule,
        help="learning-rate schedule over the whole run")
    add("--weight-decay", type=float, default=defaults.weight_decay, help="about 5e-4 for --optimizer sgd")
    add("--label-smoothing", type=float, default=defaults.label_smoothing,
        help="cross-entropy label smoothing (0: none)")
    add("--no-augment", dest="augment", action="store_false",
        help="turn off the random crops and flips (default: on, for every dataset)")
    add("--device", choices=["cpu", "cuda"], default=defaults.device, help="cuda needs CuPy and an NVIDIA GPU")
    add("--threads", type=int, default=defaults.threads,
        help="threads for NumPy's matrix multiplies on the CPU (0: the BLAS default, one per core); use 1 on a "
             "machine busy with other work, where multithreaded products stall")
    add("--seed", type=int, default=defaults.seed, help="seeds the model, the data order and dropout")
    add("--out", default=defaults.out, help="folder for metrics.csv, curves.png, checkpoint.npz, config.json")
    add("--resume", action="store_true",
        help="continue from <out>/checkpoint.npz (default: start a new run, replacing the files in --out)")
    add("--quiet", dest="progress", action="store_false",
        help="no progress bars or per-epoch lines (default: show them)")
    from minigrad.distributed.training import add_arguments

    add_arguments(parser, defaults)
    parser.set_defaults(handler=train_command)


def train_command(args: argparse.Namespace) -> int:
    fields = set(TrainConfig.__dataclass_fields__)
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    if config.threads < 0:
        print(f"minigrad train: --threads must be 0 (the BLAS default) or a positive count, got {config.threads}",
              file=sys.stderr)
        return 2
    try:
        backend.get_xp(config.device)  # no GPU: one clear line now, not a traceback from inside the first batch
    except RuntimeError as error:
        print(f"minigrad train: {error}", file=sys.stderr)
        return 1
    try:
        history = run(config)
    except (CheckpointError, TrainingDiverged, DatasetUnavailable, DistributedError) as error:
        print(f"minigrad train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if history and config.progress:
        last = history[-1]
        print(f"done: test accuracy {100 * last['test_acc']:.1f}% after {last['epoch']} epochs; "
              f"files in {config.out}/ (metrics.csv, curves.png, checkpoint.npz, config.json)")
    return 0
