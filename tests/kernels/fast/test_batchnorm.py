"""The fast batch norm kernels (minigrad/kernels/fast/batchnorm.py) against the reference
(minigrad/kernels/batchnorm.py): outputs, every gradient and the running statistics, on the registry's samples
and on shapes hypothesis draws, in training and evaluation, with and without the affine parameters."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad.kernels import batchnorm
from minigrad.kernels.fast import batchnorm as fast_batchnorm
from minigrad.testing.tolerance import float32_tolerance
from tests.kernels import back, on
from tests.kernels.fast import DTYPES, assert_same_numbers, cast, registry_samples

rng = np.random.default_rng(0)


def check_against_reference(x, gamma, beta, running_mean, running_var, device, need_input_grad=True,
                            need_affine_grad=True, **options):
    """Each kernel on its own copies of the running statistics (updated in place): all results equal."""
    results = {}
    for name, kernels in (("fast", fast_batchnorm), ("reference", batchnorm)):
        stats = [None if s is None else on(device, s.copy()) for s in (running_mean, running_var)]
        out, ctx = kernels.batch_norm_forward(*on(device, x, gamma, beta), *stats, **options)
        grad_out = on(device, np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype))
        grads = kernels.batch_norm_backward(grad_out, ctx, need_input_grad, need_affine_grad)
        results[name] = [back(a) for a in (out, *grads, *stats)]
        scale = back(ctx.inv_std) * (1 if gamma is None else np.abs(gamma))
    # dx is a difference of terms of size |gamma * inv_std * dy| that cancel exactly where a channel has two
    # values (or x_hat is otherwise degenerate): for float32, an atol at that scale (tolerance.py says why).
    grad_scale = float(np.abs(back(grad_out)).max() * scale.max()) if x.size else 0.0
    labels = ("out", "grad_x", "grad_gamma", "grad_beta", "running_mean", "running_var")
    for label, mine, reference in zip(labels, results["fast"], results["reference"]):
        atol = float32_tolerance(x.size) * grad_scale if label == "grad_x" else 0.0
        assert_same_numbers(mine, reference, label, terms=x.size, atol=atol)  # each sums over one channel at most


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inputs, kwargs, name", registry_samples("batch_norm"))
def test_registry_samples_match_the_reference(inputs, kwargs, name, dtype, device):
    kwargs = dict(kwargs)
    stats = cast((kwargs.pop("running_mean"), kwargs.pop("running_var")), dtype)
    check_against_reference(*cast(inputs, dtype), *stats, device, **kwargs)


@pytest.mark.parametrize("need_input_grad, need_affine_grad", [(True, False), (False, True), (False, False)])
def test_need_flags_give_the_same_subsets(need_input_grad, need_affine_grad, device):
    x, gamma, beta = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3), rng.standard_normal(3)
    check_against_reference(x, gamma, beta, None, None, device, need_input_grad, need_affine_grad, training=True)


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 4), channels=st.integers(1, 4), spatial=st.sampled_from([(), (3,), (1, 2), (3, 2)]),
       training=st.booleans(), affine=st.sampled_from(["both", "gamma", "none"]), stats=st.booleans(),
       momentum=st.sampled_from([0.1, None]), dtype=st.sampled_from(DTYPES))
def test_random_shapes_match_the_reference(batch, channels, spatial, training, affine, stats, momentum, dtype,
                                           device):
    shape = (batch, channels, *spatial)
    if (training or not stats) and batch * int(np.prod(spatial)) == 1:
        return  # one value per channel: an error in both (tests/kernels/test_batchnorm.py)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = None if affine == "none" else rng.standard_normal(channels).astype(dtype)
    beta = rng.standard_normal(channels).astype(dtype) if affine == "both" else None
    running = (rng.standard_normal(channels).astype(dtype), rng.uniform(0.5, 2, channels).astype(dtype))
    check_against_reference(x, gamma, beta, *(running if stats else (None, None)), device, training=training,
                            momentum=momentum, num_batches_tracked=3)
