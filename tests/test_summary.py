"""minigrad.summary: counts against hand arithmetic, torch's FLOP counter and torchinfo; hooks and modes left
as found."""

from __future__ import annotations

import argparse
import functools
import re
import sys
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import minigrad.functional as F
from minigrad import nn
from minigrad.models import inception_v1
from minigrad.summary import MULT_ADDS, Summary, TorchinfoFigures, register_command, summary, torchinfo_mult_adds
from tests.models import torch_googlenet


def small_net() -> nn.Sequential:
    """Conv 3->8 (3x3, pad 1) -> BN -> ReLU -> max pool 2 -> flatten -> Linear 128->10, for (N, 3, 8, 8)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)
    )


class Branches(nn.Module):
    """A little Inception block: three parallel branches joined along the channels by F.cat."""

    def __init__(self) -> None:
        super().__init__()
        self.branch1 = nn.Conv2d(8, 4, 1)
        self.branch2 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, bias=False))
        self.branch3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 2, 1))

    def forward(self, x):
        return F.cat([self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class BranchNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Branches()
        self.grouped = nn.Conv2d(12, 6, 3, padding=1, groups=3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.grouped(self.block(self.stem(x))))))


def torch_twin(model: nn.Module) -> torch.nn.Module:
    """The same layers in torch.nn (weights do not matter for counting), built from the minigrad modules."""
    if isinstance(model, nn.Sequential):
        return torch.nn.Sequential(*[torch_twin(child) for child in model])
    if isinstance(model, nn.Conv2d):
        return torch.nn.Conv2d(model.in_channels, model.out_channels, model.kernel_size, model.stride, model.padding,
                               groups=model.groups, bias=model.bias is not None)
    if isinstance(model, nn.Linear):
        return torch.nn.Linear(model.in_features, model.out_features, bias=model.bias is not None)
    if isinstance(model, nn.BatchNorm2d):
        return torch.nn.BatchNorm2d(model.num_features)
    if isinstance(model, nn.MaxPool2d):
        return torch.nn.MaxPool2d(model.kernel_size, model.stride, model.padding)
    simple = {nn.ReLU: torch.nn.ReLU, nn.Flatten: torch.nn.Flatten}
    if type(model) in simple:
        return simple[type(model)]()
    if isinstance(model, nn.AdaptiveAvgPool2d):
        return torch.nn.AdaptiveAvgPool2d(model.output_size)
    if isinstance(model, Branches):
        twin = torch.nn.Module()
        for name, child in model.named_children():
            twin.add_module(name, torch_twin(child))
        twin.forward = lambda x: torch.cat([twin.branch1(x), twin.branch2(x), twin.branch3(x)], 1)
        return twin
    if isinstance(model, BranchNet):
        return torch.nn.Sequential(*[torch_twin(child) for child in model.children()])
    raise TypeError(type(model))


def torch_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """torch's own count of an eval forward; on the "meta" device, which computes shapes but no values."""
    model = model.to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape, device="meta"))
    return counter.get_total_flops()


# ----- counts -----------------------------------------------------------------------------------
def test_small_net_totals_match_hand_arithmetic():
    result = summary(small_net(), (2, 3, 8, 8))
    conv_params, bn_params, linear_params = 8 * 3 * 3 * 3 + 8, 2 * 8, 128 * 10 + 10
    assert result.total_params == result.trainable_params == conv_params + bn_params + linear_params == 1530
    conv_macs = (2 * 8 * 8 * 8) * 3 * 3 * 3  # output elements * C_in * kH * kW
    linear_macs = (2 * 10) * 128  # output elements * in_features
    assert result.total_mult_adds == conv_macs + linear_macs == 30208
    assert result.mult_adds_per_image == (conv_macs + linear_macs) / 2
    by_name = {row.name: row for row in result.rows}
    assert [by_name[n].num_params for n in ("0", "1", "2", "3", "4", "5")] == [224, 16, 0, 0, 0, 1290]
    assert [by_name[n].mult_adds for n in ("0", "1", "2", "3", "4", "5")] == [conv_macs, 0, 0, 0, 0, linear_macs]
    assert [by_name[n].output_shapes for n in ("0", "3", "4", "5")] == [
        [(2, 8, 8, 8)], [(2, 8, 4, 4)], [(2, 128)], [(2, 10)]]
    # Activations: every module output once; the Sequential returns the Linear's tensor (not counted twice).
    output_floats = 3 * (2 * 8 * 8 * 8) + 2 * 8 * 4 * 4 + 2 * 128 + 2 * 10
    assert result.activation_bytes == 4 * output_floats
    assert result.forward_backward_bytes == 2 * result.activation_bytes
    assert result.param_bytes == 4 * 1530 and result.input_bytes == 4 * 2 * 3 * 8 * 8
    assert result.buffer_bytes == 4 * 8 * 2 + 8  # running mean/var float32, num_batches_tracked int64


@pytest.mark.parametrize("make, shape", [(small_net, (2, 3, 8, 8)), (BranchNet, (3, 3, 10, 10))])
def test_params_and_mult_adds_match_torch(make, shape):
    model = make()
    result = summary(model, shape)
    twin = torch_twin(model)
    assert result.total_params == sum(p.numel() for p in twin.parameters())
    assert 2 * result.total_mult_adds == torch_flops(twin, shape)  # torch counts a multiply-add as 2 FLOPs


def test_linear_on_3d_input_counts_every_row():
    model = nn.Sequential(nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 3, bias=False))
    result = summary(model, (2, 5, 16))
    assert result.total_mult_adds == 2 * 5 * (10 * 16 + 3 * 10)
    assert 2 * result.total_mult_adds == torch_flops(
        torch.nn.Sequential(torch.nn.Linear(16, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3, bias=False)), (2, 5, 16))


def test_every_module_and_branch_is_a_row_and_params_column_sums_to_total():
    model = BranchNet()
    result = summary(model, (2, 3, 10, 10))
    names = [row.name for row in result.rows]
    assert names == [name for name, _ in model.named_modules()]
    assert {"block.branch1", "block.branch2.2", "block.branch3.0"} <= set(names)
    assert sum(row.num_params for row in result.rows) == result.total_params
    assert sum(row.mult_adds for row in result.rows) == result.total_mult_adds
    by_name = {row.name: row for row in result.rows}
    assert by_name["block"].output_shapes == [(2, 12, 5, 5)]
    assert by_name["block.branch2.2"].depth == 3 and by_name[""].depth == 0
    assert all(row.calls == 1 for row in result.rows)


def test_shared_parameter_is_counted_once():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    result = summary(model, (1, 4))
    assert result.total_params == 16 + 4 + 4
    assert sum(row.num_params for row in result.rows) == result.total_params


def test_batch_size_prepends_and_mult_adds_are_per_batch():
    one = summary(small_net(), (3, 8, 8), batch_size=1)
    five = summary(small_net(), (3, 8, 8), batch_size=5)
    assert five.input_shape == (5, 3, 8, 8)
    assert five.total_mult_adds == 5 * one.total_mult_adds and five.mult_adds_per_image == one.total_mult_adds


def test_custom_rule_can_be_added(monkeypatch):
    monkeypatch.setitem(MULT_ADDS, nn.BatchNorm2d, lambda module, output: output.size)
    assert summary(small_net(), (2, 3, 8, 8)).total_mult_adds == 30208 + 2 * 8 * 8 * 8


# ----- torchinfo's figures ----------------------------------------------------------------------
class Quirks(nn.Module):
    """The corners of torchinfo's rules: a container's own parameter, a layer called twice, one never called."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))  # the model's own: counted, not in params size
        self.conv = nn.Conv2d(2, 2, 3, padding=1)  # called twice: its work twice, its parameters once
        self.body = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.ReLU())
        self.unused = nn.Linear(4, 4)  # never runs: counted, not in params size

    def forward(self, x):
        return self.body(self.conv(self.conv(x))) * self.scale


class TorchQuirks(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 1, bias=False), torch.nn.ReLU())
        self.unused = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.body(self.conv(self.conv(x))) * self.scale


TORCHINFO_LABELS = ("Total params", "Trainable params", "Non-trainable params", "Total mult-adds", "Input size",
                    "Forward/backward pass size", "Params size", "Estimated Total Size")
_FIGURE_LINE = re.compile(r"^(" + "|".join(re.escape(label) for label in TORCHINFO_LABELS)
                          + r")(?: \((?:Units\.)?([A-Z])[A-Za-z]*\))?: (\S+)$")


def printed_figures(text: str) -> dict[str, tuple[str | None, str]]:
    """{label: (unit letter, digits)} of the torchinfo figures in a printed summary, minigrad's or torchinfo's.

    torchinfo 1.8 writes the unit of mult-adds as "(G)" or, on Python 3.11+, "(Units.GIGABYTES)": both read "G".
    """
    figures = {}
    for line in text.splitlines():
        match = _FIGURE_LINE.match(line.strip())
        if match:
            figures[match[1]] = (match[2], match[3])
    assert set(figures) == set(TORCHINFO_LABELS), f"labels found: {sorted(figures)}\n{text}"
    return figures


def storage_header_bytes() -> int:
    """What torchinfo's input size adds to the tensor's bytes: it takes sys.getsizeof of the storage."""
    return sys.getsizeof(torch.empty(0).untyped_storage())


def assert_matches_torchinfo(result: Summary, stats) -> None:
    """Every figure torchinfo prints, exactly: the counts and byte totals, and the printed digits."""
    ours = result.torchinfo
    assert ours.total_params == stats.total_params and ours.trainable_params == stats.trainable_params
    assert ours.total_mult_adds == stats.total_mult_adds
    assert ours.forward_backward_bytes == stats.total_output_bytes
    assert ours.param_bytes == stats.total_param_bytes
    assert ours.input_bytes == stats.total_input - storage_header_bytes()
    assert printed_figures(str(result)) == printed_figures(str(stats))


class GoogLeNetCase(NamedTuple):
    variant: str
    stem: str
    width: float
    num_classes: int
    size: int
    batch: int


GOOGLENET_CASES = [
    GoogLeNetCase("paper", "imagenet", 1.0, 1000, 224, 1),
    GoogLeNetCase("paper", "imagenet", 1.0, 1000, 224, 2),  # the seed's table
    GoogLeNetCase("torchvision", "imagenet", 1.0, 1000, 224, 1),
    GoogLeNetCase("torchvision", "imagenet", 1.0, 1000, 224, 2),
    GoogLeNetCase("paper", "cifar", 1.0, 10, 32, 2),
    GoogLeNetCase("torchvision", "cifar", 1.0, 10, 32, 1),
    GoogLeNetCase("paper", "imagenet", 0.25, 1000, 224, 1),
    GoogLeNetCase("torchvision", "cifar", 0.25, 10, 32, 2),
]


# Built once per test process: a full-width GoogLeNet takes about a second to build and to run at 224x224.
@functools.cache
def inception_v1_cached(variant: str, stem: str, width: float, num_classes: int) -> nn.Module:
    return inception_v1(variant=variant, stem=stem, width=width, num_classes=num_classes, init_weights=False)


@functools.cache
def googlenet_summary(case: GoogLeNetCase) -> Summary:
    model = inception_v1_cached(case.variant, case.stem, case.width, case.num_classes)
    return summary(model, (case.batch, 3, case.size, case.size))


@functools.cache
def torch_googlenet_cached(variant: str, stem: str, width: float, num_classes: int) -> torch.nn.Module:
    with torch.device("meta"):  # no weights drawn (the counts need none): zeros are faster to make
        twin = torch_googlenet.torch_googlenet(variant=variant, stem=stem, width=width, num_classes=num_classes)
    twin = twin.to_empty(device="cpu").eval()
    with torch.no_grad():
        for tensor in [*twin.parameters(), *twin.buffers()]:
            tensor.zero_()
    return twin


def test_torchinfo_rules_on_small_net_match_hand_arithmetic():
    figures = summary(small_net(), (2, 3, 8, 8)).torchinfo
    conv = (8 * 3 * 3 * 3 + 8) * (2 * 8 * 8)  # weight and bias, each once per output position (N * H * W)
    batch_norm = 2 * (8 + 8)  # gamma and beta, once per image
    linear = 2 * (128 * 10 + 10)  # weight and bias, once per image
    assert figures.total_mult_adds == conv + batch_norm + linear == 31_284
    # Outputs of the layers that hold parameters (conv, batch norm, linear), each plus its gradient.
    assert figures.forward_backward_bytes == 2 * 4 * (2 * 8 * 8 * 8 + 2 * 8 * 8 * 8 + 2 * 10)
    assert figures.param_bytes == 4 * 1530 and figures.input_bytes == 4 * 2 * 3 * 8 * 8
    assert figures.total_bytes == figures.input_bytes + figures.forward_backward_bytes + figures.param_bytes
    assert isinstance(figures, TorchinfoFigures)


def test_torchinfo_rules_on_quirks_match_hand_arithmetic():
    result = summary(Quirks(), (2, 2, 5, 5))
    figures = result.torchinfo
    assert figures.total_params == 1 + (36 + 2) + 8 + (16 + 4)  # every parameter, the unused Linear's too
    assert figures.total_mult_adds == 2 * (36 + 2) * (2 * 5 * 5) + 8 * (2 * 5 * 5)  # conv twice, then the 1x1
    assert figures.forward_backward_bytes == 2 * 4 * (2 * (2 * 2 * 25) + 2 * 4 * 25)  # conv's two outputs, 1x1's
    assert figures.param_bytes == 4 * ((36 + 2) + 8)  # conv once; not the scale, not the unused Linear
    assert result.param_bytes == 4 * figures.total_params  # minigrad's own: every parameter
    by_name = {row.name: row for row in result.rows}
    assert by_name["conv"].calls == 2 and by_name["unused"].torchinfo_param_bytes == 0
    assert by_name[""].torchinfo_mult_adds == by_name["body"].torchinfo_mult_adds == 0  # containers: 0


def test_torchinfo_mult_adds_rule_per_parameter_name():
    conv, linear = nn.Conv2d(3, 4, 3), nn.Linear(5, 6)
    assert torchinfo_mult_adds(conv, (2, 4, 7, 9)) == (4 * 3 * 9 + 4) * 2 * 7 * 9
    assert torchinfo_mult_adds(linear, (2, 3, 6)) == 2 * (5 * 6 + 6)  # the first axis only: torchinfo's rule
    assert torchinfo_mult_adds(nn.ReLU(), (2, 3)) == 0
    recurrent = nn.Module()
    recurrent.weight_ih_l0 = nn.Parameter(np.ones((4, 3), dtype=np.float32))
    recurrent.scale = nn.Parameter(np.ones(3, dtype=np.float32))  # neither "weight" nor "bias": 0
    assert torchinfo_mult_adds(recurrent, (2, 5, 4)) == 2 * 5 * 12


def test_torchinfo_and_dot_product_mult_adds_differ_by_biases_and_batch_norm():
    """The seed's figure, 3,171,827,184, is the dot products plus one multiply-add per conv-bias output value,
    per batch-norm parameter per image and per linear bias per image: 6,483,440 in all."""
    result = googlenet_summary(GoogLeNetCase("paper", "imagenet", 1.0, 1000, 224, 2))
    modules = dict(inception_v1_cached("paper", "imagenet", 1.0, 1000).named_modules())
    extra = 0
    for row in result.rows:
        module = modules[row.name]
        if not row.calls:
            continue
        n, *rest = row.output_shapes[0]
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            extra += n * int(np.prod(rest))
        elif isinstance(module, nn.BatchNorm2d):
            extra += n * 2 * module.num_features
        elif isinstance(module, nn.Linear) and module.bias is not None:
            extra += n * module.out_features
    assert result.torchinfo.total_mult_adds - result.total_mult_adds == extra == 6_483_440
    assert result.torchinfo.total_mult_adds == 3_171_827_184 and result.total_mult_adds == 3_165_343_744


@pytest.mark.parametrize("make_pair, shape", [
    (lambda: (small_net(), None), (2, 3, 8, 8)),
    (lambda: (BranchNet(), None), (3, 3, 10, 10)),
    (lambda: (Quirks(), TorchQuirks()), (2, 2, 5, 5)),
    (lambda: (nn.Sequential(nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 3, bias=False)), None), (2, 5, 16)),
], ids=["small_net", "branch_net", "quirks", "linear_3d"])
def test_small_models_match_torchinfo(torchinfo, make_pair, shape):
    model, twin = make_pair()
    twin = twin if twin is not None else torch_twin(model)
    assert_matches_torchinfo(summary(model, shape), torchinfo.summary(twin, shape, verbose=0))


def test_shared_parameter_torchinfo_counts_per_module(torchinfo):
    """The one known difference: torchinfo counts a parameter shared by two layers once per layer."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    twin = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    twin[1].weight = twin[0].weight
    ours, stats = summary(model, (1, 4)).torchinfo, torchinfo.summary(twin, (1, 4), verbose=0)
    assert (ours.total_params, stats.total_params) == (24, 40)  # minigrad: each parameter once
    assert ours.total_mult_adds == stats.total_mult_adds and ours.param_bytes == stats.total_param_bytes


@pytest.mark.parametrize("case", GOOGLENET_CASES, ids=lambda c: f"{c.variant}-{c.stem}-w{c.width}-{c.size}-b{c.batch}")
def test_googlenet_matches_torchinfo(torchinfo, case):
    result = googlenet_summary(case)
    twin = torch_googlenet_cached(case.variant, case.stem, case.width, case.num_classes)
    stats = torchinfo.summary(twin, (case.batch, 3, case.size, case.size), verbose=0)
    assert result.total_params == sum(p.numel() for p in twin.parameters())  # the twins are the same network
    assert_matches_torchinfo(result, stats)
    assert result.torchinfo.param_bytes < result.param_bytes  # eval mode: torchinfo leaves the aux heads out


# ----- the table --------------------------------------------------------------------------------
def test_table_prints_every_module_and_the_totals():
    result = summary(BranchNet(), (2, 3, 10, 10))
    text = str(result)
    for row in result.rows:
        assert (row.name or "(model)") in text
    for fragment in ("Total params: ", f"{result.total_params:,}", "Dot-product mult-adds per image (G)",
                     "Params size (MB)", "Forward/backward pass size (MB)", "Estimated Total Size (MB)",
                     "Activations and their gradients (MB)", "All parameters (MB)", "Conv2d", "[2, 12, 5, 5]"):
        assert fragment in text
    assert "      block.branch2.0" in text  # indented by depth


def test_depth_hides_rows_but_not_totals():
    full, shallow = summary(BranchNet(), (1, 3, 10, 10)), summary(BranchNet(), (1, 3, 10, 10), depth=1)
    assert "block.branch1" in str(full) and "block.branch1" not in str(shallow)
    assert shallow.total_params == full.total_params and "depth 1" in str(shallow)


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"summary: input_shape .* got \(2, 0, 8\)"):
        summary(small_net(), (2, 0, 8))


# ----- the model is left as it was --------------------------------------------------------------
def _hook_counts(model):
    return [len(module._forward_hooks) for module in model.modules()]


def test_hooks_removed_modes_and_running_stats_restored():
    model = BranchNet()
    model.block.eval()  # mixed modes must come back exactly
    modes = [m.training for m in model.modules()]
    running_mean = model.stem[1].running_mean.numpy()
    summary(model, (2, 3, 10, 10))
    assert [m.training for m in model.modules()] == modes
    assert _hook_counts(model) == [0] * len(modes)
    np.testing.assert_array_equal(model.stem[1].running_mean.numpy(), running_mean)  # ran in eval mode


def test_hooks_removed_and_modes_restored_after_an_error():
    model = small_net()
    model.train()
    with pytest.raises(ValueError) as info:
        summary(model, (2, 4, 8, 8))  # 4 channels, the conv wants 3
    assert any("minigrad.summary" in note for note in getattr(info.value, "__notes__", []))
    assert all(m.training for m in model.modules())
    assert _hook_counts(model) == [0] * len(list(model.modules()))


# ----- GoogLeNet --------------------------------------------------------------------------------
def test_googlenet_paper_totals():
    result = googlenet_summary(GoogLeNetCase("paper", "imagenet", 1.0, 1000, 224, 2))
    assert result.total_params == 13_393_352
    assert round(result.mult_adds_per_image / 1e9, 2) == 1.58  # reported per batch: 3.17 G for 2 images
    assert result.total_mult_adds == 2 * result.mult_adds_per_image
    # Independent count: torch's FLOP counter on the torch twin (eval mode, so no aux heads either).
    with torch.device("meta"):  # no weights drawn: the counter needs shapes only
        twin = torch_googlenet.torch_googlenet(variant="paper")
    assert 2 * result.total_mult_adds == torch_flops(twin, (2, 3, 224, 224))
    names = {row.name for row in result.rows}
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        for branch in ("branch1.conv", "branch2.0.conv", "branch2.1.bn", "branch3.1.conv", "branch4.0", "branch4.1"):
            assert f"inception{block}.{branch}" in names
    aux_rows = [row for row in result.rows if row.name.startswith("aux")]
    assert aux_rows and all(row.calls == 0 for row in aux_rows)  # eval mode: aux heads do not run
    assert "-- (not called)" in str(result)


@pytest.mark.parametrize("variant, aux, expected", [
    ("torchvision", True, 13_004_888), ("torchvision", False, 6_624_904), ("paper", False, 7_013_112),
])
def test_googlenet_parameter_counts(variant, aux, expected):
    model = inception_v1(variant=variant, aux_logits=aux, init_weights=False)
    assert summary(model, (1, 3, 64, 64)).total_params == expected  # parameters do not depend on the input size


def test_cli_summary_command(capsys):
    parser = argparse.ArgumentParser()
    register_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["summary", "--stem", "cifar", "--width", "0.25", "--num-classes", "10", "--depth", "1"])
    assert args.input_size is None and args.batch_size == 1 and args.variant == "paper"
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "inception5b" in text and "[1, 10]" in text and "Total params" in text
    assert "inception3a.branch1" not in text  # --depth 1


def test_cli_summary_prints_the_seed_figures(capsys):
    """`minigrad summary --batch-size 2` (paper, 1000 classes, aux heads, 224x224, eval) against the seed's
    torchinfo table, figure for figure, and minigrad's own figures under their own labels."""
    parser = argparse.ArgumentParser()
    register_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["summary", "--batch-size", "2"])
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    for figure in ("Total params: 13,393,352", "Total mult-adds (G): 3.17", "Input size (MB): 1.20",
                   "Forward/backward pass size (MB): 103.25", "Params size (MB): 28.05",
                   "Estimated Total Size (MB): 132.51"):
        assert figure in lines
    own = "\n".join(lines)
    for figure in ("Dot-product mult-adds (G): 3.17 (3,165,343,744 for the batch of 2",
                   "Activations and their gradients (MB): 197.35", "All parameters (MB): 53.57",
                   "Input + activations + gradients + all parameters + buffers (MB): 252.19"):
        assert figure in own


def test_summary_is_a_summary():
    assert isinstance(summary(small_net(), (1, 3, 8, 8)), Summary)


def test_summary_shows_the_paper_modules_unless_the_model_was_fused():
    from minigrad.models import fuse_inception_1x1, inception_v1

    def build():
        return inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0)

    plain, fused = summary(build(), (2, 3, 32, 32)), summary(fuse_inception_1x1(build()), (2, 3, 32, 32))
    plain_types = {row.name: row.layer_type for row in plain.rows}
    assert plain_types["inception3a"] == "Inception" and not any("Fused" in t for t in plain_types.values())
    assert all(row.calls == 1 for row in plain.rows if row.name.startswith("inception3a"))  # every module ran
    fused_rows = {row.name: row for row in fused.rows}
    assert fused_rows["inception3a"].layer_type == "FusedInception"
    stacked = fused_rows["inception3a.fused_1x1"]
    assert stacked.layer_type == "Fused1x1Conv" and stacked.calls == 1 and len(stacked.output_shapes) == 3
    assert fused_rows["inception3a.branch1.conv"].calls == 0  # its work is done by fused_1x1
    assert stacked.mult_adds == sum(plain.rows[[r.name for r in plain.rows].index(name)].mult_adds
                                    for name in ("inception3a.branch1.conv", "inception3a.branch2.0.conv",
                                                 "inception3a.branch3.0.conv"))
    assert (fused.total_mult_adds, fused.total_params) == (plain.total_mult_adds, plain.total_params)
