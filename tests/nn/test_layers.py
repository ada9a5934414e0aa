"""Layers against torch.nn: same parameters and buffers in, same outputs, gradients and running statistics out.

Each case builds the torch layer, copies its state into the minigrad layer with ``load_state_dict``, then
runs three training-mode steps and two eval-mode steps. A step is: forward a random input, backward a
random upstream gradient, compare the output, the input gradient, every parameter gradient, then take a
plain SGD step on both and compare every entry of the state dict (so running statistics and
``num_batches_tracked`` are checked after every step, and later steps see changed parameters).

The parity and dropout tests take the ``device`` fixture: the minigrad layer and its inputs move to that device,
results come back through ``.numpy()`` and ``state_dict()``; torch stays on the CPU.
"""

from __future__ import annotations

import math

import numpy
import pytest
import torch

import minigrad
from minigrad import Tensor, nn
from minigrad.testing.tolerance import assert_close, float32_tolerance

FLOAT64 = (1e-9, 1e-11)  # element-wise (rtol, atol): the proof
# float32: by the tolerance policy (minigrad/testing/tolerance.py), over the longest sum in any case below (a
# batch norm's N*H*W = 4*6*6 = 144 in "sequential") and the 5 dependent steps (the weights of step k come from
# steps 0..k-1): float32_tolerance(144, 5), about 3.4e-4 of each tensor's scale.
FLOAT32_TERMS = 144


def check_layer_against_torch(ours, theirs, input_shape, dtype, device="cpu", train_steps=3, eval_steps=2, seed=0):
    """Run ``ours`` (on ``device``) and ``theirs`` (same state, on the CPU) side by side for a few steps and
    compare everything."""
    steps = train_steps + eval_steps

    def check(actual, expected, what, floor=0.0):
        assert_close(actual, expected, what, terms=FLOAT32_TERMS, steps=steps, float64=FLOAT64, atol=floor)

    theirs = theirs.to(getattr(torch, numpy.dtype(dtype).name))
    ours.to(device, dtype=dtype)  # cast first: loading keeps the model's dtype (and moves values to its device)
    assert ours.load_state_dict({key: value.detach().numpy() for key, value in theirs.state_dict().items()}) == (
        [], [])
    names = [name for name, _ in theirs.named_parameters()]
    assert [name for name, _ in ours.named_parameters()] == names
    rng = numpy.random.default_rng(seed)
    for step, training in enumerate([True] * train_steps + [False] * eval_steps):
        where = f"step {step} ({'train' if training else 'eval'})"
        ours.train(training)
        theirs.train(training)
        x = rng.standard_normal(input_shape).astype(dtype)
        x_ours, x_theirs = Tensor(x, requires_grad=True, device=device), torch.tensor(x, requires_grad=True)
        out, expected = ours(x_ours), theirs(x_theirs)
        assert out.shape == tuple(expected.shape), where
        assert out.dtype == dtype and out.device == device, where
        check(out.numpy(), expected.detach().numpy(), f"{where}: output")
        upstream = rng.standard_normal(out.shape).astype(dtype)
        # Some gradients are zero in exact arithmetic (a conv bias right before batch norm: batch norm removes
        # the mean); in float32 they are rounding noise of sums whose terms are the size of the upstream
        # gradient, so that sets their floor.
        floor = float32_tolerance(FLOAT32_TERMS, steps) * float(numpy.abs(upstream).max())
        out.backward(upstream)
        expected.backward(torch.from_numpy(upstream))
        check(x_ours.grad.numpy(), x_theirs.grad.numpy(), f"{where}: input gradient", floor)
        ours_parameters, their_parameters = list(ours.parameters()), list(theirs.parameters())
        for name, mine, reference in zip(names, ours_parameters, their_parameters):
            assert mine.grad is not None and mine.grad.dtype == dtype, f"{where}: {name}"
            assert mine.device == mine.grad.device == device, f"{where}: {name} left {device}"
            check(mine.grad.numpy(), reference.grad.numpy(), f"{where}: gradient of {name}", floor)
        with torch.no_grad():  # the same SGD step on both, so that the next step sees new parameters
            for mine, reference in zip(ours_parameters, their_parameters):
                mine.data -= 0.1 * mine.grad.data
                reference -= 0.1 * reference.grad
        ours.zero_grad()
        theirs.zero_grad()
        state = ours.state_dict()
        assert list(state) == list(theirs.state_dict().keys()), where
        for key, value in theirs.state_dict().items():
            assert state[key].dtype == value.numpy().dtype, f"{where}: dtype of {key}"
            check(state[key], value.numpy(), f"{where}: {key}")


# (name, layer from `nn_module` (minigrad.nn or torch.nn share the spelling), input shape)
LAYER_CASES = [
    ("linear", lambda m: m.Linear(5, 3), (4, 5)),
    ("linear-3d-input", lambda m: m.Linear(5, 3), (2, 3, 5)),
    ("linear-no-bias", lambda m: m.Linear(5, 3, bias=False), (4, 5)),
    ("conv", lambda m: m.Conv2d(3, 4, 3), (2, 3, 6, 6)),
    ("conv-stride-padding", lambda m: m.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2)), (2, 3, 7, 6)),
    ("conv-groups-no-bias", lambda m: m.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), (2, 4, 5, 5)),
    ("conv-depthwise-dilated", lambda m: m.Conv2d(3, 6, 3, groups=3, dilation=2, padding=2), (2, 3, 6, 5)),
    ("conv-same-odd-kernel", lambda m: m.Conv2d(3, 4, (3, 5), padding="same"), (2, 3, 6, 7)),
    ("conv-same-even-kernel", lambda m: m.Conv2d(3, 2, (2, 4), padding="same"), (2, 3, 5, 6)),
    ("conv-1x1", lambda m: m.Conv2d(4, 2, 1), (3, 4, 3, 3)),
    ("batchnorm2d", lambda m: m.BatchNorm2d(3), (4, 3, 3, 3)),
    ("batchnorm2d-cumulative", lambda m: m.BatchNorm2d(3, momentum=None), (4, 3, 3, 3)),
    ("batchnorm2d-eps-momentum", lambda m: m.BatchNorm2d(3, eps=1e-3, momentum=0.3), (2, 3, 4, 2)),
    ("batchnorm2d-no-affine", lambda m: m.BatchNorm2d(3, affine=False), (4, 3, 3, 3)),
    ("batchnorm2d-untracked", lambda m: m.BatchNorm2d(3, track_running_stats=False), (4, 3, 3, 3)),
    ("batchnorm1d", lambda m: m.BatchNorm1d(4), (6, 4)),
    ("batchnorm1d-3d-input", lambda m: m.BatchNorm1d(4), (3, 4, 5)),
    ("batchnorm1d-cumulative", lambda m: m.BatchNorm1d(4, momentum=None), (6, 4)),
    ("batchnorm1d-no-affine", lambda m: m.BatchNorm1d(4, affine=False), (6, 4)),
    ("batchnorm1d-untracked", lambda m: m.BatchNorm1d(4, track_running_stats=False), (6, 4)),
    ("maxpool", lambda m: m.MaxPool2d(2), (2, 3, 6, 6)),
    ("maxpool-stride-padding-ceil", lambda m: m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8, 7)),
    ("maxpool-dilation", lambda m: m.MaxPool2d((2, 3), stride=1, dilation=2), (2, 2, 6, 7)),
    ("avgpool", lambda m: m.AvgPool2d(2), (2, 3, 6, 6)),
    ("avgpool-pad-included", lambda m: m.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    ("avgpool-pad-excluded-ceil",
     lambda m: m.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 3, 8, 7)),
    ("adaptive-avgpool-uneven", lambda m: m.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    ("adaptive-avgpool-global", lambda m: m.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    ("flatten", lambda m: m.Flatten(), (2, 3, 4, 5)),
    ("flatten-middle", lambda m: m.Flatten(1, 2), (2, 3, 4, 5)),
    ("relu", lambda m: m.ReLU(), (3, 4, 5)),
    ("identity", lambda m: m.Identity(), (3, 4)),
    ("sequential", lambda m: m.Sequential(
        m.Conv2d(3, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2), m.Flatten(), m.Linear(36, 5),
        m.BatchNorm1d(5),
    ), (4, 3, 6, 6)),
    ("sequential-nested", lambda m: m.Sequential(
        m.Sequential(m.Conv2d(2, 4, 1, bias=False), m.BatchNorm2d(4, momentum=None), m.ReLU()),
        m.AvgPool2d(3, stride=1, padding=1), m.AdaptiveAvgPool2d(2),
        m.Sequential(m.Flatten(), m.Linear(16, 3)),
    ), (3, 2, 5, 5)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own speed
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("build, input_shape", [case[1:] for case in LAYER_CASES], ids=[c[0] for c in LAYER_CASES])
def test_layer_matches_torch_in_train_and_eval_steps(build, input_shape, dtype, device):
    torch.manual_seed(0)
    theirs = build(torch.nn)
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine for m in theirs.modules()):
        with torch.no_grad():  # torch starts gamma at 1 and beta at 0: move them so their gradients matter
            for module in theirs.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
    check_layer_against_torch(build(nn), theirs, input_shape, dtype, device)


# ----- dropout ---------------------------------------------------------------------------------
def test_dropout_is_the_identity_in_eval_mode(device):
    layer = nn.Dropout(0.5).eval()
    x = Tensor(numpy.random.default_rng(0).standard_normal((4, 5)), requires_grad=True, device=device)
    out = layer(x)
    numpy.testing.assert_array_equal(out.numpy(), x.numpy())
    upstream = numpy.random.default_rng(1).standard_normal((4, 5))
    out.backward(upstream)
    numpy.testing.assert_array_equal(x.grad.numpy(), upstream)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_in_training_drops_a_fraction_p_and_scales_the_rest(p, device):
    minigrad.manual_seed(0)
    layer = nn.Dropout(p)
    x_values = numpy.random.default_rng(0).uniform(1.0, 2.0, (200, 500)).astype(numpy.float32)
    x = Tensor(x_values, requires_grad=True, device=device)
    out = layer(x)
    assert out.dtype == numpy.float32 and out.device == device
    kept = out.numpy() != 0
    assert abs(1 - kept.mean() - p) < 0.01  # 100,000 draws: the standard error is about 0.0016
    assert_close(out.numpy()[kept], x_values[kept] / (1 - p), "kept", terms=2, elementwise=True)
    assert abs(out.numpy().mean() / x_values.mean() - 1) < 0.01  # the expectation is kept
    upstream = numpy.random.default_rng(1).standard_normal(out.shape).astype(numpy.float32)
    out.backward(upstream)
    assert_close(x.grad.numpy(), numpy.where(kept, upstream / (1 - p), 0), "gradient", terms=2, elementwise=True)
    # torch's training-mode dropout makes the same two kinds of value
    reference = torch.nn.Dropout(p)(torch.ones(1000)).unique().numpy()
    assert_close(reference, numpy.array([0.0, 1 / (1 - p)]), "torch's values", terms=2, elementwise=True)


def test_dropout_masks_differ_between_calls_and_repeat_after_manual_seed(device):
    x = Tensor(numpy.ones((10, 20)), device=device)
    layer = nn.Dropout(0.5)
    minigrad.manual_seed(7)
    first, second = layer(x).numpy(), layer(x).numpy()
    assert (first != second).any()
    minigrad.manual_seed(7)
    numpy.testing.assert_array_equal(layer(x).numpy(), first)


def test_dropout_edge_probabilities(device):
    x = Tensor(numpy.random.default_rng(0).standard_normal((3, 4)), requires_grad=True, device=device)
    numpy.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    out = nn.Dropout(1.0)(x)
    assert out.dtype == numpy.float64 and not numpy.isnan(out.numpy()).any() and not out.numpy().any()
    out.backward(numpy.ones((3, 4)))
    assert not x.grad.numpy().any() and not numpy.isnan(x.grad.numpy()).any()


# ----- default initialisation ----------------------------------------------------------------
def assert_uniform(values, bound, name):
    """Drawn from U(-bound, bound): inside the bounds, reaching near them, with std bound/sqrt(3).

    The slack shrinks with the sample size n; each check fails by chance with probability below 1e-8."""
    values = numpy.asarray(values, dtype=numpy.float64).ravel()
    n = values.size
    assert numpy.abs(values).max() <= bound * (1 + 1e-6), name
    assert numpy.abs(values).max() > (1 - 20 / n) * bound, name  # P(all n inside (1-e) bound) = (1-e)^n
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 6 * math.sqrt(0.2 / n), name  # std of the std estimate
    assert abs(values.mean()) < 6 * bound / math.sqrt(3 * n), name


@pytest.mark.parametrize("build, fan_in", [
    (lambda m: m.Linear(1000, 300), 1000),
    (lambda m: m.Conv2d(64, 256, 3), 64 * 9),
    (lambda m: m.Conv2d(64, 256, (3, 5), groups=4), 16 * 15),
], ids=["linear", "conv", "conv-groups"])
def test_linear_and_conv_default_init_is_torchs(build, fan_in):
    """kaiming_uniform_(a=sqrt(5)) on the weight is U(+-1/sqrt(fan_in)); the bias uses the same bound."""
    minigrad.manual_seed(0)
    layer, reference = build(nn), build(torch.nn)
    bound = 1 / math.sqrt(fan_in)
    assert layer.weight.dtype == numpy.float32 and layer.bias.dtype == numpy.float32
    assert layer.weight.shape == tuple(reference.weight.shape) and layer.bias.shape == tuple(reference.bias.shape)
    assert_uniform(layer.weight.numpy(), bound, "weight")
    assert_uniform(layer.bias.numpy(), bound, "bias")
    assert_uniform(reference.weight.detach().numpy(), bound, "torch's weight")  # the check itself agrees


def test_batchnorm_default_state_is_torchs():
    for ours, theirs in [(nn.BatchNorm2d(5), torch.nn.BatchNorm2d(5)), (nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3))]:
        state, expected = ours.state_dict(), theirs.state_dict()
        assert list(state) == list(expected.keys())
        for key, value in expected.items():
            assert state[key].dtype == value.numpy().dtype, key
            numpy.testing.assert_array_equal(state[key], value.numpy(), err_msg=key)


def test_manual_seed_makes_initialisation_reproducible():
    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))

    minigrad.manual_seed(3)
    first = build().state_dict()
    minigrad.manual_seed(3)
    again = build().state_dict()
    minigrad.manual_seed(4)
    other = build().state_dict()
    for key in first:
        numpy.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert not numpy.array_equal(first["0.weight"], other["0.weight"])
    assert not numpy.array_equal(first["2.bias"], other["2.bias"])


# ----- errors ----------------------------------------------------------------------------------
def test_batchnorm_errors_name_the_shape_and_the_fix():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): input of shape \(2, 4, 5, 5\) has 4 channels; "
                                         r"use num_features=4"):
        nn.BatchNorm2d(3)(Tensor(numpy.zeros((2, 4, 5, 5), dtype=numpy.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(Tensor(numpy.zeros((2, 3), dtype=numpy.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected a 2-D or 3-D input, got shape \(2, 3, 4, 4\)"):
        nn.BatchNorm1d(3)(Tensor(numpy.zeros((2, 3, 4, 4), dtype=numpy.float32)))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\).*eval\(\)"):
        nn.BatchNorm1d(3)(Tensor(numpy.zeros((1, 3), dtype=numpy.float32)))


def test_a_rejected_batch_leaves_the_running_statistics_alone():
    """torch counts a batch of one before refusing it; minigrad counts only batches it normalised, so a
    caught error does not skew momentum=None's cumulative average."""
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ValueError):
        layer(Tensor(numpy.ones((1, 3), dtype=numpy.float32)))
    assert layer.num_batches_tracked.item() == 0
    numpy.testing.assert_array_equal(layer.running_var.numpy(), numpy.ones(3))


@pytest.mark.parametrize("in_channels, out_channels, groups", [(4, 6, 3), (3, 4, 2)])
def test_conv2d_groups_must_divide_the_channels(in_channels, out_channels, groups):
    with pytest.raises(ValueError, match=rf"Conv2d: groups={groups} must divide in_channels={in_channels} "
                                         rf"and out_channels={out_channels}"):
        nn.Conv2d(in_channels, out_channels, 3, groups=groups)


def test_conv2d_wrong_input_channels_names_both_shapes():
    with pytest.raises(ValueError, match=r"conv2d: .*4 channels.*\(8, 3, 3, 3\).*\(2, 4, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(Tensor(numpy.zeros((2, 4, 8, 8), dtype=numpy.float32)))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match=rf"Dropout: p must be in \[0, 1\], got {p}"):
        nn.Dropout(p)


def test_relu_inplace_writes_over_its_input_and_trains_as_torchs():
    torch.manual_seed(0)
    twin = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(inplace=True), torch.nn.Linear(5, 2)).double()
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 2)).double()
    model.load_state_dict(twin.state_dict())
    assert repr(model[1]) == repr(twin[1]) == "ReLU(inplace=True)" and repr(nn.ReLU()) == "ReLU()"
    x = numpy.random.default_rng(0).standard_normal((3, 4))
    hidden = model[0](Tensor(x))
    assert model[1](hidden).data is hidden.data  # no new array
    out = model(Tensor(x))
    out.sum().backward()
    twin(torch.tensor(x)).sum().backward()
    for (name, parameter), twin_parameter in zip(model.named_parameters(), twin.parameters()):
        numpy.testing.assert_allclose(parameter.grad.numpy(), twin_parameter.grad.numpy(), rtol=1e-12, atol=1e-14,
                                      err_msg=name)


def test_batch_norm_counts_its_running_statistics_updates():
    layer = nn.BatchNorm2d(2)
    x = Tensor(numpy.random.default_rng(0).standard_normal((2, 2, 3, 3)).astype(numpy.float32))
    layer(x)
    assert layer.running_mean.version == layer.running_var.version == layer.num_batches_tracked.version == 1
    layer.eval()(x)  # eval mode reads them only
    assert layer.running_mean.version == 1
