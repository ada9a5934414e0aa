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


def check_against_torch(
    ours: Callable[..., Tensor],
    theirs: Callable[..., torch.Tensor],
    arrays: Sequence[numpy.ndarray],
    rtol: float = 1e-10,
    atol: float = 1e-12,
    seed: int = 0,
    device: str = "cpu",
) -> Tensor:
    """Compare ``ours(*tensors)`` (tensors on ``device``) with ``theirs(*torch_tensors)``: values, dtype, device
    and gradients of float inputs."""
    mine = [Tensor(a, requires_grad=a.dtype.kind == "f", device=device) for a in arrays]
    reference = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out, expected = ours(*mine), theirs(*reference)
    assert out.shape == tuple(expected.shape), f"shape {out.shape} != torch's {tuple(expected.shape)}"
    assert out.dtype == numpy.dtype(str(expected.dtype).removeprefix("torch.")), f"dtype {out.dtype}"
    assert out.device == device, f"the output left {device} for {out.device}"
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=rtol, atol=atol)
    upstream = numpy.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    for i, (a, b) in enumerate(zip(mine, reference)):
        if a.requires_grad:
            numpy.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol,
                                          err_msg=f"gradient of input {i}")
    return out
