"""Issue 8 without a GPU: minigrad's whole "cuda" path, run on a simulated CuPy and checked against the CPU.

``tests/simulated_cupy.py`` stands in for ``cupy``: device memory is a ``DeviceArray``, and CuPy's rules are
enforced (only CuPy's names and signatures, no NumPy array mixed into device arithmetic, no implicit
device -> host conversion, 0-d arrays instead of scalars; see its docstring). The ``simulated_gpu`` fixture
plugs it into ``minigrad.backend``, so ``device="cuda"`` anywhere in minigrad lands there. Each test runs
the same thing on "cpu" and "cuda" and asserts the same numbers (float32 tolerance) and that every output,
gradient, parameter, buffer and optimizer state of the cuda run really lives in device memory.

These tests name "cuda" directly (they do not take the ``device`` fixture): the simulated device *is* the
point of them, and they run on every machine, GPU or not. To run the rest of the suite's cuda cases on the
simulation too (about two minutes on 2 cores):

    python -m pytest -p tests.simulated_cupy --device cuda tests/
"""

from __future__ import annotations

import copy
import importlib.util
import json
import operator
import os
import signal
from pathlib import Path

import numpy
import pytest

if importlib.util.find_spec("cupy") is None:  # the simulation reads real CuPy's names and signatures
    if os.environ.get("MINIGRAD_REQUIRE_CUPY", "") not in ("", "0"):  # CI: as in tests/test_cupy_compat.py
        pytest.fail("CuPy is required (MINIGRAD_REQUIRE_CUPY=1) but is not installed", pytrace=False)
    pytest.skip("the simulated GPU reads real CuPy's names and signatures: pip install cupy-cuda12x "
                "(it imports without a GPU)", allow_module_level=True)

import minigrad  # noqa: E402
import minigrad.functional as F  # noqa: E402
from minigrad import backend, cli, data, nn, optim, train  # noqa: E402
from minigrad.gradcheck import GradcheckError, fixed_state, gradcheck  # noqa: E402
from minigrad.models import googlenet_loss, inception_v1  # noqa: E402
from minigrad.models.inception import BasicConv2d, Inception, InceptionAux  # noqa: E402
from minigrad.tensor import Tensor  # noqa: E402
from minigrad.testing import all_ops  # noqa: E402
from minigrad.testing.tolerance import assert_close, terms_bound  # noqa: E402
from tests import simulated_cupy as sim  # noqa: E402
from tests.simulated_cupy import DeviceArray  # noqa: E402


@pytest.fixture
def simulated_gpu(monkeypatch):
    """The simulated CuPy, plugged into minigrad.backend for this test (see ``simulated_cupy.install``)."""
    sim.install(monkeypatch)
    return sim.cupy


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def host(value) -> numpy.ndarray:
    """A NumPy copy of a Tensor or array, from either device."""
    return value.numpy() if isinstance(value, Tensor) else backend.to_numpy(value)


def assert_on(device: str, *tensors: Tensor | None, what: str = "") -> None:
    """Every tensor's array (and gradient's) is device memory on "cuda", a plain NumPy array on "cpu"."""
    expected = DeviceArray if device == "cuda" else numpy.ndarray
    for tensor in tensors:
        if tensor is None:
            continue
        assert type(tensor.data) is expected, f"{what}: {type(tensor.data).__name__} on {device}"
        assert tensor.device == device
        if tensor.grad is not None:
            assert type(tensor.grad.data) is expected, f"{what}: gradient is {type(tensor.grad.data).__name__}"


def assert_same(cuda_value, cpu_value, what: str = "", terms: int | None = None,
                float64: tuple[float, float] = (1e-10, 1e-12)) -> None:
    """Same dtype, and equal within the tolerance policy (minigrad/testing/tolerance.py): ``float64`` element-wise,
    float32 relative to the tensor's scale over sums of ``terms`` terms."""
    expected = host(cpu_value)
    got = host(cuda_value)
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} on cuda, {expected.dtype} on cpu"
    assert_close(got, expected, what, terms=terms, float64=float64)


def as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ---------------------------------------------------------------------------------------------
# The simulation is strict: these would pass on plain NumPy and fail on a GPU
# ---------------------------------------------------------------------------------------------
def test_simulation_refuses_what_cupy_refuses(simulated_gpu):
    cupy = simulated_gpu
    x = cupy.asarray(numpy.arange(6, dtype=numpy.float32).reshape(2, 3))
    host_array = numpy.ones(3, dtype=numpy.float32)
    refused = {
        "device + host array": (TypeError, lambda: x + host_array),
        "host array + device": (TypeError, lambda: host_array + x),
        "host array in a ufunc": (TypeError, lambda: cupy.maximum(x, host_array)),
        "host array in a function": (TypeError, lambda: cupy.concatenate([x, host_array[None]])),
        "numpy function mixing both": (TypeError, lambda: numpy.concatenate([x, host_array[None]])),
        "host array written into device memory": (ValueError, lambda: x.__setitem__(Ellipsis, host_array)),
        "numpy.asarray(device)": (TypeError, lambda: numpy.asarray(x)),
        "numpy.array(device)": (TypeError, lambda: numpy.array(x)),
        "a name NumPy has and CuPy lacks": (AttributeError, lambda: cupy.geomspace(1, 10, 3)),
        "a keyword CuPy's ufuncs lack": (TypeError, lambda: cupy.exp(x, where=x > 1)),
        "a keyword CuPy's method lacks": (TypeError, lambda: x.max(initial=0.0)),
        "a keyword CuPy's function lacks": (TypeError, lambda: cupy.take(x, cupy.asarray([0]), mode="clip")),
        "a ufunc method CuPy does not dispatch": (TypeError, lambda: numpy.add.at(x, [0], 1.0)),
        "a reduce CuPy does not have": (NotImplementedError, lambda: cupy.maximum.reduce(x)),
        "a 0-d array as an index": (TypeError, lambda: operator.index(x.sum())),
        "int64 scatter_add": (TypeError, lambda: sim.cupyx.scatter_add(cupy.zeros(3, dtype=numpy.int64), [0], 1)),
        "an integer random dtype": (TypeError, lambda: cupy.random.RandomState(0).random_sample(3, dtype=numpy.int32)),
        "Generator.normal (CuPy's has none)": (AttributeError, lambda: cupy.random.default_rng(0).normal(0, 1, 3)),
        "compiled CUDA C": (sim.NotSimulatedError, lambda: cupy.RawKernel("extern \"C\" __global__ void f() {}", "f")),
    }
    for what, (error, attempt) in refused.items():
        with pytest.raises(error):
            attempt()
            pytest.fail(f"the simulation let through: {what}")


def test_simulation_behaves_like_cupy_where_it_differs_from_numpy(simulated_gpu):
    cupy = simulated_gpu
    x = cupy.asarray(numpy.arange(6, dtype=numpy.float32).reshape(2, 3))
    total = x.sum()
    assert type(total) is DeviceArray and total.shape == ()  # CuPy reductions give 0-d arrays, not scalars
    assert float(total) == 15.0 and int(total) == 15 and total.item() == 15.0 and bool(total)
    assert type(x[1, 2]) is DeviceArray and x[1, 2].shape == ()  # so does integer indexing
    assert [type(row) for row in x] == [DeviceArray, DeviceArray]
    copied = x.get()
    assert type(copied) is numpy.ndarray and not numpy.shares_memory(copied, sim._host(x))
    moved = cupy.asarray(copied)  # host -> device copies, even when the host array could be viewed
    copied[0, 0] = 100
    assert float(moved[0, 0]) == 0.0
    assert cupy.asarray(x) is x and x.astype(numpy.float32, copy=False) is x
    assert type(numpy.exp(x)) is DeviceArray and type(numpy.sum(x)) is DeviceArray  # NumPy dispatches to CuPy
    assert x.dtype == numpy.float32 and (x * 2.0).dtype == numpy.float32  # Python floats stay weak
    assert x[numpy.array([1, 0])].shape == (2, 3)  # index arrays may come from the host
    # Every public name of the simulation is a name real CuPy has.
    real_names = set(dir(sim.real_cupy))
    ours = {name for name in vars(cupy) if not name.startswith("_")}
    assert ours <= real_names, sorted(ours - real_names)
    assert len(ours) > 300


def test_the_harness_catches_a_kernel_that_allocates_with_numpy(simulated_gpu, monkeypatch):
    """The classic GPU bug, planted in im2col's padding (the reference's and the fast one's): ``numpy.zeros`` where
    ``backend.xp_of(x).zeros`` belongs. The CPU path cannot tell the difference; on the simulated GPU conv2d must
    fail, as it would on a real one."""
    from minigrad.kernels import im2col
    from minigrad.kernels.fast import im2col as fast_im2col

    def pad_on_the_host(x, geometry, fill=0.0):
        (top, _), (left, _) = geometry.pads
        n, c, h, w = x.shape
        padded = numpy.zeros((n, c, *geometry.padded_size), dtype=x.dtype)
        padded[:, :, top : top + h, left : left + w] = backend.to_numpy(x)
        return padded

    monkeypatch.setattr(im2col, "pad_input", pad_on_the_host)
    monkeypatch.setattr(fast_im2col, "pad_input", pad_on_the_host)
    x, weight = minigrad.randn(1, 2, 5, 5), minigrad.randn(3, 2, 3, 3)
    F.conv2d(x, weight, padding=1)  # fine on the CPU
    with pytest.raises((TypeError, ValueError), match="numpy.ndarray"):
        F.conv2d(x.to("cuda"), weight.to("cuda"), padding=1)


def test_backend_reaches_the_simulation(simulated_gpu):
    assert backend.cuda_available() and backend.get_xp("cuda") is simulated_gpu
    array = backend.to_device(numpy.arange(3.0), "cuda")
    assert type(array) is DeviceArray and backend.device_of(array) == "cuda" and backend.xp_of(array) is simulated_gpu
    assert type(backend.to_numpy(array)) is numpy.ndarray and backend.to_device(array, "cpu").tolist() == [0, 1, 2]
    target = backend.to_device(numpy.zeros(3, dtype=numpy.float32), "cuda")
    backend.scatter_add(target, simulated_gpu.asarray([0, 0, 2]), simulated_gpu.ones(3, dtype=numpy.float32))
    assert target.tolist() == [2.0, 0.0, 1.0]
    windows = backend.sliding_window_view(simulated_gpu.arange(5.0), (3,), axis=(0,))
    assert type(windows) is DeviceArray and windows.shape == (3, 3)
    calls = sim.STREAM.synchronize_calls
    backend.synchronize("cuda")
    assert sim.STREAM.synchronize_calls == calls + 1
    assert isinstance(backend.rng("cuda"), backend.CudaGenerator)
    with pytest.raises(sim.NotSimulatedError, match="RawKernel"):
        backend.raw_kernel('extern "C" __global__ void noop() {}', "noop")


# ---------------------------------------------------------------------------------------------
# Every op of the registry: forward and backward on cuda equal the cpu's
# ---------------------------------------------------------------------------------------------
# This walk found that the registry's batch_norm and dropout samples built their running statistics and mask
# generator on the CPU whatever the device (TypeError on CuPy); fixed in minigrad/testing/ops_nn.py (138a421).
REGISTRY_SAMPLES = [
    pytest.param(op, sample, id=f"{op.name}-{i}-{sample.describe()}")
    for op in all_ops()
    for i, sample in enumerate(op.sample_list())
]


def run_sample(op, sample, dtype: str, device: str) -> tuple[list, list, list]:
    """(inputs, outputs, upstream gradients) after one forward and one backward of ``sample`` on ``device``."""
    inputs = sample.tensors(numpy.dtype(dtype), device)
    outputs = as_tuple(op.op(*inputs, **sample.kwargs))
    rng = numpy.random.default_rng(1)
    upstream = [rng.standard_normal(out.shape).astype(dtype) for out in outputs]
    if any(t is not None and t.requires_grad for t in inputs):
        for out, v in zip(outputs, upstream):
            out.backward(Tensor(v, device=device), retain_graph=True)
    return inputs, list(outputs), upstream


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op, sample", REGISTRY_SAMPLES)
def test_registry_op_on_cuda_matches_cpu(op, sample, dtype, simulated_gpu):
    """The registry's samples exactly as ``tests/testing/test_registry.py`` builds them on a device."""
    cuda_inputs, cuda_outputs, upstream = run_sample(op, sample, dtype, "cuda")
    assert_on("cuda", *cuda_inputs, *cuda_outputs, what=op.name)
    for out in cuda_outputs:
        assert out.dtype == numpy.dtype(dtype), f"{op.name} changed dtype {dtype} -> {out.dtype} on cuda"
    if op.name == "dropout":  # each device draws its own mask: check the cuda run against its own mask
        (x,), (out,), (v,) = cuda_inputs, cuda_outputs, upstream
        p, training = sample.kwargs["p"], sample.kwargs.get("training", True)
        scale = 0.0 if p == 1 else 1 / (1 - p)
        kept = host(out) != 0 if training else numpy.ones(x.shape, bool)
        # a multiply or two per entry: the tolerance policy's element-wise form, terms=2
        assert_close(host(out), numpy.where(kept, host(x) * (scale if training else 1), 0), "dropout output",
                     terms=2, elementwise=True, float64=(1e-6, 0))
        assert_close(host(x.grad), numpy.where(kept, v * (scale if training else 1), 0), "dropout gradient",
                     terms=2, elementwise=True, float64=(1e-6, 0))
        return
    cpu_inputs, cpu_outputs, _ = run_sample(op, sample, dtype, "cpu")
    terms = op.float32_terms or terms_bound(*(t.numpy() for t in cpu_inputs if t is not None), *upstream)
    for index, (mine, reference) in enumerate(zip(cuda_outputs, cpu_outputs)):
        assert_same(mine, reference, f"{op.name}: output {index}", terms=terms)
    for index, (mine, reference) in enumerate(zip(cuda_inputs, cpu_inputs)):
        if reference is not None and reference.grad is not None:
            assert mine.grad is not None, f"{op.name}: no gradient for input {index} on cuda"
            assert_same(mine.grad, reference.grad, f"{op.name}: gradient of input {index}", terms=terms)


BATCH_NORM = next(op for op in all_ops() if op.name == "batch_norm")


@pytest.mark.parametrize("sample", BATCH_NORM.sample_list(), ids=lambda s: s.describe())
def test_batch_norm_with_running_statistics_on_the_device(sample, simulated_gpu):
    """batch_norm itself is right on cuda once its running statistics live there too (as BatchNorm2d's do)."""
    results = {}
    for device in ("cpu", "cuda"):
        x, weight, bias = sample.tensors(numpy.float32, device)
        running_mean = Tensor(sample.kwargs["running_mean"].astype(numpy.float32), device=device)
        running_var = Tensor(sample.kwargs["running_var"].astype(numpy.float32), device=device)
        options = {k: v for k, v in sample.kwargs.items() if k not in ("running_mean", "running_var")}
        out = F.batch_norm(x, running_mean, running_var, weight, bias, **options)
        out.backward(Tensor(numpy.random.default_rng(2).standard_normal(out.shape).astype(numpy.float32),
                            device=device))
        assert_on(device, x, weight, bias, out, running_mean, running_var, what=f"batch_norm on {device}")
        results[device] = (out, x.grad, weight and weight.grad, bias and bias.grad, running_mean, running_var)
    for name, mine, reference in zip(("out", "grad x", "grad weight", "grad bias", "running_mean", "running_var"),
                                     results["cuda"], results["cpu"]):
        if reference is not None:
            assert_same(mine, reference, f"batch_norm {name}", terms=terms_bound(host(results["cpu"][0])))


# ---------------------------------------------------------------------------------------------
# Dropout draws from the CUDA generator
# ---------------------------------------------------------------------------------------------
def test_dropout_on_cuda_uses_the_cuda_generator_and_is_reproducible(simulated_gpu):
    x = minigrad.randn(64, 32, device="cuda", requires_grad=True)

    def draw():
        out = F.dropout(x, 0.5)
        return out, host(out) != 0

    minigrad.manual_seed(7)
    generator = backend.rng("cuda")
    assert isinstance(generator, backend.CudaGenerator) and generator.state == {"seed": 7, "draws": 0}
    out, first = draw()
    assert_on("cuda", out)
    assert generator.state == {"seed": 7, "draws": 1}
    assert 0.4 < first.mean() < 0.6
    assert_close(host(out), numpy.where(first, host(x) * 2, 0), "dropout output", terms=2, elementwise=True)
    _, second = draw()
    assert not numpy.array_equal(first, second), "the generator must move on between draws"
    minigrad.manual_seed(7)
    _, again = draw()
    numpy.testing.assert_array_equal(again, first)
    state = backend.get_rng_state()
    assert state["cuda"] == {"seed": 7, "draws": 1}
    _, after = draw()
    backend.set_rng_state(json.loads(json.dumps(state)))  # a checkpoint's round trip
    _, restored = draw()
    numpy.testing.assert_array_equal(restored, after)
    out.backward(Tensor(numpy.ones(out.shape, numpy.float32), device="cuda"))
    numpy.testing.assert_array_equal(host(x.grad), numpy.where(first, 2.0, 0.0))
    draws = backend.rng("cuda").state["draws"]
    assert F.dropout(x, 0.5, training=False).data is x.data  # eval: the identity, and no draw
    assert backend.rng("cuda").state["draws"] == draws


# ---------------------------------------------------------------------------------------------
# Tensors, layers and Module.to("cuda")
# ---------------------------------------------------------------------------------------------
ATOMIC_ADD_SITES = {
    "getitem": "minigrad/functional/shape.py:49 GetItem.backward scatter_adds the gradient of repeated integer "
               "indices (atomicAdd on a GPU, order-dependent float sums). Fix if bit-identical reruns matter: "
               "sort the indices and sum equal ones (e.g. cupy.unique + cumsum), or document it",
}
ADVERSARIAL = numpy.array([1e8, 1, -1e8, 1, 3e-3, 7, -5e7, 5e7, 0.5], dtype=numpy.float32)  # order-sensitive sums


def gradient_bits_over_reruns(run, runs: int = 10) -> set[bytes]:
    """The distinct gradients (as bytes) that ``runs`` identical reruns of ``run()`` give."""
    return {run().numpy().tobytes() for _ in range(runs)}


def test_max_pool2d_backward_on_cuda_does_not_depend_on_the_order_of_atomic_adds(simulated_gpu):
    """A pixel that wins all 9 overlapping 3x3/1 windows collects 9 gradients; a GPU adds them in any order."""
    x = numpy.zeros((1, 1, 5, 5), numpy.float32)
    x[0, 0, 2, 2] = 10
    upstream = numpy.zeros((1, 1, 5, 5), numpy.float32)
    upstream[0, 0, 1:4, 1:4] = ADVERSARIAL.reshape(3, 3)

    def run() -> Tensor:
        tensor = Tensor(x, requires_grad=True, device="cuda")
        F.max_pool2d(tensor, 3, stride=1, padding=1).backward(Tensor(upstream, device="cuda"))
        return tensor.grad

    assert len(gradient_bits_over_reruns(run)) == 1


@pytest.mark.xfail(strict=True, reason=ATOMIC_ADD_SITES["getitem"].split(" ", 1)[0] + " (see ATOMIC_ADD_SITES)")
def test_getitem_backward_on_cuda_does_not_depend_on_the_order_of_atomic_adds(simulated_gpu):
    def run() -> Tensor:
        tensor = Tensor(numpy.zeros(2, numpy.float32), requires_grad=True, device="cuda")
        F.getitem(tensor, numpy.zeros(9, dtype=numpy.int64)).backward(Tensor(ADVERSARIAL, device="cuda"))
        return tensor.grad

    assert len(gradient_bits_over_reruns(run)) == 1


def test_tensors_on_cuda(simulated_gpu):
    cases = {
        "python floats": ([[1.5, 2.0]], numpy.float32),
        "python ints": ([1, 2, 3], numpy.int64),
        "numpy float64": (numpy.linspace(0, 1, 4), numpy.float64),
        "numpy scalar": (numpy.float32(2.5), numpy.float32),
    }
    for what, (values, dtype) in cases.items():
        tensor = minigrad.tensor(values, device="cuda")
        assert_on("cuda", tensor, what=what)
        assert tensor.dtype == dtype, what
        numpy.testing.assert_array_equal(tensor.numpy(), numpy.asarray(values, dtype=dtype))
    x = minigrad.tensor([[1.0, -2.0]], requires_grad=True)
    moved = x.to("cuda")
    assert_on("cuda", moved)
    assert moved.requires_grad and moved.is_leaf and moved.to("cuda") is moved
    assert type(moved.numpy()) is numpy.ndarray and moved.to("cpu").device == "cpu"
    assert moved.sum().item() == -1.0 and "device='cuda'" in repr(moved)
    for made in (minigrad.zeros(2, 3, device="cuda"), minigrad.ones(2, device="cuda"),
                 minigrad.randn(2, device="cuda"), minigrad.arange(4, device="cuda"), Tensor(moved)):
        assert_on("cuda", made)
    assert minigrad.arange(4, device="cuda").dtype == numpy.int64
    with pytest.raises(RuntimeError, match="different devices"):
        moved + x
    y = (moved * 3.0 + 1.0).relu().sum()
    y.backward()
    assert_on("cuda", moved, y)
    numpy.testing.assert_array_equal(moved.grad.numpy(), [[3.0, 0.0]])


def _layer_cases():
    conv_block = {"kernel_size": 3, "padding": 1}
    return {
        "Linear": (lambda: nn.Linear(5, 3), (4, 5), True),
        "Conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 7), True),
        "Conv2d groups dilation": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (2, 4, 6, 6), True),
        "Conv2d 1x1 no bias": (lambda: nn.Conv2d(4, 5, 1, bias=False), (2, 4, 5, 5), True),
        "MaxPool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 7, 7), True),
        "AvgPool2d": (lambda: nn.AvgPool2d(5, stride=3), (2, 3, 14, 14), True),
        "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5), True),
        "BatchNorm1d train": (lambda: nn.BatchNorm1d(5), (6, 5), True),
        "BatchNorm2d train": (lambda: nn.BatchNorm2d(3, momentum=None), (4, 3, 5, 5), True),
        "BatchNorm2d eval": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5), False),
        "Dropout eval": (lambda: nn.Dropout(0.5), (4, 6), False),
        "ReLU, Flatten, Identity": (lambda: nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Identity()), (2, 3, 4), True),
        "BasicConv2d": (lambda: BasicConv2d(3, 4, eps=1e-3, **conv_block), (2, 3, 6, 6), True),
        "Inception": (lambda: Inception(8, 4, 3, 4, 2, 3, 2), (2, 8, 6, 6), True),
        "InceptionAux avg5x5/3": (lambda: InceptionAux(8, 5, pool="avg5x5/3", dropout=0.0, conv_channels=4, hidden=6),
                                  (2, 8, 14, 14), True),
        "InceptionAux adaptive": (lambda: InceptionAux(8, 5, dropout=0.0, conv_channels=4, hidden=6),
                                  (2, 8, 7, 9), True),
    }


@pytest.mark.parametrize("name", list(_layer_cases()))
def test_module_to_cuda_matches_cpu(name, simulated_gpu):
    build, shape, training = _layer_cases()[name]
    minigrad.manual_seed(0)
    cpu_module = build().train(training)
    cuda_module = copy.deepcopy(cpu_module).to("cuda")
    assert cuda_module.to("cuda") is cuda_module
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal(shape).astype(numpy.float32)
    results = {}
    for device, module in (("cpu", cpu_module), ("cuda", cuda_module)):
        inputs = Tensor(x, requires_grad=True, device=device)
        out = module(inputs)
        out.backward(Tensor(numpy.random.default_rng(4).standard_normal(out.shape).astype(numpy.float32),
                            device=device))
        assert_on(device, inputs, out, *module.parameters(), *module.buffers(), what=f"{name} on {device}")
        results[device] = [out, inputs.grad, *module.parameters(), *(p.grad for p in module.parameters()),
                           *module.buffers()]
    for index, (mine, reference) in enumerate(zip(results["cuda"], results["cpu"])):
        if reference is not None:
            assert_same(mine, reference, f"{name}: value {index}", terms=terms_bound(x, host(results["cpu"][0])))
    state = cuda_module.state_dict()
    assert all(type(value) is numpy.ndarray for value in state.values())
    cpu_module.load_state_dict(state)  # cuda -> cpu through a state dict, and back
    cuda_module.load_state_dict(cpu_module.state_dict())
    assert_on("cuda", *cuda_module.parameters(), *cuda_module.buffers(), what=f"{name} after load_state_dict")
    cuda_module.double()
    assert all(p.dtype == numpy.float64 for p in cuda_module.parameters())
    assert_on("cuda", *cuda_module.parameters(), what=f"{name} after double()")
    back = cuda_module.to("cpu")
    assert_on("cpu", *back.parameters(), *back.buffers(), what=f"{name} back on cpu")


def test_initialisers_take_a_generator_of_either_device(simulated_gpu):
    """``generator=`` may belong to another device than the tensor: a NumPy Generator for a GPU tensor (what
    GoogLeNet(seed=...) hands out), or the CUDA generator for a CPU tensor. Found by this harness: the values
    were written across devices as they were (CuPy: "non-scalar numpy.ndarray cannot be used for fill")."""
    initialisers = {
        "uniform_": lambda t, g: nn.init.uniform_(t, -1, 1, generator=g),
        "normal_": lambda t, g: nn.init.normal_(t, 0, 2, generator=g),
        "kaiming_uniform_": lambda t, g: nn.init.kaiming_uniform_(t, generator=g),
        "trunc_normal_": lambda t, g: nn.init.trunc_normal_(t, std=0.5, generator=g),
    }
    for name, initialise in initialisers.items():
        cuda_tensor, cpu_tensor = minigrad.zeros(6, 5, device="cuda"), minigrad.zeros(6, 5)
        initialise(cuda_tensor, numpy.random.default_rng(5))
        initialise(cpu_tensor, numpy.random.default_rng(5))
        assert_on("cuda", cuda_tensor, what=name)
        numpy.testing.assert_array_equal(cuda_tensor.numpy(), cpu_tensor.numpy(), err_msg=name)
        drawn_on_gpu, drawn_again = minigrad.zeros(6, 5), minigrad.zeros(6, 5, device="cuda")
        initialise(drawn_on_gpu, backend.CudaGenerator(9))
        initialise(drawn_again, backend.CudaGenerator(9))
        assert_on("cpu", drawn_on_gpu, what=name)
        numpy.testing.assert_array_equal(drawn_on_gpu.numpy(), drawn_again.numpy(), err_msg=name)


# ---------------------------------------------------------------------------------------------
# GoogLeNet: forward, loss, backward, optimizer steps
# ---------------------------------------------------------------------------------------------
def build_optimizer(name: str, model) -> optim.Optimizer:
    if name == "sgd":
        return optim.SGD(list(model.parameters()), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return optim.AdamW(list(model.parameters()), lr=1e-3, weight_decay=0.01, amsgrad=True)


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])
def test_googlenet_training_steps_on_cuda_match_cpu(optimizer_name, simulated_gpu, monkeypatch):
    """Two SGD / AdamW steps of a small GoogLeNet (aux heads, batch 2) agree on both devices, and everything
    the cuda run holds lives on the device.

    In float64: the devices sum in different orders (max-pool's backward adds tap by tap on cuda, by scatter-add
    on the CPU), and in float32 those last-bit differences grow over two steps (Adam divides tiny gradients by
    their own size; nearly tied max-pool windows can pick the other winner). In float64 they stay ~1e-12."""
    monkeypatch.setattr(sim, "ATOMIC_ORDER", "sequential")
    cpu_model = inception_v1(num_classes=10, aux_logits=True, stem="cifar", width=0.125, seed=0).double()
    for module in cpu_model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # each device draws its own masks; dropout on cuda has its own test
    cuda_model = copy.deepcopy(cpu_model).to("cuda")
    rng = numpy.random.default_rng(0)
    images = [rng.standard_normal((2, 3, 32, 32)) for _ in range(2)]
    labels = numpy.array([1, 7])
    runs = {}
    for device, model in (("cpu", cpu_model), ("cuda", cuda_model)):
        optimizer = build_optimizer(optimizer_name, model)
        losses = []
        for batch in images:  # two steps: the second one reads the momentum / moment buffers
            outputs = model(Tensor(batch, device=device))
            assert len(outputs) == 3
            loss = googlenet_loss(outputs, Tensor(labels, device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss)
            assert_on(device, loss, *outputs, what=f"outputs on {device}")
        parameters = list(model.parameters())
        assert_on(device, *parameters, *model.buffers(), what=f"GoogLeNet on {device}")
        states = [value for p in parameters for value in optimizer.state[id(p)].values() if numpy.ndim(value)]
        expected = DeviceArray if device == "cuda" else numpy.ndarray
        assert states and all(type(value) is expected for value in states), f"optimizer state on {device}"
        model.eval()
        with minigrad.no_grad():
            logits = model(Tensor(images[0], device=device))
        runs[device] = (losses, parameters, list(model.buffers()), states, logits, optimizer.state_dict())
    (cuda_losses, cuda_params, cuda_buffers, cuda_states, cuda_logits, cuda_saved) = runs["cuda"]
    (cpu_losses, cpu_params, cpu_buffers, cpu_states, cpu_logits, cpu_saved) = runs["cpu"]
    tolerance = (1e-4, 1e-5)  # float64, element-wise
    for mine, reference in zip(cuda_losses, cpu_losses):
        assert_same(mine, reference, "loss", float64=tolerance)
    for index, (mine, reference) in enumerate(zip(cuda_params, cpu_params)):
        assert_same(mine, reference, f"parameter {index}", float64=tolerance)
        assert_same(mine.grad, reference.grad, f"gradient {index}", float64=(1e-3, 1e-5))
    for index, (mine, reference) in enumerate(zip(cuda_buffers, cpu_buffers)):
        assert_same(mine, reference, f"buffer {index}", float64=tolerance)
    for index, (mine, reference) in enumerate(zip(cuda_states, cpu_states)):
        assert_same(mine, reference, f"optimizer state {index}", float64=(1e-3, 1e-6))
    assert_same(cuda_logits, cpu_logits, "eval logits", float64=tolerance)
    saved_arrays = [v for state in cuda_saved["state"].values() for v in state.values() if numpy.ndim(v)]
    assert saved_arrays and all(type(v) is numpy.ndarray for v in saved_arrays)
    assert all(type(v) is numpy.ndarray for v in cuda_model.state_dict().values())


# ---------------------------------------------------------------------------------------------
# Data, summary, gradcheck
# ---------------------------------------------------------------------------------------------
def test_data_loader_on_cuda_gives_the_cpu_batches(simulated_gpu):
    dataset = data.SyntheticShapes(20, seed=0)
    transform = data.transforms.Compose([data.transforms.RandomCrop(32, padding=4),
                                         data.transforms.Normalize(*dataset.channel_mean_std())])
    loaders = {device: data.DataLoader(dataset, 8, shuffle=True, transform=transform, seed=3, device=device)
               for device in ("cpu", "cuda")}
    batches = {device: list(loader) for device, loader in loaders.items()}
    assert len(batches["cuda"]) == 3
    for (images, labels), (cpu_images, cpu_labels) in zip(batches["cuda"], batches["cpu"]):
        assert_on("cuda", images, labels)
        assert images.dtype == numpy.float32 and labels.dtype == numpy.int64
        numpy.testing.assert_array_equal(images.numpy(), cpu_images.numpy())
        numpy.testing.assert_array_equal(labels.numpy(), cpu_labels.numpy())
    assert loaders["cuda"].state_dict() == loaders["cpu"].state_dict()


def test_summary_of_a_cuda_model(simulated_gpu):
    cpu_model = inception_v1(num_classes=10, aux_logits=True, stem="cifar", width=0.125, seed=0)
    cuda_model = copy.deepcopy(cpu_model).to("cuda")
    table = minigrad.summary(cuda_model, (2, 3, 32, 32))
    assert str(table) == str(minigrad.summary(cpu_model, (2, 3, 32, 32)))
    assert_on("cuda", *cuda_model.parameters(), what="after summary")


def test_graph_drawing_of_a_cuda_model(simulated_gpu):
    from minigrad.viz import to_dot

    cpu_model = inception_v1(num_classes=10, aux_logits=False, stem="cifar", width=0.125, seed=0)
    cuda_model = copy.deepcopy(cpu_model).to("cuda")
    x = numpy.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(numpy.float32)
    texts = {}
    for device, model in (("cpu", cpu_model), ("cuda", cuda_model)):
        loss = F.cross_entropy(model(Tensor(x, device=device)), Tensor(numpy.array([1, 2]), device=device))
        texts[device] = (to_dot(loss, model=model), to_dot(model=model, input=Tensor(x, device=device),
                                                            collapse="module"))
        assert_on(device, *model.buffers(), what=f"buffers after to_dot on {device}")
    assert texts["cuda"] == texts["cpu"]


class WrongGradient(minigrad.Function):
    """x * 2 with a backward that forgets the factor 2: gradcheck must catch it on cuda too."""

    def forward(self, x):
        return x * 2

    def backward(self, grad):
        return grad


def test_gradcheck_on_cuda(simulated_gpu):
    rng = numpy.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True, device="cuda")
    weight = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True, device="cuda")
    report = gradcheck(lambda a, w: F.max_pool2d(F.conv2d(a, w, padding=1), 2), [x, weight])
    assert report.passed and all(row.checked > 0 for row in report.rows)
    block = BasicConv2d(3, 2, kernel_size=3, padding=1).to("cuda")
    with fixed_state(block):  # batch statistics in training, a frozen dropout mask drawn on the GPU
        report = gradcheck(lambda a: F.dropout(block(a), 0.3), [x], params=list(block.parameters()))
    assert report.passed and len(report.rows) == 1 + len(list(block.parameters()))
    assert_on("cuda", *block.parameters(), *block.buffers(), what="after gradcheck")
    with pytest.raises(GradcheckError):
        gradcheck(WrongGradient.apply, [Tensor(rng.standard_normal(4), requires_grad=True, device="cuda")])


def test_hand_written_cuda_kernels_are_reached_and_refused(simulated_gpu, monkeypatch):
    """With MINIGRAD_CUDA_KERNELS=1 the fast conv2d's im2col goes to the compiled CUDA C, which the simulation
    cannot run: it must say so rather than quietly take the array path."""
    from minigrad import kernels

    monkeypatch.setenv("MINIGRAD_CUDA_KERNELS", "1")
    x = minigrad.randn(1, 2, 5, 5, device="cuda")
    w = minigrad.randn(3, 2, 3, 3, device="cuda")
    with kernels.use("fast"), pytest.raises(sim.NotSimulatedError, match="RawKernel"):
        F.conv2d(x, w, padding=1)


# ---------------------------------------------------------------------------------------------
# `minigrad train --device cuda`: a tiny run, its checkpoint, and --resume
# ---------------------------------------------------------------------------------------------
TINY_RUN = ["--width", "0.125", "--train-size", "32", "--test-size", "16", "--batch-size", "16", "--epochs", "2",
            "--quiet"]


def read_checkpoint(out: Path) -> tuple[dict, dict]:
    with numpy.load(out / "checkpoint.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(bytes(arrays.pop("meta")).decode())


@pytest.fixture(scope="module")
def cuda_reference_run(tmp_path_factory) -> Path:
    """``minigrad train --device cuda`` for 2 epochs of 2 steps, uninterrupted."""
    out = tmp_path_factory.mktemp("cuda_run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        sim.install(monkeypatch)
        monkeypatch.setattr(sim, "ATOMIC_ORDER", "sequential")  # see the resume test's docstring
        assert cli.main(["train", "--device", "cuda", *TINY_RUN, "--out", str(out)]) == 0
    return out


def test_train_command_on_cuda_writes_a_host_checkpoint(cuda_reference_run):
    arrays, meta = read_checkpoint(cuda_reference_run)
    assert meta["epochs_done"] == 2 and len(meta["history"]) == 2
    assert meta["config"]["device"] == "cuda"
    assert meta["rng"]["cuda"]["draws"] > 0, "dropout must have drawn its masks on the GPU"
    assert any(name.startswith("model/") for name in arrays) and any(name.startswith("optimizer/") for name in arrays)
    assert all(numpy.isfinite(array).all() for array in arrays.values() if array.dtype.kind == "f")
    for row in meta["history"]:
        assert 0 <= row["test_acc"] <= 1 and numpy.isfinite(row["train_loss"])


def test_train_on_cuda_stopped_mid_epoch_then_resumed_is_bit_identical(cuda_reference_run, tmp_path, monkeypatch):
    """Ctrl-C after step 3 of 4 (mid epoch 2), then ``--resume``: the CUDA generator's state, the loader's
    position, the optimizer and the weights all come back, and the run ends exactly as the uninterrupted one.

    With atomic adds in index order. GoogLeNet's training step has none on a GPU since max-pool's backward adds
    tap by tap there (tested above); getitem's backward with repeated indices still does (ATOMIC_ADD_SITES)."""
    sim.install(monkeypatch)
    monkeypatch.setattr(sim, "ATOMIC_ORDER", "sequential")
    original_fit = train.fit

    def on_step(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: fit stops after this step and checkpoints

    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: original_fit(*args, on_step=on_step, **kwargs))
    assert cli.main(["train", "--device", "cuda", *TINY_RUN, "--out", str(tmp_path)]) == 130
    _, meta = read_checkpoint(tmp_path)
    assert meta["epochs_done"] == 1 and meta["loader"]["batches_done"] == 1 and meta["rng"]["cuda"]["draws"] > 0
    monkeypatch.setattr(train, "fit", original_fit)
    assert cli.main(["train", "--device", "cuda", "--resume", "--quiet", "--out", str(tmp_path)]) == 0

    arrays, meta = read_checkpoint(tmp_path)
    expected_arrays, expected_meta = read_checkpoint(cuda_reference_run)
    assert sorted(arrays) == sorted(expected_arrays)
    different = [name for name in arrays if arrays[name].tobytes() != expected_arrays[name].tobytes()]
    assert not different, f"{len(different)} arrays differ after resuming on cuda, e.g. {different[:5]}"
    for key in ("epochs_done", "loader", "rng", "scheduler"):
        assert meta[key] == expected_meta[key], key
    timing = {"images_per_s"}
    assert [{k: v for k, v in row.items() if k not in timing} for row in meta["history"]] == \
        [{k: v for k, v in row.items() if k not in timing} for row in expected_meta["history"]]


def test_dropout_refuses_a_numpy_generator_for_a_cuda_input(simulated_gpu):
    x = Tensor(numpy.ones((2, 3), numpy.float32), device="cuda")
    with pytest.raises(ValueError, match=r"dropout: the generator draws on cpu but the input \(2, 3\) is on cuda"):
        F.dropout(x, 0.5, True, generator=numpy.random.default_rng(0))


def test_benchmarks_run_their_cuda_path(simulated_gpu):
    """``python -m benchmarks --device cuda`` end to end on the simulated GPU (toy shapes): minigrad on the
    device, torch's column "n/a" (this torch has no CUDA), every row timed."""
    from benchmarks import bench_googlenet, bench_kernels
    from benchmarks.common import TORCH_HAS_NO_CUDA

    rows = bench_kernels.run(smoke=True, repeats=1, warmup=0, device="cuda")
    rows += bench_kernels.run(smoke=True, repeats=1, warmup=0, device="cuda", model_convs=True)[:4]
    rows += bench_googlenet.run(smoke=True, memory=False, device="cuda")
    assert len(rows) > 20 and all(row.minigrad_ms > 0 for row in rows)
    import torch

    if not torch.cuda.is_available():  # a CUDA build of torch would run beside it on the (real) GPU
        assert all(row.torch_ms is None and row.torch_note == TORCH_HAS_NO_CUDA for row in rows)
