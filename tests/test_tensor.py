"""Tensor: construction and dtypes, copies and views, the small API, and no silent upcast to float64.

The factories, moving between devices and the no-upcast checks (the scalar expressions and the walk over every
registry op) take the ``device`` fixture.
"""

from __future__ import annotations

import numpy
import pytest

import minigrad
from minigrad import Tensor
from minigrad.testing import all_ops

# ----- construction ---------------------------------------------------------------------------------


def test_python_floats_become_float32_and_ints_stay_int64():
    assert Tensor([[1.0, 2.0], [3.0, 4.0]]).dtype == numpy.float32
    assert Tensor(2.5).dtype == numpy.float32 and Tensor(2.5).shape == ()
    assert Tensor([1, 2, 3]).dtype == numpy.int64
    assert minigrad.tensor([1.0, 2]).dtype == numpy.float32  # mixed list: float


def test_arrays_keep_their_dtype():
    assert Tensor(numpy.zeros(3)).dtype == numpy.float64
    assert Tensor(numpy.zeros(3, dtype=numpy.float32)).dtype == numpy.float32
    assert Tensor(numpy.arange(3, dtype=numpy.int32)).dtype == numpy.int32


@pytest.mark.parametrize("scalar", [numpy.float32(1.5), numpy.float64(1.5), numpy.int32(3)])
def test_numpy_scalars_keep_their_dtype(scalar):
    t = Tensor(scalar)
    assert t.dtype == scalar.dtype and t.shape == ()


def test_dtype_argument_converts():
    assert Tensor([1, 2], dtype=minigrad.float32).dtype == numpy.float32
    assert Tensor([1.0, 2.0], dtype=minigrad.float64).dtype == numpy.float64
    assert Tensor(numpy.ones(2), dtype="float32").dtype == numpy.float32
    numpy.testing.assert_array_equal(Tensor([1.7, -2.2], dtype=minigrad.int64).numpy(), [1, -2])


def test_tensor_from_tensor_shares_the_array_but_not_the_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = Tensor(x)
    assert y.data is x.data and not y.requires_grad and y.creator is None


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients, got dtype int64"):
        Tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match=r"dtype int64 cannot require gradients"):
        Tensor([1, 2]).requires_grad_()


def test_factories(device):
    z = minigrad.zeros(2, 3, device=device)
    assert z.shape == (2, 3) and z.dtype == numpy.float32 and not z.numpy().any()
    o = minigrad.ones((4,), dtype=minigrad.float64, device=device, requires_grad=True)
    assert o.shape == (4,) and o.dtype == numpy.float64 and o.requires_grad and (o.numpy() == 1).all()
    minigrad.manual_seed(3)
    r1 = minigrad.randn(50, 40, device=device)
    minigrad.manual_seed(3)
    r2 = minigrad.randn(50, 40, device=device)
    assert r1.dtype == numpy.float32 and r1.shape == (50, 40)
    numpy.testing.assert_array_equal(r1.numpy(), r2.numpy())
    assert abs(r1.numpy().mean()) < 0.1 and abs(r1.numpy().std() - 1) < 0.1
    a = minigrad.arange(5, device=device)
    assert a.dtype == numpy.int64 and a.tolist() == [0, 1, 2, 3, 4]
    b = minigrad.arange(0, 1, 0.25, device=device)
    assert b.dtype == numpy.float32 and b.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert minigrad.arange(2, 8, 3, device=device).tolist() == [2, 5]
    assert {t.device for t in (z, o, r1, a, b)} == {device}


# ----- moving, copying, viewing ---------------------------------------------------------------------


def test_numpy_is_a_copy():
    x = Tensor([1.0, 2.0])
    values = x.numpy()
    values[0] = 100.0
    assert x.data[0] == 1.0 and not numpy.shares_memory(values, x.data)
    assert isinstance(values, numpy.ndarray)


def test_item():
    assert Tensor([[3.5]]).item() == 3.5 and isinstance(Tensor([[3.5]]).item(), float)
    assert Tensor(7).item() == 7 and isinstance(Tensor(7).item(), int)
    with pytest.raises(ValueError, match=r"only one-element tensors.*shape \(2,\)"):
        Tensor([1.0, 2.0]).item()


def test_to_device_and_dtype():
    x = Tensor([1.0, 2.0], requires_grad=True)
    assert x.to("cpu") is x  # nothing changes: the same tensor
    double = x.to(dtype=minigrad.float64)
    assert double.dtype == numpy.float64 and double.requires_grad and double.device == "cpu"
    as_int = x.to(dtype=minigrad.int64)  # integers hold no gradient: no error, requires_grad False
    assert as_int.dtype == numpy.int64 and not as_int.requires_grad
    assert x.double().dtype == numpy.float64 and x.double().float().dtype == numpy.float32


def test_to_a_device_and_back_keeps_values_and_requires_grad(device):
    x = Tensor(numpy.array([1.5, -2.0, 3.25], dtype=numpy.float32), requires_grad=True)
    moved = x.to(device)
    assert moved.device == device and moved.requires_grad and moved.is_leaf and moved.dtype == numpy.float32
    assert (moved is x) == (device == "cpu")  # a move makes a new leaf; staying put returns the tensor itself
    back = moved.to("cpu", dtype=minigrad.float64)
    assert back.device == "cpu" and back.dtype == numpy.float64
    numpy.testing.assert_array_equal(back.numpy(), x.numpy())
    (moved * 2.0).sum().backward()
    assert moved.grad.device == device
    numpy.testing.assert_array_equal(moved.grad.numpy(), [2.0, 2.0, 2.0])


@pytest.mark.skipif(minigrad.cuda_available(), reason="this machine has a GPU")
def test_to_cuda_without_gpu_raises_with_install_hint():
    with pytest.raises(RuntimeError, match=r"pip install 'minigrad\[gpu\]'"):
        Tensor([1.0]).to("cuda")
    with pytest.raises(RuntimeError, match=r"pip install 'minigrad\[gpu\]'"):
        Tensor([1.0], device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        Tensor([1.0]).to("gpu")


def test_detach_shares_memory_and_has_no_creator():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.creator is None and not d.requires_grad and d.is_leaf
    assert numpy.shares_memory(d.data, y.data)
    d.data[0] = 9.0
    assert y.data[0] == 9.0


def test_repr():
    assert repr(Tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(Tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert repr(Tensor(numpy.array([0.5]))) == "tensor([0.5], dtype=float64)"
    assert "creator=Mul" in repr(Tensor([1.0], requires_grad=True) * 2)


def test_shape_attributes():
    x = Tensor(numpy.zeros((2, 3, 4), dtype=numpy.float32))
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.size == 24 and len(x) == 2 and x.device == "cpu"
    assert x.T.shape == (4, 3, 2)


def test_ndarray_times_tensor_goes_through_the_tensor():
    x = Tensor(numpy.array([1.0, 2.0], dtype=numpy.float32), requires_grad=True)
    y = numpy.array([3.0, 4.0]) * x  # NumPy would otherwise loop over x element by element
    assert isinstance(y, Tensor) and y.dtype == numpy.float32 and y.creator is not None
    y.backward(numpy.ones(2))
    numpy.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    assert isinstance(numpy.float64(2.0) * x, Tensor)
    assert isinstance(numpy.ones(2) + x, Tensor) and isinstance(numpy.ones(2) - x, Tensor)


def test_integer_tensor_with_float_constant_is_float_not_truncated():
    numpy.testing.assert_array_equal((Tensor([1, 2]) * 0.5).numpy(), [0.5, 1.0])
    assert (Tensor([1, 2]) * 0.5).dtype == numpy.float32
    assert (Tensor([1, 2]) + 1).dtype == numpy.int64


# ----- no silent upcast of float32 to float64 -------------------------------------------------------


@pytest.mark.parametrize("expression", [
    lambda x: x * 2.0, lambda x: 2.0 * x, lambda x: x / 3, lambda x: 3 / x, lambda x: 1 - x, lambda x: x - 1.5,
    lambda x: x + 1, lambda x: x**2, lambda x: x**0.5, lambda x: -x, lambda x: x * numpy.float64(2.0),
    lambda x: x + numpy.array(1.0), lambda x: x * Tensor([1, 2, 3], device=x.device),
    lambda x: Tensor([1, 2, 3], device=x.device) - x, lambda x: x.mean(), lambda x: x.sum(0), lambda x: x.max(),
], ids=["x*2.0", "2.0*x", "x/3", "3/x", "1-x", "x-1.5", "x+1", "x**2", "x**0.5", "-x", "x*np.float64",
        "x+0-d f64", "x*int tensor", "int tensor-x", "mean", "sum", "max"])
def test_scalar_arithmetic_keeps_float32(expression, device):
    x = Tensor(numpy.array([1.0, 2.0, 4.0], dtype=numpy.float32), requires_grad=True, device=device)
    y = expression(x)
    assert y.dtype == numpy.float32
    y.backward(numpy.ones(y.shape))
    assert x.grad.dtype == numpy.float32


SAMPLES = [pytest.param(op, s, id=f"{op.name}-{i}") for op in all_ops() for i, s in enumerate(op.sample_list())]


@pytest.mark.parametrize("op, sample", SAMPLES)
def test_every_registry_op_keeps_float32_in_forward_and_backward(op, sample, device):
    tensors = sample.tensors(numpy.float32, device)
    outputs = op.op(*tensors, **sample.kwargs)
    outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
    rng = numpy.random.default_rng(0)
    for out in outputs:
        assert out.dtype == numpy.float32, f"{op.name}: output is {out.dtype}"
        if out.requires_grad:
            out.backward(rng.standard_normal(out.shape), retain_graph=True)  # a float64 upstream on purpose
    for i, t in enumerate(tensors):
        if t is not None and t.requires_grad:
            assert t.grad is not None and t.grad.dtype == numpy.float32, f"{op.name}: gradient of input {i}"
