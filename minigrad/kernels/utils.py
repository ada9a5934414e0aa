"""Small helpers shared by the kernels: turning ``3`` into ``(3, 3)``, paddings into pads per side, and
the output-size formula of a sliding window."""

from __future__ import annotations

import operator
from typing import Any

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def pair(value: Any, name: str, op: str, minimum: int | None = None) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(3, 2) -> (3, 2)``; anything else raises an error naming ``op`` and ``name``.

    With ``minimum``, values below it raise ValueError (e.g. ``minimum=1`` for a stride).
    """
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    try:
        if len(values) != 2 or any(isinstance(v, bool) for v in values):
            raise TypeError
        result = (operator.index(values[0]), operator.index(values[1]))
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if minimum is not None and min(result) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum} in both dimensions, got {value!r}")
    return result


def pads_per_side(padding: Any, op: str) -> Pads:
    """Padding as ``((top, bottom), (left, right))`` from an int, a pair ``(ph, pw)`` or that form itself.

    Negative pads raise ValueError naming ``op``.
    """
    is_nested = isinstance(padding, (tuple, list)) and len(padding) == 2
    is_nested = is_nested and all(isinstance(p, (tuple, list)) for p in padding)
    if is_nested:
        (top, bottom), (left, right) = (pair(p, "padding", op) for p in padding)
    else:
        (top, left) = (bottom, right) = pair(padding, "padding", op)
    pads = ((top, bottom), (left, right))
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}; use padding >= 0")
    return pads


def conv_output_size(
    input_size: int, kernel_size: int, stride: int = 1, padding: int | tuple[int, int] = 0, dilation: int = 1
) -> int:
    """Number of window positions along one axis: ``floor((size + pads - d*(k-1) - 1) / s) + 1``.

    ``padding`` is the pad on each side (an int) or ``(before, after)``. A dilated kernel spans
    ``d*(k-1) + 1`` pixels. The result is zero or negative when the kernel does not fit; callers check.
    """
    before, after = (padding, padding) if isinstance(padding, int) else padding
    span = input_size + before + after - dilation * (kernel_size - 1) - 1
    return span // stride + 1
