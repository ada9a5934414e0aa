"""The parts of a training run, built from its :class:`~minigrad.train.TrainConfig`: data, model, optimizer, schedule.

    train_set, test_set = build_datasets(config)
    model = build_model(config, num_classes=len(train_set.classes))
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=len(train_loader))

:func:`minigrad.train.run` calls these in this order (and ``build_loaders``, in train.py, between the first
two); the tutorials and benchmarks call them to build the same pieces by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from minigrad.nn.module import Module

if TYPE_CHECKING:  # a type hint only: train.py imports this module, not the other way round
    from minigrad.train import TrainConfig


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be read: its archive is missing or corrupted, or the download failed."""


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
    elif config.dataset == "folder":  # data_dir/train/<class>/<image> and data_dir/test/ (or val/)
        from minigrad.data.folder import train_test_folders

        try:
            train_set, test_set = train_test_folders(
                config.data_dir, size=config.image_size, bad_files="skip" if config.skip_bad_images else "error",
                cache=config.cache_dir or False, progress=config.progress)
        except (OSError, ValueError) as error:  # the layout, an empty class folder, an unreadable image
            raise DatasetUnavailable(str(error)) from error
    else:
        raise ValueError(f"train: unknown dataset {config.dataset!r}; use shapes, cifar10, cifar100 or folder")
    if config.limit_train is not None:
        keep: Any = slice(None, config.limit_train)
        if config.dataset == "folder":  # its images come sorted by class: a seeded random subset, in that order
            keep = numpy.sort(numpy.random.default_rng(config.seed).permutation(len(train_set))[: config.limit_train])
        train_set = data.ArrayDataset(train_set.images[keep], train_set.labels[keep], classes=list(train_set.classes))
    return train_set, test_set


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

    total = config.total_steps or config.epochs * steps_per_epoch  # total_steps: a time-budget run's length
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
