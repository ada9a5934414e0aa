"""Five training steps of GoogLeNet in minigrad and in PyTorch, in float64, from the same weights on the same
batches: the losses, the learning rates and momenta of the schedule, and every weight, running statistic
and momentum buffer agree to ~1e-8.

This is the whole of ``minigrad train`` minus the randomness: the cifar-stem GoogLeNet with both auxiliary
heads, the paper's loss, the real DataLoader batches (shuffled, cropped, flipped, normalised), and the
optimizer and schedule exactly as train.py builds them (SGD with Nesterov momentum and weight decay, the
onecycle schedule cycling the momentum). Only dropout is off, because the two libraries draw different
masks. One step agreeing is a gradient test; five steps agreeing also checks that the optimizer's state,
the schedule and batch norm's running statistics carry from one step to the next as in PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minigrad import Tensor, train
from minigrad.models import inception_v1
from tests.models.torch_googlenet import googlenet_loss as torch_googlenet_loss
from tests.models.torch_googlenet import torch_googlenet
from tests.test_train import one_blas_thread  # noqa: F401  (an autouse fixture: 1 BLAS thread)

STEPS = 5
RTOL = 1e-8


def assert_close(actual, expected, what: str, rtol: float = RTOL, atol: float = 1e-13) -> None:
    """|actual - expected| <= rtol * max|expected| + atol, per tensor. ``atol`` covers tensors that are zero
    in exact arithmetic, such as a conv bias right before batch norm (its gradient is rounding noise)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs torch {expected.shape}"
    scale = float(np.abs(expected).max(initial=0.0))
    error = float(np.abs(actual - expected).max(initial=0.0))
    assert error <= rtol * scale + atol, f"{what}: max abs difference {error:.3e} (scale {scale:.3e})"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's OpenMP threads spin after each op and starve NumPy's BLAS threads when the two libraries
    alternate op by op on a small machine (this test ran 3-5x slower); one thread for each avoids that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_five_sgd_steps_follow_torch_in_float64():
    # Batch 8, not smaller: batch norm over 4 images is so ill-conditioned that rounding differences grow
    # to ~1e-8 in some gradients within 5 steps; with 8 the worst stays near 1e-10.
    config = train.TrainConfig(width=0.125, stem="cifar", train_size=8 * STEPS, test_size=8, batch_size=8,
                               epochs=1, progress=False, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    train_set, test_set = train.build_datasets(config)
    train_loader, _ = train.build_loaders(config, train_set, test_set)
    assert len(train_loader) == STEPS

    model = inception_v1(num_classes=10, aux_logits=True, variant=config.variant, stem=config.stem,
                         width=config.width, dropout=0.0, aux_dropout=0.0, seed=1).double()
    twin = torch_googlenet(num_classes=10, aux_logits=True, variant=config.variant, stem=config.stem,
                           width=config.width, dropout=0.0, aux_dropout=0.0).double()
    twin.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    model.train()
    twin.train()
    initial = model.state_dict()

    optimizer = train.build_optimizer(config, model)
    scheduler = train.build_scheduler(config, optimizer, len(train_loader))
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["weight_decay"] > 0
    torch_optimizer = torch.optim.SGD(twin.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                      weight_decay=config.weight_decay)
    torch_scheduler = torch.optim.lr_scheduler.OneCycleLR(torch_optimizer, max_lr=config.lr, total_steps=STEPS,
                                                          pct_start=0.25, cycle_momentum=True)

    losses, torch_losses = [], []
    for step, (images, labels) in enumerate(train_loader, start=1):
        images64 = images.numpy().astype(np.float64)
        for group, torch_group in zip(optimizer.param_groups, torch_optimizer.param_groups):
            assert_close(group["lr"], torch_group["lr"], f"lr before step {step}", rtol=1e-12, atol=0)
            assert_close(group["momentum"], torch_group["momentum"], f"momentum before step {step}", 1e-12, 0)

        loss = train.compute_loss(model, model(Tensor(images64)), labels, aux_weight=config.aux_weight,
                                  label_smoothing=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()

        torch_loss = torch_googlenet_loss(twin(torch.from_numpy(images64)), torch.from_numpy(labels.numpy()),
                                          aux_weight=config.aux_weight)
        torch_optimizer.zero_grad()
        torch_loss.backward()
        torch_optimizer.step()
        torch_scheduler.step()

        losses.append(loss.item())
        torch_losses.append(torch_loss.item())
        assert_close(losses[-1], torch_losses[-1], f"loss at step {step}", atol=0)

    state, torch_state = model.state_dict(), twin.state_dict()
    assert sorted(state) == sorted(torch_state)
    assert any(key.endswith("running_var") for key in state) and any(key.startswith("aux2.") for key in state)
    # The comparison means something only if training moved every weight far more than the tolerance.
    for key in [key for key in state if key.endswith(".weight")]:
        moved = np.abs(state[key] - initial[key]).max() / np.abs(initial[key]).max()
        assert moved > 1e4 * RTOL, f"{key} barely moved ({moved:.1e}): the test would not see a wrong update"
    for key, value in state.items():
        assert_close(value, torch_state[key].numpy(), f"{key} after {STEPS} steps")

    torch_buffers = {id(param): torch_optimizer.state[param]["momentum_buffer"].numpy()
                     for param in twin.parameters()}
    names = dict(zip((id(param) for param in model.parameters()), (name for name, _ in model.named_parameters())))
    torch_names = {name: id(param) for name, param in twin.named_parameters()}
    for param in model.parameters():
        name = names[id(param)]
        assert_close(optimizer.state[id(param)]["momentum_buffer"], torch_buffers[torch_names[name]],
                     f"momentum buffer of {name}")
