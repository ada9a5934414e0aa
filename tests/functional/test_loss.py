"""softmax, log_softmax and cross_entropy: label smoothing by hand, stability at huge logits, errors.

Every test but the error messages takes the ``device`` fixture (minigrad on that device, torch on the CPU).
"""

from __future__ import annotations

import numpy
import pytest
import torch

import minigrad.functional as F
from minigrad import Tensor
from minigrad.testing.tolerance import assert_close, float32_tolerance
from tests.functional import check_against_torch


def test_cross_entropy_with_label_smoothing_by_hand(device):
    rng = numpy.random.default_rng(0)
    logits, targets, eps = rng.standard_normal((4, 5)), numpy.array([0, 3, 3, 1]), 0.2
    # q = (1 - eps) onehot + eps / C; loss = mean_i -sum_c q_ic log softmax(x_i)_c; grad = (softmax - q) / N
    log_probs = logits - numpy.log(numpy.exp(logits).sum(axis=1, keepdims=True))
    q = numpy.full((4, 5), eps / 5)
    q[numpy.arange(4), targets] += 1 - eps
    expected_loss = -(q * log_probs).sum(axis=1).mean()
    x = Tensor(logits, requires_grad=True, device=device)
    loss = F.cross_entropy(x, Tensor(targets, device=device), label_smoothing=eps)
    loss.backward()
    numpy.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-12)
    numpy.testing.assert_allclose(x.grad.numpy(), (numpy.exp(log_probs) - q) / 4, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_matches_torch(reduction, smoothing, device):
    rng = numpy.random.default_rng(1)
    logits, targets = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    check_against_torch(
        lambda x, t: F.cross_entropy(x, t, label_smoothing=smoothing, reduction=reduction),
        lambda x, t: torch.nn.functional.cross_entropy(x, t, label_smoothing=smoothing, reduction=reduction),
        [logits, targets], device=device,
    )


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_huge_logits_stay_finite_and_match_torch(dtype, device):
    logits = numpy.array([[1e4, -1e4, 0.0, 5e3], [1e4, 1e4 + 1, -1e4, 1e4], [-1e4, -1e4, -1e4, -1e4]], dtype=dtype)
    targets = numpy.array([1, 0, 2])
    tol = dict(rtol=1e-12, atol=1e-12)  # float64; float32 by the tolerance policy
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        for smoothing in (0.0, 0.1):
            loss = check_against_torch(
                lambda x, t, s=smoothing: F.cross_entropy(x, t, label_smoothing=s),
                lambda x, t, s=smoothing: torch.nn.functional.cross_entropy(x, t, label_smoothing=s),
                [logits, targets], **tol, device=device,
            )
            assert numpy.isfinite(loss.item())
        out = check_against_torch(lambda x: F.log_softmax(x, 1), lambda x: torch.log_softmax(x, 1), [logits], **tol,
                                  device=device)
        assert numpy.isfinite(out.numpy()).all()
        probs = check_against_torch(lambda x: F.softmax(x, 1), lambda x: torch.softmax(x, 1), [logits], **tol,
                                    device=device)
        assert numpy.isfinite(probs.numpy()).all()


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_rows_sum_to_one(dtype, dim, device):
    x = (numpy.random.default_rng(2).standard_normal((3, 4, 5)) * 20).astype(dtype)
    probs = F.softmax(Tensor(x, device=device), dim)
    assert probs.dtype == dtype and (probs.numpy() >= 0).all()
    sums = probs.numpy().sum(axis=dim)
    assert_close(sums, numpy.ones_like(sums), "sum of probabilities", terms=x.shape[dim], float64=(1e-14, 0))
    logs = F.log_softmax(Tensor(x, device=device), dim).numpy()
    # log(softmax) rounds softmax first: its error is relative to each probability, so to |log p| entry by entry
    assert_close(logs, numpy.log(probs.numpy()), "log_softmax", terms=x.shape[dim], float64=(1e-4, 1e-5),
                 elementwise=True, atol=float32_tolerance(x.shape[dim]))


def test_log_softmax_gradient_matches_torch_on_a_middle_dim(device):
    x = numpy.random.default_rng(3).standard_normal((2, 3, 4))
    check_against_torch(lambda t: F.log_softmax(t, 1), lambda t: torch.log_softmax(t, 1), [x], device=device)
    check_against_torch(lambda t: t.softmax(-1), lambda t: t.softmax(-1), [x], device=device)


def test_cross_entropy_errors():
    logits = Tensor(numpy.zeros((4, 5)))
    with pytest.raises(TypeError, match="cross_entropy: targets must be integer class indices, got dtype float32"):
        F.cross_entropy(logits, Tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\] for 5 classes, got values from -1 to 3"):
        F.cross_entropy(logits, [-1, 0, 1, 3])
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(logits, [0, 1, 2, 3], label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(logits, [0, 1, 2, 3], reduction="avg")
    with pytest.raises(IndexError, match=r"softmax: dim 2 is out of range for a tensor of shape \(4, 5\)"):
        F.softmax(logits, 2)


def test_cross_entropy_targets_get_no_gradient(device):
    x = Tensor(numpy.random.default_rng(4).standard_normal((3, 4)), requires_grad=True, device=device)
    targets = Tensor([0, 3, 1], device=device)
    F.cross_entropy(x, targets).backward()
    assert targets.grad is None and x.grad.shape == (3, 4)
    numpy.testing.assert_allclose(x.grad.numpy().sum(axis=1), 0.0, atol=1e-15)  # softmax - onehot sums to 0
