"""Adam and AdamW against torch.optim: the same parameters and gradients give the same parameters.

The update tests take the ``device`` fixture: minigrad's parameters and gradients live there, torch's on the CPU.
"""

import numpy as np
import pytest

import minigrad
from minigrad import backend, optim
from tests.optim import assert_close_to_torch, gradient_sequence, initial_arrays, run_minigrad, run_torch

STEPS = 10

CONFIGS = [
    {},
    {"lr": 0.01},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.02, "amsgrad": True, "weight_decay": 0.05},
    {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3},
    {"lr": 0.01, "betas": (0.0, 0.0)},
]


def config_id(config):
    return ",".join(f"{k}={v}" for k, v in config.items()) or "defaults"


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_adam_and_adamw_match_torch(name, config, device):
    initial, gradients = initial_arrays(seed=0), gradient_sequence(STEPS, seed=1)

    def make(module, params):
        return getattr(module, name)(params, **config)

    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert_close_to_torch(ours, run_torch(make, initial, gradients))
    assert all(state["step"] == STEPS for state in optimizer.state_dict()["state"].values())


def test_adam_and_adamw_differ_only_in_weight_decay():
    """Checks that the tests above could fail: the two rules must give different numbers with decay."""
    initial, gradients = initial_arrays(seed=2), gradient_sequence(STEPS, seed=3)
    adam, _ = run_minigrad(lambda module, p: module.Adam(p, lr=0.01, weight_decay=0.1), initial, gradients)
    adamw, _ = run_minigrad(lambda module, p: module.AdamW(p, lr=0.01, weight_decay=0.1), initial, gradients)
    assert not np.allclose(adam[0], adamw[0], rtol=1e-6)
    adam, _ = run_minigrad(lambda module, p: module.Adam(p, lr=0.01), initial, gradients)
    adamw, _ = run_minigrad(lambda module, p: module.AdamW(p, lr=0.01, weight_decay=0.0), initial, gradients)
    for mine, theirs in zip(adam, adamw):
        np.testing.assert_array_equal(mine, theirs)


def test_adamw_default_weight_decay_is_1e_2():
    param = minigrad.Tensor(np.ones(2), requires_grad=True)
    assert optim.AdamW([param]).param_groups[0]["weight_decay"] == 1e-2
    assert optim.Adam([param]).param_groups[0]["weight_decay"] == 0


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_param_groups_and_missing_grads_match_torch(name, device):
    gradients = gradient_sequence(STEPS, seed=4)
    for step, step_gradients in enumerate(gradients):
        if step % 2 == 1:
            step_gradients[0] = None  # Adam's step count is per parameter: this one counts only 5 steps

    def make(module, params):
        return getattr(module, name)(
            [{"params": params[:2], "lr": 0.03, "amsgrad": True}, {"params": params[2:], "betas": (0.8, 0.99)}],
            lr=0.01,
            weight_decay=0.05,
        )

    initial = initial_arrays(seed=5)
    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert_close_to_torch(ours, run_torch(make, initial, gradients))
    assert [state["step"] for state in optimizer.state_dict()["state"].values()] == [5, 10, 10]


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_float32_stays_float32_and_matches_torch(name, device):
    initial = initial_arrays(seed=6, dtype=np.float32)
    gradients = gradient_sequence(STEPS, seed=7, dtype=np.float32)

    def make(module, params):
        return getattr(module, name)(params, lr=0.01, weight_decay=0.1, amsgrad=True)

    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert all(array.dtype == np.float32 for array in ours)
    for state in optimizer.state_dict()["state"].values():
        assert {state[key].dtype for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")} == {np.dtype(np.float32)}
    assert_close_to_torch(ours, run_torch(make, initial, gradients), steps=STEPS)


def test_adam_updates_in_place(device):
    param = minigrad.Tensor(np.ones((2, 3)), requires_grad=True, device=device)
    view = param.data[1]
    param.grad = minigrad.Tensor(np.full((2, 3), 2.0), device=device)
    optim.Adam([param], lr=0.1).step()
    # First step: m_hat = g and v_hat = g*g, so every weight moves by lr * g / (|g| + eps) = lr * sign(g).
    rtol = 1e-15 if device == "cpu" else 1e-14  # a GPU may fuse a multiply-add (one rounding instead of two)
    np.testing.assert_allclose(backend.to_numpy(view), 1 - 0.1 * 2 / (2 + 1e-8), rtol=rtol)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_state_lives_on_the_parameters_device_and_saves_as_numpy(name, device):
    """The moments are made next to their parameters; state_dict brings them home as NumPy arrays and
    load_state_dict puts them back on the device."""
    initial, gradients = initial_arrays(seed=8), gradient_sequence(STEPS, seed=9)

    def make(module, params):
        return getattr(module, name)(params, lr=0.01, weight_decay=0.1, amsgrad=True)

    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert_close_to_torch(ours, run_torch(make, initial, gradients))
    moments = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    for param in optimizer.param_groups[0]["params"]:
        assert {backend.device_of(optimizer.state[id(param)][key]) for key in moments} == {device}
    saved = optimizer.state_dict()
    assert all(type(state[key]) is np.ndarray for state in saved["state"].values() for key in moments)

    resumed = make(optim, [minigrad.Tensor(array, requires_grad=True, device=device) for array in ours])
    resumed.load_state_dict(saved)
    for param in resumed.param_groups[0]["params"]:
        assert {backend.device_of(resumed.state[id(param)][key]) for key in moments} == {device}
