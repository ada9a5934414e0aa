"""SGD against torch.optim.SGD: the same parameters and gradients give the same parameters after N steps.

The update tests take the ``device`` fixture: minigrad's parameters and gradients live there, torch's on the CPU.
"""

import numpy as np
import pytest
import torch

import minigrad
from minigrad import backend, optim
from tests.optim import assert_close_to_torch, gradient_sequence, initial_arrays, run_minigrad, run_torch

STEPS = 10

CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.5},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "weight_decay": 0.01},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2},
    {"lr": 0.07, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-2},
    {"lr": 0.2, "momentum": 0.5, "dampening": 0.1, "weight_decay": 1e-3},
    {"lr": 0.0, "momentum": 0.9},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: ",".join(f"{k}={v}" for k, v in config.items()))
def test_sgd_matches_torch(config, device):
    initial, gradients = initial_arrays(seed=0), gradient_sequence(STEPS, seed=1)
    ours, _ = run_minigrad(lambda module, params: module.SGD(params, **config), initial, gradients, device)
    theirs = run_torch(lambda module, params: module.SGD(params, **config), initial, gradients)
    assert_close_to_torch(ours, theirs)
    moved = any(not np.array_equal(start, end) for start, end in zip(initial, ours))
    assert moved == (config["lr"] > 0), "the parameters must move exactly when lr > 0"


def test_sgd_param_groups_with_their_own_hyperparameters_match_torch(device):
    def make(module, params):
        return module.SGD(
            [{"params": params[:1], "lr": 0.3, "nesterov": True}, {"params": params[1:], "weight_decay": 0.1}],
            lr=0.05,
            momentum=0.9,
        )

    initial, gradients = initial_arrays(seed=2), gradient_sequence(STEPS, seed=3)
    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert_close_to_torch(ours, run_torch(make, initial, gradients))
    assert [group["lr"] for group in optimizer.param_groups] == [0.3, 0.05]
    assert [group["nesterov"] for group in optimizer.param_groups] == [True, False]


def test_sgd_skips_params_without_grad_like_torch(device):
    gradients = gradient_sequence(STEPS, seed=4)
    for step, step_gradients in enumerate(gradients):
        step_gradients[1] = None  # parameter 1 never gets a gradient
        if step % 3 == 0:
            step_gradients[2] = None  # parameter 2 misses some steps
    initial = initial_arrays(seed=5)

    def make(module, params):
        return module.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)

    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert_close_to_torch(ours, run_torch(make, initial, gradients))
    np.testing.assert_array_equal(ours[1], initial[1])
    assert 1 not in optimizer.state_dict()["state"]


def test_changing_lr_and_momentum_between_steps_matches_torch(device):
    """What a scheduler does: the rule reads the group's hyperparameters at every step."""
    initial, gradients = initial_arrays(seed=6), gradient_sequence(STEPS, seed=7)

    def run(module, make_tensor, read):
        params = [make_tensor(array) for array in initial]
        optimizer = module.SGD(params, lr=0.1, momentum=0.0)
        for step, step_gradients in enumerate(gradients):
            for param, gradient in zip(params, step_gradients):
                param.grad = make_tensor(gradient, grad=False)
            optimizer.param_groups[0]["lr"] = 0.1 / (1 + step)
            optimizer.param_groups[0]["momentum"] = 0.0 if step < 3 else 0.9  # the buffer starts at step 3
            optimizer.step()
        return [read(param) for param in params]

    ours = run(optim, lambda a, grad=True: minigrad.Tensor(a.copy(), requires_grad=grad, device=device),
               lambda p: p.numpy())
    theirs = run(torch.optim, lambda a, grad=True: torch.tensor(a.copy(), requires_grad=grad),
                 lambda p: p.detach().numpy())
    assert_close_to_torch(ours, theirs)


def test_sgd_keeps_float32_and_matches_torch_in_float32(device):
    initial = initial_arrays(seed=8, dtype=np.float32)
    gradients = gradient_sequence(STEPS, seed=9, dtype=np.float32)

    def make(module, params):
        return module.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)

    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert all(array.dtype == np.float32 for array in ours)
    assert all(state["momentum_buffer"].dtype == np.float32 for state in optimizer.state_dict()["state"].values())
    assert_close_to_torch(ours, run_torch(make, initial, gradients), steps=STEPS)


def test_sgd_updates_in_place_and_leaves_the_gradient_alone(device):
    param = minigrad.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, device=device)
    array, view = param.data, param.data[0]  # e.g. a layer keeping a view of its weight
    gradient = np.full((2, 3), 0.5)
    param.grad = minigrad.Tensor(gradient.copy(), device=device)
    optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=0.1).step()
    expected = np.arange(6.0).reshape(2, 3) - 0.1 * (0.5 + 0.1 * np.arange(6.0).reshape(2, 3))
    assert param.data is array
    rtol = 1e-15 if device == "cpu" else 1e-14  # a GPU may fuse a multiply-add (one rounding instead of two)
    np.testing.assert_allclose(backend.to_numpy(view), expected[0], rtol=rtol)
    np.testing.assert_array_equal(param.grad.numpy(), gradient)  # weight decay did not leak into .grad


def test_sgd_state_lives_on_the_parameters_device_and_saves_as_numpy(device):
    """Momentum buffers are made next to their parameters; state_dict brings them home as NumPy arrays and
    load_state_dict puts them back on the device, so a resumed run continues exactly."""
    initial, gradients = initial_arrays(seed=10), gradient_sequence(STEPS, seed=11)

    def make(module, params):
        return module.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)

    ours, optimizer = run_minigrad(make, initial, gradients, device)
    assert_close_to_torch(ours, run_torch(make, initial, gradients))
    params = optimizer.param_groups[0]["params"]
    assert all(backend.device_of(optimizer.state[id(p)]["momentum_buffer"]) == device for p in params)
    saved = optimizer.state_dict()
    assert all(type(state["momentum_buffer"]) is np.ndarray for state in saved["state"].values())

    resumed = make(optim, [minigrad.Tensor(array, requires_grad=True, device=device) for array in ours])
    resumed.load_state_dict(saved)
    for param in resumed.param_groups[0]["params"]:
        assert backend.device_of(resumed.state[id(param)]["momentum_buffer"]) == device
