"""Learning-rate schedules: StepLR, CosineAnnealingLR, LinearLR (warm-up), SequentialLR, OneCycleLR.

A scheduler sets ``optimizer.param_groups[i]["lr"]`` from a step counter. Use it like PyTorch's::

    scheduler = CosineAnnealingLR(optimizer, T_max=100)
    for epoch in range(100):
        train_one_epoch(model, optimizer)      # calls optimizer.step() many times
        scheduler.step()                       # then move the schedule on by one

Each schedule here is a *closed form* ``lr = f(base_lr, t)`` of the counter ``t = last_epoch``. PyTorch
computes most of them recursively from the current lr (so that two schedulers can act on one optimizer
at once); the numbers agree to about 1e-14 relative (tests/optim/test_lr_scheduler.py compares them).
The deliberate difference: these schedules do not compose by running side by side; chain them in time
with :class:`SequentialLR` instead.

Construction already applies step 0 (the optimizer's lr becomes ``f(base_lr, 0)``), as in PyTorch.
``base_lr`` is the group's lr when the first scheduler was built, kept in ``group["initial_lr"]``.
State dicts hold only Python numbers, strings, lists and dicts (JSON-safe).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

from minigrad.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: holds the counter ``last_epoch`` and writes ``get_lr()`` into the optimizer."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a minigrad Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])  # the first scheduler built remembers the starting lr
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._last_lr: list[float] = []
        self.step()  # step 0

    def get_lr(self) -> list[float]:
        """The learning rate of each group at step ``self.last_epoch``."""
        raise NotImplementedError

    def step(self) -> None:
        """Move the schedule on by one step and set the optimizer's learning rates."""
        self._set_step(self.last_epoch + 1)

    def _set_step(self, step: int) -> None:
        self.last_epoch = step
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer: plain numbers and lists."""
        return {key: value for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next ``step()`` continues from its ``last_epoch``."""
        self.__dict__.update(state_dict)


def _per_group(name: str, value: float | list[float], optimizer: Optimizer, scheduler: str) -> list[float]:
    """One value per parameter group: a list is checked for its length, a number is repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{scheduler}: {name} has {len(value)} values but the optimizer has "
                f"{len(optimizer.param_groups)} parameter groups; give one value per group or a single number"
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    StepLR(optimizer, step_size, gamma=0.1)

    ``lr(t) = base_lr * gamma ** (t // step_size)``. GoogLeNet's paper decreases the lr by 4% every
    8 epochs: ``StepLR(optimizer, step_size=8, gamma=0.96)``.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if not isinstance(step_size, int) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` steps (Loshchilov & Hutter 2017).

    CosineAnnealingLR(optimizer, T_max, eta_min=0)

    ``lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``. Past ``T_max`` the
    cosine goes on (back up towards ``base_lr``), as in PyTorch; there are no restarts.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (torch's name)
        if not isinstance(T_max, int) or T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int (steps to anneal over), got {T_max!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        cosine = 1 + math.cos(math.pi * self.last_epoch / self.T_max)  # from 2 down to 0
        return [self.eta_min + (base_lr - self.eta_min) * cosine / 2 for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor that moves linearly from ``start_factor`` to ``end_factor``.

    LinearLR(optimizer, start_factor=1/3, end_factor=1.0, total_iters=5)

    ``lr(t) = base_lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)``.
    With ``end_factor=1`` this is a linear warm-up (Goyal et al. 2017): start small, reach ``base_lr``
    after ``total_iters`` steps and stay there.
    """

    def __init__(
        self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
    ) -> None:
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        if not isinstance(total_iters, int) or total_iters <= 0:
            raise ValueError(f"LinearLR: total_iters must be a positive int, got {total_iters!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters  # 0 -> 1, then stays 1
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` from its step 0, and so on.

    SequentialLR(optimizer, schedulers, milestones)

    Warm-up then cosine, for 5 + 95 steps::

        warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)
        cosine = CosineAnnealingLR(optimizer, T_max=95)
        scheduler = SequentialLR(optimizer, [warmup, cosine], milestones=[5])
    """

    def __init__(self, optimizer: Optimizer, schedulers: list[LRScheduler], milestones: list[int]) -> None:
        if len(schedulers) < 1:
            raise ValueError("SequentialLR: expects at least one scheduler, got none")
        for number, scheduler in enumerate(schedulers):
            if getattr(scheduler, "optimizer", None) is not optimizer:
                raise ValueError(
                    f"SequentialLR: scheduler {number} ({type(scheduler).__name__}) belongs to another optimizer; "
                    f"build every scheduler on the optimizer given to SequentialLR"
                )
        if len(milestones) != len(schedulers) - 1 or list(milestones) != sorted(milestones):
            raise ValueError(
                f"SequentialLR: needs len(schedulers) - 1 increasing milestones, got {len(schedulers)} schedulers "
                f"and milestones {list(milestones)}"
            )
        self.schedulers = list(schedulers)
        self.milestones = list(milestones)
        super().__init__(optimizer)

    def _set_step(self, step: int) -> None:
        self.last_epoch = step
        index = bisect_right(self.milestones, step)  # which scheduler is in charge at this step
        started_at = self.milestones[index - 1] if index > 0 else 0
        self.schedulers[index]._set_step(step - started_at)
        self._last_lr = self.schedulers[index].get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["schedulers"] = [scheduler.state_dict() for scheduler in self.schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        for scheduler, scheduler_state in zip(self.schedulers, state.pop("schedulers")):
            scheduler.load_state_dict(scheduler_state)
        self.__dict__.update(state)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2017): lr up from ``max_lr/div_factor`` to ``max_lr``, then down.

    OneCycleLR(optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
               anneal_strategy='cos', cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
               div_factor=25.0, final_div_factor=1e4, three_phase=False)

    Call ``step()`` after every batch. Two phases (fastai's default), with ``initial_lr = max_lr / div_factor``
    and ``min_lr = initial_lr / final_div_factor``:

    1. steps 0 .. pct_start*total_steps - 1: lr ``initial_lr -> max_lr``, momentum ``max -> base``;
    2. then to step total_steps - 1: lr ``max_lr -> min_lr``, momentum ``base -> max``.

    ``three_phase=True`` (the paper's shape): up, back down to ``initial_lr`` symmetrically, then down to
    ``min_lr``. Each phase interpolates with half a cosine (``anneal_strategy='cos'``) or a straight line.
    Momentum cycles opposite to the lr: SGD's ``momentum``, or Adam's ``beta1``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"OneCycleLR: expected a minigrad Optimizer, got {type(optimizer).__name__}")
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"OneCycleLR: total_steps must be a positive int, got {total_steps!r}")
        elif epochs is not None and steps_per_epoch is not None:
            for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(value, int) or value <= 0:
                    raise ValueError(f"OneCycleLR: {name} must be a positive int, got {value!r}")
            total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("OneCycleLR: give total_steps, or both epochs and steps_per_epoch")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps = total_steps
        self.anneal_strategy = anneal_strategy
        self.cycle_momentum = cycle_momentum

        # Each phase runs from the previous phase's end_step to its own, between two named group entries.
        # (end_step is a float, as in PyTorch: pct_start * total_steps need not be whole.)
        up_end = float(pct_start * total_steps) - 1
        if three_phase:
            self.phases = [
                {"end_step": up_end, "lr": ("initial_lr", "max_lr"), "momentum": ("max_momentum", "base_momentum")},
                {"end_step": float(2 * pct_start * total_steps) - 2, "lr": ("max_lr", "initial_lr"),
                 "momentum": ("base_momentum", "max_momentum")},
                {"end_step": total_steps - 1, "lr": ("initial_lr", "min_lr"),
                 "momentum": ("max_momentum", "max_momentum")},
            ]
        else:
            self.phases = [
                {"end_step": up_end, "lr": ("initial_lr", "max_lr"), "momentum": ("max_momentum", "base_momentum")},
                {"end_step": total_steps - 1, "lr": ("max_lr", "min_lr"),
                 "momentum": ("base_momentum", "max_momentum")},
            ]

        # Unlike the other schedules, OneCycleLR sets initial_lr itself (from max_lr, not from the optimizer).
        for group, group_max_lr in zip(optimizer.param_groups, _per_group("max_lr", max_lr, optimizer, "OneCycleLR")):
            group["initial_lr"] = group_max_lr / div_factor
            group["max_lr"] = group_max_lr
            group["min_lr"] = group["initial_lr"] / final_div_factor
        if cycle_momentum:
            self.use_beta1 = "betas" in optimizer.defaults  # Adam's beta1 plays the part of momentum
            if not self.use_beta1 and "momentum" not in optimizer.defaults:
                raise ValueError(
                    f"OneCycleLR: {type(optimizer).__name__} has neither momentum nor betas to cycle; "
                    f"pass cycle_momentum=False"
                )
            max_momenta = _per_group("max_momentum", max_momentum, optimizer, "OneCycleLR")
            base_momenta = _per_group("base_momentum", base_momentum, optimizer, "OneCycleLR")
            for group, group_max, group_base in zip(optimizer.param_groups, max_momenta, base_momenta):
                group["max_momentum"] = group_max
                group["base_momentum"] = group_base
                self._set_momentum(group, group_max)
        super().__init__(optimizer)

    def _set_momentum(self, group: dict[str, Any], momentum: float) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _anneal(self, start: float, end: float, fraction: float) -> float:
        """From ``start`` (fraction 0) to ``end`` (fraction 1), along half a cosine or a line."""
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)
        return (end - start) * fraction + start

    def get_lr(self) -> list[float]:
        """The lrs at step ``last_epoch``; also sets each group's momentum (or beta1) when cycling it."""
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {step} times but total_steps is {self.total_steps}; "
                f"make total_steps (or epochs * steps_per_epoch) cover the whole run"
            )
        lrs = []
        for group in self.optimizer.param_groups:
            phase_start = 0.0
            for number, phase in enumerate(self.phases):
                if step <= phase["end_step"] or number == len(self.phases) - 1:
                    fraction = (step - phase_start) / (phase["end_step"] - phase_start)
                    lr_from, lr_to = phase["lr"]
                    lrs.append(self._anneal(group[lr_from], group[lr_to], fraction))
                    if self.cycle_momentum:
                        momentum_from, momentum_to = phase["momentum"]
                        self._set_momentum(group, self._anneal(group[momentum_from], group[momentum_to], fraction))
                    break
                phase_start = phase["end_step"]
        return lrs
