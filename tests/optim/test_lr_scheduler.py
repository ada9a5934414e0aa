"""Learning-rate schedules against torch.optim.lr_scheduler: the same lr (and momentum) at every step."""

import json
import warnings

import numpy as np
import pytest
import torch

import minigrad
from minigrad import optim
from minigrad.optim import lr_scheduler
from tests.optim import assert_close_to_torch, gradient_sequence, initial_arrays

STEPS = 40
# minigrad's schedules are closed forms of the step count; torch computes most of them recursively from the
# current lr. The two agree to ~2e-14 relative (measured); a wrong formula is off by far more.
RTOL = 1e-12


def two_group_optimizer(module, name, make_param):
    params = [make_param() for _ in range(2)]
    groups = [{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}]
    if name == "SGD":
        return getattr(module, name)(groups, lr=0.1, momentum=0.9)
    return getattr(module, name)(groups, lr=0.1, betas=(0.9, 0.999))


def momenta(optimizer):
    if "betas" in optimizer.param_groups[0]:
        return [group["betas"][0] for group in optimizer.param_groups]
    return [group["momentum"] for group in optimizer.param_groups]


def schedule(module, make_scheduler, optimizer_name="SGD", steps=STEPS):
    """The (lr, momentum) of every group after construction and after each of ``steps`` steps."""
    if module is torch.optim.lr_scheduler:
        optimizer = two_group_optimizer(torch.optim, optimizer_name, lambda: torch.zeros(2, requires_grad=True))
    else:
        optimizer = two_group_optimizer(optim, optimizer_name, lambda: minigrad.zeros(2, requires_grad=True))
    scheduler = make_scheduler(module, optimizer)
    lrs, momentum_values = [scheduler.get_last_lr()], [momenta(optimizer)]
    for _ in range(steps):
        optimizer.step()  # no gradients: a no-op, but torch warns when the order is wrong
        scheduler.step()
        assert scheduler.get_last_lr() == [group["lr"] for group in optimizer.param_groups]
        lrs.append(scheduler.get_last_lr())
        momentum_values.append(momenta(optimizer))
    return np.array(lrs), np.array(momentum_values)


SCHEDULES = {
    "StepLR(3, 0.1)": lambda m, o: m.StepLR(o, step_size=3),
    "StepLR(7, 0.5)": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "Cosine(10)": lambda m, o: m.CosineAnnealingLR(o, T_max=10),  # goes past T_max: the cosine comes back up
    "Cosine(30, eta_min)": lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
    "LinearLR default": lambda m, o: m.LinearLR(o),
    "LinearLR warmup": lambda m, o: m.LinearLR(o, start_factor=0.01, total_iters=12),
    "LinearLR decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=30),
    "warmup then cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.CosineAnnealingLR(o, T_max=30)], milestones=[5]
    ),
    "step, linear, cosine": lambda m, o: m.SequentialLR(
        o,
        [m.StepLR(o, 2, 0.5), m.LinearLR(o, start_factor=0.5, total_iters=4), m.CosineAnnealingLR(o, 20, 1e-4)],
        milestones=[6, 15],
    ),
    "OneCycle cos": lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=STEPS),
    "OneCycle linear": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS, anneal_strategy="linear"),
    "OneCycle three phase": lambda m, o: m.OneCycleLR(
        o, max_lr=0.4, epochs=4, steps_per_epoch=10, pct_start=0.25, three_phase=True, div_factor=10.0
    ),
    "OneCycle odd pct": lambda m, o: m.OneCycleLR(
        o, max_lr=0.3, total_steps=STEPS + 3, pct_start=0.37, base_momentum=[0.8, 0.7], max_momentum=0.99
    ),
    "OneCycle no momentum": lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=STEPS, cycle_momentum=False),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("optimizer_name", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(name, optimizer_name):
    ours_lr, ours_momentum = schedule(lr_scheduler, SCHEDULES[name], optimizer_name)
    torch_lr, torch_momentum = schedule(torch.optim.lr_scheduler, SCHEDULES[name], optimizer_name)
    np.testing.assert_allclose(ours_lr, torch_lr, rtol=RTOL, atol=1e-16)
    np.testing.assert_allclose(ours_momentum, torch_momentum, rtol=RTOL, atol=0)
    assert len(np.unique(ours_lr[:, 0])) > 3, "the schedule must actually change the lr"


def test_one_cycle_cycles_momentum_opposite_to_lr():
    lrs, momentum_values = schedule(lr_scheduler, SCHEDULES["OneCycle cos"], "Adam")
    peak = int(np.argmax(lrs[:, 0]))
    assert peak == round(0.3 * STEPS) - 1
    assert momentum_values[0, 0] == pytest.approx(0.95) and momentum_values[peak, 0] == pytest.approx(0.85)
    assert lrs[0, 0] == pytest.approx(1.0 / 25) and lrs[STEPS - 1, 0] == pytest.approx(1.0 / 25 / 1e4)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_cycle_with_sgd_trains_like_torch():
    """Schedule and optimizer together: lr and momentum change every step, parameters follow torch's."""
    initial, gradients = initial_arrays(seed=0), gradient_sequence(30, seed=1)

    def run(module, scheduler_module, make_tensor, read):
        params = [make_tensor(array) for array in initial]
        optimizer = module.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        scheduler = scheduler_module.OneCycleLR(optimizer, max_lr=0.5, total_steps=30)
        for step_gradients in gradients:
            for param, gradient in zip(params, step_gradients):
                param.grad = make_tensor(gradient, grad=False)
            optimizer.step()
            scheduler.step()
        return [read(param) for param in params]

    ours = run(optim, lr_scheduler, lambda a, grad=True: minigrad.Tensor(a.copy(), requires_grad=grad),
               lambda p: p.numpy())
    theirs = run(torch.optim, torch.optim.lr_scheduler,
                 lambda a, grad=True: torch.tensor(a.copy(), requires_grad=grad), lambda p: p.detach().numpy())
    assert_close_to_torch(ours, theirs)


@pytest.mark.parametrize("name", ["Cosine(10)", "warmup then cosine", "step, linear, cosine", "OneCycle cos"])
def test_state_dict_round_trip_continues_the_schedule(name):
    """Save after 7 steps (through JSON: the state is plain data), load into fresh objects, keep going."""
    straight, _ = schedule(lr_scheduler, SCHEDULES[name], "Adam", steps=20)

    optimizer = two_group_optimizer(optim, "Adam", lambda: minigrad.zeros(2, requires_grad=True))
    scheduler = SCHEDULES[name](lr_scheduler, optimizer)
    for _ in range(7):
        scheduler.step()
    saved_scheduler = json.loads(json.dumps(scheduler.state_dict()))
    saved_optimizer = optimizer.state_dict()

    optimizer = two_group_optimizer(optim, "Adam", lambda: minigrad.zeros(2, requires_grad=True))
    scheduler = SCHEDULES[name](lr_scheduler, optimizer)  # build first: construction sets the lr (as in torch)
    optimizer.load_state_dict(saved_optimizer)
    scheduler.load_state_dict(saved_scheduler)
    resumed = [scheduler.get_last_lr()]
    for _ in range(13):
        scheduler.step()
        resumed.append([group["lr"] for group in optimizer.param_groups])
    np.testing.assert_array_equal(np.array(resumed), straight[7:])


def test_one_cycle_refuses_to_run_past_total_steps():
    optimizer = optim.SGD([minigrad.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=3)
    for _ in range(3):
        scheduler.step()  # step total_steps itself is allowed, as in torch
    with pytest.raises(ValueError, match=r"OneCycleLR: stepped 4 times but total_steps is 3"):
        scheduler.step()


def test_scheduler_errors():
    optimizer = optim.SGD([minigrad.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    other = optim.SGD([minigrad.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="StepLR: expected a minigrad Optimizer, got list"):
        lr_scheduler.StepLR([], step_size=2)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive int, got 0"):
        lr_scheduler.StepLR(optimizer, step_size=0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max must be a positive int"):
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=0)
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0, 1\], got 0"):
        lr_scheduler.LinearLR(optimizer, start_factor=0)
    with pytest.raises(ValueError, match="OneCycleLR: give total_steps, or both epochs and steps_per_epoch"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=3)
    with pytest.raises(ValueError, match="OneCycleLR: max_lr has 2 values but the optimizer has 1 parameter groups"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=[0.1, 0.2], total_steps=10)
    with pytest.raises(ValueError, match="OneCycleLR: pct_start must be a float in"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="OneCycleLR: anneal_strategy must be 'cos' or 'linear'"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    warmup = lr_scheduler.LinearLR(optimizer)
    with pytest.raises(ValueError, match="SequentialLR: needs len\\(schedulers\\) - 1 increasing milestones"):
        lr_scheduler.SequentialLR(optimizer, [warmup, lr_scheduler.StepLR(optimizer, 2)], milestones=[])
    with pytest.raises(ValueError, match="SequentialLR: scheduler 1 \\(StepLR\\) belongs to another optimizer"):
        lr_scheduler.SequentialLR(optimizer, [warmup, lr_scheduler.StepLR(other, 2)], milestones=[3])


def test_construction_applies_step_zero_and_remembers_initial_lr():
    optimizer = optim.SGD([minigrad.zeros(2, requires_grad=True)], lr=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # minigrad does not warn about call order
        scheduler = lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=2)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.15)
        assert optimizer.param_groups[0]["initial_lr"] == 0.3
        scheduler.step()
        scheduler.step()
        assert scheduler.get_last_lr() == [pytest.approx(0.3)]
