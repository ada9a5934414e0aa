"""Batch norm kernels: torch parity (forward, every gradient, running statistics), finite differences.

The torch-parity tests take the ``device`` fixture: inputs (running statistics included) are made with NumPy and
moved there, and the results (the running statistics updated in place too) brought back to NumPy to be compared.
The finite-difference check probes NumPy arrays in place and runs on the CPU; the registry's gradcheck walk
(tests/testing) checks batch norm's gradients on every device.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad import backend
from minigrad.kernels.batchnorm import batch_norm_backward, batch_norm_forward
from minigrad.testing.tolerance import assert_close
from tests.kernels import assert_same, back, on

FLOAT64 = dict(rtol=1e-10, atol=1e-10)  # element-wise; float32 by the tolerance policy (minigrad/testing/tolerance.py)


def numerical_gradient(f, array, upstream, eps=1e-6):
    """Central differences of sum(f() * upstream) for each entry of ``array`` (probed in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        plus = np.sum(f() * upstream)
        array[index] = original - eps
        minus = np.sum(f() * upstream)
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def random_case(shape, dtype, seed=0, affine=True):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    gamma = rng.standard_normal(channels).astype(dtype) if affine else None
    beta = rng.standard_normal(channels).astype(dtype) if affine else None
    grad_out = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, grad_out


def torch_batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, grad_out):
    """Torch's forward and gradients on copies of the same arrays; running stats updated in place."""
    tx = torch.tensor(x, requires_grad=True)
    tgamma = None if gamma is None else torch.tensor(gamma, requires_grad=True)
    tbeta = None if beta is None else torch.tensor(beta, requires_grad=True)
    trm = None if running_mean is None else torch.from_numpy(running_mean)  # shares memory: updated in place
    trv = None if running_var is None else torch.from_numpy(running_var)
    out = torch.nn.functional.batch_norm(tx, trm, trv, tgamma, tbeta, training, momentum, 1e-5)
    inputs = [t for t in (tx, tgamma, tbeta) if t is not None]
    grads = torch.autograd.grad(out, inputs, torch.tensor(grad_out))
    grads = [g.numpy() for g in grads] + [None] * (3 - len(grads))
    return out.detach().numpy(), grads


SHAPES = [(8, 5), (4, 3, 5, 6), (1, 3, 4, 5), (5, 2, 7), (2, 4, 1, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_gradients_match_torch(shape, dtype, training, device):
    x, gamma, beta, grad_out = random_case(shape, dtype)
    rng = np.random.default_rng(1)
    running_mean = rng.standard_normal(shape[1]).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    torch_mean, torch_var = running_mean.copy(), running_var.copy()

    stats = on(device, running_mean, running_var)  # updated in place by a training step
    out, ctx = batch_norm_forward(*on(device, x, gamma, beta), *stats, training)
    grad_x, grad_gamma, grad_beta = back(*batch_norm_backward(on(device, grad_out), ctx))
    out, (running_mean, running_var) = back(out), back(*stats)
    expected_out, (expected_x, expected_gamma, expected_beta) = torch_batch_norm(
        x, gamma, beta, torch_mean, torch_var, training, 0.1, grad_out
    )
    for name, ours, theirs in [("out", out, expected_out), ("grad_x", grad_x, expected_x),
                               ("grad_gamma", grad_gamma, expected_gamma), ("grad_beta", grad_beta, expected_beta),
                               ("running_mean", running_mean, torch_mean), ("running_var", running_var, torch_var)]:
        assert ours.dtype == dtype and ours.shape == theirs.shape
        # every value here is a sum over the batch (and the spatial positions): at most x.size terms
        assert_close(ours, theirs, name, terms=x.size, float64=(FLOAT64["rtol"], FLOAT64["atol"]))


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_affine_none_and_no_running_stats(shape, training, device):
    x, _, _, grad_out = random_case(shape, np.float64, seed=3, affine=False)
    out, ctx = batch_norm_forward(on(device, x), None, None, None, None, training)
    grad_x, grad_gamma, grad_beta = back(*batch_norm_backward(on(device, grad_out), ctx))
    out = back(out)
    # without running stats torch always uses batch statistics (track_running_stats=False)
    expected_out, (expected_x, _, _) = torch_batch_norm(x, None, None, None, None, True, 0.1, grad_out)
    np.testing.assert_allclose(out, expected_out, **FLOAT64)
    np.testing.assert_allclose(grad_x, expected_x, **FLOAT64)
    assert grad_gamma is None and grad_beta is None


def test_gamma_without_beta_matches_torch(device):
    x, gamma, _, grad_out = random_case((4, 3, 2, 2), np.float64, seed=4)
    out, ctx = batch_norm_forward(*on(device, x, gamma), None, None, None, True)
    grad_x, grad_gamma, grad_beta = back(*batch_norm_backward(on(device, grad_out), ctx))
    out = back(out)
    expected_out, (expected_x, expected_gamma, _) = torch_batch_norm(x, gamma, None, None, None, True, 0.1,
                                                                     grad_out)
    for ours, theirs in [(out, expected_out), (grad_x, expected_x), (grad_gamma, expected_gamma)]:
        np.testing.assert_allclose(ours, theirs, **FLOAT64)
    assert grad_beta is None


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 4)])
def test_running_statistics_follow_torch_module_over_steps(momentum, shape, device):
    """Several training steps, then eval: running stats (unbiased var, momentum or cumulative) must agree."""
    module = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        shape[1], momentum=momentum, dtype=torch.float64
    )
    gamma, beta = on(device, module.weight.detach().numpy().copy(), module.bias.detach().numpy().copy())
    running_mean, running_var = on(device, np.zeros(shape[1]), np.ones(shape[1]))
    num_batches_tracked = 0
    rng = np.random.default_rng(5)
    for step in range(3):
        x = rng.standard_normal(shape) * (step + 1) + step
        num_batches_tracked += 1  # the module counts the batch before computing its factor
        out, _ = batch_norm_forward(on(device, x), gamma, beta, running_mean, running_var, True, momentum,
                                    num_batches_tracked=num_batches_tracked)
        expected = module(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(back(out), expected, **FLOAT64)
        np.testing.assert_allclose(back(running_mean), module.running_mean.numpy(), **FLOAT64)
        np.testing.assert_allclose(back(running_var), module.running_var.numpy(), **FLOAT64)
    module.eval()
    x = rng.standard_normal(shape)
    out, _ = batch_norm_forward(on(device, x), gamma, beta, running_mean, running_var, False, momentum)
    np.testing.assert_allclose(back(out), module(torch.tensor(x)).detach().numpy(), **FLOAT64)


def test_eval_mode_leaves_running_stats_alone(device):
    x, gamma, beta, _ = random_case((4, 3, 2, 2), np.float32)
    running_mean, running_var = on(device, np.full(3, 0.25, np.float32), np.full(3, 2.0, np.float32))
    batch_norm_forward(*on(device, x, gamma, beta), running_mean, running_var, False)
    assert np.all(back(running_mean) == 0.25) and np.all(back(running_var) == 2.0)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 2, 3), (1, 2, 2, 2)])
def test_closed_form_backward_matches_finite_differences(shape, training):
    x, gamma, beta, grad_out = random_case(shape, np.float64, seed=7)
    running_mean = np.array([0.3, -0.2, 0.1][: shape[1]])
    running_var = np.array([1.5, 0.7, 2.0][: shape[1]])

    def forward():
        # copies of the running stats: probing must not move them
        return batch_norm_forward(x, gamma, beta, running_mean.copy(), running_var.copy(), training)[0]

    _, ctx = batch_norm_forward(x, gamma, beta, running_mean.copy(), running_var.copy(), training)
    grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_out, ctx)
    for ours, array in [(grad_x, x), (grad_gamma, gamma), (grad_beta, beta)]:
        expected = numerical_gradient(forward, array, grad_out)
        assert np.abs(expected).max() > 1e-3  # a zero gradient cannot pass
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


def test_need_flags_skip_work(device):
    x, gamma, beta, grad_out = on(device, *random_case((4, 3, 2, 2), np.float64))
    _, ctx = batch_norm_forward(x, gamma, beta, None, None, True)
    full = batch_norm_backward(grad_out, ctx)
    grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_out, ctx, need_affine_grad=False)
    assert grad_gamma is None and grad_beta is None
    assert_same(grad_x, full[0], device)
    grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_out, ctx, need_input_grad=False)
    assert grad_x is None
    assert_same(grad_gamma, full[1], device)
    assert_same(grad_beta, full[2], device)


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.integers(1, 4),
    channels=st.integers(1, 4),
    spatial=st.sampled_from([(), (3,), (1, 2), (3, 2)]),
    training=st.booleans(),
)
def test_random_shapes_match_torch(batch, channels, spatial, training, device):
    shape = (batch, channels, *spatial)
    if training and batch * int(np.prod(spatial)) == 1:
        return  # one value per channel: covered by the error test
    x, gamma, beta, grad_out = random_case(shape, np.float64, seed=batch * 100 + channels)
    torch_mean, torch_var = np.full(channels, 0.1), np.full(channels, 1.3)
    running_mean, running_var = on(device, torch_mean.copy(), torch_var.copy())  # each library updates its own
    out, ctx = batch_norm_forward(*on(device, x, gamma, beta), running_mean, running_var, training)
    grads = back(*batch_norm_backward(on(device, grad_out), ctx))
    out, running_var = back(out), back(running_var)
    expected_out, expected_grads = torch_batch_norm(x, gamma, beta, torch_mean, torch_var, training, 0.1,
                                                    grad_out)
    np.testing.assert_allclose(out, expected_out, **FLOAT64)
    for ours, theirs in zip(grads, expected_grads):
        np.testing.assert_allclose(ours, theirs, **FLOAT64)
    np.testing.assert_allclose(running_var, torch_var, **FLOAT64)


def test_float32_stays_float32_on_large_channels(device):
    x, gamma, beta, grad_out = on(device, *random_case((4, 16, 8, 8), np.float32))
    running_mean, running_var = on(device, np.zeros(16, np.float32), np.ones(16, np.float32))
    out, ctx = batch_norm_forward(x, gamma, beta, running_mean, running_var, True)
    grads = batch_norm_backward(grad_out, ctx)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert running_mean.dtype == np.float32 and running_var.dtype == np.float32


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1), (1, 3, 1)])
def test_one_value_per_channel_in_training_raises_like_torch(shape):
    x = np.ones(shape)
    with pytest.raises(ValueError, match="batch_norm: Expected more than 1 value per channel when training"):
        batch_norm_forward(x, None, None, np.zeros(3), np.ones(3), True)
    with pytest.raises(ValueError):  # torch agrees
        torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True)
    out, _ = batch_norm_forward(x, None, None, np.zeros(3), np.ones(3), False)  # eval is fine
    assert out.shape == shape


@pytest.mark.parametrize(
    "x_shape, gamma_shape, mean_shape, fragment",
    [
        ((4,), (4,), (4,), "2-D (N, C), 3-D (N, C, L) or 4-D (N, C, H, W) input, got shape (4,)"),
        ((2, 3, 4, 5, 6), (3,), (3,), "got shape (2, 3, 4, 5, 6)"),
        ((2, 3, 4, 4), (4,), (3,), "gamma has shape (4,) but the input (2, 3, 4, 4) has 3 channels"),
        ((2, 3, 4, 4), (3,), (5,), "running_mean has shape (5,) but the input (2, 3, 4, 4) has 3 channels"),
    ],
)
def test_bad_shapes_raise_naming_the_shapes(x_shape, gamma_shape, mean_shape, fragment):
    with pytest.raises(ValueError, match="batch_norm") as error:
        batch_norm_forward(np.ones(x_shape), np.ones(gamma_shape), np.ones(gamma_shape), np.zeros(mean_shape),
                           np.ones(mean_shape), True)
    assert fragment in str(error.value)


def test_running_mean_without_running_var_raises():
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var must both"):
        batch_norm_forward(np.ones((2, 3)), None, None, np.zeros(3), None, True)


@pytest.mark.parametrize("training", [True, False])
def test_on_every_device(device, training):
    """The same numbers on each device (CuPy runs only where a GPU answers)."""
    x, gamma, beta, grad_out = random_case((3, 4, 5, 5), np.float32)
    stats_cpu = [np.zeros(4, np.float32), np.ones(4, np.float32)]
    out_cpu, ctx_cpu = batch_norm_forward(x, gamma, beta, *stats_cpu, training)
    grads_cpu = batch_norm_backward(grad_out, ctx_cpu)
    on_device = [backend.to_device(a, device) for a in (x, gamma, beta, grad_out)]
    stats = [backend.to_device(np.zeros(4, np.float32), device), backend.to_device(np.ones(4, np.float32), device)]
    out, ctx = batch_norm_forward(*on_device[:3], *stats, training)
    grads = batch_norm_backward(on_device[3], ctx)
    assert backend.device_of(out) == device and out.dtype == np.float32
    for ours, expected in [(out, out_cpu), *zip(grads, grads_cpu), *zip(stats, stats_cpu)]:
        assert_close(ours, expected, f"batch norm on {device}", terms=x.size)  # sums over the batch
