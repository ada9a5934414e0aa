"""Loading PyTorch weights: a torchvision-layout state dict gives the same logits in minigrad, read from a
.pth through torch, from a dict, or from the converted .npz with torch absent and pickle disabled."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pytest
import torch

import minigrad
from minigrad.models import convert_weights, inception_v1, load_torch_state_dict
from minigrad.models.weights import read_state_dict, register_command
from tests.models import torch_googlenet


@pytest.fixture(scope="module")
def torchvision_checkpoint(tmp_path_factory):
    """A randomly initialised googlenet in torchvision's exact layout (transform_input=True, as torchvision
    sets for its pretrained weights), saved with torch.save.

    Its batch-norm statistics are calibrated like a trained network's (the running statistics of one batch),
    so that in eval mode every layer passes on a signal of size about 1; with the fresh statistics 0 and 1
    the input would change the logits by a millionth of the classifier's bias and a comparison could not
    see it."""
    torch.manual_seed(0)
    twin = torch_googlenet.torch_googlenet(variant="torchvision", transform_input=True)
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a cumulative average: after one batch, that batch's statistics
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        twin(torch.randn(8, 3, 64, 64))
    twin.eval()
    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    torch.save(twin.state_dict(), path)
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(images)).numpy()
        input_part = expected - twin(torch.zeros(2, 3, 64, 64)).numpy()
    assert np.abs(input_part).max() > 0.1 * np.abs(expected).max()  # the input matters to the logits
    return path, images, expected


def minigrad_logits(model, images: np.ndarray) -> np.ndarray:
    model.eval()
    with minigrad.no_grad():
        return model(minigrad.Tensor(images)).numpy()


def fresh_model():
    return inception_v1(variant="torchvision", transform_input=True, init_weights=False)


def assert_same_logits(actual: np.ndarray, expected: np.ndarray) -> None:
    # float32 through 22 layers: measured 2.5e-5 of the logits' size (a wrong layout is off by 10x or more)
    assert np.abs(actual - expected).max() <= 3e-4 * np.abs(expected).max()


def test_pth_gives_torchvisions_logits(torchvision_checkpoint):
    path, images, expected = torchvision_checkpoint
    model = fresh_model()
    missing, unexpected = load_torch_state_dict(model, path)
    assert missing == [] and unexpected == []
    assert model.conv1.bn.num_batches_tracked.item() == 1
    assert_same_logits(minigrad_logits(model, images), expected)


def test_a_torch_state_dict_in_memory_loads_too(torchvision_checkpoint):
    path, images, expected = torchvision_checkpoint
    state = torch.load(path, weights_only=True)
    model = fresh_model()
    load_torch_state_dict(model, state)
    assert_same_logits(minigrad_logits(model, images), expected)
    again = fresh_model()
    again.load_state_dict({key: value.numpy() for key, value in state.items()})  # plain NumPy arrays
    assert_same_logits(minigrad_logits(again, images), expected)


def test_converted_npz_loads_without_torch_or_pickle(torchvision_checkpoint, tmp_path, monkeypatch):
    path, images, expected = torchvision_checkpoint
    out = tmp_path / "googlenet.npz"
    count = convert_weights(path, out)
    assert count == len(torch.load(path, weights_only=True))
    assert sorted(os.listdir(tmp_path)) == ["googlenet.npz"]  # the temporary file was renamed, not left behind
    with np.load(out, allow_pickle=False) as archive:
        assert archive["inception3a.branch2.1.bn.running_var"].dtype == np.float32
        assert archive["conv1.bn.num_batches_tracked"].dtype == np.int64
    monkeypatch.setitem(sys.modules, "torch", None)  # from here on `import torch` raises ImportError
    model = fresh_model()
    load_torch_state_dict(model, out)
    assert_same_logits(minigrad_logits(model, images), expected)
    with pytest.raises(ImportError, match="convert-weights"):
        load_torch_state_dict(model, path)  # a .pth needs torch, and the error says how to do without


def test_convert_weights_command(torchvision_checkpoint, tmp_path, capsys):
    path, _, _ = torchvision_checkpoint
    parser = argparse.ArgumentParser(prog="minigrad")
    register_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert-weights", str(path), str(tmp_path / "out.npz")])
    assert args.handler(args) == 0
    assert "arrays to" in capsys.readouterr().out
    assert set(read_state_dict(tmp_path / "out.npz")) == set(torch.load(path, weights_only=True))


def test_wrapped_and_data_parallel_checkpoints_are_unwrapped(tmp_path):
    model = inception_v1(stem="cifar", width=0.125, num_classes=10, seed=0)
    state = {f"module.{key}": torch.from_numpy(value) for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pth")
    other = inception_v1(stem="cifar", width=0.125, num_classes=10, seed=1)
    load_torch_state_dict(other, tmp_path / "checkpoint.pth")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


def test_mismatched_layouts_fail_loudly(torchvision_checkpoint, tmp_path):
    path, _, _ = torchvision_checkpoint
    paper = inception_v1(variant="paper", init_weights=False)
    with pytest.raises(KeyError, match="missing keys .*conv1.conv.bias"):
        load_torch_state_dict(paper, path)
    no_aux = inception_v1(variant="torchvision", aux_logits=False, init_weights=False)
    missing, unexpected = load_torch_state_dict(no_aux, path, strict=False)
    assert missing == [] and "aux1.fc1.weight" in unexpected
    with pytest.raises(ValueError, match=r"shape mismatch .*fc.weight: checkpoint \(1000, 1024\) vs model \(10,"):
        load_torch_state_dict(inception_v1(variant="torchvision", num_classes=10, init_weights=False), path)
    with pytest.raises(FileNotFoundError, match="no file"):
        load_torch_state_dict(paper, tmp_path / "missing.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(TypeError, match="not a state dict"):
        load_torch_state_dict(paper, tmp_path / "tensor.pth")
