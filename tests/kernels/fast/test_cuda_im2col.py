"""The CUDA im2col/col2im kernels (minigrad/kernels/fast/cuda/im2col.cu) and their loader, checked without a GPU.

1. nvcc compiles every ``*.cu`` file in the package to PTX, warning-free, with every kernel entry present.
2. A CPU emulation of a CUDA launch: the same .cu source is compiled by a C++ compiler with ``__global__``
   defined away and ``blockIdx``/``threadIdx``/``blockDim``/``gridDim`` as plain globals, and every
   (block, thread) of the grid the loader computes is run in a loop. Patched in for
   ``backend.raw_kernel``, it runs the loader end to end on NumPy arrays, checking the argument types
   against the C signatures as strictly as CuPy does, and out-of-bounds accesses through guard cells.
   The results must equal the reference im2col/col2im (minigrad/kernels/im2col.py) bit for bit.
3. The dispatch (minigrad/kernels/dispatch.py): NumPy arrays never take the CUDA path, nor does the reference
   mode; the environment switch is read on every call; a fast convolution on the CUDA kernels equals the
   reference convolution.

Without nvcc or a C++ compiler these tests skip; with ``MINIGRAD_REQUIRE_NVCC=1`` (set in CI) they fail.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import minigrad
from minigrad import backend, kernels
from minigrad.kernels import conv, dispatch
from minigrad.kernels.fast import cuda_im2col
from minigrad.kernels.geometry import window_geometry
from minigrad.kernels.im2col import col2im, im2col
from minigrad.testing.tolerance import assert_close

PACKAGE_DIR = Path(minigrad.__file__).parent
CUDA_SOURCES = sorted(PACKAGE_DIR.rglob("*.cu"))
REQUIRE_NVCC = os.environ.get("MINIGRAD_REQUIRE_NVCC", "") not in ("", "0")

# `extern "C" __global__ void name(parameters)`: the entry points of a .cu file.
KERNEL_DECLARATION = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
# C parameter type -> (ctypes type, what the loader must pass: a numpy scalar type, or an array dtype).
SCALAR_TYPES = {"int": (ctypes.c_int32, np.int32), "long long": (ctypes.c_int64, np.int64)}
POINTER_DTYPES = {"float": np.float32, "double": np.float64}


def kernel_signatures(source: str) -> dict[str, list[str]]:
    """``{kernel name: [C type of each parameter]}`` for every ``extern "C" __global__`` kernel."""
    signatures = {}
    for name, parameters in KERNEL_DECLARATION.findall(source):
        types = []
        for parameter in parameters.split(","):
            words = parameter.replace("*", " * ").split()
            types.append(" ".join(words[:-1]))  # drop the parameter's name: "const float *", "int", ...
        signatures[name] = types
    return signatures


def missing_tool(reason: str):
    """Skip, or fail in CI (MINIGRAD_REQUIRE_NVCC=1), when a compiler these tests need is missing."""
    if REQUIRE_NVCC:
        pytest.fail(f"{reason}, but MINIGRAD_REQUIRE_NVCC=1 asks for these tests to run", pytrace=False)
    pytest.skip(reason)


def find_nvcc() -> str | None:
    """nvcc on PATH, else in $CUDA_HOME/bin or $CUDA_PATH/bin; None when there is none."""
    candidates = [shutil.which("nvcc")]
    candidates += [str(Path(os.environ[name]) / "bin" / "nvcc") for name in ("CUDA_HOME", "CUDA_PATH")
                   if name in os.environ]
    return next((path for path in candidates if path and Path(path).is_file()), None)


# ---------------------------------------------------------------------------
# 1. nvcc compiles every .cu file to PTX
# ---------------------------------------------------------------------------
def test_the_package_has_cuda_sources_with_the_kernels_the_loader_launches():
    assert cuda_im2col.SOURCE_PATH in CUDA_SOURCES
    signatures = kernel_signatures(cuda_im2col.cuda_source())
    for operation in ("im2col", "col2im"):
        for dtype in (np.float32, np.float64):
            assert cuda_im2col.kernel_name(operation, np.dtype(dtype)) in signatures


@pytest.mark.parametrize("source_path", CUDA_SOURCES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_cuda_source_compiles_to_ptx_without_warnings(source_path, tmp_path):
    nvcc = find_nvcc()
    if nvcc is None:
        missing_tool("nvcc (the CUDA toolkit's compiler) is not on PATH, CUDA_HOME or CUDA_PATH")
    ptx_path = tmp_path / (source_path.stem + ".ptx")
    command = [nvcc, "--ptx", "-Werror", "all-warnings", "-o", str(ptx_path), str(source_path)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stderr}"
    assert "warning" not in finished.stderr.lower(), finished.stderr
    ptx = ptx_path.read_text()
    names = kernel_signatures(source_path.read_text())
    assert names, f"{source_path.name} declares no extern \"C\" __global__ kernel"
    for name in names:
        assert re.search(rf"\.entry\s+{name}\s*\(", ptx), f"no .entry {name} in the PTX of {source_path.name}"


def test_loader_arguments_have_the_c_types_of_every_kernel():
    """CuPy passes scalars by their exact C type: int32 for `int`, int64 for `long long`."""
    geometry = window_geometry((2, 3, 5, 5), (3, 3), 1, 1, 1)
    x, cols = np.zeros((2, 3, 5, 5), np.float32), np.zeros((27, 50), np.float32)
    arguments = cuda_im2col.kernel_arguments(x, cols, x.shape, geometry, cols.size)
    for name, types in kernel_signatures(cuda_im2col.cuda_source()).items():
        assert len(arguments) == len(types), name
        for argument, c_type in zip(arguments, types):
            if "*" in c_type:
                assert isinstance(argument, np.ndarray), (name, c_type)
            else:
                assert type(argument) is SCALAR_TYPES[c_type][1], (name, c_type, type(argument))


# ---------------------------------------------------------------------------
# 2. The kernels emulated on the CPU
# ---------------------------------------------------------------------------
HARNESS = """
// CUDA's built-in launch variables, as plain globals that launch() below sets.
struct uint3 { unsigned int x, y, z; };
typedef uint3 dim3;
static uint3 blockIdx, threadIdx;
static dim3 blockDim, gridDim;
#define __global__
#define __device__
#include "SOURCE_PATH"

// Run every thread of a 1-D grid, one after the other.
template <typename Kernel, typename... Arguments>
static void launch(unsigned int blocks, unsigned int threads, Kernel kernel, Arguments... arguments) {
    gridDim = {blocks, 1, 1};
    blockDim = {threads, 1, 1};
    for (unsigned int block = 0; block < blocks; ++block) {
        for (unsigned int thread = 0; thread < threads; ++thread) {
            blockIdx = {block, 0, 0};
            threadIdx = {thread, 0, 0};
            kernel(arguments...);
        }
    }
}
"""
EMULATOR = """
extern "C" void emulate_{name}(unsigned int blocks, unsigned int threads, {parameters}) {{
    launch(blocks, threads, {name}, {arguments});
}}
"""
GUARD_CELLS = 64  # NaN cells around every array the emulated kernel gets: reads or writes past it show


class EmulatedKernel:
    """Stands in for the ``cupy.RawKernel`` of one kernel: ``kernel(grid, block, arguments)``."""

    def __init__(self, function, name: str, c_types: list[str]):
        self.function, self.name, self.c_types = function, name, c_types
        self.launches: list[tuple] = []

    def __call__(self, grid: tuple, block: tuple, arguments: tuple) -> None:
        assert len(grid) == 1 and len(block) == 1 and grid[0] >= 1 and block[0] >= 1, (grid, block)
        assert len(arguments) == len(self.c_types), f"{self.name}: {len(arguments)} arguments"
        self.launches.append((grid, block))
        guarded, c_arguments = [], []
        for argument, c_type in zip(arguments, self.c_types):
            if "*" in c_type:  # an array: the loader must hand over C-contiguous memory of the C type
                expected = POINTER_DTYPES[c_type.replace("const", "").replace("*", "").strip()]
                assert isinstance(argument, np.ndarray) and argument.dtype == expected, (self.name, c_type)
                assert argument.flags.c_contiguous, f"{self.name}: a non-contiguous array for {c_type}"
                buffer = np.full(argument.size + 2 * GUARD_CELLS, np.nan, dtype=argument.dtype)
                buffer[GUARD_CELLS:-GUARD_CELLS] = argument.ravel()
                guarded.append((argument, buffer))
                c_arguments.append(ctypes.c_void_p(buffer.ctypes.data + GUARD_CELLS * buffer.itemsize))
            else:  # CuPy needs the exact numpy scalar type of the C type
                c_scalar, numpy_scalar = SCALAR_TYPES[c_type]
                assert type(argument) is numpy_scalar, f"{self.name}: {type(argument)} passed for {c_type}"
                c_arguments.append(c_scalar(int(argument)))
        self.function(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *c_arguments)
        for argument, buffer in guarded:
            guards = np.concatenate([buffer[:GUARD_CELLS], buffer[-GUARD_CELLS:]])
            assert np.isnan(guards).all(), f"{self.name} wrote outside an array"
            argument[...] = buffer[GUARD_CELLS:-GUARD_CELLS].reshape(argument.shape)


@pytest.fixture(scope="module")
def emulated_kernels(tmp_path_factory) -> dict[str, EmulatedKernel]:
    """Every kernel of im2col.cu compiled for the CPU (once per test session worker), by name."""
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        missing_tool("no C++ compiler (g++, c++ or clang++) to emulate the CUDA kernels on the CPU")
    source = cuda_im2col.cuda_source()
    signatures = kernel_signatures(source)
    code = HARNESS.replace("SOURCE_PATH", cuda_im2col.SOURCE_PATH.as_posix())
    for name, parameters in KERNEL_DECLARATION.findall(source):
        names = [parameter.replace("*", " ").split()[-1] for parameter in parameters.split(",")]
        parameters = " ".join(parameters.split())
        code += EMULATOR.format(name=name, parameters=parameters, arguments=", ".join(names))
    directory = tmp_path_factory.mktemp("cuda_emulation")
    (directory / "harness.cpp").write_text(code)
    library_path = directory / "libemulated_kernels.so"
    command = [compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
               "-o", str(library_path), str(directory / "harness.cpp")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stderr}"
    library = ctypes.CDLL(str(library_path))
    kernels = {}
    for name, c_types in signatures.items():
        function = getattr(library, f"emulate_{name}")
        function.restype = None
        kernels[name] = EmulatedKernel(function, name, c_types)
    return kernels


@pytest.fixture
def emulated_raw_kernel(emulated_kernels, monkeypatch) -> dict[str, EmulatedKernel]:
    """``backend.raw_kernel`` replaced by the emulated kernels (each with a fresh launch record)."""
    for kernel in emulated_kernels.values():
        kernel.launches = []

    def raw_kernel(source: str, name: str) -> EmulatedKernel:
        assert source == cuda_im2col.SOURCE_PATH.read_text()
        return emulated_kernels[name]

    monkeypatch.setattr(backend, "raw_kernel", raw_kernel)
    return emulated_kernels


rng = np.random.default_rng(0)

# (x_shape, kernel, stride, padding, dilation)
CASES = [
    ((2, 3, 5, 5), (3, 3), (1, 1), 1, (1, 1)),  # the common 3x3 "same" conv, batch 2
    ((1, 2, 7, 6), (2, 3), (2, 1), (1, 0), (1, 1)),  # non-square kernel, stride and input; even kernel
    ((2, 1, 9, 8), (3, 2), (2, 3), ((1, 2), (0, 1)), (2, 1)),  # pads per side, dilation
    ((3, 2, 4, 4), (4, 4), (1, 1), 0, (1, 1)),  # one window covering the whole input
    ((2, 4, 3, 5), (1, 1), (1, 1), 0, (1, 1)),  # 1x1
    ((2, 3, 7, 5), (1, 1), (2, 2), 1, (1, 1)),  # 1x1 strided over padding: whole columns of zeros
    ((1, 3, 6, 7), (3, 3), (3, 2), 2, (2, 3)),  # stride > span: pixels no window reads
    ((4, 5, 11, 13), (5, 3), (2, 1), (2, 1), (1, 2)),  # larger: many blocks
]
DTYPES = [np.float32, np.float64]
# None: the loader's own cap (one thread per element here); 3: three blocks, each thread loops.
MAX_BLOCKS = [None, 3]


def case_id(case) -> str:
    x_shape, kernel, stride, padding, dilation = case
    return f"x{x_shape}-k{kernel}-s{stride}-p{padding}-d{dilation}".replace(" ", "")


@pytest.fixture(params=MAX_BLOCKS, ids=lambda m: "grid-default" if m is None else f"grid-max{m}")
def max_blocks(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(cuda_im2col, "MAX_BLOCKS", request.param)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emulated_im2col_equals_the_array_version(case, dtype, max_blocks, emulated_raw_kernel):
    x_shape, kernel, stride, padding, dilation = case
    x = rng.standard_normal(x_shape).astype(dtype)
    expected = im2col(x, kernel, stride, padding, dilation)
    geometry = window_geometry(x_shape, kernel, stride, padding, dilation)
    cols = np.full(expected.shape, np.nan, dtype=dtype)  # NaN: an entry the kernel never writes shows up
    assert cuda_im2col.im2col_cuda(x, geometry, cols) is cols
    np.testing.assert_array_equal(cols, expected)  # a copy: exact
    (grid, block), = emulated_raw_kernel[f"im2col_{'float' if dtype == np.float32 else 'double'}"].launches
    assert (grid[0], block[0]) == cuda_im2col.launch_config(cols.size, max_blocks=max_blocks)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emulated_col2im_equals_the_array_version(case, dtype, max_blocks, emulated_raw_kernel):
    x_shape, kernel, stride, padding, dilation = case
    geometry = window_geometry(x_shape, kernel, stride, padding, dilation)
    rows = x_shape[1] * kernel[0] * kernel[1]
    cols = rng.standard_normal((rows, x_shape[0] * geometry.out_size[0] * geometry.out_size[1])).astype(dtype)
    expected = col2im(cols, x_shape, kernel, stride, padding, dilation)
    result = np.full(x_shape, np.nan, dtype=dtype)
    assert cuda_im2col.col2im_cuda(cols, x_shape, geometry, result) is result
    # The kernel adds the taps in the array version's (i, j) order, so even the float32 sums agree exactly.
    np.testing.assert_array_equal(result, expected)


def test_emulated_kernels_take_non_contiguous_inputs(emulated_raw_kernel):
    """The loader copies a strided input into one C-ordered block before the kernel indexes it."""
    x = rng.standard_normal((5, 6, 3, 2)).astype(np.float32).transpose(3, 2, 1, 0)  # (2, 3, 6, 5), strided
    geometry = window_geometry(x.shape, (3, 2), 1, 1, 1)
    expected = im2col(x, (3, 2), 1, 1, 1)
    cols = cuda_im2col.im2col_cuda(x, geometry, np.empty(expected.shape, np.float32))
    np.testing.assert_array_equal(cols, expected)
    strided_cols = np.asfortranarray(rng.standard_normal(expected.shape).astype(np.float32))
    result = cuda_im2col.col2im_cuda(strided_cols, x.shape, geometry, np.empty(x.shape, np.float32))
    np.testing.assert_array_equal(result, col2im(strided_cols, x.shape, (3, 2), 1, 1, 1))


def test_an_empty_batch_launches_nothing(monkeypatch):
    def raw_kernel(source, name):
        raise AssertionError("no kernel should be launched for zero elements")

    monkeypatch.setattr(backend, "raw_kernel", raw_kernel)
    x = np.zeros((0, 2, 4, 4), np.float32)
    geometry = window_geometry(x.shape, 3, 1, 1, 1)
    cols = cuda_im2col.im2col_cuda(x, geometry, np.empty((18, 0), np.float32))
    assert cols.shape == (18, 0)


def test_launch_config():
    assert cuda_im2col.launch_config(1) == (1, 256)
    assert cuda_im2col.launch_config(256) == (1, 256)
    assert cuda_im2col.launch_config(257) == (2, 256)
    assert cuda_im2col.launch_config(10_000, threads_per_block=128) == (79, 128)
    assert cuda_im2col.launch_config(10**12) == (cuda_im2col.MAX_BLOCKS, 256)  # capped: the kernels loop
    assert cuda_im2col.launch_config(10_000, max_blocks=3) == (3, 256)


# ---------------------------------------------------------------------------
# 3. The dispatch (minigrad/kernels/dispatch.py)
# ---------------------------------------------------------------------------
SWITCH = dispatch.CUDA_KERNELS_SWITCH


def test_the_environment_switch_is_read_on_every_call(monkeypatch):
    monkeypatch.delenv(SWITCH, raising=False)
    assert not dispatch.cuda_kernels_enabled()
    for value, enabled in (("1", True), ("0", False), ("", False), ("yes", True)):
        monkeypatch.setenv(SWITCH, value)
        assert dispatch.cuda_kernels_enabled() is enabled, value


def forbid_cuda_path(monkeypatch):
    """Make any use of the CUDA path fail the test."""

    def fail(*args, **kwargs):
        raise AssertionError("the CUDA path was taken")

    monkeypatch.setattr(backend, "raw_kernel", fail)
    monkeypatch.setattr(cuda_im2col, "im2col_cuda", fail)
    monkeypatch.setattr(cuda_im2col, "col2im_cuda", fail)


def naive_im2col(x, kernel, stride, pad, dilation):
    """Loops over the formula of the reference's docstring (square pads), an independent reference."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h = (h + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    out_w = (w + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    cols = np.zeros((c, kernel, kernel, n, out_h, out_w), x.dtype)
    for channel, i, j, sample, oh, ow in np.ndindex(cols.shape):
        cols[channel, i, j, sample, oh, ow] = padded[sample, channel, oh * stride + i * dilation,
                                                     ow * stride + j * dilation]
    return cols.reshape(c * kernel * kernel, -1)


def test_numpy_arrays_never_take_the_cuda_path(monkeypatch):
    monkeypatch.setenv(SWITCH, "1")
    forbid_cuda_path(monkeypatch)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    with kernels.use("fast"):
        assert not dispatch.use_cuda_kernels(x) and dispatch.column_kernels(x) is not cuda_im2col.CUDA_COLUMNS
        cols = dispatch.im2col(x, 3, 2, 1, 1)
        np.testing.assert_array_equal(cols, naive_im2col(x, 3, 2, 1, 1))
        assert dispatch.col2im(cols, x.shape, 3, 2, 1, 1).shape == x.shape


def pretend_arrays_are_on_the_gpu(monkeypatch):
    """``backend.supports_raw_kernels`` answering True for NumPy arrays: the dispatch then treats them as CuPy's."""
    monkeypatch.setattr(backend, "supports_raw_kernels", lambda array: True)


def test_gpu_arrays_take_the_array_path_while_the_switch_is_off_or_the_mode_is_reference(monkeypatch):
    pretend_arrays_are_on_the_gpu(monkeypatch)
    forbid_cuda_path(monkeypatch)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    for value, mode in ((None, "fast"), ("0", "fast"), ("1", "reference")):
        if value is None:
            monkeypatch.delenv(SWITCH, raising=False)
        else:
            monkeypatch.setenv(SWITCH, value)
        with kernels.use(mode):
            assert not dispatch.use_cuda_kernels(x)
            np.testing.assert_array_equal(dispatch.im2col(x, 3, 2, 1, 1), naive_im2col(x, 3, 2, 1, 1))
            dispatch.conv2d_forward(x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32), padding=1)


def test_gpu_arrays_take_the_cuda_path_when_switched_on(monkeypatch, emulated_raw_kernel):
    """im2col / col2im (with and without ``out``) reach the kernels; float16 stays on the array path."""
    pretend_arrays_are_on_the_gpu(monkeypatch)
    monkeypatch.setenv(SWITCH, "1")
    x = rng.standard_normal((2, 3, 6, 5))  # float64
    with kernels.use("fast"):
        cols = dispatch.im2col(x, 3, 2, 1, 1)
        np.testing.assert_array_equal(cols, naive_im2col(x, 3, 2, 1, 1))
        assert len(emulated_raw_kernel["im2col_double"].launches) == 1
        out = np.empty(x.shape)
        assert dispatch.col2im(cols, x.shape, 3, 2, 1, 1, out=out) is out
        assert len(emulated_raw_kernel["col2im_double"].launches) == 1
        with pytest.raises(ValueError, match=r"col2im: cols has shape \(27, 5\)"):
            dispatch.col2im(cols[:, :5], x.shape, 3, 2, 1, 1)
        monkeypatch.delenv(SWITCH)
        np.testing.assert_array_equal(out, col2im(cols, x.shape, 3, 2, 1, 1))  # the array path, same result
        monkeypatch.setenv(SWITCH, "1")
        half = x.astype(np.float16)
        assert not dispatch.use_cuda_kernels(half)
        np.testing.assert_array_equal(dispatch.im2col(half, 3, 2, 1, 1), naive_im2col(half, 3, 2, 1, 1))
        assert len(emulated_raw_kernel["im2col_double"].launches) == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_the_fast_convolution_on_the_cuda_kernels_equals_the_reference(monkeypatch, emulated_raw_kernel, dtype):
    """The dispatch hands the fast conv2d the CUDA pair; forward and backward equal the reference conv2d's."""
    pretend_arrays_are_on_the_gpu(monkeypatch)
    monkeypatch.setenv(SWITCH, "1")
    x = rng.standard_normal((3, 4, 7, 6)).astype(dtype)
    weight, bias = rng.standard_normal((6, 2, 3, 3)).astype(dtype), rng.standard_normal(6).astype(dtype)
    options = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    with kernels.use("fast"):
        out, ctx = dispatch.conv2d_forward(x, weight, bias, **options)
        grad_out = rng.standard_normal(out.shape).astype(dtype)
        grads = dispatch.conv2d_backward(grad_out, ctx)
    assert ctx.columns is cuda_im2col.CUDA_COLUMNS
    assert emulated_raw_kernel[f"im2col_{'float' if dtype == np.float32 else 'double'}"].launches
    assert emulated_raw_kernel[f"col2im_{'float' if dtype == np.float32 else 'double'}"].launches
    expected_out, expected_ctx = conv.conv2d_forward(x, weight, bias, **options)
    for mine, reference in zip((out, *grads), (expected_out, *conv.conv2d_backward(grad_out, expected_ctx))):
        assert_close(mine, reference, terms=x.size, float64=(1e-12, 1e-12))
