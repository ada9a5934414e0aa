"""Shared helpers for the optimizer tests: one sequence of gradients fed to minigrad and to torch.

``run_minigrad`` takes a ``device``: the parameters and gradients live there and the final values come back
as NumPy arrays (``.numpy()``), to be compared with torch's on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import minigrad
from minigrad import optim
from minigrad.testing.tolerance import assert_close

SHAPES = [(3, 4), (5,), (2, 3, 2)]


def initial_arrays(seed: int = 0, dtype: Any = np.float64, shapes: list[tuple] = SHAPES) -> list[np.ndarray]:
    """Random starting values for a few parameters of different shapes."""
    generator = np.random.default_rng(seed)
    return [generator.standard_normal(shape).astype(dtype) for shape in shapes]


def gradient_sequence(steps: int, seed: int = 1, dtype: Any = np.float64, shapes: list[tuple] = SHAPES) -> list:
    """``steps`` lists of random gradients, one per parameter."""
    generator = np.random.default_rng(seed)
    return [[generator.standard_normal(shape).astype(dtype) for shape in shapes] for _ in range(steps)]


def run_minigrad(
    make_optimizer: Callable[[Any, list], Any], initial: list[np.ndarray], gradients: list, device: str = "cpu"
) -> tuple[list[np.ndarray], Any]:
    """Feed ``gradients`` (a list of steps; None = no gradient) to a minigrad optimizer whose parameters live
    on ``device``; return the final values (NumPy) and the optimizer."""
    params = [minigrad.Tensor(array.copy(), requires_grad=True, device=device) for array in initial]
    optimizer = make_optimizer(optim, params)
    for step_gradients in gradients:
        for param, gradient in zip(params, step_gradients):
            param.grad = None if gradient is None else minigrad.Tensor(gradient.copy(), device=device)
        optimizer.step()
    assert all(param.device == device for param in params), "a step moved a parameter off its device"
    return [param.numpy() for param in params], optimizer


def run_torch(
    make_optimizer: Callable[[Any, list], Any], initial: list[np.ndarray], gradients: list
) -> list[np.ndarray]:
    """The same as :func:`run_minigrad` with ``torch.optim``."""
    import torch

    params = [torch.tensor(array.copy(), requires_grad=True) for array in initial]
    optimizer = make_optimizer(torch.optim, params)
    for step_gradients in gradients:
        for param, gradient in zip(params, step_gradients):
            param.grad = None if gradient is None else torch.tensor(gradient.copy())
        optimizer.step()
    return [param.detach().numpy() for param in params]


# One optimizer step is a dozen element-wise operations per entry (moments, bias corrections, a square root, a
# division, weight decay): the float32 tolerance policy's ``terms`` for one step (minigrad/testing/tolerance.py).
OPERATIONS_PER_STEP = 12


def assert_close_to_torch(
    ours: list[np.ndarray], theirs: list[np.ndarray], rtol: float = 1e-12, steps: int = 1
) -> None:
    """Every parameter equal to torch's: float64 to ``rtol`` entry by entry, float32 by the tolerance policy over
    ``steps`` optimizer steps."""
    for number, (mine, reference) in enumerate(zip(ours, theirs)):
        assert mine.dtype == reference.dtype, f"parameter {number}: dtype {mine.dtype} != torch's {reference.dtype}"
        assert_close(mine, reference, f"parameter {number}", terms=OPERATIONS_PER_STEP, steps=steps,
                     float64=(rtol, rtol * 1e-2))
