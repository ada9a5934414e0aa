"""minigrad.models.fuse: fused and unfused Inception blocks compute the same network, with the same parameters.

Every comparison is in float64, to rounding: a fused block's outputs, input gradient, every parameter's
gradient and the batch norms' running statistics against the branch-by-branch block; a whole training
step of GoogLeNet; checkpoints moved both ways. Each also checks that the fused path really ran (the
number of convolutions), so a fusion that silently did nothing could not pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.models import (
    Fused1x1Conv,
    FusedBranch,
    FusedInception,
    can_fuse_1x1,
    fuse_inception_1x1,
    googlenet_loss,
    inception_v1,
)
from minigrad.models.inception import VARIANTS, BasicConv2d, Inception
from minigrad.testing.tolerance import assert_close
from tests.models import DEPTH, longest_sum


def conv2d_calls(module, x, monkeypatch) -> int:
    """How many convolutions one forward of ``module`` on ``x`` runs."""
    calls = []
    original = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    with minigrad.no_grad():
        module(x)
    monkeypatch.setattr(F, "conv2d", original)
    return len(calls)


def forward_backward(module, x, upstream):
    """Output, input gradient and every parameter gradient of one forward + backward of ``module``."""
    for parameter in module.parameters():
        parameter.grad = None
    x = minigrad.Tensor(x.data, requires_grad=True)
    out = module(x)
    out.backward(upstream)
    return out.numpy(), x.grad.numpy(), {name: p.grad.numpy() for name, p in module.named_parameters()}


def assert_same(mine, reference, what):
    np.testing.assert_allclose(mine, reference, rtol=1e-12, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("variant", sorted(VARIANTS))  # the paper's convs have biases, torchvision's not
@pytest.mark.parametrize("training", [True, False])
def test_a_fused_block_gives_the_branch_by_branch_results(variant, training, device, monkeypatch):
    model = inception_v1(num_classes=10, variant=variant, stem="cifar", width=0.125, seed=0)
    block = model.inception3a.train(training).to(device, dtype=np.float64)
    fused = FusedInception(block)
    rng = np.random.default_rng(3)
    x = minigrad.Tensor(rng.standard_normal((3, block.branch1.conv.in_channels, 6, 6)), device=device)
    upstream = rng.standard_normal((3, block.out_channels, 6, 6))
    assert conv2d_calls(block, x, monkeypatch) == 6 and conv2d_calls(fused, x, monkeypatch) == 4
    before = {key: value.copy() for key, value in block.state_dict().items()}
    separate = forward_backward(block, x, upstream)
    after_separate = {key: value.copy() for key, value in block.state_dict().items()}
    block.load_state_dict(before)  # the same running statistics for the fused run
    together = forward_backward(fused, x, upstream)
    assert_same(together[0], separate[0], "output")
    assert_same(together[1], separate[1], "input gradient")
    assert together[2].keys() == separate[2].keys() and len(together[2]) == len(list(block.parameters()))
    for name in together[2]:  # each stacked weight still gets exactly its own gradient
        assert_same(together[2][name], separate[2][name], name)
    for key, value in fused.state_dict().items():  # batch norm's running statistics move the same way
        assert_same(value, after_separate[key], key)
    if training:
        assert any(not np.array_equal(before[key], after_separate[key]) for key in before)  # they did move


def test_a_fused_googlenet_takes_the_same_training_step(monkeypatch):
    def model():
        return inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).to(dtype=np.float64)

    plain, fused = model(), fuse_inception_1x1(model())
    rng = np.random.default_rng(0)
    x = minigrad.Tensor(rng.standard_normal((2, 3, 16, 16)))
    targets = rng.integers(0, 10, 2)
    assert conv2d_calls(plain.eval(), x, monkeypatch) - conv2d_calls(fused.eval(), x, monkeypatch) == 9 * 2
    results = []
    for network in (plain, fused):
        network.train()
        optimizer = optim.SGD(network.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        minigrad.manual_seed(1)  # the same dropout masks
        loss = googlenet_loss(network(x), targets)
        loss.backward()
        grads = {name: p.grad.numpy() for name, p in network.named_parameters()}
        optimizer.step()
        results.append((loss.item(), grads, {key: value.copy() for key, value in network.state_dict().items()}))
    (plain_loss, plain_grads, plain_state), (fused_loss, fused_grads, fused_state) = results
    assert_same(fused_loss, plain_loss, "loss")
    assert fused_grads.keys() == plain_grads.keys()
    # A conv bias before batch norm has a gradient of exactly 0, computed as rounding noise: hence an atol
    # at the scale of the largest gradient of the model.
    scale = max(np.abs(grad).max() for grad in plain_grads.values())
    for name, grad in plain_grads.items():
        np.testing.assert_allclose(fused_grads[name], grad, rtol=1e-10, atol=1e-13 * scale, err_msg=name)
    assert list(fused_state) == list(plain_state)
    for key, value in plain_state.items():  # the updated weights and the running statistics
        np.testing.assert_allclose(fused_state[key], value, rtol=1e-10, atol=1e-12, err_msg=key)


def test_state_dict_keys_are_unchanged_and_checkpoints_move_both_ways():
    plain = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).eval()
    keys = list(plain.state_dict())
    parameters = list(plain.parameters())
    fused = fuse_inception_1x1(plain)
    assert fused is plain and list(fused.state_dict()) == keys
    assert all(a is b for a, b in zip(fused.parameters(), parameters, strict=True))  # an optimizer keeps working
    x = minigrad.Tensor(np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32))

    other = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=1).eval()  # different weights
    with minigrad.no_grad():
        other_logits = other(x).numpy()
        fused.load_state_dict(other.state_dict())  # unfused -> fused: the stacked weight is not cached
        assert_close(fused(x).numpy(), other_logits, "fused logits", terms=longest_sum(other), steps=DEPTH)
        back = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=2).eval()
        back.load_state_dict(fused.state_dict())  # fused -> unfused
        assert_close(back(x).numpy(), other_logits, "unfused logits", terms=longest_sum(other), steps=DEPTH)
    assert not any(isinstance(m, FusedInception) for m in back.modules())


def test_the_fused_path_runs_whether_or_not_a_module_is_watched(monkeypatch):
    model = fuse_inception_1x1(inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0))
    block = model.inception3a
    x = minigrad.Tensor(np.zeros((2, block.branch1.conv.in_channels, 4, 4), np.float32))
    removers = [module.register_forward_hook(lambda *args: None) for module in block.modules()]  # as summary
    assert conv2d_calls(block, x, monkeypatch) == 4  # fused 1x1, 3x3, 5x5, pool projection
    for remove in removers:
        remove()
    plain = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).inception3a
    assert conv2d_calls(plain, x, monkeypatch) == 6  # the paper's modules, one by one


def test_what_can_and_cannot_be_fused():
    class CustomConv(BasicConv2d):  # a conv_block may compute anything: never fused
        pass

    custom = Inception(8, 4, 4, 6, 2, 3, 5, conv_block=CustomConv)
    assert not can_fuse_1x1(custom) and can_fuse_1x1(Inception(8, 4, 4, 6, 2, 3, 5))
    with pytest.raises(ValueError, match=r"fuse_inception_1x1: Inception has no Inception block .* plain BasicConv2d"):
        fuse_inception_1x1(custom)
    with pytest.raises(ValueError, match=r"fuse_inception_1x1: Sequential has no Inception block"):
        fuse_inception_1x1(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()))
    block = Inception(8, 4, 4, 6, 2, 3, 5)
    alone = fuse_inception_1x1(block)
    assert isinstance(alone, FusedInception) and isinstance(alone.fused_1x1, Fused1x1Conv)
    assert isinstance(alone.branch2, FusedBranch) and type(block.branch2) is nn.Sequential  # the block is intact
    def layers(module):
        return [m for m in module.modules() if isinstance(m, (BasicConv2d, nn.MaxPool2d))]

    assert all(a is b for a, b in zip(layers(alone), layers(block), strict=True))  # the same layers, in order
    assert repr(alone.fused_1x1) == "Fused1x1Conv(8 -> 4 + 4 + 2, kernel_size=1)"
    mixed = nn.Sequential(custom, Inception(18, 4, 4, 6, 2, 3, 5))
    fuse_inception_1x1(mixed)
    assert type(mixed[0]) is Inception and type(mixed[1]) is FusedInception
    assert fuse_inception_1x1(mixed) is mixed and type(mixed[1]) is FusedInception  # twice changes nothing
    out = mixed(minigrad.Tensor(np.ones((2, 8, 4, 4), dtype=np.float32)))
    assert out.shape == (2, 4 + 6 + 3 + 5, 4, 4)


def test_fusing_keeps_the_train_and_eval_mode():
    model = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).eval()
    fuse_inception_1x1(model)
    assert not model.inception3a.training and not model.inception3a.fused_1x1.training
    model.train()
    assert all(module.training for module in model.inception5b.modules())
