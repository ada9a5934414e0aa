"""Dropout kernels: mask statistics, scaling, determinism, the identity cases, backward, errors.

The numerical tests take the ``device`` fixture: inputs are made with NumPy and moved there, the masks are drawn
by that device's kind of generator (NumPy's on the CPU, minigrad's CudaGenerator on a GPU), and the results come
back to NumPy before any comparison.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigrad import backend
from minigrad.kernels.dropout import dropout_backward, dropout_forward
from minigrad.testing.tolerance import assert_close
from tests.kernels import back, generator, on


@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fraction_kept_and_scaling(p, dtype, device):
    x = np.random.default_rng(0).uniform(1.0, 2.0, (200, 500)).astype(dtype)  # never zero
    out, ctx = dropout_forward(on(device, x), p, True, generator(device, 1))
    mask = ctx.mask
    assert backend.device_of(out) == backend.device_of(mask) == device
    out, mask = back(out, mask)
    assert out.dtype == dtype and out.shape == x.shape and mask.shape == x.shape
    # 100k Bernoulli draws: the kept fraction is within ~5 standard deviations (0.0016) of 1 - p
    assert abs(mask.mean() - (1 - p)) < 0.008
    kept = out != 0
    np.testing.assert_array_equal(kept, mask)
    # a multiply or a division per entry: the tolerance policy's element-wise form (float64: as tight as ever)
    assert_close(out[kept], x[kept] / dtype(1 - p), "kept entries", terms=2, elementwise=True, float64=(1e-6, 0))
    # inverted dropout keeps the expectation: the mean of out matches the mean of x
    assert abs(out.mean() / x.mean() - 1) < 0.02


def test_same_seed_same_mask_and_different_seed_different_mask(device):
    x = on(device, np.ones((50, 40), np.float32))
    out_a, ctx_a = dropout_forward(x, 0.5, True, generator(device, 42))
    out_b, ctx_b = dropout_forward(x, 0.5, True, generator(device, 42))
    _, ctx_c = dropout_forward(x, 0.5, True, generator(device, 43))
    out_a, out_b, mask_a, mask_b, mask_c = back(out_a, out_b, ctx_a.mask, ctx_b.mask, ctx_c.mask)
    np.testing.assert_array_equal(mask_a, mask_b)
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(mask_a, mask_c)


def test_default_rng_follows_manual_seed(monkeypatch, device):
    # monkeypatch puts the global generators back afterwards, so other tests see no change
    monkeypatch.setattr(backend, "_generators", {})
    monkeypatch.setattr(backend, "_DEFAULT_SEED", 0)
    x = on(device, np.ones((30, 30)))
    backend.manual_seed(7)
    _, first = dropout_forward(x, 0.3, True)  # no generator: the device's own, seeded by manual_seed
    backend.manual_seed(7)
    _, second = dropout_forward(x, 0.3, True)
    np.testing.assert_array_equal(back(first.mask), back(second.mask))


@pytest.mark.parametrize("p, training", [(0.0, True), (0.5, False), (1.0, False), (0.0, False)])
def test_identity_cases_return_x_itself(p, training, device):
    x = on(device, np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))
    out, ctx = dropout_forward(x, p, training, generator(device, 0))
    assert out is x and ctx.mask is None
    grad = on(device, np.ones((4, 5), np.float32))
    assert dropout_backward(grad, ctx) is grad


def test_p_one_gives_zeros_not_nan(device):
    x = np.random.default_rng(0).standard_normal((8, 9))
    out, ctx = dropout_forward(on(device, x), 1.0, True, generator(device, 0))
    np.testing.assert_array_equal(back(out), np.zeros_like(x))
    np.testing.assert_array_equal(back(dropout_backward(on(device, np.ones_like(x)), ctx)), np.zeros_like(x))
    torch_out = torch.nn.functional.dropout(torch.from_numpy(x), 1.0, True)
    np.testing.assert_array_equal(back(out), torch_out.numpy())


# `device` is a function-scoped fixture that holds no state, so sharing it across examples is safe.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), p=st.floats(0.05, 0.95),
       seed=st.integers(0, 10_000))
def test_backward_is_grad_times_mask_scaled_and_matches_torch(shape, p, seed, device):
    """Torch's dropout backward with torch's own mask replayed through ours must give the same gradient."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    grad_out = rng.standard_normal(shape)
    out, ctx = dropout_forward(on(device, x), p, True, generator(device, seed))
    grad_x = back(dropout_backward(on(device, grad_out), ctx))
    out, mask = back(out, ctx.mask)
    np.testing.assert_allclose(grad_x, grad_out * mask / (1 - p), rtol=1e-12)
    np.testing.assert_allclose(out, x * mask / (1 - p), rtol=1e-12)
    # the same mask as a fixed multiplier in torch: its gradient equals ours
    tx = torch.tensor(x, requires_grad=True)
    (tx * torch.from_numpy(mask) / (1 - p)).backward(torch.from_numpy(grad_out))
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-12)


def test_float32_mask_draws_do_not_upcast(device):
    x = on(device, np.ones((3, 4), np.float32))
    out, ctx = dropout_forward(x, 0.25, True, generator(device, 0))
    assert out.dtype == np.float32 and ctx.mask.dtype == bool
    assert dropout_backward(on(device, np.ones((3, 4), np.float32)), ctx).dtype == np.float32


def test_on_every_device(device):
    xp = backend.get_xp(device)
    x = xp.ones((64, 64), dtype=xp.float32)
    out, ctx = dropout_forward(x, 0.5, True, xp.random.default_rng(0))
    mask = ctx.mask
    assert backend.device_of(out) == device and out.dtype == xp.float32
    mask_again = dropout_forward(x, 0.5, True, xp.random.default_rng(0))[1].mask
    np.testing.assert_array_equal(backend.to_numpy(mask), backend.to_numpy(mask_again))
    assert 0.4 < float(mask.mean()) < 0.6


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("training", [True, False])
def test_p_outside_unit_interval_raises(p, training):
    with pytest.raises(ValueError, match=r"dropout: probability p must be in \[0, 1\], got") as error:
        dropout_forward(np.ones(3), p, training, np.random.default_rng(0))
    assert str(p) in str(error.value)


def test_a_generator_of_another_device_is_refused_by_name():
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"dropout: the generator draws on cuda but the input \(2, 3\) is on cpu"):
        dropout_forward(x, 0.5, True, backend.CudaGenerator(0))
