"""Helpers for the kernel tests, which call kernels on raw arrays: inputs are made with NumPy, moved to the
test's device, and the results brought back to NumPy before any comparison (NumPy cannot read CuPy arrays)."""

from __future__ import annotations

from typing import Any

import numpy

from minigrad import backend
from minigrad.testing.tolerance import assert_close


def on(device: str, *arrays: Any) -> Any:
    """``arrays`` moved to ``device`` (None stays None): one array for one argument, else a tuple.

    On the CPU these are the arrays themselves, not copies: copy first what a kernel updates in place."""
    moved = tuple(None if array is None else backend.to_device(array, device) for array in arrays)
    return moved[0] if len(moved) == 1 else moved


def back(*arrays: Any) -> Any:
    """``arrays`` as NumPy arrays (None stays None): one array for one argument, else a tuple."""
    moved = tuple(None if array is None else backend.to_numpy(array) for array in arrays)
    return moved[0] if len(moved) == 1 else moved


def generator(device: str, seed: int) -> Any:
    """A fresh seeded generator of the kind minigrad draws from on ``device``."""
    return numpy.random.default_rng(seed) if device == "cpu" else backend.CudaGenerator(seed)


def assert_same(actual: Any, expected: Any, device: str, err_msg: str = "") -> None:
    """Bit for bit on the CPU. On a GPU, results that are exact on the CPU may differ in the last bits
    (cuBLAS and atomic adds choose their summation order at run time), so there: rtol 1e-12 (float64) or the
    float32 tolerance policy over the largest array's size (minigrad/testing/tolerance.py)."""
    actual, expected = back(actual, expected)
    if device == "cpu":
        numpy.testing.assert_array_equal(actual, expected, err_msg=err_msg)
    else:
        assert_close(actual, expected, err_msg, float64=(1e-12, 1e-12))
