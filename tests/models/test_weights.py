"""Loading PyTorch weights: torchvision's googlenet layout, torch.save'd, gives torch's logits in minigrad when
read in a process where torch cannot be imported, from the zip and the legacy .pth layouts, in float32 and
float64; from a dict; and from .npz and .safetensors conversions, which are written whole or not at all."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import minigrad
from minigrad.models import convert_weights, inception_v1, load_torch_state_dict
from minigrad.models.weights import read_state_dict, register_command
from minigrad.testing.tolerance import assert_close
from tests.models import DEPTH, longest_sum, torch_googlenet

REPOSITORY = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    """A randomly initialised googlenet in torchvision's exact layout (transform_input=True, as torchvision
    sets for its pretrained weights, aux heads included), its batch norms calibrated, torch.save'd in the zip
    layout, the legacy layout and in float64; with a batch of images and torch's logits for it."""
    torch.manual_seed(0)
    twin = torch_googlenet.calibrate_batch_norm(torch_googlenet.torch_googlenet(variant="torchvision",
                                                                                 transform_input=True))
    folder = tmp_path_factory.mktemp("weights")
    paths = {"zip": folder / "googlenet.pth", "legacy": folder / "googlenet-legacy.pth",
             "float64": folder / "googlenet-float64.pt"}
    torch.save(twin.state_dict(), paths["zip"])
    torch.save(twin.state_dict(), paths["legacy"], _use_new_zipfile_serialization=False)
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    with torch.no_grad():
        expected = twin(torch.from_numpy(images.astype(np.float32))).numpy()
        input_part = expected - twin(torch.zeros(2, 3, 64, 64)).numpy()
        twin.double()
        torch.save(twin.state_dict(), paths["float64"])
        expected64 = twin(torch.from_numpy(images)).numpy()
    assert np.abs(input_part).max() > 0.1 * np.abs(expected).max()  # the input matters to the logits
    return paths, images, expected, expected64


def minigrad_logits(model, images: np.ndarray) -> np.ndarray:
    model.eval()
    with minigrad.no_grad():
        return model(minigrad.Tensor(images)).numpy()


def fresh_model():
    return inception_v1(variant="torchvision", transform_input=True, init_weights=False)


def assert_same_logits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert_close(actual, expected, "logits", terms=longest_sum(fresh_model()), steps=DEPTH)


NO_TORCH_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None  # before anything else: from here on `import torch` raises ImportError
    import numpy as np
    import minigrad
    from minigrad.models import inception_v1, load_torch_state_dict

    jobs, images_path, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    images, logits = np.load(images_path), {}
    for name, (path, dtype) in jobs.items():
        model = inception_v1(variant="torchvision", transform_input=True, init_weights=False)
        model.to(dtype=np.dtype(dtype))
        missing, unexpected = load_torch_state_dict(model, path)
        assert missing == [] and unexpected == [], (missing, unexpected)
        model.eval()
        with minigrad.no_grad():
            logits[name] = model(minigrad.Tensor(images.astype(dtype))).numpy()
    try:
        import torch  # noqa: F401
        sys.exit("torch could be imported: the test proves nothing")
    except ImportError:
        pass
    assert [name for name, module in sys.modules.items() if name.split(".")[0] == "torch" and module] == []
    np.savez(out_path, **logits)
""")


def test_pth_files_load_where_torch_cannot_be_imported_and_give_torchs_logits(torchvision_files, tmp_path):
    paths, images, expected, expected64 = torchvision_files
    np.save(tmp_path / "images.npy", images)
    jobs = {"zip": (str(paths["zip"]), "float32"), "legacy": (str(paths["legacy"]), "float32"),
            "float64": (str(paths["float64"]), "float64")}
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, json.dumps(jobs), str(tmp_path / "images.npy"),
                           str(tmp_path / "logits.npz")], env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "logits.npz") as logits:
        assert logits["zip"].dtype == np.float32 and logits["float64"].dtype == np.float64
        assert_same_logits(logits["zip"], expected)
        assert_same_logits(logits["legacy"], expected)
        scale = np.abs(expected64).max()
        assert_close(logits["float64"], expected64, "float64 logits", float64=(0.0, 1e-9 * scale))


def test_pth_gives_torchs_logits_and_a_planted_layout_bug_is_caught(torchvision_files):
    paths, images, expected, _ = torchvision_files
    model = fresh_model()
    missing, unexpected = load_torch_state_dict(model, paths["zip"])
    assert missing == [] and unexpected == []
    assert model.conv1.bn.num_batches_tracked.item() == 1 and model.conv1.bn.num_batches_tracked.dtype == np.int64
    images = images.astype(np.float32)
    assert_same_logits(minigrad_logits(model, images), expected)
    # The same weights with the first convolution's kernels mirrored: the comparison must see it.
    model.conv1.conv.weight.data[...] = model.conv1.conv.weight.data[..., ::-1].copy()
    with pytest.raises(AssertionError, match=r"float32 \|difference\|"):
        assert_same_logits(minigrad_logits(model, images), expected)


def test_a_torch_state_dict_in_memory_loads_too(torchvision_files):
    paths, images, expected, _ = torchvision_files
    state = torch.load(paths["zip"], weights_only=True)
    model = fresh_model()
    load_torch_state_dict(model, state)
    assert_same_logits(minigrad_logits(model, images.astype(np.float32)), expected)


def test_read_state_dict_matches_torch_load_exactly(torchvision_files):
    paths, _, _, _ = torchvision_files
    reference = torch.load(paths["zip"], weights_only=True)
    for layout in ("zip", "legacy"):
        state = read_state_dict(paths[layout])
        assert list(state) == list(reference)
        for key, tensor in reference.items():
            assert state[key].dtype == tensor.numpy().dtype and np.array_equal(state[key], tensor.numpy()), key


def test_convert_to_npz_then_load_without_torch_or_pickle(torchvision_files, tmp_path):
    paths, images, expected, _ = torchvision_files
    out = tmp_path / "googlenet.npz"
    count = convert_weights(paths["zip"], out)
    assert count == len(torch.load(paths["zip"], weights_only=True))
    assert sorted(os.listdir(tmp_path)) == ["googlenet.npz"]  # the temporary file was renamed, not left behind
    with np.load(out, allow_pickle=False) as archive:
        assert archive["inception3a.branch2.1.bn.running_var"].dtype == np.float32
        assert archive["conv1.bn.num_batches_tracked"].dtype == np.int64
    model = fresh_model()
    load_torch_state_dict(model, out)
    assert_same_logits(minigrad_logits(model, images.astype(np.float32)), expected)


def run_convert(*arguments: str) -> int:
    parser = argparse.ArgumentParser(prog="minigrad")
    register_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert-weights", *map(str, arguments)])
    return args.handler(args)


def test_safetensors_round_trip(torchvision_files, tmp_path, safetensors_numpy, capsys):
    paths, images, expected, _ = torchvision_files
    out = tmp_path / "googlenet.safetensors"
    assert run_convert(paths["legacy"], out) == 0
    assert "arrays to" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["googlenet.safetensors"]
    reference = read_state_dict(paths["zip"])
    written = safetensors_numpy.load_file(str(out))  # a plain .safetensors file, by the package's own reader
    assert sorted(written) == sorted(reference)
    for state in (written, read_state_dict(out)):
        for key, value in reference.items():
            assert state[key].dtype == value.dtype and np.array_equal(state[key], value), key
    model = fresh_model()
    load_torch_state_dict(model, out)
    assert_same_logits(minigrad_logits(model, images.astype(np.float32)), expected)
    assert run_convert(out, tmp_path / "back.npz") == 0  # and on to .npz
    assert set(read_state_dict(tmp_path / "back.npz")) == set(reference)


def test_a_failed_conversion_leaves_the_old_output_untouched(torchvision_files, tmp_path, safetensors_numpy,
                                                             monkeypatch, capsys):
    paths, _, _, _ = torchvision_files
    out = tmp_path / "googlenet.safetensors"
    out.write_bytes(b"the user's previous file")

    def interrupted(state):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors_numpy, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_weights(paths["zip"], out)
    monkeypatch.undo()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(paths["zip"].read_bytes()[:5000])
    assert run_convert(truncated, out) == 1
    assert "truncated.pth is truncated or corrupt" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's previous file"
    assert sorted(os.listdir(tmp_path)) == ["googlenet.safetensors", "truncated.pth"]  # no temporary files
    assert run_convert(paths["zip"], tmp_path / "out.pt") == 1
    assert "must end in .npz or .safetensors" in capsys.readouterr().err


def test_bad_safetensors_files_are_named(tmp_path, safetensors_numpy, monkeypatch):
    (tmp_path / "short.safetensors").write_bytes(safetensors_numpy.save({"w": np.ones(8, np.float32)})[:-5])
    with pytest.raises(ValueError, match="short.safetensors is not a readable .safetensors file"):
        read_state_dict(tmp_path / "short.safetensors")
    import safetensors.torch

    safetensors.torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, str(tmp_path / "bf16.safetensors"))
    with pytest.raises(TypeError, match="bf16.safetensors holds a dtype NumPy cannot represent"):
        read_state_dict(tmp_path / "bf16.safetensors")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        read_state_dict(tmp_path / "short.safetensors")


def test_wrapped_and_data_parallel_checkpoints_are_unwrapped(tmp_path):
    model = inception_v1(stem="cifar", width=0.125, num_classes=10, seed=0)
    state = {f"module.{key}": torch.from_numpy(value) for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pth")
    other = inception_v1(stem="cifar", width=0.125, num_classes=10, seed=1)
    load_torch_state_dict(other, tmp_path / "checkpoint.pth")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


def test_mismatched_layouts_fail_loudly(torchvision_files, tmp_path):
    path = torchvision_files[0]["zip"]
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
    torch.save({"w": torch.zeros(2), "optimizer": {"lr": 0.1}}, tmp_path / "mixed.pth")
    with pytest.raises(TypeError, match="entry 'optimizer' is a dict, not a tensor"):
        read_state_dict(tmp_path / "mixed.pth")
