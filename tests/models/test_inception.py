"""GoogLeNet's structure: parameter counts, multiply-adds, map sizes, outputs, width, init, loss, errors.

Numerical agreement with PyTorch lives in test_parity.py; these tests check the architecture against
the paper's numbers and against independent NumPy computations. The tests that run the model (outputs, aux
heads, transform_input, the loss) take the ``device`` fixture; counts, names and
options are checked on the CPU only. The stacked 1x1 convolutions are tested in test_fuse.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import backend, nn
from minigrad.models import GoogLeNet, InceptionOutputs, googlenet_loss, inception_v1
from minigrad.models.inception import (
    INCEPTION_TABLE,
    VARIANTS,
    BasicConv2d,
    InceptionAux,
    scale_channels,
)
from minigrad.testing.tolerance import assert_close


def images(n: int, size: int, seed: int = 0, dtype=np.float32, device: str = "cpu") -> minigrad.Tensor:
    return minigrad.Tensor(np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(dtype),
                           device=device)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.size for parameter in model.parameters())


def count_multiply_adds(model: nn.Module, x: minigrad.Tensor) -> int:
    """Multiply-adds of every conv and linear layer in one forward, per image (via forward hooks).

    conv: each output value costs C_in/groups * kH * kW; linear: in_features per output value."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel_h, kernel_w = module.kernel_size
            total += output.size * module.in_channels // module.groups * kernel_h * kernel_w
        else:
            total += output.size * module.in_features

    removers = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with minigrad.no_grad():
        model(x)
    for remove in removers:
        remove()
    return total // x.shape[0]


def block_output_sizes(model: GoogLeNet, x: minigrad.Tensor) -> dict[str, tuple[int, ...]]:
    """The output shape of every Inception block for input x."""
    shapes = {}
    for name in INCEPTION_TABLE:
        getattr(model, name).register_forward_hook(lambda m, i, out, name=name: shapes.__setitem__(name, out.shape))
    with minigrad.no_grad():
        model(x)
    return shapes


# ----- the paper's numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant, aux_logits, expected",
    [("paper", True, 13_393_352), ("paper", False, 7_013_112),
     ("torchvision", True, 13_004_888), ("torchvision", False, 6_624_904)],
)
def test_parameter_counts_are_exact(variant, aux_logits, expected):
    model = inception_v1(variant=variant, aux_logits=aux_logits, init_weights=False)
    assert parameter_count(model) == expected


def test_table_1_channels_chain_from_block_to_block():
    outputs = [row.out_channels for row in INCEPTION_TABLE.values()]
    assert outputs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]  # the paper's "output size" column
    ins = [row.in_channels for row in INCEPTION_TABLE.values()]
    assert ins == [192, *outputs[:-1]]  # max pools keep the channels, so each block reads the last one's output


def test_multiply_adds_at_224_are_about_1_58_billion():
    model = inception_v1(variant="paper", init_weights=False).eval()
    macs = count_multiply_adds(model, images(1, 224))
    assert abs(macs - 1.58e9) / 1.58e9 < 0.02, macs
    # each branch's cost by hand for block 3a at 28x28 shows the 1x1 reductions doing their job
    pixels = 28 * 28
    block = pixels * (192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32)
    assert count_multiply_adds(model.inception3a, _zeros(192, 28)) == block


def _zeros(channels: int, size: int) -> minigrad.Tensor:
    return minigrad.Tensor(np.zeros((1, channels, size, size), dtype=np.float32))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(
    "stem, size, expected",
    [("imagenet", 224, (28, 14, 7)), ("cifar", 32, (32, 16, 8)), ("imagenet", 32, (4, 2, 1))],
)
def test_feature_map_sizes(variant, stem, size, expected):
    model = inception_v1(variant=variant, stem=stem, width=0.25, num_classes=10, seed=0).eval()
    shapes = block_output_sizes(model, images(1, size))
    for name, shape in shapes.items():
        stage = int(name[len("inception")]) - 3
        assert shape[2:] == (expected[stage], expected[stage]), (name, shape)


# ----- outputs ----------------------------------------------------------------------------------------
def test_training_returns_aux1_aux2_logits_and_eval_returns_logits(device):
    model = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).to(device)
    x = images(2, 32, device=device)
    outputs = model(x)
    assert isinstance(outputs, InceptionOutputs)
    aux1, aux2, logits = outputs
    assert aux1.shape == aux2.shape == logits.shape == (2, 10)
    assert aux1.device == aux2.device == logits.device == device
    assert outputs[2] is outputs.logits
    assert not np.allclose(aux1.numpy(), logits.numpy())
    model.eval()
    with minigrad.no_grad():
        evaluated = model(x)
    assert isinstance(evaluated, minigrad.Tensor) and evaluated.shape == (2, 10) and evaluated.device == device


def test_without_aux_heads_training_returns_logits_and_state_has_no_aux_keys(device):
    model = inception_v1(num_classes=10, aux_logits=False, stem="cifar", width=0.125, seed=0).to(device)
    assert model.aux1 is None and model.aux2 is None
    assert not [key for key in model.state_dict() if key.startswith("aux")]
    out = model(images(2, 32, device=device))
    assert isinstance(out, minigrad.Tensor) and out.shape == (2, 10) and out.device == device


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_imagenet_stem_trains_on_32x32_with_aux_heads(variant, device):
    # blocks 4a/4d see 2x2 maps: too small for the paper's 5x5/3 pool, so the heads pool adaptively to 4x4
    model = inception_v1(num_classes=10, variant=variant, width=0.125, seed=0).to(device)
    outputs = model(images(4, 32, device=device))
    loss = googlenet_loss(outputs, np.array([0, 1, 2, 3]))
    loss.backward()
    assert all(o.shape == (4, 10) for o in outputs)
    assert np.abs(model.aux1.fc1.weight.grad.numpy()).max() > 0


def test_paper_aux_head_pools_5x5_stride_3_on_14x14_and_adaptively_elsewhere(device):
    conv_block = BasicConv2d
    paper = InceptionAux(16, 5, conv_block, pool="avg5x5/3", dropout=0.0, conv_channels=8, hidden=12).eval()
    adaptive = InceptionAux(16, 5, conv_block, pool="adaptive4x4", dropout=0.0, conv_channels=8, hidden=12).eval()
    adaptive.load_state_dict(paper.state_dict())
    paper.to(device)
    adaptive.to(device)

    def head_after(pooled):  # the rest of the head, applied by hand
        hidden = F.relu(paper.fc1(F.flatten(paper.conv(pooled), 1)))
        return paper.fc2(hidden).numpy()

    rng = np.random.default_rng(1)
    x14 = minigrad.Tensor(rng.standard_normal((2, 16, 14, 14)).astype(np.float32), device=device)
    with minigrad.no_grad():
        assert_close(paper(x14).numpy(), head_after(F.avg_pool2d(x14, 5, 3)), "aux head")
        # adaptive 4x4 windows on 14 are [0,4) [3,7) [7,11) [10,14): not the paper's [0,5) [3,8) [6,11) [9,14)
        assert not np.allclose(paper(x14).numpy(), adaptive(x14).numpy())
        x2 = minigrad.Tensor(rng.standard_normal((2, 16, 2, 2)).astype(np.float32), device=device)
        assert_close(paper(x2).numpy(), adaptive(x2).numpy(), "aux head on 2x2")


# ----- names, width, options ---------------------------------------------------------------------------
def test_state_dict_keys_read_as_torchvisions():
    keys = inception_v1(variant="torchvision", width=0.125, init_weights=False).state_dict()
    for key in ["conv1.conv.weight", "conv1.bn.running_mean", "conv3.bn.num_batches_tracked",
                "inception3a.branch1.conv.weight", "inception3a.branch2.1.bn.running_var",
                "inception4e.branch3.0.conv.weight", "inception5b.branch4.1.bn.bias",
                "aux1.conv.conv.weight", "aux1.fc1.weight", "aux2.fc2.bias", "fc.weight", "fc.bias"]:
        assert key in keys, key
    assert "conv1.conv.bias" not in keys  # torchvision's convs have no bias
    paper_keys = inception_v1(variant="paper", width=0.125, init_weights=False).state_dict()
    assert "conv1.conv.bias" in paper_keys and "inception3a.branch3.1.conv.bias" in paper_keys
    assert paper_keys["inception3a.branch3.1.conv.weight"].shape[2:] == (5, 5)
    assert keys["inception3a.branch3.1.conv.weight"].shape[2:] == (3, 3)


def test_cifar_stem_is_one_3x3_conv_named_conv1():
    model = inception_v1(stem="cifar", num_classes=10, init_weights=False)
    keys = model.state_dict()
    assert keys["conv1.conv.weight"].shape == (192, 3, 3, 3)
    assert not [key for key in keys if key.startswith(("conv2.", "conv3."))]
    assert model.maxpool1 is None and model.maxpool2 is None
    assert model.conv1.conv.stride == (1, 1) and model.conv1.conv.padding == (1, 1)


def test_width_scales_every_channel_count_and_fc_follows():
    model = inception_v1(width=0.25, num_classes=10, init_weights=False)
    assert model.conv1.conv.out_channels == 16 and model.conv3.conv.out_channels == 48
    block = model.inception3a
    assert [block.branch1.conv.out_channels, block.branch2[1].conv.out_channels,
            block.branch3[1].conv.out_channels, block.branch4[1].conv.out_channels] == [16, 32, 8, 8]
    assert model.inception3b.branch1.conv.in_channels == block.out_channels == 64
    assert model.fc.in_features == model.inception5b.out_channels == 96 + 96 + 32 + 32
    assert model.aux1.conv.conv.out_channels == 32 and model.aux1.fc1.in_features == 32 * 16
    assert model.aux1.fc1.out_features == 256
    tiny = inception_v1(width=0.01, num_classes=10, init_weights=False)
    assert min(m.out_channels for m in tiny.modules() if isinstance(m, nn.Conv2d)) == 8
    assert scale_channels(100, 0.125) == 13 and scale_channels(20, 0.125) == 8 and scale_channels(64, 1.0) == 64


def test_dropout_defaults_and_overrides():
    paper = inception_v1(width=0.125, init_weights=False)
    assert (paper.dropout.p, paper.aux1.dropout.p, paper.aux2.dropout.p) == (0.4, 0.7, 0.7)
    tv = inception_v1(variant="torchvision", width=0.125, init_weights=False)
    assert (tv.dropout.p, tv.aux1.dropout.p) == (0.2, 0.7)
    custom = inception_v1(width=0.125, dropout=0.1, aux_dropout=0.0, init_weights=False)
    assert (custom.dropout.p, custom.aux2.dropout.p) == (0.1, 0.0)


def test_transform_input_renormalises_each_channel_as_torchvision(device):
    # PyTorch's default init (not the 0.01 one, under which the input barely reaches the logits)
    options = dict(variant="torchvision", stem="cifar", width=0.125, num_classes=10, seed=3, init_weights=False)
    plain = inception_v1(**options).eval()
    transformed = inception_v1(**options, transform_input=True).eval()
    x = images(2, 32, dtype=np.float64, device=device)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    by_hand = x.numpy() * (std / 0.5)[None, :, None, None] + ((mean - 0.5) / 0.5)[None, :, None, None]
    plain.to(device, dtype=np.float64)
    transformed.to(device, dtype=np.float64)
    with minigrad.no_grad():
        np.testing.assert_allclose(transformed(x).numpy(), plain(minigrad.Tensor(by_hand, device=device)).numpy(),
                                   rtol=1e-10)
        assert np.abs(transformed(x).numpy() - plain(x).numpy()).max() > 1e-6  # the signal fades in 22 fresh layers


# ----- initialisation -----------------------------------------------------------------------------------
def test_seed_gives_the_same_weights_and_leaves_the_global_generator_alone():
    before = backend.get_rng_state()
    first = inception_v1(width=0.125, num_classes=10, seed=7).state_dict()
    assert backend.get_rng_state() == before
    second = inception_v1(width=0.125, num_classes=10, seed=7).state_dict()
    other = inception_v1(width=0.125, num_classes=10, seed=8).state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(first["fc.weight"], other["fc.weight"])
    defaults = [inception_v1(width=0.125, num_classes=10, seed=7, init_weights=False).state_dict() for _ in range(2)]
    assert np.array_equal(defaults[0]["fc.weight"], defaults[1]["fc.weight"])
    assert backend.get_rng_state() == before


def _weights(model: nn.Module, kinds: tuple) -> np.ndarray:
    return np.concatenate([m.weight.numpy().ravel() for m in model.modules() if isinstance(m, kinds)])


def test_paper_init_is_truncated_normal_std_0_01_with_zero_biases():
    model = inception_v1(width=0.5, num_classes=10, seed=0)
    weights = _weights(model, (nn.Conv2d, nn.Linear))
    assert np.abs(weights).max() <= 0.02  # truncated at 2 standard deviations
    # a N(0, 0.01) truncated to +-2 std has std 0.01 * 0.8796
    assert abs(weights.std() - 0.008796) < 2e-4 and abs(weights.mean()) < 2e-4
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert not module.bias.numpy().any()
        if isinstance(module, nn.BatchNorm2d):
            assert (module.weight.numpy() == 1).all() and not module.bias.numpy().any()


def test_torchvision_init_is_normal_std_0_01_and_default_linear_biases():
    model = inception_v1(variant="torchvision", width=0.5, num_classes=10, seed=0)
    weights = _weights(model, (nn.Conv2d, nn.Linear))
    assert abs(weights.std() - 0.01) < 2e-4 and np.abs(weights).max() > 0.03  # bounds +-2 truncate nothing
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    bias, bound = model.fc.bias.numpy(), 1 / np.sqrt(model.fc.in_features)
    assert np.abs(bias).max() <= bound and bias.std() > bound / 4


# ----- the loss ---------------------------------------------------------------------------------------
def _cross_entropy(logits: np.ndarray, targets: np.ndarray, smoothing: float = 0.0) -> float:
    log_probs = logits - logits.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    picked = log_probs[np.arange(len(targets)), targets]
    return float(np.mean(-(1 - smoothing) * picked - smoothing * log_probs.mean(1)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_googlenet_loss_weights_the_aux_losses_by_0_3(smoothing, device):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((5, 7)) for _ in range(3)]
    targets = rng.integers(0, 7, 5)  # a NumPy array: the loss moves it to the logits' device
    outputs = InceptionOutputs(*(minigrad.Tensor(a, requires_grad=True, device=device) for a in arrays))
    loss = googlenet_loss(outputs, targets, label_smoothing=smoothing)
    aux1, aux2, logits = (_cross_entropy(a, targets, smoothing) for a in arrays)
    assert loss.item() == pytest.approx(logits + 0.3 * (aux1 + aux2), rel=1e-12)
    loss.backward()
    assert loss.device == outputs.aux1.grad.device == device
    # d loss / d aux1 = 0.3 (softmax(aux1) - q) / N, with q the (smoothed) one-hot targets
    q = np.full((5, 7), smoothing / 7)
    q[np.arange(5), targets] += 1 - smoothing
    softmax = np.exp(arrays[0]) / np.exp(arrays[0]).sum(1, keepdims=True)
    np.testing.assert_allclose(outputs.aux1.grad.numpy(), 0.3 * (softmax - q) / 5, rtol=1e-10, atol=1e-14)
    unweighted = googlenet_loss(outputs, targets, aux_weight=1.0, label_smoothing=smoothing)
    assert unweighted.item() == pytest.approx(logits + aux1 + aux2)
    assert googlenet_loss(outputs.logits, targets, label_smoothing=smoothing).item() == pytest.approx(logits)
    assert googlenet_loss(tuple(outputs), targets).item() == pytest.approx(googlenet_loss(outputs, targets).item())


# ----- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"variant": "v3"}, "variant must be one of"), ({"stem": "mnist"}, "stem must be one of"),
     ({"width": 0}, "width must be positive"), ({"num_classes": 0}, "num_classes")],
)
def test_bad_arguments_raise_clear_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        inception_v1(**kwargs)


def test_wrong_input_shape_names_the_expected_shape():
    model = inception_v1(width=0.125, stem="cifar", num_classes=10, init_weights=False)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, H, W\), got \(2, 1, 32, 32\)"):
        model(minigrad.Tensor(np.zeros((2, 1, 32, 32), dtype=np.float32)))
    with pytest.raises(ValueError, match="googlenet_loss: expected"):
        googlenet_loss((model.fc.weight, model.fc.weight), np.zeros(2, dtype=np.int64))


# ----- in-place ReLU --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [False, True])
def test_googlenets_in_place_relus_are_legal_and_change_no_gradient(fused, monkeypatch):
    from minigrad.models import fuse_inception_1x1

    def gradients(inplace: bool) -> dict[str, np.ndarray]:
        model = inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0).to(dtype=np.float64)
        model = fuse_inception_1x1(model) if fused else model
        relu, in_place_calls = F.relu, []

        def counted(x, inplace=False):
            in_place_calls.append(inplace)
            return relu(x, inplace=inplace and use_inplace)

        use_inplace = inplace
        monkeypatch.setattr(F, "relu", counted)
        minigrad.manual_seed(0)
        googlenet_loss(model(images(2, 16, dtype=np.float64)), np.array([1, 7])).backward()  # no error
        monkeypatch.setattr(F, "relu", relu)
        assert sum(in_place_calls) == 1 + 9 * 6 + 2  # every BasicConv2d: the cifar stem, 6 per block, aux convs
        return {name: p.grad.numpy() for name, p in model.named_parameters()}

    in_place, out_of_place = gradients(True), gradients(False)
    for name, grad in out_of_place.items():
        np.testing.assert_array_equal(in_place[name], grad, err_msg=name)  # the same arithmetic, bit for bit
