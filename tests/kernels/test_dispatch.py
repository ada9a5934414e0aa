"""The dispatch point (minigrad/kernels/dispatch.py): MINIGRAD_KERNELS and kernels.use choose the reference or
the fast kernels for the whole library; a backward follows the implementation of its forward; every op of
minigrad.functional goes through it."""

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import kernels
from minigrad.kernels import avg_pool, batchnorm, conv, dispatch, max_pool
from minigrad.kernels.fast import avg_pool as fast_avg_pool
from minigrad.kernels.fast import batchnorm as fast_batchnorm
from minigrad.kernels.fast import conv as fast_conv
from minigrad.kernels.fast import max_pool as fast_max_pool

rng = np.random.default_rng(0)


@pytest.fixture
def no_choice_made(monkeypatch):
    """No use() in force and no MINIGRAD_KERNELS: the test sets what it needs (all undone afterwards)."""
    monkeypatch.setattr(dispatch, "_chosen", None)
    monkeypatch.delenv(dispatch.ENVIRONMENT_SWITCH, raising=False)


def test_fast_is_the_default_and_the_environment_chooses(no_choice_made, monkeypatch):
    assert kernels.mode() == "fast"
    monkeypatch.setenv(dispatch.ENVIRONMENT_SWITCH, "reference")
    assert kernels.mode() == "reference"
    monkeypatch.setenv(dispatch.ENVIRONMENT_SWITCH, "")
    assert kernels.mode() == "fast"
    monkeypatch.setenv(dispatch.ENVIRONMENT_SWITCH, "slow")
    with pytest.raises(ValueError, match=r"MINIGRAD_KERNELS must be one of \('fast', 'reference'\), got 'slow'"):
        kernels.mode()


def test_use_sets_the_mode_and_as_a_context_manager_restores_it(no_choice_made, monkeypatch):
    monkeypatch.setenv(dispatch.ENVIRONMENT_SWITCH, "reference")
    with kernels.use("fast"):
        assert kernels.mode() == "fast"  # use() wins over the environment
        with kernels.use("reference"):
            assert kernels.mode() == "reference"
        assert kernels.mode() == "fast"
    assert kernels.mode() == "reference"
    kernels.use("fast")
    assert kernels.mode() == "fast"
    with pytest.raises(ValueError, match=r"minigrad.kernels.use: the mode must be one of .* got 'quick'"):
        kernels.use("quick")
    assert kernels.mode() == "fast"  # a refused mode changes nothing


def calls_of(monkeypatch, *modules):
    """Wrap every *_forward / *_backward of ``modules``: the returned list records the calls by name."""
    calls = []
    for module in modules:
        for name in [n for n in vars(module) if n.endswith(("_forward", "_backward"))]:
            original = getattr(module, name)

            def recorded(*args, _original=original, _label=f"{module.__name__}.{name}", **kwargs):
                calls.append(_label)
                return _original(*args, **kwargs)

            monkeypatch.setattr(module, name, recorded)
    return calls


def network_step():
    """A forward and backward through every op that has two implementations (the same inputs every call)."""
    inputs = np.random.default_rng(1)
    x = minigrad.Tensor(inputs.standard_normal((2, 3, 8, 8)), requires_grad=True)
    weight = minigrad.Tensor(inputs.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, weight, padding=1)
    y = F.batch_norm(y, None, None, training=True)
    y = F.max_pool2d(y, 3, 1, 1) + F.avg_pool2d(y, 3, 1, 1)
    F.adaptive_avg_pool2d(y, 3).sum().backward()
    return x.grad.numpy()


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_the_functional_ops_run_the_chosen_kernels_forward_and_backward(monkeypatch, mode):
    reference_calls = calls_of(monkeypatch, conv, batchnorm, max_pool, avg_pool)
    fast_calls = calls_of(monkeypatch, fast_conv, fast_batchnorm, fast_max_pool, fast_avg_pool)
    with kernels.use(mode):
        network_step()
    chosen, other = (reference_calls, fast_calls) if mode == "reference" else (fast_calls, reference_calls)
    assert not other, other
    assert len(chosen) == 10 and len(set(chosen)) == 10, chosen  # five ops, each forward and backward


def test_both_modes_give_the_same_gradients():
    with kernels.use("reference"):
        reference = network_step()
    with kernels.use("fast"):
        fast = network_step()
    np.testing.assert_allclose(fast, reference, rtol=1e-12, atol=1e-12)


def test_a_backward_runs_the_implementation_of_its_forward():
    """Switching modes between a forward and its backward is safe: the context says which kernel made it."""
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    grad_out = rng.standard_normal((2, 4, 6, 6))
    cases = [
        (lambda: dispatch.conv2d_forward(x, weight, None, 1, 1), dispatch.conv2d_backward, fast_conv.ConvContext,
         conv.ConvContext, grad_out),
        (lambda: dispatch.max_pool2d_forward(x, 3, 1, 1), dispatch.max_pool2d_backward, fast_max_pool.MaxPoolContext,
         max_pool.MaxPoolContext, grad_out[:, :3]),
        (lambda: dispatch.avg_pool2d_forward(x, 3, 1, 1), dispatch.avg_pool2d_backward, fast_avg_pool.AvgPoolContext,
         avg_pool.AvgPoolContext, grad_out[:, :3]),
        (lambda: dispatch.adaptive_avg_pool2d_forward(x, 6), dispatch.adaptive_avg_pool2d_backward,
         fast_avg_pool.AdaptiveAvgPoolContext, avg_pool.AdaptiveAvgPoolContext, grad_out[:, :3]),
        (lambda: dispatch.batch_norm_forward(x, None, None, None, None, True), dispatch.batch_norm_backward,
         fast_batchnorm.BatchNormContext, batchnorm.BatchNormContext, grad_out[:, :3]),
    ]
    for forward, backward, fast_context, reference_context, grad in cases:
        with kernels.use("fast"):
            _, fast_ctx = forward()
        with kernels.use("reference"):
            _, reference_ctx = forward()
            from_fast = backward(grad, fast_ctx)  # the fast forward's ctx, under the reference mode
        with kernels.use("fast"):
            from_reference = backward(grad, reference_ctx)
        assert type(fast_ctx) is fast_context and type(reference_ctx) is reference_context
        first = lambda result: result[0] if isinstance(result, tuple) else result  # noqa: E731
        np.testing.assert_allclose(first(from_fast), first(from_reference), rtol=1e-12, atol=1e-12)


def test_every_state_a_forward_hands_its_backward_is_a_frozen_dataclass():
    import dataclasses

    from minigrad.kernels import dropout
    for context in (conv.ConvContext, fast_conv.ConvContext, max_pool.MaxPoolContext, fast_max_pool.MaxPoolContext,
                    avg_pool.AvgPoolContext, fast_avg_pool.AvgPoolContext, avg_pool.AdaptiveAvgPoolContext,
                    fast_avg_pool.AdaptiveAvgPoolContext, batchnorm.BatchNormContext,
                    fast_batchnorm.BatchNormContext, dropout.DropoutContext):
        assert dataclasses.is_dataclass(context) and context.__dataclass_params__.frozen, context
