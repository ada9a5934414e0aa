"""Targeted tests of minigrad.functional, beyond the generic registry checks in tests/testing/.

``check_against_torch`` is the helper they share: run the same call in minigrad and in torch on the
same inputs, then compare the output and every input gradient along a random upstream gradient. Its
``device`` is where minigrad's tensors live (the tests pass their ``device`` fixture); torch stays on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy
import torch

from minigrad import Tensor
from minigrad.testing.tolerance import assert_close, terms_bound


def check_against_torch(
    ours: Callable[..., Tensor],
    theirs: Callable[..., torch.Tensor],
    arrays: Sequence[numpy.ndarray],
    rtol: float = 1e-10,
    atol: float = 1e-12,
    seed: int = 0,
    device: str = "cpu",
    terms: int | None = None,
    elementwise: bool = False,
    float32_atol: float = 0.0,
) -> Tensor:
    """Compare ``ours(*tensors)`` (tensors on ``device``) with ``theirs(*torch_tensors)``: values, dtype, device
    and gradients of float inputs.

    Float64 is held to ``rtol``/``atol`` entry by entry; float32 to the tolerance policy
    (minigrad/testing/tolerance.py: ``terms``, ``elementwise`` and ``float32_atol`` go to ``assert_close``)."""
    mine = [Tensor(a, requires_grad=a.dtype.kind == "f", device=device) for a in arrays]
    reference = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out, expected = ours(*mine), theirs(*reference)
    assert out.shape == tuple(expected.shape), f"shape {out.shape} != torch's {tuple(expected.shape)}"
    assert out.dtype == numpy.dtype(str(expected.dtype).removeprefix("torch.")), f"dtype {out.dtype}"
    assert out.device == device, f"the output left {device} for {out.device}"

    longest_sum = terms or terms_bound(*arrays, expected.detach().numpy())

    def check(actual: numpy.ndarray, wanted: numpy.ndarray, what: str) -> None:
        assert_close(actual, wanted, what, terms=longest_sum, float64=(rtol, atol), atol=float32_atol,
                     elementwise=elementwise)

    check(out.numpy(), expected.detach().numpy(), "output")
    upstream = numpy.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    for i, (a, b) in enumerate(zip(mine, reference)):
        if a.requires_grad:
            check(a.grad.numpy(), b.grad.numpy(), f"gradient of input {i}")
    return out
