"""Dropout kernels: mask statistics, scaling, determinism, the identity cases, backward, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad import backend
from minigrad.kernels.dropout import dropout_backward, dropout_forward


@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fraction_kept_and_scaling(p, dtype):
    x = np.random.default_rng(0).uniform(1.0, 2.0, (200, 500)).astype(dtype)  # never zero
    out, mask = dropout_forward(x, p, True, np.random.default_rng(1))
    assert out.dtype == dtype and out.shape == x.shape and mask.shape == x.shape
    # 100k Bernoulli draws: the kept fraction is within ~5 standard deviations (0.0016) of 1 - p
    assert abs(mask.mean() - (1 - p)) < 0.008
    kept = out != 0
    np.testing.assert_array_equal(kept, mask)
    np.testing.assert_allclose(out[kept], x[kept] / dtype(1 - p), rtol=1e-6)
    # inverted dropout keeps the expectation: the mean of out matches the mean of x
    assert abs(out.mean() / x.mean() - 1) < 0.02


def test_same_seed_same_mask_and_different_seed_different_mask():
    x = np.ones((50, 40), np.float32)
    out_a, mask_a = dropout_forward(x, 0.5, True, np.random.default_rng(42))
    out_b, mask_b = dropout_forward(x, 0.5, True, np.random.default_rng(42))
    _, mask_c = dropout_forward(x, 0.5, True, np.random.default_rng(43))
    np.testing.assert_array_equal(mask_a, mask_b)
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(mask_a, mask_c)


def test_default_rng_follows_manual_seed(monkeypatch):
    # monkeypatch puts the global generators back afterwards, so other tests see no change
    monkeypatch.setattr(backend, "_generators", {})
    monkeypatch.setattr(backend, "_DEFAULT_SEED", 0)
    x = np.ones((30, 30))
    backend.manual_seed(7)
    _, first = dropout_forward(x, 0.3, True)
    backend.manual_seed(7)
    _, second = dropout_forward(x, 0.3, True)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("p, training", [(0.0, True), (0.5, False), (1.0, False), (0.0, False)])
def test_identity_cases_return_x_itself(p, training):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    out, mask = dropout_forward(x, p, training, np.random.default_rng(0))
    assert out is x and mask is None
    grad = np.ones_like(x)
    assert dropout_backward(grad, mask, p) is grad


def test_p_one_gives_zeros_not_nan():
    x = np.random.default_rng(0).standard_normal((8, 9))
    out, mask = dropout_forward(x, 1.0, True, np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.zeros_like(x))
    np.testing.assert_array_equal(dropout_backward(np.ones_like(x), mask, 1.0), np.zeros_like(x))
    torch_out = torch.nn.functional.dropout(torch.from_numpy(x), 1.0, True)
    np.testing.assert_array_equal(out, torch_out.numpy())


@settings(max_examples=10, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), p=st.floats(0.05, 0.95),
       seed=st.integers(0, 10_000))
def test_backward_is_grad_times_mask_scaled_and_matches_torch(shape, p, seed):
    """Torch's dropout backward with torch's own mask replayed through ours must give the same gradient."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    grad_out = rng.standard_normal(shape)
    out, mask = dropout_forward(x, p, True, np.random.default_rng(seed))
    grad_x = dropout_backward(grad_out, mask, p)
    np.testing.assert_allclose(grad_x, grad_out * mask / (1 - p), rtol=1e-12)
    np.testing.assert_allclose(out, x * mask / (1 - p), rtol=1e-12)
    # the same mask as a fixed multiplier in torch: its gradient equals ours
    tx = torch.tensor(x, requires_grad=True)
    (tx * torch.from_numpy(mask) / (1 - p)).backward(torch.from_numpy(grad_out))
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-12)


def test_float32_mask_draws_do_not_upcast():
    x = np.ones((3, 4), np.float32)
    out, mask = dropout_forward(x, 0.25, True, np.random.default_rng(0))
    assert out.dtype == np.float32 and mask.dtype == bool
    assert dropout_backward(np.ones_like(x), mask, 0.25).dtype == np.float32


def test_on_every_device(device):
    xp = backend.get_xp(device)
    x = xp.ones((64, 64), dtype=xp.float32)
    out, mask = dropout_forward(x, 0.5, True, xp.random.default_rng(0))
    assert backend.device_of(out) == device and out.dtype == xp.float32
    _, mask_again = dropout_forward(x, 0.5, True, xp.random.default_rng(0))
    np.testing.assert_array_equal(backend.to_numpy(mask), backend.to_numpy(mask_again))
    assert 0.4 < float(mask.mean()) < 0.6


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("training", [True, False])
def test_p_outside_unit_interval_raises(p, training):
    with pytest.raises(ValueError, match=r"dropout: probability p must be in \[0, 1\], got") as error:
        dropout_forward(np.ones(3), p, training, np.random.default_rng(0))
    assert str(p) in str(error.value)
