"""The gradient checker must not pass by accident: it rejects subtly wrong backwards, checks ops whose
output sum never changes, reports readably, handles parameters, and freezes state while it probes.

The checks of what gradcheck decides (and of fixed_state, which must freeze every device's generator) take the
``device`` fixture; the report's layout and the argument errors are checked on the CPU.
"""

from __future__ import annotations

import numpy
import pytest

import minigrad.functional as F
from minigrad import Function, Tensor, backend
from minigrad.gradcheck import GradcheckError, fixed_state, gradcheck


def leaf(*shape: int, seed: int = 0, device: str = "cpu") -> Tensor:
    return Tensor(numpy.random.default_rng(seed).standard_normal(shape), requires_grad=True, device=device)


class Cube(Function):
    """x^3 with a backward that can be broken on purpose (``mode``)."""

    mode = "right"

    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, grad):
        result = 3 * self.x**2 * grad
        if self.mode == "zeros":
            return result * 0
        if self.mode == "scaled":
            return result * 1.01
        if self.mode == "swapped":
            flat = result.reshape(-1).copy()
            flat[[0, 1]] = flat[[1, 0]]
            return flat.reshape(result.shape)
        return result


def cube(mode: str):
    return type(f"Cube_{mode}", (Cube,), {"mode": mode}).apply


def test_a_correct_backward_passes(device):
    report = gradcheck(cube("right"), [leaf(3, 4, device=device)])
    assert report.passed and report.rows[0].checked == 12 and report.max_rel_error < 1e-6


@pytest.mark.parametrize("mode", ["zeros", "scaled", "swapped"])
def test_rejects_broken_backwards(mode, device):
    with pytest.raises(GradcheckError) as failure:
        gradcheck(cube(mode), [leaf(3, 4, device=device)])
    row = failure.value.report.rows[0]
    assert not row.passed
    if mode == "swapped":  # the worst entry is one of the two swapped ones
        assert row.worst_index in {(0, 0), (0, 1)}


# ----- ops whose output sum never changes (as with batch norm) --------------------------------------


class Center(Function):
    """y = x - mean(x) along the last axis; sum(y) is 0 whatever x is, so sum() cannot check it."""

    broken = False

    def forward(self, x):
        return x - x.mean(axis=-1, keepdims=True)

    def backward(self, grad):
        if self.broken:
            return grad * 0  # the gradient of sum(y) really is 0, so this passes a sum()-based check
        return grad - grad.mean(axis=-1, keepdims=True)


class BrokenCenter(Center):
    broken = True


class Normalize(Function):
    """y = (x - mean) / std along the last axis, with its closed-form backward (broken: forgets a term)."""

    broken = False

    def forward(self, x):
        centered = x - x.mean(axis=-1, keepdims=True)
        self.inv_std = 1 / backend.xp_of(x).sqrt((centered**2).mean(axis=-1, keepdims=True) + 1e-5)
        self.y = centered * self.inv_std
        return self.y

    def backward(self, grad):
        # dx = inv_std * (g - mean(g) - y * mean(g * y))
        term = grad - grad.mean(axis=-1, keepdims=True)
        if not self.broken:
            term = term - self.y * (grad * self.y).mean(axis=-1, keepdims=True)
        return self.inv_std * term


class BrokenNormalize(Normalize):
    broken = True


def test_the_sum_of_a_centred_output_does_not_depend_on_the_input():
    # Why a sum()-based check would be useless here: its numeric gradient is 0 everywhere.
    x = leaf(2, 5).numpy()
    bumped = x.copy()
    bumped[0, 1] += 1e-3
    assert abs(Center().forward(x).sum() - Center().forward(bumped).sum()) < 1e-12


@pytest.mark.parametrize("good, broken", [(Center, BrokenCenter), (Normalize, BrokenNormalize)])
def test_input_independent_sum_is_still_checked(good, broken, device):
    assert gradcheck(good.apply, [leaf(3, 5, device=device)]).passed
    with pytest.raises(GradcheckError):
        gradcheck(broken.apply, [leaf(3, 5, device=device)])


def test_composed_centering_from_registry_ops_is_checked(device):
    assert gradcheck(lambda x: x - x.mean(dim=1, keepdim=True), [leaf(3, 5, device=device)]).passed


# ----- the report -----------------------------------------------------------------------------------


def test_report_prints_a_readable_table():
    report = gradcheck(lambda x, w: x @ w, [leaf(2, 3), leaf(3, 4, seed=1)])
    table = str(report)
    lines = table.splitlines()
    for column in ("input", "shape", "checked", "max abs err", "max rel err", "worst at", "ok"):
        assert column in lines[0]
    assert lines[2].startswith("input 0") and "(2, 3)" in lines[2] and lines[2].rstrip().endswith("yes")
    assert lines[3].startswith("input 1") and "(3, 4)" in lines[3]
    assert len(report.rows) == 2 and [row.checked for row in report.rows] == [6, 12]


def test_gradcheck_error_carries_the_table():
    with pytest.raises(GradcheckError) as failure:
        gradcheck(cube("scaled"), [leaf(2, 2)])
    message = str(failure.value)
    assert "gradient check failed" in message and str(failure.value.report) in message
    assert message.splitlines()[-1].rstrip().endswith("NO")
    assert isinstance(failure.value, AssertionError)


def test_raise_on_failure_false_returns_a_failing_report():
    report = gradcheck(cube("zeros"), [leaf(2, 3)], raise_on_failure=False)
    assert not report.passed and not report.rows[0].passed and report.rows[0].max_abs_error > 1e-3


def test_only_inputs_that_require_grad_are_checked_and_none_is_an_error():
    x, constant = leaf(2, 3), Tensor(numpy.ones((2, 3)))
    report = gradcheck(lambda a, b: a * b, [x, constant])
    assert [row.name for row in report.rows] == ["input 0"]
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(lambda a: a * 2, [constant])


def test_transposed_input_is_probed(device):
    values = backend.to_device(numpy.random.default_rng(0).standard_normal((4, 3)), device)
    x = Tensor(values.T, requires_grad=True)  # not C-ordered
    assert gradcheck(lambda a: a * a, [x]).passed


# ----- parameters, sampling -------------------------------------------------------------------------


def test_params_are_checked_and_restored(device):
    weight = Tensor(numpy.random.default_rng(1).standard_normal((3, 4)).astype(numpy.float32), requires_grad=True,
                    device=device)
    weight.name = "weight"
    original_array = weight.data
    saved_values = weight.numpy()
    weight.grad = Tensor(numpy.full((3, 4), 7.0, dtype=numpy.float32), device=device)
    report = gradcheck(lambda x: F.linear(x, weight), [leaf(2, 4, device=device)], params=[weight])
    assert [row.name for row in report.rows] == ["input 0", "weight"] and report.rows[1].checked == 12
    assert weight.data is original_array and weight.dtype == numpy.float32
    numpy.testing.assert_array_equal(weight.numpy(), saved_values)
    numpy.testing.assert_array_equal(weight.grad.numpy(), numpy.full((3, 4), 7.0))  # the user's grad is kept


def test_a_broken_parameter_gradient_fails(device):
    class ScaleBroken(Function):
        def forward(self, x, w):
            self.x, self.w = x, w
            return x * w

        def backward(self, grad):
            return grad * self.w, grad * self.x * 0.5  # the weight's gradient is halved

    weight = leaf(3, seed=1, device=device)
    report = gradcheck(lambda x: ScaleBroken.apply(x, weight), [leaf(3, device=device)], params=[weight],
                       raise_on_failure=False)
    assert report.rows[0].passed and not report.rows[1].passed


def test_max_checks_per_input_samples_a_subset(device):
    report = gradcheck(cube("right"), [leaf(10, 10, device=device)], max_checks_per_input=7)
    assert report.rows[0].checked == 7
    with pytest.raises(GradcheckError):  # an entirely wrong backward is caught by any sample
        gradcheck(cube("scaled"), [leaf(10, 10, device=device)], max_checks_per_input=7)


# ----- fixed_state: buffers and random generators ---------------------------------------------------


class RunningMean:
    """A fake module: its buffer is updated by every forward call, as BatchNorm's running mean is."""

    def __init__(self, device: str = "cpu") -> None:
        self.running_mean = Tensor(numpy.zeros(3), device=device)

    def buffers(self):
        return [self.running_mean]

    def __call__(self, x: Tensor) -> Tensor:
        out = x * Tensor(self.running_mean.data.copy())  # the output depends on the buffer...
        self.running_mean.data[...] = 0.5 * self.running_mean.data + 0.5 * x.data.mean(axis=0) + 1.0  # ...it moves
        return out


def test_fixed_state_freezes_buffers_and_restores_them(device):
    x = leaf(2, 3, device=device)
    assert not gradcheck(RunningMean(device), [x], raise_on_failure=False).passed  # drifting state: nonsense
    module = RunningMean(device)
    before = module.running_mean.numpy()
    with fixed_state(module):
        assert gradcheck(module, [x]).passed
    numpy.testing.assert_array_equal(module.running_mean.numpy(), before)


def random_mask(x: Tensor) -> Tensor:
    keep = backend.rng(x.device).random(x.shape) > 0.5  # the generator of x's device
    return x * Tensor(keep.astype(x.dtype))


def test_fixed_state_fixes_random_draws(device):
    x = leaf(3, 4, device=device)
    assert not gradcheck(random_mask, [x], raise_on_failure=False).passed  # a new mask each call
    with fixed_state():
        assert gradcheck(random_mask, [x]).passed


def test_fixed_state_with_a_generator_first_made_inside(monkeypatch, device):
    monkeypatch.setattr(backend, "_generators", {})  # a fresh process: rng(device) is made on first use
    with fixed_state():
        assert gradcheck(random_mask, [leaf(3, 4, device=device)]).passed


def test_fixed_state_restores_the_generator_afterwards(device):
    backend.manual_seed(11)
    fresh = numpy.random.default_rng(11) if device == "cpu" else backend.CudaGenerator(11)
    expected = backend.to_numpy(fresh.random(4))
    with fixed_state():
        backend.rng(device).random(100)
    numpy.testing.assert_array_equal(backend.to_numpy(backend.rng(device).random(4)), expected)
