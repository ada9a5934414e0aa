"""GoogLeNet against the same network in PyTorch, in float64: logits, aux logits, loss, every gradient,
running statistics after a step.

The torch twin (tests/models/torch_googlenet.py) is built with the same options and receives
minigrad's state dict with no renaming, so any difference in layout, names, pooling rules, batch-norm
conventions or backward passes shows up here. Dropout is set to 0 in training mode (the two libraries
draw different masks); everything else runs as in real training. Each test takes the ``device`` fixture:
minigrad's model and images move there, its results come back through ``.numpy()`` and ``state_dict()``;
the torch twin stays on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minigrad
from minigrad.models import InceptionOutputs, googlenet_loss, inception_v1
from tests.models import torch_googlenet

LEARNING_RATE = 0.1


def build_pair(device="cpu", **options):
    """A minigrad GoogLeNet in float64 on ``device`` and its torch twin (CPU) holding the same weights."""
    model = inception_v1(seed=0, **options).to(device, dtype=np.float64)
    twin = torch_googlenet.torch_googlenet(**options).double()
    twin.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    return model, twin


def eval_pair(model, twin, rng: np.random.Generator) -> None:
    """Prepare both for an eval comparison: varied running statistics (so eval batch norm is not the
    identity) and a zero classifier bias (fresh 0.01-std weights make the input's share of the logits
    tiny, and a random bias would hide it from a comparison relative to the logits' size)."""
    state = model.state_dict()
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = rng.uniform(0.5, 2.0, state[key].shape)
        state[key.replace("running_var", "running_mean")] = rng.normal(0, 0.1, state[key].shape)
    state["fc.bias"] = np.zeros_like(state["fc.bias"])
    model.load_state_dict(state)
    twin.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in model.state_dict().items()})
    model.eval()
    twin.eval()


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str, rtol: float = 1e-9, atol: float = 0.0) -> None:
    """|actual - expected| <= rtol * max|expected| + atol: relative to the tensor's largest value, so small
    entries are compared at the tensor's own scale. ``atol`` is for tensors that are 0 in exact arithmetic,
    such as the gradient of a conv bias right before batch norm (the batch mean removes it), where both
    libraries return rounding noise around 1e-15."""
    expected = np.asarray(expected)
    scale = float(np.abs(expected).max(initial=0.0))
    error = float(np.abs(np.asarray(actual) - expected).max(initial=0.0))
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs torch {expected.shape}"
    assert error <= rtol * scale + atol, f"{what}: max abs difference {error:.3e} (scale {scale:.3e})"


def random_batch(n: int, size: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, size, size)), rng.integers(0, classes, n)


# 32x32, batch 4, quarter width: each case checks eval logits, train outputs with both aux heads, the loss,
# every gradient, and the state (weights and running statistics) after one SGD step.
@pytest.mark.parametrize("stem", ["imagenet", pytest.param("cifar", marks=pytest.mark.slow)])
@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_training_step_matches_torch(variant, stem, device):
    classes = 10
    model, twin = build_pair(device, num_classes=classes, variant=variant, stem=stem, width=0.25, dropout=0.0,
                             aux_dropout=0.0)
    images, targets = random_batch(4, 32, classes)
    x, x_torch = minigrad.Tensor(images, device=device), torch.from_numpy(images)
    targets_torch = torch.from_numpy(targets)

    # 1. eval mode: running statistics, logits only
    model.eval()
    twin.eval()
    with minigrad.no_grad(), torch.no_grad():
        assert_close(model(x).numpy(), twin(x_torch).numpy(), "eval logits")

    # 2. train mode: batch statistics, (aux1, aux2, logits), the paper's loss and every gradient
    model.train()
    twin.train()
    outputs, twin_outputs = model(x), twin(x_torch)
    assert isinstance(outputs, InceptionOutputs)
    for name in ("aux1", "aux2", "logits"):
        assert_close(getattr(outputs, name).numpy(), getattr(twin_outputs, name).detach().numpy(), name)
    loss = googlenet_loss(outputs, targets)
    twin_loss = torch_googlenet.googlenet_loss(twin_outputs, targets_torch)
    assert_close(np.asarray(loss.item()), np.asarray(twin_loss.item()), "loss", rtol=1e-12)
    loss.backward()
    twin_loss.backward()
    twin_parameters = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names == list(twin_parameters)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert parameter.grad.device == device, f"the gradient of {name} left {device}"
        assert_close(parameter.grad.numpy(), twin_parameters[name].grad.numpy(), f"grad of {name}", rtol=1e-8,
                     atol=1e-12)

    # 3. one SGD step on both; then every weight and running statistic, and the eval logits again
    for parameter in model.parameters():
        parameter.data -= LEARNING_RATE * parameter.grad.data
    with torch.no_grad():
        for parameter in twin.parameters():
            parameter -= LEARNING_RATE * parameter.grad
    twin_state = twin.state_dict()
    for key, value in model.state_dict().items():
        assert_close(value, twin_state[key].numpy(), f"{key} after a step", rtol=1e-8, atol=1e-12)
    assert model.inception4e.branch3[1].bn.num_batches_tracked.item() == 1
    model.eval()
    twin.eval()
    with minigrad.no_grad(), torch.no_grad():
        assert_close(model(x).numpy(), twin(x_torch).numpy(), "eval logits after a step", rtol=1e-8)


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_imagenet_stem_eval_at_full_width_and_32x32(variant, device):
    model, twin = build_pair(device, variant=variant, transform_input=variant == "torchvision")
    eval_pair(model, twin, np.random.default_rng(1))
    images, _ = random_batch(4, 32, 1000, seed=1)
    with minigrad.no_grad(), torch.no_grad():
        logits = model(minigrad.Tensor(images, device=device)).numpy()
        assert_close(logits, twin(torch.from_numpy(images)).numpy(), "eval logits")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_eval_logits_at_224_full_width(variant, device):
    model, twin = build_pair(device, variant=variant)
    eval_pair(model, twin, np.random.default_rng(2))
    images, _ = random_batch(1, 224, 1000, seed=3)
    with minigrad.no_grad(), torch.no_grad():
        logits = model(minigrad.Tensor(images, device=device)).numpy()
        assert_close(logits, twin(torch.from_numpy(images)).numpy(), "eval logits at 224")
    assert logits.shape == (1, 1000)
