"""SyncBatchNorm: with one rank it is BatchNorm; over ranks it normalises with the statistics of all of their
values (checked here on a stand-in world of identical ranks: the same as batch norm of the batch repeated);
three all-reduces per training step, none in eval; conversion keeps parameters, buffers and state-dict keys."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad
from minigrad import distributed, nn
from minigrad.distributed import SyncBatchNorm, convert_sync_batchnorm
from minigrad.models import inception_v1
from tests.distributed.stand_in import StandInWorld

SHAPES = [(6, 4), (5, 4, 7), (3, 4, 5, 5)]


def forward_backward(layer: nn.Module, x: np.ndarray, upstream: np.ndarray) -> list[np.ndarray]:
    """[output, grad x, grad weight, grad bias, running_mean, running_var] after one training step."""
    tensor = minigrad.Tensor(x, requires_grad=True)
    out = layer(tensor)
    out.backward(minigrad.Tensor(upstream))
    return [out.numpy(), tensor.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy(),
            layer.running_mean.numpy(), layer.running_var.numpy()]


def pair(channels: int, momentum: float | None = 0.1, world=None) -> tuple[nn.Module, nn.Module]:
    """A BatchNorm and a SyncBatchNorm with the same (non-trivial) affine parameters, in float64."""
    plain = nn.BatchNorm1d(channels, momentum=momentum).double()
    sync = SyncBatchNorm(channels, momentum=momentum, world=world).double()
    rng = np.random.default_rng(1)
    for layer in (plain, sync):
        layer.load_state_dict({**layer.state_dict(), "weight": rng.uniform(0.5, 1.5, channels),
                               "bias": np.linspace(-1, 1, channels)})
        rng = np.random.default_rng(1)
    return plain, sync


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_one_rank_is_batch_norm(single_world, shape, momentum):
    rng = np.random.default_rng(0)
    x, upstream = rng.standard_normal(shape) * 3 + 2, rng.standard_normal(shape)
    plain, sync = pair(shape[1], momentum)
    plain.expected_ndim = (len(shape),)
    for _ in range(2):  # twice: the running statistics' second update (and momentum=None's average)
        for got, expected in zip(forward_backward(sync, x, upstream), forward_backward(plain, x, upstream)):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)
        for layer in (plain, sync):
            layer.zero_grad()
    assert int(sync.num_batches_tracked.item()) == 2


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_over_identical_ranks_the_statistics_are_those_of_every_ranks_values(shape):
    """Three ranks holding the same shard: the batch is that shard three times over, so each rank's output and
    input gradient are batch norm's on the repeated batch, and gamma's and beta's a third of it (each rank's own
    sum, averaged later with every other gradient)."""
    rng = np.random.default_rng(2)
    x, upstream = rng.standard_normal(shape), rng.standard_normal(shape)
    world = StandInWorld(3)
    plain, sync = pair(shape[1], world=world)
    plain.expected_ndim = (len(shape),)
    got = forward_backward(sync, x, upstream)
    expected = forward_backward(plain, np.concatenate([x] * 3), np.concatenate([upstream] * 3))
    batch = shape[0]
    np.testing.assert_allclose(got[0], expected[0][:batch], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got[1], expected[1][:batch], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got[2], expected[2] / 3, rtol=1e-12)
    np.testing.assert_allclose(got[3], expected[3] / 3, rtol=1e-12)
    np.testing.assert_allclose(got[4:], expected[4:], rtol=1e-12)  # the unbiased variance over 3 N values
    assert len(world.messages) == 3  # sums and count, squares, then the backward's two sums in one


def test_the_check_fails_without_the_backward_all_reduce(monkeypatch):
    """A SyncBatchNorm whose backward used only this rank's sums would be caught by the test above."""
    shape = (4, 3, 2, 2)
    rng = np.random.default_rng(3)
    x, upstream = rng.standard_normal(shape), rng.standard_normal(shape)
    world = StandInWorld(2, others=lambda array: array)
    plain, sync = pair(3, world=world)
    plain.expected_ndim = (4,)
    backward_world = StandInWorld(1)
    real_forward = distributed.sync_batchnorm.SyncBatchNormFunction.forward

    def forward_then_forget(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        self.world = backward_world  # the planted bug: local sums only in the backward
        return out

    monkeypatch.setattr(distributed.sync_batchnorm.SyncBatchNormFunction, "forward", forward_then_forget)
    got = forward_backward(sync, x, upstream)
    expected = forward_backward(plain, np.concatenate([x] * 2), np.concatenate([upstream] * 2))
    assert not np.allclose(got[1], expected[1][:4], rtol=1e-6)


def test_gradcheck_with_one_rank(single_world):
    rng = np.random.default_rng(4)
    layer = SyncBatchNorm(3).double()
    x = minigrad.Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    report = minigrad.gradcheck(lambda t: layer(t), [x])
    assert report.passed, report


def test_eval_uses_the_running_statistics_and_talks_to_no_one():
    world = StandInWorld(2)
    plain, sync = pair(4, world=world)
    for layer in (plain, sync):
        layer.running_mean.data[...] = np.arange(4.0)
        layer.eval()
    x = np.random.default_rng(5).standard_normal((3, 4))
    np.testing.assert_allclose(sync(minigrad.Tensor(x)).numpy(), plain(minigrad.Tensor(x)).numpy(), rtol=1e-12)
    assert world.messages == []


def test_convert_keeps_every_parameter_buffer_and_key():
    model = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).eval()
    keys, parameters = list(model.state_dict()), [id(p) for p in model.parameters()]
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    converted = convert_sync_batchnorm(model)
    assert converted is model and batch_norms > 50
    assert sum(isinstance(m, SyncBatchNorm) for m in model.modules()) == batch_norms
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert list(model.state_dict()) == keys and [id(p) for p in model.parameters()] == parameters
    assert not any(m.training for m in model.modules())
    # Checkpoints move both ways.
    plain = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=1)
    plain.load_state_dict(model.state_dict())
    model.load_state_dict(plain.state_dict())
    alone = convert_sync_batchnorm(nn.BatchNorm1d(3))
    assert isinstance(alone, SyncBatchNorm) and alone.num_features == 3
    assert SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(2)))[0].num_features == 2


def test_bad_inputs_are_named(single_world):
    layer = SyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(3\): input of shape \(2, 4\) has 4 channels"):
        layer(minigrad.randn(2, 4))
    with pytest.raises(ValueError, match="SyncBatchNorm: expected more than 1 value per channel"):
        layer(minigrad.randn(1, 3))
