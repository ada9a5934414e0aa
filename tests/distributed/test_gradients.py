"""Gradient averaging in buckets, broadcast of parameters and the DistributedOptimizer, on a stand-in world
whose all-reduce adds up ``size`` ranks whose arrays are known (no MPI; the real thing: test_mpiexec.py)."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad
from minigrad import distributed, nn, optim
from tests.distributed.stand_in import StandInWorld


def model_with_grads(seed: int = 0) -> nn.Module:
    minigrad.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    model(minigrad.randn(4, 2, 6, 6)).sum().backward()
    return model


def test_bucket_plan_keeps_order_size_and_dtype():
    params = [minigrad.zeros(1000), minigrad.zeros(1000), minigrad.zeros(10), minigrad.zeros(10, dtype="float64"),
              minigrad.zeros(5000), minigrad.zeros(10)]
    assert distributed.bucket_plan(params, bucket_bytes=6000) == [[0], [1, 2], [3], [4], [5]]
    assert distributed.bucket_plan(params[:3]) == [[0, 1, 2]]  # 25 MiB holds them all
    with pytest.raises(ValueError, match="bucket_bytes must be positive"):
        distributed.bucket_plan(params, 0)


def test_identical_ranks_average_to_the_same_gradients_in_a_few_messages():
    model = model_with_grads()
    expected = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    world = StandInWorld(3)
    buckets = distributed.allreduce_gradients(model.parameters(), world, bucket_bytes=400)
    sizes = [p.size for p in model.parameters()]
    assert buckets == len(distributed.bucket_plan(list(model.parameters()), 400)) > 1
    assert world.messages[0] == len(sizes) and sum(world.messages[1:]) == sum(sizes)  # a mask, then the buckets
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), expected[name], rtol=1e-6, err_msg=name)


def test_gradients_are_the_mean_over_ranks():
    model = model_with_grads()
    grads = [p.grad.numpy().astype(np.float64) for p in model.parameters()]
    model.double()
    distributed.allreduce_gradients(model.parameters(), StandInWorld(4, others=lambda a: 3 * a))
    for p, grad in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), (grad + 3 * 3 * grad) / 4, rtol=1e-12)


def test_a_gradient_missing_on_some_ranks_is_an_error():
    model = model_with_grads()
    model[3].bias.grad = None
    with pytest.raises(distributed.DistributedError, match=r"parameters \[5\] .* have a gradient on \[1\] of 2"):
        distributed.allreduce_gradients(model.parameters(), StandInWorld(2, others=np.ones_like))


def test_one_rank_changes_nothing(single_world):
    model = model_with_grads()
    before = [p.grad.numpy().copy() for p in model.parameters()]
    assert distributed.allreduce_gradients(model.parameters()) == 0
    for p, grad in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.grad.numpy(), grad)


def test_broadcast_parameters_copies_the_roots_weights_and_buffers_in_order():
    model, root = model_with_grads(seed=1), model_with_grads(seed=2)
    model[1].running_mean.data += 5
    queue = [tensor.data for tensor in [*root.parameters(), *root.buffers()]]  # what root sends, in turn
    world = StandInWorld(2)
    world.broadcast = lambda array, root=0: queue.pop(0)
    distributed.broadcast_parameters(model, world=world)
    assert not queue
    for (name, value), expected in zip(model.state_dict().items(), root.state_dict().values()):
        np.testing.assert_array_equal(value, expected, err_msg=name)


def test_distributed_optimizer_is_the_wrapped_one_after_the_average():
    model, twin = model_with_grads(), model_with_grads()
    wrapped = distributed.DistributedOptimizer(optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9),
                                               StandInWorld(2))
    plain = optim.SGD(list(twin.parameters()), lr=0.1, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(wrapped.optimizer, step_size=1, gamma=0.5)
    wrapped.step()
    plain.step()
    scheduler.step()
    assert wrapped.param_groups[0]["lr"] == 0.05 and wrapped.param_groups is wrapped.optimizer.param_groups
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-6)
    assert wrapped.state_dict().keys() == plain.state_dict().keys()
    wrapped.zero_grad()
    assert all(p.grad is None for p in model.parameters())
