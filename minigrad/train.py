"""Training GoogLeNet in class: the loop, metrics, curves, and the ``minigrad train`` command.

    minigrad train                          # the class demo: SyntheticShapes, offline, ~3 minutes on 2 cores
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
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from minigrad import backend, blas, budget
from minigrad.autograd import no_grad
from minigrad.builders import DatasetUnavailable, build_datasets, build_model, build_optimizer, build_scheduler
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
) -> list[dict[str, float]]:
    """Train for ``epochs`` epochs (starting after ``start_epoch`` completed ones); return one metrics row per epoch.

    With ``out_dir`` it writes ``metrics.csv``, ``curves.png``, ``config.json`` and ``checkpoint.npz`` after
    every epoch, and a checkpoint on Ctrl-C before re-raising. A NaN or infinite loss stops the run with
    :class:`TrainingDiverged`, naming the step. With ``total_steps`` the run stops after that many steps in
    all (counted from the first epoch), cutting the last epoch short: a time-budget run's length.
    """
    from tqdm import tqdm

    history = list(history or [])
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")

    def save(epoch_done: int, partial: EpochProgress | None) -> None:
        if out is not None:
            save_checkpoint(out / "checkpoint.npz", model=model, optimizer=optimizer, scheduler=scheduler,
                            loader=train_loader, epochs_done=epoch_done, history=history, partial=partial,
                            config=config)

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
                                img_s=f"{state.seen / max(state.seconds, 1e-9):.0f}",
                                lr=f"{optimizer.param_groups[0]['lr']:.3g}")
                if stop.requested and batches_done < epoch_steps:  # at the epoch's end: finish it first
                    bar.close()
                    save(epoch, state)
                    if out is not None:
                        print(f"checkpoint written to {out / 'checkpoint.npz'}; continue with --resume")
                    raise KeyboardInterrupt
                if batches_done == epoch_steps < len(train_loader):  # the run's last step, inside an epoch
                    break
            bar.close()
            test_loss, test_acc = evaluate(model, test_loader)
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
            if stop.requested:
                raise KeyboardInterrupt
    return history


# ---------------------------------------------------------------------------------------------
# The whole run, and the command line
# ---------------------------------------------------------------------------------------------
def run(config: TrainConfig) -> list[dict[str, float]]:
    """Build everything from ``config`` and train; resume from ``<out>/checkpoint.npz`` when asked."""
    started = budget.clock()  # a time budget counts from here: loading the data is part of the class period
    out = Path(config.out)
    checkpoint = None
    if config.resume:
        checkpoint = load_checkpoint(out / "checkpoint.npz")  # fail before any slow set-up
        saved = checkpoint["meta"]["config"] or {}
        # The run's identity comes from the checkpoint; only how far to train may change (epochs=None:
        # finish the original plan).
        keep = {"epochs", "resume", "progress", "device", "threads", "out"}
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
    if config.epochs is None:
        config = replace(config, epochs=TrainConfig.epochs)
    threads_note = _set_blas_threads(config)
    backend.manual_seed(config.seed)
    train_set, test_set = build_datasets(config)
    if checkpoint is not None and config.classes not in (None, list(train_set.classes)):
        raise CheckpointError(f"the checkpoint's run learned the classes {config.classes}, but the data now has "
                              f"{list(train_set.classes)}; resume with the run's data, or start a new run")
    config = replace(config, classes=list(train_set.classes))  # config.json names them for `minigrad predict`
    train_loader, test_loader = build_loaders(config, train_set, test_set)
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
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--dataset", choices=["shapes", "cifar10", "cifar100", "folder"], default=defaults.dataset)
    add("--data-dir", default=defaults.data_dir, help="where CIFAR archives live (or are downloaded to)")
    add("--download", action="store_true", help="download CIFAR if it is not in --data-dir")
    add("--train-size", type=int, default=defaults.train_size, help="SyntheticShapes training images")
    add("--test-size", type=int, default=defaults.test_size, help="SyntheticShapes test images")
    add("--limit-train", type=int, default=None, help="use only the first N training images")
    add("--variant", choices=["paper", "torchvision"], default=defaults.variant)
    add("--stem", choices=["cifar", "imagenet"], default=defaults.stem)
    add("--width", type=float, default=defaults.width, help="channel multiplier (1 = the full GoogLeNet)")
    add("--aux-weight", type=float, default=defaults.aux_weight, help="weight of each auxiliary loss (0: no aux)")
    add("--dropout", type=float, default=None, help="main dropout (default: the variant's)")
    add("--epochs", type=int, default=None,
        help=f"how many epochs ({defaults.epochs} for a new run; with --resume, None keeps the checkpoint's)")
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr, help="(peak) learning rate; about 0.05 for --optimizer sgd")
    add("--optimizer", choices=["sgd", "adam", "adamw"], default=defaults.optimizer)
    add("--momentum", type=float, default=defaults.momentum)
    add("--schedule", choices=["onecycle", "cosine", "step", "constant"], default=defaults.schedule)
    add("--weight-decay", type=float, default=defaults.weight_decay, help="about 5e-4 for --optimizer sgd")
    add("--label-smoothing", type=float, default=defaults.label_smoothing)
    add("--no-augment", dest="augment", action="store_false", help="no random crops and flips")
    add("--device", choices=["cpu", "cuda"], default=defaults.device)
    add("--threads", type=int, default=defaults.threads,
        help="threads for NumPy's matrix multiplies on the CPU (0: the BLAS default, one per core); use 1 on a "
             "machine busy with other work, where multithreaded products stall")
    add("--seed", type=int, default=defaults.seed)
    add("--out", default=defaults.out, help="folder for metrics.csv, curves.png, checkpoint.npz, config.json")
    add("--resume", action="store_true", help="continue from <out>/checkpoint.npz")
    add("--quiet", dest="progress", action="store_false", help="no progress bars")
    budget.add_options(add, defaults)  # --time-budget, and the folder dataset's --image-size, --cache-dir, ...
    parser.set_defaults(handler=partial(train_command, parser=parser))


def train_command(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    fields = set(TrainConfig.__dataclass_fields__)
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        config = budget.from_command_line(config, args, parser)  # --time-budget's checks and recipe
    except ValueError as error:
        print(f"minigrad train: {error}", file=sys.stderr)
        return 2
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
    except (CheckpointError, TrainingDiverged, DatasetUnavailable, budget.BudgetTooShort) as error:
        print(f"minigrad train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if history and config.progress:
        last = history[-1]
        print(f"done: test accuracy {100 * last['test_acc']:.1f}% after {last['epoch']} epochs; "
              f"files in {config.out}/ (metrics.csv, curves.png, checkpoint.npz, config.json)")
    return 0
