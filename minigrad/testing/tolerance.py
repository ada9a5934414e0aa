"""How closely two floating-point results must agree: the one tolerance policy of minigrad's tests.

**Float64 is the proof.** Parity with PyTorch and finite differences are checked in float64, with the tight
element-wise tolerances each test passes (``float64=(rtol, atol)``, applied as
``numpy.testing.assert_allclose`` does). A wrong formula fails there by many orders of magnitude.

**Float32 is derived, never tuned.** Two correct float32 computations of the same value differ because they
add in different orders: OpenBLAS picks an AVX2 or an AVX-512 kernel by CPU (oneDNN likewise for torch), a
second thread splits a sum in two, and im2col + GEMM adds in another order than a direct convolution. A
float32 tolerance that one machine happened to satisfy is therefore a coin toss on the next. So the float32
tolerance follows from float32's unit roundoff ``u = 2**-24`` and the size of the computation:

* A sum of ``n`` terms, in any order, is off by at most ``lambda * sqrt(n) * u * sum|t_i|`` with probability
  at least ``1 - 2 exp(-lambda**2 / 2)`` when rounding errors behave as independent, zero-mean variables
  (Higham and Mary, "A new approach to probabilistic rounding error analysis", 2019); the worst case is
  ``n * u * sum|t_i|`` (Higham, *Accuracy and Stability of Numerical Algorithms*, section 3.1).
* That bound is relative to ``sum|t_i|``, not to the result. Where large terms cancel, an entry near zero
  still carries the full error of its terms, so an element-wise ``rtol`` fails on exactly those entries
  however small the error is. We compare at the scale of the whole tensor instead:
  ``max|actual - expected| <= tol * max|expected|``.
* With random signs the result is about ``sqrt(n)`` times one term while ``sum|t_i|`` is ``n`` times one
  term, so relative to the tensor's scale the bound is ``lambda * n * u``. Two implementations each make
  such an error (their difference is at most twice it), and ``steps`` dependent stages (layers fed by
  layers, training steps fed by updated weights) add theirs at most once each.

Hence ``tol = 2 * lambda * n * u * steps`` with ``lambda = 4``: ``8 * n * u * steps``. ``n`` is the longest
sum behind one output value (a convolution's ``C_in * kH * kW``, its weight gradient's ``N * H_out * W_out``,
a batch norm's ``N * H * W``); when in doubt take :func:`terms_bound`, the size of the largest array the
computation reads or writes, which no single sum can exceed. Nothing here depends on the CPU, its vector
width or the thread count, which is the point. A float32 check this loose still catches what float32 is
there to catch: a silent cast, a lost dtype, an overflow, an unstable formula (those are off by far more).

**Element-wise functions** (exp, tanh, sigmoid, a division) involve no long sum: each entry is one libm call
or a few correctly rounded operations, accurate to a few units in the last place of *that entry*, on any CPU
(NumPy's and torch's SIMD exp/log/tanh keep within 4 ulp). There the point of a check is often precision at
small magnitudes (``sigmoid(-20)`` must not round to 0), so ``elementwise=True`` compares each entry with
its own magnitude: ``|actual - expected| <= tol * |expected| + atol``, ``terms`` counting the roundings
(``terms=4`` for a libm function).
"""

from __future__ import annotations

from typing import Any

import numpy

from minigrad import backend

#: float32's unit roundoff, 2**-24: the largest relative error of one correctly rounded operation.
FLOAT32_UNIT_ROUNDOFF = float(numpy.finfo(numpy.float32).eps) / 2
#: lambda = 4 standard deviations of the probabilistic bound, times 2 for two independent implementations.
FLOAT32_SAFETY = 8.0
#: element-wise (rtol, atol) for float64 when a test names none: tight, as the proof should be.
FLOAT64_DEFAULT = (1e-10, 1e-12)


def float32_tolerance(terms: int = 1, steps: int = 1) -> float:
    """The float32 tolerance, relative to a tensor's largest magnitude, for a value made of a sum of ``terms``
    terms, through ``steps`` dependent stages: ``8 * terms * u * steps`` (module docstring for why).

    >>> round(float32_tolerance(terms=27) / FLOAT32_UNIT_ROUNDOFF)
    216
    """
    if terms < 1 or steps < 1:
        raise ValueError(f"float32_tolerance: terms and steps must be at least 1, got terms={terms}, steps={steps}")
    return FLOAT32_SAFETY * terms * FLOAT32_UNIT_ROUNDOFF * steps


def terms_bound(*arrays: Any) -> int:
    """An upper bound for the length of any one sum in a computation that reads or writes ``arrays``: the
    size of the largest of them (a sum cannot have more terms than the products it adds)."""
    return max([int(numpy.prod(numpy.shape(array))) for array in arrays if array is not None] + [1])


def is_float32(*arrays: Any) -> bool:
    """True when any of ``arrays`` holds float32 (or a narrower float): the policy's float32 branch applies."""
    return any(numpy.dtype(getattr(array, "dtype", numpy.float64)).itemsize <= 4
               and numpy.dtype(getattr(array, "dtype", numpy.float64)).kind == "f" for array in arrays)


def assert_close(
    actual: Any,
    expected: Any,
    what: str = "",
    *,
    terms: int | None = None,
    steps: int = 1,
    float64: tuple[float, float] = FLOAT64_DEFAULT,
    atol: float = 0.0,
    elementwise: bool = False,
) -> None:
    """Assert that ``actual`` equals ``expected`` within the policy: element-wise ``float64`` = (rtol, atol)
    when both are float64; in float32, ``max|actual - expected| <= float32_tolerance(terms, steps) *
    max|expected| + atol``, ``terms`` defaulting to :func:`terms_bound` of the two arrays.

    ``atol`` is only for float32 tensors that are zero in exact arithmetic (their entries are rounding noise,
    so there is no scale to be relative to): give the scale of the terms that cancelled, times the tolerance.
    With ``elementwise=True`` (float32 only) each entry is held to its own magnitude instead:
    ``|actual - expected| <= tol * |expected| + atol``. Arrays may live on any device; they are compared on
    the host. ``what`` names the value in the message.
    """
    actual_host, expected_host = backend.to_numpy(actual), backend.to_numpy(expected)
    actual_host, expected_host = numpy.asarray(actual_host), numpy.asarray(expected_host)
    label = f"{what}: " if what else ""
    assert actual_host.shape == expected_host.shape, (
        f"{label}shape {actual_host.shape} differs from the expected {expected_host.shape}")
    if not is_float32(actual_host, expected_host):
        rtol, absolute = float64
        numpy.testing.assert_allclose(actual_host, expected_host, rtol=rtol, atol=absolute, err_msg=what)
        return
    tolerance = float32_tolerance(terms_bound(actual_host, expected_host) if terms is None else terms, steps)
    mine, reference = actual_host.astype(numpy.float64), expected_host.astype(numpy.float64)
    same_nan = numpy.isnan(mine) == numpy.isnan(reference)
    assert same_nan.all(), f"{label}NaN in one result and not the other at {numpy.argwhere(~same_nan)[:5].tolist()}"
    finite = numpy.isfinite(reference) & numpy.isfinite(mine)
    infinite_equal = (mine[~finite] == reference[~finite]) | numpy.isnan(reference[~finite])
    assert infinite_equal.all(), f"{label}infinities differ"
    if not finite.any():
        return
    error = numpy.abs(mine[finite] - reference[finite])
    magnitude = numpy.abs(reference[finite])
    bounds = numpy.broadcast_to(tolerance * (magnitude if elementwise else magnitude.max()) + atol, error.shape)
    worst = int(numpy.argmax(error - bounds))
    scale = "|expected|" if elementwise else "max|expected|"
    assert float(error[worst]) <= float(bounds[worst]), (
        f"{label}float32 |difference| {error[worst]:.3e} exceeds {bounds[worst]:.3e} = tolerance "
        f"{tolerance:.3e} x {scale} + atol {atol:.1e}, at flat index {worst} of the finite entries "
        f"({mine[finite][worst]!r} vs {reference[finite][worst]!r}); see minigrad/testing/tolerance.py")

