"""A class period: ``minigrad train --time-budget MINUTES`` sizes the run to end within the budget.

    minigrad train --dataset folder --data-dir data/pets --time-budget 20

The clock starts when the run starts, so loading and decoding the images count. Once everything is built,
the run measures its own speed: training steps of a throwaway model of the same size on real batches,
for 2.5% of the budget (30 s at most; the first step is left out: it allocates), then the evaluation of
one test batch, scaled to the whole test set. From the time left it works out how many steps fit, each
epoch followed by an evaluation and the files a run writes, with a margin for a machine that slows down:

    T = the largest number of steps with  T * step_s + ceil(T / steps_per_epoch) * (eval_s + EPOCH_FILES_S)
                                              <= budget * (1 - MARGIN) - time spent so far

The learning-rate schedule is laid out over those T steps, and the last epoch may end part-way through its
batches. The plan holds while the machine stays as fast as it was measured: a run that other programs slow
down later ends late (its last line says how long it took). T is written into the run's config
(``total_steps``), which every checkpoint carries, so ``--resume`` finishes exactly the planned steps,
however fast the machine is that day, and ends bit-for-bit where the uninterrupted run ends. Measuring
changes nothing the run computes: the throwaway model has its own weights and optimizer, its batches are
augmented with their own generator, and minigrad's random state (dropout) is put back afterwards.

A budget too short for one whole epoch trains the steps that fit, each image at most once, and evaluates
once at the end; the plan's line says so, with the budget that one epoch needs. A budget that fits fewer
than ``MIN_STEPS`` steps is refused before any training, with the measured speed and what to change
(:class:`BudgetTooShort`).

``CLASS_PERIOD_RECIPE`` is what ``--time-budget`` runs on CIFAR-10-like folders use unless the command
line says otherwise; README.md has the measurements behind it.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:  # a type hint only: train.py imports this module, not the other way round
    from minigrad.train import TrainConfig

clock: Callable[[], float] = time.perf_counter  # seconds; the tests replace it with a fake clock
MEASURED_STEPS = 3  # timed training steps at least, after one untimed warm-up step
MEASURE_SHARE = 0.025  # and go on timing steps for this share of the budget (at most MEASURE_MAX_S): a short
MEASURE_MAX_S = 30.0  # burst of other work on the machine then moves the median little
MARGIN = 0.05  # plan to end 5% before the budget: a machine shared with others slows down now and then
EPOCH_FILES_S = 2.0  # writing the checkpoint, metrics.csv and curves.png after an epoch
MIN_STEPS = 10  # fewer steps than this is not a training run

# The settings a class-period run uses for dataset "folder" or "cifar10" unless an option overrides them.
CLASS_PERIOD_RECIPE: dict[str, Any] = {
    "width": 0.125, "batch_size": 128, "optimizer": "adamw", "lr": 0.006, "weight_decay": 0.05,
    "schedule": "onecycle", "label_smoothing": 0.1, "aux_weight": 0.0, "dropout": 0.1, "threads": 1,
}
RECIPE_DATASETS = ("folder", "cifar10")


class BudgetTooShort(RuntimeError):
    """The time budget does not fit one epoch of training and its evaluation."""


@dataclass
class Speed:
    """What the run measured: seconds per training step (``batch_size`` images) and per whole evaluation."""

    step_seconds: float
    eval_seconds: float


@dataclass
class Plan:
    """How long the run will be: ``total_steps`` steps in ``epochs`` epochs (the last one maybe cut short)."""

    total_steps: int
    epochs: int
    seconds: float  # the planned time of the training itself (steps, evaluations, files)
    note: str = ""  # what the user should know about this length (less than one epoch fits)


def time_calls(function: Callable[[], Any], count: int, min_seconds: float = 0.0) -> float:
    """The median seconds of ``count`` calls of ``function`` on :data:`clock`, or of more calls until they
    have taken ``min_seconds`` in all."""
    times: list[float] = []
    while len(times) < count or sum(times) < min_seconds:
        start = clock()
        function()
        times.append(clock() - start)
    return statistics.median(times)


def plan_steps(budget_s: float, spent_s: float, speed: Speed, steps_per_epoch: int) -> Plan:
    """The most steps that end within ``budget_s`` seconds, ``spent_s`` of them gone (see the module docstring).

    Less than one epoch is allowed (with a ``note``); raises :class:`BudgetTooShort` below ``MIN_STEPS`` steps.
    """
    left = budget_s * (1 - MARGIN) - spent_s
    per_epoch = speed.eval_seconds + EPOCH_FILES_S
    best = Plan(0, 0, 0.0)
    epochs = 1
    while left - epochs * per_epoch > 0:
        room = left - epochs * per_epoch
        fit = int(room // speed.step_seconds)
        fit += (fit + 1) * speed.step_seconds <= room  # floor division can round a whole quotient down
        steps = min(epochs * steps_per_epoch, fit)
        if steps <= (epochs - 1) * steps_per_epoch:  # the evaluations of one more epoch leave no room for its steps
            break
        best = Plan(steps, epochs, steps * speed.step_seconds + epochs * per_epoch)
        if steps < epochs * steps_per_epoch:  # the last epoch is cut short: more epochs only add evaluations
            break
        epochs += 1
    if best.total_steps >= steps_per_epoch:
        return best
    epoch_s = steps_per_epoch * speed.step_seconds + per_epoch
    needed = math.ceil((spent_s + epoch_s) / (1 - MARGIN) / 6) / 10  # minutes for one epoch, rounded up to 0.1
    why = (f"at the measured {speed.step_seconds:.3g} s per step, one epoch ({steps_per_epoch} steps) and its "
           f"evaluation ({speed.eval_seconds:.0f} s) take {epoch_s / 60:.1f} min, and {spent_s:.0f} s went to "
           f"loading the data and measuring")
    if best.total_steps < MIN_STEPS:
        raise BudgetTooShort(
            f"--time-budget {budget_s / 60:g} min leaves room for {best.total_steps} training step(s): {why}. Give "
            f"--time-budget {needed:g} or more for one epoch, or make steps cheaper (a smaller --width or "
            f"--image-size, --limit-train for a shorter epoch)")
    note = (f"less than one epoch fits ({best.total_steps} of its {steps_per_epoch} steps, each image at most once): "
            f"{why}; one whole epoch needs --time-budget {needed:g}")
    return replace(best, note=note)


def measure_speed(config: TrainConfig, num_classes: int, train_loader: Any, test_loader: Any) -> Speed:
    """Time training steps and one evaluation batch on a throwaway model built like the run's."""
    from minigrad import backend
    from minigrad.autograd import no_grad
    from minigrad.builders import build_model, build_optimizer
    from minigrad.models import googlenet_loss
    from minigrad.tensor import Tensor

    rng_state = backend.get_rng_state()
    model = build_model(config, num_classes)
    optimizer = build_optimizer(config, model)
    generator = numpy.random.default_rng(0)  # batches and augmentation that do not touch the run's loader
    train_set, test_set = train_loader.dataset, test_loader.dataset

    def train_step() -> None:  # as fit() runs it, from gathering and augmenting the batch to the update
        images, labels = train_set.get_batch(generator.choice(len(train_set), train_loader.batch_size))
        if train_loader.transform is not None:
            images = train_loader.transform(images, generator)
        outputs = model(Tensor(images, device=config.device))
        loss = googlenet_loss(outputs, Tensor(labels, device=config.device), aux_weight=config.aux_weight,
                              label_smoothing=config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()

    count = min(len(test_set), test_loader.batch_size)
    test_images, _ = test_set.get_batch(numpy.arange(count))
    if test_loader.transform is not None:
        test_images = test_loader.transform(test_images, generator)
    test_images = Tensor(test_images, device=config.device)

    def eval_batch() -> None:
        with no_grad():
            model(test_images)
        backend.synchronize(config.device)

    try:
        train_step()  # warm-up: the first step allocates the gradients and the optimizer's state
        share = MEASURE_SHARE * 60 * (config.time_budget or 0.0)
        step_s = time_calls(train_step, MEASURED_STEPS, min(share, MEASURE_MAX_S))
        model.eval()
        eval_s = time_calls(eval_batch, 1) * math.ceil(len(test_set) / count)
    finally:
        backend.set_rng_state(rng_state)
    return Speed(step_s, eval_s)


def size_run(config: TrainConfig, started: float, num_classes: int, train_loader: Any,
             test_loader: Any) -> tuple[TrainConfig, Plan, Speed]:
    """Measure the speed and plan the run's length; returns the config with ``total_steps`` and ``epochs`` set."""
    speed = measure_speed(config, num_classes, train_loader, test_loader)
    plan = plan_steps(config.time_budget * 60, clock() - started, speed, len(train_loader))
    return replace(config, total_steps=plan.total_steps, epochs=plan.epochs), plan, speed


def describe(config: TrainConfig, plan: Plan, speed: Speed, steps_per_epoch: int) -> str:
    """One line for the run's start: the measured speed and the planned length."""
    return (f"time budget {config.time_budget:g} min: measured {config.batch_size / speed.step_seconds:.0f} img/s "
            f"({speed.step_seconds:.3g} s per step) and {speed.eval_seconds:.0f} s per evaluation; planned "
            f"{plan.total_steps} steps ({plan.total_steps / steps_per_epoch:.2f} epochs, {plan.seconds / 60:.1f} "
            f"min of training)" + (f"\nnote: {plan.note}" if plan.note else ""))


def add_options(add: Callable[..., Any], defaults: TrainConfig) -> None:
    """``minigrad train``'s options for a time budget and for the folder dataset (``add``: add_argument)."""
    add("--time-budget", type=float, default=None, metavar="MINUTES",
        help="measure the speed, then train as many steps as end within MINUTES (instead of --epochs); with "
             "--dataset folder or cifar10 the class-period recipe (minigrad/budget.py) sets every option not given "
             "(default: no budget, train --epochs)")
    add("--image-size", type=int, default=defaults.image_size,
        help="folder: the side of the square images (the shorter side is resized to it, then the centre cut)")
    add("--skip-bad-images", action="store_true",
        help="folder: leave out and count files that are not readable images (default: stop and name the file)")
    add("--cache-dir", default=None, help="folder: keep the decoded images in a cache file in this folder "
                                          "(default: decode them again each run)")


def from_command_line(config: TrainConfig, args: Any, parser: Any) -> TrainConfig:
    """Check ``--time-budget`` against the other options and apply the recipe to those not typed.

    Raises ValueError with the message for the command line.
    """
    from minigrad.cli import given_options

    if config.time_budget is None:
        return config
    if args.epochs is not None or not config.time_budget > 0:
        raise ValueError("--time-budget takes a positive number of minutes and sizes the run itself; give it or "
                         "--epochs, not both")
    if config.resume or parser is None:  # a resumed run keeps its checkpoint's settings
        return config
    explicit = given_options(parser, getattr(args, "argv", sys.argv[1:])[1:], set(config.__dataclass_fields__))
    return apply_recipe(config, explicit)


def apply_recipe(config: TrainConfig, explicit: set[str]) -> TrainConfig:
    """``config`` with :data:`CLASS_PERIOD_RECIPE` in every field the command line did not set explicitly.

    Only for a time-budget run on a dataset in ``RECIPE_DATASETS``; any other config is returned unchanged.
    """
    if config.time_budget is None or config.dataset not in RECIPE_DATASETS:
        return config
    return replace(config, **{key: value for key, value in CLASS_PERIOD_RECIPE.items() if key not in explicit})
