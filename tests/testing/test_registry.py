"""The three generic checks, walked over every entry of the op registry, on every device.

1. finite differences (float64, random upstream gradient) through ``minigrad.gradcheck``;
2. torch parity of the forward and of every input gradient, float64 tight and float32 by the tolerance policy
   (minigrad/testing/tolerance.py);
3. error inputs raise the declared exception with a message naming the op and the shapes.

Each check takes the ``device`` fixture (tests/conftest.py): the samples' tensors are built on that device,
results come back with ``.numpy()``; torch, the reference, stays on the CPU.
"""

from __future__ import annotations

import numpy
import pytest

import minigrad.functional as F
from minigrad.gradcheck import gradcheck
from minigrad.tensor import Tensor
from minigrad.testing import all_ops
from minigrad.testing.tolerance import assert_close, terms_bound

OPS = all_ops()
SAMPLES = [
    pytest.param(op, s, id=f"{op.name}-{i}-{s.describe()}") for op in OPS for i, s in enumerate(op.sample_list())
]
ERRORS = [pytest.param(op, e, id=f"{op.name}-{i}") for op in OPS for i, e in enumerate(op.error_list())]
WITH_REF = [p for p in SAMPLES if p.values[0].ref is not None]


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def test_registry_covers_functional():
    """Every public op of minigrad.functional has at least one registry entry."""
    registered = {op.name for op in OPS} | {getattr(op.op, "__name__", "") for op in OPS}
    missing = [name for name in F.__all__ if name not in registered]
    assert not missing, f"ops without a registry entry: {missing}"


def test_every_op_has_samples_and_unique_name():
    names = [op.name for op in OPS]
    assert len(names) == len(set(names))
    assert all(op.sample_list() for op in OPS)


@pytest.mark.parametrize("op, sample", SAMPLES)
def test_gradcheck(op, sample, device):
    tensors = sample.tensors(numpy.float64, device)
    report = gradcheck(lambda *ts: op.op(*ts, **sample.kwargs), tensors, **op.gradcheck_tol)
    assert report.passed and sum(row.checked for row in report.rows) > 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op, sample", WITH_REF)
def test_torch_parity(op, sample, dtype, torch, device):
    ours = sample.tensors(numpy.dtype(dtype), device)
    theirs = [
        None if t is None else torch.tensor(t.numpy(), requires_grad=t.requires_grad)
        for t in ours
    ]
    outs = as_tuple(op.op(*ours, **sample.kwargs))
    refs = as_tuple(op.ref(torch, *theirs, **sample.kwargs))
    assert len(outs) == len(refs)
    rng = numpy.random.default_rng(1)
    upstream = []
    for out in outs:
        assert out.dtype == numpy.dtype(dtype), f"{op.name} changed dtype {dtype} -> {out.dtype}"
        upstream.append(rng.standard_normal(out.shape).astype(dtype))
    terms = op.float32_terms or terms_bound(*(t.numpy() for t in ours if t is not None), *upstream)
    for out, ref in zip(outs, refs):
        assert_close(out.numpy(), ref.detach().numpy(), f"{op.name}: output", terms=terms, float64=op.float64_tol)
    grads_wanted = [t for t in ours if t is not None and t.requires_grad]
    if not grads_wanted:
        return
    for out, v in zip(outs, upstream):
        out.backward(Tensor(v, device=device), retain_graph=True)
    torch.autograd.backward([r for r in refs], [torch.tensor(v) for v in upstream])
    for i, (mine, ref) in enumerate(zip(ours, theirs)):
        if mine is None or not mine.requires_grad:
            continue
        assert mine.grad is not None, f"{op.name}: no gradient for input {i}"
        assert mine.grad.dtype == numpy.dtype(dtype)
        assert_close(mine.grad.numpy(), ref.grad.numpy(), f"{op.name}: gradient of input {i}", terms=terms,
                     float64=op.float64_tol)


@pytest.mark.parametrize("op, case", ERRORS)
def test_error_inputs(op, case, device):
    with pytest.raises(case.error, match=case.match):
        op.op(*case.sample.tensors(numpy.float64, device), **case.sample.kwargs)
