"""Module and Parameter: registration by attribute, walking the tree, state dicts, modes, dtypes, hooks, repr.

Where PyTorch defines the answer (names, key order, which modules a walk visits), the test builds the
same model in torch and compares. The tests that move values (state dicts, casts, gradients, copies) take the
``device`` fixture; the ones about names, order, repr and errors run on the CPU only.
"""

from __future__ import annotations

import copy
import pickle

import numpy
import pytest
import torch

from minigrad import Tensor, nn
from minigrad.testing.tolerance import assert_close


class Block(nn.Module):
    """A hand-written module holding one of everything: parameter, buffer, sub-module, plain attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(numpy.full(3, 2.0, dtype=numpy.float32))
        self.register_buffer("count", Tensor(numpy.zeros(3, dtype=numpy.float32)))
        self.inner = nn.Linear(3, 2)
        self.label = "block"

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x * self.scale)


def small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


def small_torch_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 2),
    )


def nested_model(nn_module) -> object:
    """The same nested model from ``minigrad.nn`` or ``torch.nn`` (they share the constructor names)."""
    return nn_module.Sequential(
        nn_module.Sequential(nn_module.Conv2d(3, 4, 3, bias=False), nn_module.BatchNorm2d(4), nn_module.ReLU()),
        nn_module.MaxPool2d(2),
        nn_module.Sequential(nn_module.Flatten(), nn_module.Sequential(nn_module.Linear(4, 3), nn_module.ReLU())),
        nn_module.Linear(3, 2),
    )


def random_input(shape, dtype=numpy.float32, seed=0, device="cpu") -> Tensor:
    return Tensor(numpy.random.default_rng(seed).standard_normal(shape).astype(dtype), device=device)


def assert_on(model, device) -> None:
    """Every parameter, gradient and buffer of ``model`` lives on ``device``."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert tensor.device == device, f"{name} is on {tensor.device}, not {device}"
        assert tensor.grad is None or tensor.grad.device == device, f"gradient of {name} is on {tensor.grad.device}"


# ----- registration by attribute ---------------------------------------------------------------
def test_attributes_register_parameters_buffers_and_modules():
    block = Block()
    assert list(block._parameters) == ["scale"]
    assert list(block._buffers) == ["count"]
    assert list(block._modules) == ["inner"]
    assert block.label == "block" and "label" in block.__dict__
    assert [name for name, _ in block.named_parameters()] == ["scale", "inner.weight", "inner.bias"]
    assert [name for name, _ in block.named_buffers()] == ["count"]
    assert block.scale is block._parameters["scale"] and block.inner is block._modules["inner"]
    assert block.count is block._buffers["count"]
    assert list(block.state_dict()) == ["scale", "count", "inner.weight", "inner.bias"]


def test_parameter_requires_grad_and_repr():
    parameter = nn.Parameter(numpy.zeros((2, 3), dtype=numpy.float64))
    assert parameter.requires_grad and parameter.dtype == numpy.float64 and parameter.shape == (2, 3)
    assert not nn.Parameter(numpy.zeros(2), requires_grad=False).requires_grad
    assert repr(parameter).startswith("Parameter containing:\ntensor(")
    assert isinstance(parameter, Tensor)


def test_reassigning_moves_an_entry_between_tables():
    block = Block()
    block.scale = nn.Linear(1, 1)  # a parameter's name now holds a module
    assert "scale" not in block._parameters and block._modules["scale"] is block.scale
    # sub-modules keep their registration order: "inner" came first
    assert [name for name, _ in block.named_parameters()] == ["inner.weight", "inner.bias", "scale.weight",
                                                              "scale.bias"]
    block.inner = nn.Parameter(numpy.ones(2, dtype=numpy.float32))  # a module's name now holds a parameter
    assert "inner" not in block._modules and block._parameters["inner"] is block.inner
    assert [name for name, _ in block.named_parameters()] == ["inner", "scale.weight", "scale.bias"]


def test_assigning_none_to_a_parameter_drops_it_from_parameters_and_state():
    layer = nn.Linear(3, 2)
    layer.bias = None
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert list(layer.state_dict()) == ["weight"]
    x = random_input((4, 3))
    assert_close(layer(x).numpy(), x.numpy() @ layer.weight.numpy().T, "output", terms=3)


def test_buffers_take_new_values_and_none():
    block = Block()
    block.count = Tensor(numpy.arange(3, dtype=numpy.float32))
    assert block._buffers["count"] is block.count and "count" not in block.__dict__
    numpy.testing.assert_array_equal(block.state_dict()["count"], [0, 1, 2])
    block.count = None
    assert block.count is None and "count" not in block.state_dict()
    assert list(block.buffers()) == []


def test_deleting_an_attribute_unregisters_it():
    block = Block()
    del block.inner
    assert [name for name, _ in block.named_parameters()] == ["scale"]
    with pytest.raises(AttributeError, match="inner"):
        _ = block.inner
    del block.scale, block.count, block.label
    assert list(block.state_dict()) == [] and not hasattr(block, "label")


def test_setattr_before_super_init_gives_a_clear_error():
    class Forgetful(nn.Module):
        def __init__(self) -> None:
            self.weight = nn.Parameter(numpy.zeros(2))
            super().__init__()

    with pytest.raises(AttributeError, match=r"Forgetful: call super\(\)\.__init__\(\) before assigning 'weight'"):
        Forgetful()


def test_missing_attribute_error_names_the_class():
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'wieght'"):
        _ = nn.Linear(2, 2).wieght


# ----- walking the tree ------------------------------------------------------------------------
def test_named_parameters_order_names_and_shapes_match_torch():
    ours, theirs = nested_model(nn), nested_model(torch.nn)
    expected = [(name, tuple(p.shape)) for name, p in theirs.named_parameters()]
    assert [(name, p.shape) for name, p in ours.named_parameters()] == expected
    assert expected[0][0] == "0.0.weight" and expected[-1][0] == "3.bias"  # nested Sequentials: dotted names
    assert [p.shape for p in ours.parameters()] == [shape for _, shape in expected]
    assert all(p.requires_grad for p in ours.parameters())
    # recurse=False: only the module's own parameters
    assert list(ours.named_parameters(recurse=False)) == []
    assert [name for name, _ in ours[3].named_parameters(recurse=False)] == ["weight", "bias"]


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    torch_shared = torch.nn.Linear(3, 3)
    torch_model = torch.nn.Sequential(torch_shared, torch.nn.ReLU(), torch_shared)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in torch_model.named_parameters()]
    assert len(list(model.parameters())) == 2
    assert [n for n, _ in model.named_modules()] == [n for n, _ in torch_model.named_modules()]
    # one Parameter object held by two different layers
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    second.weight = first.weight
    pair = nn.Sequential(first, second)
    assert [name for name, _ in pair.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_a_shared_module_is_in_the_state_dict_under_each_name_like_torch():
    """PyTorch writes a module shared in two places under both keys (named_parameters lists it once), so a
    state dict moves between the two libraries either way, and loading needs both keys."""
    torch_shared = torch.nn.Linear(3, 3)
    torch_model = torch.nn.Sequential(torch_shared, torch.nn.ReLU(), torch_shared, torch.nn.BatchNorm1d(3))
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.BatchNorm1d(3))
    expected = {key: value.detach().numpy() for key, value in torch_model.state_dict().items()}
    assert list(model.state_dict()) == list(expected) == [
        "0.weight", "0.bias", "2.weight", "2.bias",
        "3.weight", "3.bias", "3.running_mean", "3.running_var", "3.num_batches_tracked"]
    assert model.load_state_dict(expected) == ([], [])
    for key, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, expected[key], err_msg=key)
    # and back: torch loads minigrad's state dict with strict=True, both names included
    loaded = torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    assert loaded.missing_keys == loaded.unexpected_keys == []
    without_second = {key: value for key, value in expected.items() if not key.startswith("2.")}
    with pytest.raises(KeyError, match=r"missing keys \['2.weight', '2.bias'\]"):
        model.load_state_dict(without_second)
    # the same Parameter object held by two layers is likewise saved under both of its names
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    second.weight = first.weight
    torch_first, torch_second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    torch_second.weight = torch_first.weight
    assert list(nn.Sequential(first, second).state_dict()) == list(
        torch.nn.Sequential(torch_first, torch_second).state_dict())


def test_buffers_match_torch_and_vanish_without_running_stats():
    ours, theirs = nested_model(nn), nested_model(torch.nn)
    expected = [(name, tuple(b.shape)) for name, b in theirs.named_buffers()]
    assert [(name, b.shape) for name, b in ours.named_buffers()] == expected
    assert [name for name, _ in expected] == ["0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked"]
    assert len(list(ours.buffers())) == 3
    untracked = nn.BatchNorm2d(4, track_running_stats=False)
    assert list(untracked.buffers()) == [] and list(untracked.state_dict()) == ["weight", "bias"]
    assert list(untracked.state_dict()) == list(torch.nn.BatchNorm2d(4, track_running_stats=False).state_dict())


def test_named_modules_and_children_match_torch():
    ours, theirs = nested_model(nn), nested_model(torch.nn)
    assert [(name, type(m).__name__) for name, m in ours.named_modules()] == [
        (name, type(m).__name__) for name, m in theirs.named_modules()
    ]
    assert [name for name, _ in ours.named_modules()][:4] == ["", "0", "0.0", "0.1"]
    assert [type(m).__name__ for m in ours.children()] == ["Sequential", "MaxPool2d", "Sequential", "Linear"]
    assert [name for name, _ in ours.named_children()] == ["0", "1", "2", "3"]
    assert list(ours.modules())[0] is ours and len(list(ours.modules())) == len(list(theirs.modules()))


def test_module_list_and_sequential_index_like_lists():
    layers = [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and model[0] is layers[0] and model[-1] is layers[2] and list(model) == layers
    x = random_input((5, 3))
    numpy.testing.assert_array_equal(model(x).numpy(), layers[2](layers[1](layers[0](x))).numpy())
    blocks = nn.ModuleList([nn.Linear(2, 2)]).append(nn.Linear(2, 3))
    assert len(blocks) == 2 and [name for name, _ in blocks.named_children()] == ["0", "1"]
    assert [name for name, _ in blocks.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]


# ----- state dicts -----------------------------------------------------------------------------
def test_state_dict_keys_match_torch_and_values_are_numpy_copies(device):
    model = small_model().to(device)
    assert list(model.state_dict()) == list(small_torch_model().state_dict().keys())
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "5.weight", "5.bias",
    ]
    state = model.state_dict()
    assert all(isinstance(value, numpy.ndarray) for value in state.values())
    assert state["0.weight"].dtype == numpy.float32 and state["0.weight"].shape == (4, 3, 3, 3)
    assert state["1.num_batches_tracked"].dtype == numpy.int64 and state["1.num_batches_tracked"].shape == ()
    before = model[0].weight.numpy()
    state["0.weight"][...] = 7.0  # editing the copy leaves the model alone ...
    numpy.testing.assert_array_equal(model[0].weight.numpy(), before)
    model[0].weight.data[...] = -1.0  # ... and changing the model leaves an earlier copy alone
    numpy.testing.assert_array_equal(state["0.weight"], 7.0)


@pytest.mark.parametrize("kind", ["numpy", "torch", "minigrad"])
def test_load_state_dict_accepts_numpy_torch_and_minigrad_values(kind, device):
    torch.manual_seed(0)
    torch_model = small_torch_model()
    torch_model(torch.randn(4, 3, 5, 5))  # one training step so running stats and the counter are not defaults
    reference = {key: value.detach().numpy().copy() for key, value in torch_model.state_dict().items()}
    if kind == "torch":
        state = torch_model.state_dict()
    elif kind == "numpy":
        state = {key: value.astype(numpy.float64) if value.dtype.kind == "f" else value
                 for key, value in reference.items()}
    else:
        state = {key: Tensor(value) for key, value in reference.items()}
    model = small_model().to(device)
    assert model.load_state_dict(state) == ([], [])
    assert_on(model, device)  # values are copied onto the model's device, whatever the source
    loaded = model.state_dict()
    for key, expected in reference.items():
        assert loaded[key].dtype == expected.dtype, key  # float64 values are cast to the model's float32
        numpy.testing.assert_array_equal(loaded[key], expected.astype(loaded[key].dtype), err_msg=key)
    assert loaded["1.num_batches_tracked"] == 1


def test_load_state_dict_keeps_a_double_models_dtype():
    model = small_model().double()
    model.load_state_dict(small_torch_model().state_dict())
    assert model[0].weight.dtype == numpy.float64 and model[1].running_var.dtype == numpy.float64
    assert model[1].num_batches_tracked.dtype == numpy.int64


def test_load_state_dict_strict_lists_missing_and_unexpected_keys():
    model = small_model()
    state = model.state_dict()
    del state["0.bias"], state["1.running_var"]
    state["extra.weight"] = numpy.zeros(3, dtype=numpy.float32)
    with pytest.raises(KeyError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    for fragment in ("missing keys", "'0.bias'", "'1.running_var'", "unexpected keys", "'extra.weight'",
                     "strict=False"):
        assert fragment in message, (fragment, message)


def test_load_state_dict_not_strict_returns_the_keys_and_loads_the_rest():
    source, target = small_model(), small_model()
    state = source.state_dict()
    del state["5.bias"]
    state["head.weight"] = numpy.zeros(2, dtype=numpy.float32)
    bias_before = target[5].bias.numpy()
    missing, unexpected = target.load_state_dict(state, strict=False)
    assert (missing, unexpected) == (["5.bias"], ["head.weight"])
    numpy.testing.assert_array_equal(target[0].weight.numpy(), source[0].weight.numpy())
    numpy.testing.assert_array_equal(target[5].weight.numpy(), source[5].weight.numpy())
    numpy.testing.assert_array_equal(target[5].bias.numpy(), bias_before)


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_shape_mismatch_names_the_key_and_both_shapes(strict):
    model = small_model()
    state = model.state_dict()
    state["5.weight"] = numpy.zeros((3, 4), dtype=numpy.float32)
    with pytest.raises(ValueError, match=r"5\.weight: checkpoint \(3, 4\) vs model \(2, 4\)"):
        model.load_state_dict(state, strict=strict)


# ----- modes, dtypes, gradients --------------------------------------------------------------
def test_train_and_eval_reach_every_submodule():
    model = nested_model(nn)
    assert model.eval() is model
    assert [m.training for m in model.modules()] == [False] * len(list(model.modules()))
    model[2].train()  # a sub-tree only
    assert [name for name, m in model.named_modules() if m.training] == ["2", "2.0", "2.1", "2.1.0", "2.1.1"]
    assert model.train() is model and all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_double_and_float_cast_floating_parameters_and_buffers(device):
    model = small_model().to(device)
    assert model.double() is model
    assert_on(model, device)
    assert {t.dtype for t in model.parameters()} == {numpy.dtype(numpy.float64)}
    assert model[1].running_mean.dtype == numpy.float64 and model[1].num_batches_tracked.dtype == numpy.int64
    out = model(random_input((2, 3, 5, 5), numpy.float64, device=device))
    assert out.dtype == numpy.float64 and out.device == device
    model.to(dtype=numpy.float32)
    assert {t.dtype for t in [*model.parameters(), model[1].running_var]} == {numpy.dtype(numpy.float32)}
    assert model.double().float()[5].weight.dtype == numpy.float32


def test_zero_grad_clears_every_parameter_gradient(device):
    model = small_model().to(device)
    model(random_input((2, 3, 5, 5), device=device)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_is_nested_like_torch():
    def build(nn_module):
        return nn_module.Sequential(
            nn_module.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
            nn_module.Sequential(nn_module.ReLU(), nn_module.MaxPool2d(2), nn_module.AvgPool2d(3, stride=1)),
            nn_module.Conv2d(8, 8, (1, 3), padding="same", groups=4),
            nn_module.AdaptiveAvgPool2d(1), nn_module.Flatten(), nn_module.Identity(), nn_module.Linear(8, 2),
        )

    assert repr(build(nn)) == repr(build(torch.nn))
    assert repr(build(nn)).splitlines()[3] == "    (0): ReLU()"  # nested children indent two more spaces
    assert repr(nn.BatchNorm2d(4)).startswith("BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True")
    assert repr(nn.Dropout(0.3)).startswith("Dropout(p=0.3")
    assert repr(Block()) == "Block(\n  (inner): Linear(in_features=3, out_features=2, bias=True)\n)"


# ----- hooks and apply -------------------------------------------------------------------------
def test_forward_hooks_see_inputs_and_outputs_and_can_be_removed():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    calls = []
    remove_first = model[0].register_forward_hook(lambda m, inputs, out: calls.append(("linear", m, inputs, out)))
    model[1].register_forward_hook(lambda m, inputs, out: calls.append(("relu", m, inputs, out)))
    x = random_input((2, 3))
    out = model(x)
    assert [c[0] for c in calls] == ["linear", "relu"]
    _, module, inputs, linear_out = calls[0]
    assert module is model[0] and inputs[0] is x and calls[1][2][0] is linear_out and calls[1][3] is out
    remove_first()
    remove_first()  # removing twice is harmless
    calls.clear()
    model(x)
    assert [c[0] for c in calls] == ["relu"]


def test_apply_reaches_every_module_and_can_initialise():
    model = nested_model(nn)

    def zero_linear_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)

    assert model.apply(zero_linear_weights) is model
    assert not model[2][1][0].weight.numpy().any() and not model[3].weight.numpy().any()
    assert model[0][0].weight.numpy().any()
    visited = []
    model.apply(visited.append)
    assert len(visited) == len(list(model.modules())) and visited[-1] is model
    # every module comes after all of its children
    for module in visited:
        assert all(visited.index(child) < visited.index(module) for child in module.children())


def test_a_plain_attribute_replaced_by_a_parameter_or_module_is_not_shadowed():
    block = Block()
    block.label = nn.ReLU()  # was a plain string: the module must win on lookup, as in torch
    assert "label" not in block.__dict__ and block.label is block._modules["label"]
    block.threshold = 0.5
    block.threshold = nn.Parameter(numpy.ones(2, dtype=numpy.float32))
    assert isinstance(block.threshold, nn.Parameter) and "threshold" in dict(block.named_parameters())
    block.threshold = None  # None keeps the name registered as an absent parameter (like bias=False)
    assert block.threshold is None and "threshold" not in block.state_dict()


def test_assigning_a_plain_value_over_a_parameter_or_module_is_a_type_error():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"Linear: cannot assign .*Tensor.* to parameter 'weight'.*nn\.Parameter"):
        layer.weight = Tensor(numpy.zeros((2, 3), dtype=numpy.float32))
    assert "weight" in layer.state_dict()  # still registered, not silently dropped from training
    model = nn.Sequential(nn.ReLU())
    model.head = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"Sequential: cannot assign .*str.* to sub-module 'head'"):
        model.head = "linear"
    block = Block()
    with pytest.raises(TypeError, match=r"Block: cannot assign .*int.* to buffer 'count'"):
        block.count = 3


def test_apply_visits_modules_in_torchs_order():
    """Children first, in registration order, then the parent (so seeded custom inits run layer by layer)."""
    ours, theirs = [], []
    nested_model(nn).apply(lambda module: ours.append(type(module).__name__))
    nested_model(torch.nn).apply(lambda module: theirs.append(type(module).__name__))
    assert ours == theirs


def test_to_keeps_gradients_and_casts_them_with_their_parameters(device):
    model = small_model()
    model(random_input((2, 3, 5, 5))).sum().backward()
    grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    assert model.to(device) is model  # on "cpu" nothing moves; elsewhere the gradients travel along
    assert_on(model, device)
    model.double()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.dtype == numpy.float64, name
        numpy.testing.assert_array_equal(parameter.grad.numpy(), grads[name], err_msg=name)
    model(random_input((2, 3, 5, 5), numpy.float64, device=device)).sum().backward()  # accumulates in float64
    assert model[0].weight.grad.dtype == numpy.float64
    assert_on(model, device)


def test_batchnorm_repr_tells_whether_running_statistics_are_tracked():
    """Two BatchNorms that normalise differently in eval mode must not print the same."""
    assert repr(nn.BatchNorm2d(4)) == "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert repr(nn.BatchNorm1d(3, momentum=None, affine=False, track_running_stats=False)) == (
        "BatchNorm1d(3, eps=1e-05, momentum=None, affine=False, track_running_stats=False)")


def test_deepcopy_and_pickle_give_an_independent_model_with_the_same_state(device):
    model = small_model().to(device)
    model(random_input((2, 3, 5, 5), device=device))  # move the running statistics off their defaults
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert_on(twin, device)
        state, twin_state = model.state_dict(), twin.state_dict()
        assert list(twin_state) == list(state)
        for key in state:
            numpy.testing.assert_array_equal(twin_state[key], state[key], err_msg=key)
        twin[0].weight.data[...] = 0.0
        assert model[0].weight.numpy().any() and twin[0].weight is not model[0].weight


def test_load_state_dict_and_init_count_as_in_place_changes():
    layer = nn.Linear(3, 2)
    before = layer.weight.version  # its initialisation filled it once
    nn.init.zeros_(layer.weight)
    assert layer.weight.version == before + 1
    layer.load_state_dict(nn.Linear(3, 2).state_dict())
    assert layer.weight.version == before + 2 and layer.bias.version >= 1
