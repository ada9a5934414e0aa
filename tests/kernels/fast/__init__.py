"""Helpers for the fast kernels' tests: each fast kernel is held against the reference it replaces, on the
op registry's awkward samples (minigrad/testing/ops_nn.py) and on shapes hypothesis draws."""

from __future__ import annotations

from typing import Any

import numpy

from minigrad.testing.registry import get_op
from minigrad.testing.tolerance import assert_close

FLOAT64 = (1e-12, 1e-12)  # element-wise (rtol, atol); float32 by the tolerance policy (minigrad/testing/tolerance.py)
DTYPES = [numpy.float64, numpy.float32]


def assert_same_numbers(fast: Any, reference: Any, what: str, terms: int | None = None, atol: float = 0.0) -> None:
    """``fast`` equals ``reference``: same dtype and shape, float64 to 1e-12, float32 within the tolerance policy
    (``terms``: the longest sum behind one value, default the size of the larger array; ``atol``: for float32
    values that cancel to zero, see assert_close). None equals None."""
    if reference is None:
        assert fast is None, f"{what}: the reference gives None, the fast kernel {type(fast)}"
        return
    assert fast.dtype == reference.dtype, f"{what}: dtype {fast.dtype} != the reference's {reference.dtype}"
    assert_close(fast, reference, what, terms=terms, float64=FLOAT64, atol=atol)


def registry_samples(op_name: str) -> list[tuple[tuple, dict, str]]:
    """``(inputs, kwargs, name)`` of every sample the registry draws for ``op_name``: float64 NumPy arrays."""
    return [(sample.inputs, sample.kwargs, sample.describe()) for sample in get_op(op_name).sample_list()]


def cast(arrays: tuple, dtype: Any) -> tuple:
    """Float arrays cast to ``dtype`` (None stays None)."""
    return tuple(None if a is None else numpy.asarray(a).astype(dtype) for a in arrays)
