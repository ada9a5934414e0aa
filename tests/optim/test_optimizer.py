"""The Optimizer base: zero_grad, state dicts (and their pickle-free flat form), validation messages.

State dicts and zero_grad take the ``device`` fixture (a state dict is plain NumPy data whatever the device);
the validation messages are checked on the CPU only.
"""

import numpy as np
import pytest
import torch

import minigrad
from minigrad import optim
from minigrad.optim import flatten_state_dict, unflatten_state_dict
from tests.optim import gradient_sequence, initial_arrays

MAKERS = {
    "SGD momentum": lambda module, groups: module.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "SGD nesterov": lambda module, groups: module.SGD(groups, lr=0.1, momentum=0.9, nesterov=True),
    "Adam amsgrad": lambda module, groups: module.Adam(groups, lr=0.01, amsgrad=True, weight_decay=0.1),
    "AdamW": lambda module, groups: module.AdamW(groups, lr=0.01),
}


def two_groups(params):
    return [{"params": params[:2], "lr": 0.05}, {"params": params[2:]}]


def make_params(dtype=np.float64, device="cpu"):
    return [minigrad.Tensor(array, requires_grad=True, device=device) for array in initial_arrays(seed=0, dtype=dtype)]


def run_steps(optimizer, params, gradients):
    for step_gradients in gradients:
        for param, gradient in zip(params, step_gradients):
            param.grad = minigrad.Tensor(gradient.copy(), device=param.device)
        optimizer.step()


# ----- state dicts --------------------------------------------------------------------------------
@pytest.mark.parametrize("through_npz", [False, True], ids=["dict", "npz"])
@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_round_trip_is_bitwise(name, through_npz, dtype, tmp_path, device):
    """5 steps, save, load into a fresh optimizer (fresh parameters with the same values), 5 more == 10 steps."""
    gradients = gradient_sequence(10, seed=1, dtype=dtype)
    straight_params = make_params(dtype, device)
    run_steps(MAKERS[name](optim, two_groups(straight_params)), straight_params, gradients)

    params = make_params(dtype, device)
    optimizer = MAKERS[name](optim, two_groups(params))
    run_steps(optimizer, params, gradients[:5])
    saved = optimizer.state_dict()
    if through_npz:  # what a checkpoint does: every value an array, and no pickle on the way back
        np.savez(tmp_path / "optimizer.npz", **flatten_state_dict(saved))
        with np.load(tmp_path / "optimizer.npz", allow_pickle=False) as archive:
            saved = unflatten_state_dict(archive)
    resumed_params = [minigrad.Tensor(param.numpy(), requires_grad=True, device=device) for param in params]
    resumed = MAKERS[name](optim, [{"params": resumed_params[:2]}, {"params": resumed_params[2:], "lr": 0.5}])
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 0.05, "hyperparameters come from the state dict"
    run_steps(resumed, resumed_params, gradients[5:])

    for ours, reference in zip(resumed_params, straight_params):
        assert ours.dtype == dtype and ours.device == device
        np.testing.assert_array_equal(ours.numpy(), reference.numpy())


def test_state_dict_has_torchs_layout_and_only_plain_data(device):
    params = make_params(device=device)
    torch_params = [torch.tensor(param.numpy(), requires_grad=True) for param in params]
    gradients = gradient_sequence(2, seed=3)
    optimizer = optim.Adam(two_groups(params), lr=0.01, amsgrad=True)
    run_steps(optimizer, params, gradients)
    reference = torch.optim.Adam(two_groups(torch_params), lr=0.01, amsgrad=True)
    for step_gradients in gradients:
        for param, gradient in zip(torch_params, step_gradients):
            param.grad = torch.tensor(gradient)
        reference.step()

    ours, theirs = optimizer.state_dict(), reference.state_dict()
    assert list(ours["state"]) == list(theirs["state"]) == [0, 1, 2]
    assert [group["params"] for group in ours["param_groups"]] == [group["params"] for group in theirs["param_groups"]]
    for index in ours["state"]:
        assert set(ours["state"][index]) == set(theirs["state"][index])
        np.testing.assert_allclose(ours["state"][index]["exp_avg"], theirs["state"][index]["exp_avg"].numpy(), 1e-12)
    assert ours["param_groups"][1]["betas"] == theirs["param_groups"][1]["betas"]

    def plain(value):
        if isinstance(value, dict):
            return all(plain(key) and plain(item) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        return isinstance(value, (np.ndarray, int, float, bool, str))

    assert plain(ours)


def test_state_dict_is_a_copy(device):
    params = make_params(device=device)
    optimizer = optim.SGD(params, lr=0.1, momentum=0.9)
    run_steps(optimizer, params, gradient_sequence(1, seed=4))
    saved = optimizer.state_dict()
    buffer = saved["state"][0]["momentum_buffer"].copy()
    saved["param_groups"][0]["lr"] = 123.0
    run_steps(optimizer, params, gradient_sequence(1, seed=5))
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], buffer)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_loaded_state_does_not_share_memory_with_the_dict(device):
    params = make_params(device=device)
    optimizer = optim.SGD(params, lr=0.1, momentum=0.9)
    run_steps(optimizer, params, gradient_sequence(1, seed=6))
    saved = optimizer.state_dict()
    optimizer.load_state_dict(saved)
    before = saved["state"][0]["momentum_buffer"].copy()
    run_steps(optimizer, params, gradient_sequence(1, seed=7))
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], before)


def test_load_state_dict_errors():
    params = make_params()
    optimizer = optim.SGD(two_groups(params), lr=0.1, momentum=0.9)
    run_steps(optimizer, params, gradient_sequence(1, seed=8))
    saved = optimizer.state_dict()

    one_group = optim.SGD(make_params(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="SGD.load_state_dict: the state dict has 2 parameter groups but this "
                                         "optimizer has 1"):
        one_group.load_state_dict(saved)

    other = make_params()
    fewer = optim.SGD([{"params": other[:1]}, {"params": other[2:]}], lr=0.1)
    with pytest.raises(ValueError, match="parameter group 0 has 2 parameters in the state dict but 1 here"):
        fewer.load_state_dict(saved)

    reshaped = [minigrad.Tensor(np.zeros((4, 3)), requires_grad=True)] + make_params()[1:]
    wrong_shape = optim.SGD(two_groups(reshaped), lr=0.1)
    with pytest.raises(ValueError, match=r"'momentum_buffer' of parameter 0 has shape \(3, 4\) but the parameter "
                                         r"has shape \(4, 3\)"):
        wrong_shape.load_state_dict(saved)

    with pytest.raises(ValueError, match="Adam.load_state_dict: expected a dict with 'state' and 'param_groups'"):
        optim.Adam(make_params()).load_state_dict({"lr": 0.1})


# ----- zero_grad and step ------------------------------------------------------------------------
def test_zero_grad(device):
    params = make_params(device=device)
    optimizer = optim.SGD(params, lr=0.1)
    for param in params[:2]:
        param.grad = minigrad.Tensor(np.ones(param.shape), device=device)
    kept = params[0].grad
    optimizer.zero_grad(set_to_none=False)
    assert params[0].grad is kept and not params[0].grad.numpy().any() and params[2].grad is None
    optimizer.zero_grad()
    assert all(param.grad is None for param in params)


def test_zero_grad_then_backward_accumulates_afresh(device):
    weight = minigrad.Tensor(np.array([1.0, 2.0]), requires_grad=True, device=device)
    optimizer = optim.SGD([weight], lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        (weight * weight).sum().backward()  # d/dw sum(w^2) = 2w
        optimizer.step()  # w <- w - 0.5 * 2w = 0
    np.testing.assert_array_equal(weight.numpy(), [0.0, 0.0])


def test_step_returns_the_closure_loss_and_accepts_generators():
    params = make_params()
    optimizer = optim.SGD((param for param in params), lr=0.1)  # model.parameters() is a generator
    assert len(optimizer.param_groups[0]["params"]) == 3
    assert optimizer.step(lambda: 1.5) == 1.5


def test_step_rejects_a_gradient_of_the_wrong_shape():
    param = minigrad.Tensor(np.zeros((2, 3)), requires_grad=True)
    param.grad = minigrad.Tensor(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"SGD: gradient shape \(3, 2\) does not match parameter shape \(2, 3\)"):
        optim.SGD([param], lr=0.1).step()


# ----- validation messages -----------------------------------------------------------------------
def test_constructor_errors():
    params = make_params()
    with pytest.raises(ValueError, match=r"SGD: invalid learning rate lr=-0.1; use a number >= 0"):
        optim.SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match=r"Adam: invalid learning rate lr=-1"):
        optim.Adam(params, lr=-1)
    with pytest.raises(ValueError, match=r"SGD: invalid momentum=-0.5"):
        optim.SGD(params, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match=r"SGD: invalid weight_decay=-0.1"):
        optim.SGD(params, lr=0.1, weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"SGD: nesterov=True needs momentum > 0 and dampening=0 \(got momentum=0"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"SGD: nesterov=True needs momentum > 0 and dampening=0"):
        optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"Adam: invalid betas=\(0.9, 1.0\); give two numbers in \[0, 1\)"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"AdamW: invalid betas=\(-0.1, 0.999\)"):
        optim.AdamW(params, betas=(-0.1, 0.999))
    with pytest.raises(ValueError, match=r"Adam: invalid eps=-1e-08"):
        optim.Adam(params, eps=-1e-8)


def test_parameter_errors():
    params = make_params()
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Adam: parameter group 1 is empty"):
        optim.Adam([{"params": params}, {"params": []}])
    frozen = minigrad.Tensor(np.zeros(3))
    with pytest.raises(ValueError, match=r"SGD: parameter 1 of group 0 \(shape \(3,\)\) does not require grad"):
        optim.SGD([params[0], frozen], lr=0.1)
    with pytest.raises(TypeError, match="AdamW: parameter 0 of group 0 is a ndarray, not a minigrad Tensor"):
        optim.AdamW([np.zeros(3)])
    with pytest.raises(TypeError, match="SGD: params must be an ordered iterable"):
        optim.SGD(set(params), lr=0.1)
    with pytest.raises(ValueError, match="SGD: a parameter appears twice"):
        optim.SGD([{"params": params[:2]}, {"params": params[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="is not a leaf tensor"):
        optim.SGD([params[0] * 2.0], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD: invalid learning rate lr=-0.5 in parameter group 1"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": -0.5}], lr=0.1)
    with pytest.raises(ValueError, match=r"Adam: invalid betas=\(0.9, 2\) in parameter group 0"):
        optim.Adam([{"params": params, "betas": (0.9, 2)}])


def test_add_param_group_fills_defaults():
    params = make_params()
    optimizer = optim.Adam(params[:1], lr=0.01, betas=(0.8, 0.9))
    optimizer.add_param_group({"params": params[1:], "lr": 0.1})
    assert optimizer.param_groups[1]["lr"] == 0.1 and optimizer.param_groups[1]["betas"] == (0.8, 0.9)
    assert "2 params, lr=0.1" in repr(optimizer)


def test_step_and_zero_grad_count_as_in_place_changes():
    params = make_params()
    optimizer = optim.SGD(params, lr=0.1)
    for param in params:
        param.grad = minigrad.Tensor(np.ones(param.shape))
    grad = params[0].grad
    optimizer.step()
    assert all(param.version == 1 for param in params)
    optimizer.zero_grad(set_to_none=False)
    assert grad.version == 1 and params[0].grad is grad
