"""``minigrad train``: its options and what the command does with them (the training itself is
:mod:`minigrad.train`). Registered by :func:`minigrad.cli.build_parser`."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

from minigrad import backend, budget
from minigrad.builders import DatasetUnavailable
from minigrad.checkpoint import CheckpointError
from minigrad.cli import DefaultsHelpFormatter
from minigrad.distributed.world import DistributedError
from minigrad.train import TrainConfig, TrainingDiverged, run


def register_command(commands: Any) -> None:
    """Add ``minigrad train`` to the CLI's subcommands."""
    defaults = TrainConfig()
    parser = commands.add_parser("train", help="train GoogLeNet (default: the offline SyntheticShapes class demo)",
                                 formatter_class=DefaultsHelpFormatter)
    add = parser.add_argument
    add("--dataset", choices=["shapes", "cifar10", "cifar100", "folder"], default=defaults.dataset,
        help="shapes: the built-in SyntheticShapes, no download; cifar10/cifar100: the official archives; "
             "folder: your images, DIR/train/<class>/... and DIR/test/<class>/... (--data-dir DIR)")
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
    budget.add_options(add, defaults)  # --time-budget, and the folder dataset's --image-size, --cache-dir, ...
    from minigrad.distributed.training import add_arguments

    add_arguments(parser, defaults)
    parser.set_defaults(handler=partial(train_command, parser=parser))


def train_command(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    fields = set(TrainConfig.__dataclass_fields__)
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        config = budget.from_command_line(config, args, parser)  # --time-budget's checks and recipe
    except ValueError as error:
        print(f"minigrad train: {error}", file=sys.stderr)
        return 2
    if config.distributed and config.time_budget is not None:
        # Every rank would measure its own speed and size its own run: the ranks must agree on one length.
        print("minigrad train: --time-budget does not work with --distributed yet (each rank would size its own "
              "run); give --epochs instead", file=sys.stderr)
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
    except (CheckpointError, TrainingDiverged, DatasetUnavailable, DistributedError, budget.BudgetTooShort) as error:
        print(f"minigrad train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if history and config.progress:
        last = history[-1]
        print(f"done: test accuracy {100 * last['test_acc']:.1f}% after {last['epoch']} epochs; "
              f"files in {config.out}/ (metrics.csv, curves.png, checkpoint.npz, config.json)")
    return 0
