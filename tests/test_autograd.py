"""The engine: gradient accumulation, graph freeing, retain_graph, no_grad, deep graphs, multi-output Functions.

The tests of what backward computes (accumulation, retained graphs, multi-output Functions, retain_grad, integer
inputs) take the ``device`` fixture; graph bookkeeping, error messages and no_grad are checked on the CPU.
"""

from __future__ import annotations

import re
import weakref

import numpy
import pytest

import minigrad
import minigrad.functional as F
from minigrad import Function, Tensor, autograd, backend, nn, no_grad, optim
from minigrad.autograd import topological_order


def leaf(*shape: int, seed: int = 0, device: str = "cpu") -> Tensor:
    return Tensor(numpy.random.default_rng(seed).standard_normal(shape), requires_grad=True, device=device)


# ----- accumulation ---------------------------------------------------------------------------------


def test_tensor_used_twice_accumulates(device):
    x = leaf(3, 4, device=device)
    upstream = numpy.random.default_rng(1).standard_normal((3, 4))
    (x * x).backward(upstream)
    numpy.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() * upstream)
    assert x.grad.device == device
    y = leaf(3, 4, seed=2, device=device)
    (y + y).backward(upstream)
    numpy.testing.assert_allclose(y.grad.numpy(), 2 * upstream)


def test_diamond_graph_adds_both_paths(device):
    # x -> a = exp(x), b = x * 3 -> out = a * b; d out/dx = exp(x) * 3x + exp(x) * 3
    x = leaf(5, device=device)
    a, b = x.exp(), x * 3.0
    out = a * b
    upstream = numpy.random.default_rng(1).standard_normal(5)
    out.backward(upstream)
    expected = (numpy.exp(x.numpy()) * 3 * x.numpy() + numpy.exp(x.numpy()) * 3) * upstream
    numpy.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_two_backward_calls_accumulate_into_grad(device):
    x = leaf(4, device=device)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    numpy.testing.assert_allclose(x.grad.numpy(), numpy.full(4, 5.0))


def test_grad_is_never_the_upstream_array_itself():
    x = leaf(3)
    upstream = numpy.ones(3)
    (x + 0.0).backward(upstream)
    x.grad.data += 1  # must not write into the caller's upstream array
    numpy.testing.assert_array_equal(upstream, numpy.ones(3))


# ----- retain_graph and freeing ---------------------------------------------------------------------


def test_second_backward_without_retain_graph_raises():
    x = leaf(3)
    y = (x.exp() * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward_that_doubles_grad(device):
    x = leaf(3, device=device)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    once = x.grad.numpy()
    y.backward()
    numpy.testing.assert_allclose(x.grad.numpy(), 2 * once)


def test_graph_is_freed_after_backward():
    x = leaf(3, 4)
    hidden = F.max(x, dim=1)
    relu_fn = hidden.creator
    mask = weakref.ref(relu_fn.is_max)  # an array only the Max Function holds
    loss = hidden.sum()
    loss.backward()
    assert relu_fn.freed and relu_fn.inputs == () and mask() is None
    assert loss.creator.freed


def test_retain_graph_keeps_saved_arrays():
    x = leaf(3, 4)
    hidden = F.max(x, dim=1)
    mask = weakref.ref(hidden.creator.is_max)
    hidden.sum().backward(retain_graph=True)
    assert mask() is not None and not getattr(hidden.creator, "freed", False)


# ----- errors ---------------------------------------------------------------------------------------


def test_backward_on_non_scalar_without_grad_names_the_shape():
    y = leaf(2, 3) * 2.0
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\); pass grad="):
        y.backward()


def test_backward_with_wrong_shape_grad_raises():
    y = leaf(2, 3) * 2.0
    with pytest.raises(RuntimeError, match=r"grad has shape \(3, 2\) but the tensor has shape \(2, 3\)"):
        y.backward(numpy.ones((3, 2)))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0, 2.0]) * 2.0).sum().backward()


def test_float64_upstream_tensor_for_float32_root_keeps_float32(device):
    x = Tensor(numpy.ones(3, dtype=numpy.float32), requires_grad=True, device=device)
    (x * 2.0).backward(Tensor(numpy.ones(3), device=device))  # a float64 Tensor as grad
    assert x.grad.dtype == numpy.float32 and x.grad.device == device


def test_mixing_devices_raises():
    class FakeCudaTensor(Tensor):  # there is no GPU here: pretend one input lives on it
        @property
        def device(self) -> str:
            return "cuda"

    cpu = Tensor(numpy.ones((2, 3), dtype=numpy.float32))
    gpu = FakeCudaTensor(numpy.ones((2, 3), dtype=numpy.float32))
    expected = r"add: inputs live on different devices \(\(2, 3\) on cpu, \(2, 3\) on cuda\).*\.to\('cpu'\)"
    with pytest.raises(RuntimeError, match=expected):
        F.add(cpu, gpu)


def test_backward_returning_too_few_gradients_raises():
    class ForgetsOne(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, grad):
            return grad  # should be (grad, grad)

    a, b = leaf(2), leaf(2, seed=1)
    with pytest.raises(RuntimeError, match="returned 1 gradients for 2 inputs"):
        ForgetsOne.apply(a, b).sum().backward()


def test_backward_returning_wrong_shape_raises():
    class WrongShape(Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad.sum(axis=0)

    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape \(4,\) for an input "
                                           r"of shape \(3, 4\)"):
        WrongShape.apply(leaf(3, 4)).sum().backward()


# ----- no_grad --------------------------------------------------------------------------------------


def test_no_grad_context_records_nothing():
    x = leaf(3)
    with no_grad():
        assert not minigrad.is_grad_enabled()
        y = x * 2.0 + 1.0
    assert minigrad.is_grad_enabled()
    assert not y.requires_grad and y.creator is None


def test_no_grad_decorator_and_nesting():
    @no_grad()
    def evaluate(x):
        assert not minigrad.is_grad_enabled()
        return x.exp()

    x = leaf(3)
    y = evaluate(x)
    assert not y.requires_grad and minigrad.is_grad_enabled()
    with no_grad():
        with no_grad():
            pass
        assert not minigrad.is_grad_enabled()
    assert minigrad.is_grad_enabled()


def test_no_grad_decorator_on_a_recursive_function_restores_state(monkeypatch):
    monkeypatch.setattr(autograd, "_grad_enabled", True)  # a failure here must not leak into later tests

    @no_grad()
    def depth(n):  # enters the same no_grad object again before leaving it
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert minigrad.is_grad_enabled()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            raise ZeroDivisionError
    assert minigrad.is_grad_enabled()

    @no_grad()
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert minigrad.is_grad_enabled()


# ----- deep graphs and the topological order --------------------------------------------------------


def test_deep_graph_backward_without_recursion_error():
    x = Tensor(numpy.ones(2, dtype=numpy.float32), requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y + x
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), [20_001.0, 20_001.0])


class Record(Function):
    """Sums its inputs; stands in for any op in a hand-built graph (on any device: it only adds arrays)."""

    def forward(self, *arrays):
        return sum(arrays[1:], arrays[0])

    def backward(self, grad):
        return tuple(grad for _ in self.inputs)


def test_topological_order_on_a_hand_built_dag(device):
    #      x
    #     / \
    #    a   b = R(x, a)
    #     \ / \
    #      c   d = R(b)
    #       \ /
    #        e
    x = leaf(2, device=device)
    a = Record.apply(x)
    b = Record.apply(x, a)
    c = Record.apply(a, b)
    d = Record.apply(b)
    e = Record.apply(c, d)
    order = topological_order(e.creator)
    position = {id(fn): i for i, fn in enumerate(order)}
    fns = {name: t.creator for name, t in zip("abcde", (a, b, c, d, e))}
    assert len(order) == 5 and {id(f) for f in order} == {id(f) for f in fns.values()}
    for consumer, used in [("b", "a"), ("c", "a"), ("c", "b"), ("d", "b"), ("e", "c"), ("e", "d")]:
        assert position[id(fns[consumer])] < position[id(fns[used])], f"{consumer} must come before {used}"
    e.backward(numpy.ones(2))
    # paths from e to x: e-c-a-x, e-c-b-x, e-c-b-a-x, e-d-b-x, e-d-b-a-x
    numpy.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])


# ----- multi-output Functions, retain_grad, integer tensors -----------------------------------------


class SplitHalves(Function):
    """Two outputs: the first and the second half of the last axis, times 2 and 3."""

    def forward(self, x):
        half = x.shape[-1] // 2
        return x[..., :half] * 2, x[..., half:] * 3

    def backward(self, grad_first, grad_second):
        return backend.xp_of(grad_first).concatenate([grad_first * 2, grad_second * 3], axis=-1)


def test_multi_output_function_with_an_unused_output(device):
    x = leaf(3, 4, device=device)
    first, second = SplitHalves.apply(x)
    upstream = numpy.random.default_rng(1).standard_normal((3, 2))
    first.backward(upstream)  # `second` feeds nothing: it must count as a zero gradient
    expected = numpy.concatenate([2 * upstream, numpy.zeros((3, 2))], axis=-1)
    numpy.testing.assert_allclose(x.grad.numpy(), expected)


def test_multi_output_function_both_outputs_used(device):
    x = leaf(3, 4, device=device)
    first, second = SplitHalves.apply(x)
    (first * second).sum().backward()  # = sum of 6 x[:, j] x[:, j + 2]
    values = x.numpy()
    expected = numpy.concatenate([6 * values[:, 2:], 6 * values[:, :2]], axis=-1)
    numpy.testing.assert_allclose(x.grad.numpy(), expected)


def test_multi_output_function_with_an_integer_output(device):
    class MaxWithIndex(Function):
        def forward(self, x):
            self.index = x.argmax(axis=1)
            return x.max(axis=1), self.index

        def backward(self, grad, grad_index):
            xp = backend.xp_of(grad)
            out = xp.zeros((len(grad), 4))
            out[xp.arange(len(grad)), self.index] = grad
            return out

    x = leaf(3, 4, device=device)
    values, index = MaxWithIndex.apply(x)
    assert values.requires_grad and not index.requires_grad and index.dtype == numpy.int64
    values.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy().argmax(axis=1), index.numpy())


def test_retain_grad_on_a_non_leaf(device):
    x = leaf(3, device=device)
    hidden = x * 2.0
    hidden.retain_grad()
    other = x * 5.0  # not retained
    (hidden * hidden + other).sum().backward()
    numpy.testing.assert_allclose(hidden.grad.numpy(), 2 * hidden.numpy())
    assert other.grad is None
    numpy.testing.assert_allclose(x.grad.numpy(), 8 * x.numpy() + 5)


def test_integer_tensors_get_no_gradient(device):
    x = leaf(4, 3, device=device)
    index = Tensor([2, 0, 2], device=device)
    scale = Tensor([1, 2, 3], device=device)
    (x[index] * scale).sum().backward()
    assert index.grad is None and scale.grad is None and not index.requires_grad
    expected = numpy.zeros((4, 3))
    expected[2] += [1, 2, 3]
    expected[0] += [1, 2, 3]
    expected[2] += [1, 2, 3]
    numpy.testing.assert_array_equal(x.grad.numpy(), expected)


def test_backward_on_a_leaf_sets_its_grad(device):
    x = leaf(3, device=device)
    x.backward(numpy.arange(3.0))
    numpy.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 2.0])


# ----- in-place changes: versions and saved tensors ---------------------------------------------------
# Each scenario runs in minigrad and in torch on the same values: `relu_` is the in-place ReLU (torch.relu_,
# or F.relu(x, inplace=True)), and every scenario uses what it returns, as torch code may use either.
def _exp_then_relu_(x, w, relu_):  # exp saves its output, which relu_ overwrites: torch refuses
    return relu_(x.exp()).sum()


def _view_of_tanh_relu_(x, w, relu_):  # the same through a view: the view shares its base's counter
    return relu_(x.tanh().reshape(-1)).sum()


def _detached_exp_relu_(x, w, relu_):  # detach() shares the array, and so the counter
    y = x.exp()
    loss = y.sum()
    relu_(y.detach())
    return loss


def _saved_by_mul_(x, w, relu_):  # a * w saved a for w's gradient
    a = x * 1.0
    b = a * w
    return b.sum() + relu_(a).sum()


def _sigmoid_then_relu_(x, w, relu_):  # sigmoid saves its output, not its input: legal
    y = x * w
    s = y.sigmoid()
    return (s * s).sum() + relu_(y).sum()


def _add_then_relu_(x, w, relu_):  # add saves nothing: legal, and both paths get their gradient
    a = x * w
    b = a + 1.0
    return (b * b).sum() + relu_(a).sum()


IN_PLACE_SCENARIOS = {
    _exp_then_relu_: "exp's output 0, of shape (3, 4), is at version 1; expected version 0",
    _view_of_tanh_relu_: "tanh's output 0, of shape (3, 4), is at version 1; expected version 0",
    _detached_exp_relu_: "exp's output 0, of shape (3, 4), is at version 1; expected version 0",
    _saved_by_mul_: "mul's input 0, of shape (3, 4), is at version 1; expected version 0",
    _sigmoid_then_relu_: None,
    _add_then_relu_: None,
}


@pytest.mark.parametrize("scenario", IN_PLACE_SCENARIOS, ids=lambda f: f.__name__.strip("_"))
def test_an_in_place_change_of_a_saved_tensor_raises_where_torch_does(scenario, torch, device):
    rng = numpy.random.default_rng(0)
    x_values, w_values = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    x, w = Tensor(x_values, requires_grad=True, device=device), Tensor(w_values, requires_grad=True, device=device)
    tx, tw = torch.tensor(x_values, requires_grad=True), torch.tensor(w_values, requires_grad=True)
    message = IN_PLACE_SCENARIOS[scenario]
    if message is None:
        scenario(x, w, lambda a: F.relu(a, inplace=True)).backward()
        scenario(tx, tw, torch.relu_).backward()
        numpy.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-13, atol=1e-13)
        numpy.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-13, atol=1e-13)
        return
    loss = scenario(x, w, lambda a: F.relu(a, inplace=True))
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: " + re.escape(message)):
        loss.backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        scenario(tx, tw, torch.relu_).backward()


def test_versions_count_every_in_place_change(device):
    x = leaf(3, 4, device=device)
    y = x * 2.0
    assert x.version == 0 and y.version == 0
    view = y.reshape(12)
    out = F.relu(view, inplace=True)
    assert out.data is view.data and out.version == view.version == y.version == 1  # one array, one count
    assert F.relu(x.detach(), inplace=True).version == x.version == 1
    assert (x * 1.0).version == 0  # a new array starts at 0


def test_an_optimizer_step_between_forward_and_backward_raises_as_in_torch(torch):
    layer = nn.Linear(4, 3)
    # The input wants a gradient, which needs the weight: so torch saves the weight too.
    loss = layer(Tensor(numpy.ones((2, 4), dtype=numpy.float32), requires_grad=True)).sum()
    optimizer = optim.SGD(layer.parameters(), lr=0.1)
    for parameter in layer.parameters():
        parameter.grad = Tensor(numpy.ones(parameter.shape, dtype=numpy.float32))
    optimizer.step()  # updates layer.weight in place, as torch's step does
    # version 1 when saved: nn.init filled the weight in place once (torch counts that too)
    with pytest.raises(RuntimeError, match=r"linear: one of the variables .* linear's input 1, of shape \(3, 4\), "
                                           r"is at version 2; expected version 1"):
        loss.backward()
    twin = torch.nn.Linear(4, 3)
    twin_loss = twin(torch.ones(2, 4, requires_grad=True)).sum()
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    for parameter in twin.parameters():
        parameter.grad = torch.ones_like(parameter)
    twin_optimizer.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        twin_loss.backward()


def test_the_tensor_an_in_place_op_overwrote_cannot_carry_a_gradient_any_more():
    # minigrad's in-place op returns a new tensor for the new values (torch would move x's history onto
    # the op instead); the old tensor's graph describes values it no longer holds, so using it raises.
    x = leaf(3, 4)
    hidden = x * 2.0
    F.relu(hidden, inplace=True)
    with pytest.raises(RuntimeError, match=r"mul: input 0 \(shape \(3, 4\)\) was overwritten by an in-place "
                                           r"operation after mul made it .* use the tensor the in-place op returned"):
        hidden * 3.0
    with no_grad():  # its values are fine to read without a gradient
        numpy.testing.assert_array_equal((hidden * 1.0).numpy(), numpy.maximum(2 * x.numpy(), 0))


def test_the_version_check_catches_a_planted_missing_bump(monkeypatch):
    # Without the counter moving, exp's backward would silently use the overwritten values: the check
    # is what stands between an in-place op and a wrong gradient.
    x = Tensor(numpy.array([-1.0, 0.5, 2.0]), requires_grad=True)
    monkeypatch.setattr(Tensor, "bump_version", lambda self: None)
    y = x.tanh()
    loss = y.sum()
    F.relu(y, inplace=True)  # tanh(-1) < 0 becomes 0, which tanh's backward (1 - y^2) then reads
    loss.backward()  # no error: the planted bug goes unseen ...
    assert not numpy.allclose(x.grad.numpy(), 1 - numpy.tanh(x.numpy()) ** 2)  # ... and the gradient is wrong
    monkeypatch.undo()
    x.grad = None
    y = x.tanh()
    loss = y.sum()
    F.relu(y, inplace=True)
    with pytest.raises(RuntimeError, match="tanh's output 0, of shape"):  # with the counter: caught
        loss.backward()
