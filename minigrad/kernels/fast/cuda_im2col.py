"""im2col and col2im as hand-written CUDA kernels (``cuda/im2col.cu``), launched through CuPy.

An opt-in alternative to the array versions (:mod:`minigrad.kernels.fast.im2col`, and the reference
:mod:`minigrad.kernels.im2col`) for CuPy arrays of float32 or float64. The dispatch point
(:mod:`minigrad.kernels.dispatch`) hands the fast convolution these kernels when the environment variable

    MINIGRAD_CUDA_KERNELS=1

is set (it reads it on every call, so a benchmark can time both paths in one program) and the arrays can
take them (:func:`can_take`). They are opt-in until a benchmark on a GPU shows them faster than the array
versions.

What the kernels do (the CUDA C source explains the index arithmetic line by line):

- ``im2col``: one GPU thread per entry of ``cols`` (C*kH*kW, N*H_out*W_out); it works out which
  (channel, tap, sample, window) its entry is, and copies that pixel of ``x`` (or a zero from the padding);
- ``col2im``: one thread per pixel of ``x`` (N, C, H, W); it *gathers* the column entries that were
  copied from its pixel and sums them, in the same (i, j) tap order as the array version, so the two
  agree bit for bit. No atomics, so the result is deterministic.

The launch: a 1-D grid of :data:`THREADS_PER_BLOCK`-thread blocks, as many as the elements need, capped
at :data:`MAX_BLOCKS` (the kernels loop when the grid is smaller than the work); see :func:`launch_config`.
CuPy's ``RawKernel`` passes arguments by their exact C type, so every size goes in as ``xp.int32`` (C
``int``) and the element count as ``xp.int64`` (C ``long long``); a Python int would not do.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from minigrad import backend
from minigrad.kernels.fast.im2col import ColumnKernels
from minigrad.kernels.geometry import WindowGeometry

SOURCE_PATH = Path(__file__).parent / "cuda" / "im2col.cu"
C_TYPE_NAMES = {"float32": "float", "float64": "double"}  # dtype -> the suffix of the kernel's name
THREADS_PER_BLOCK = 256  # a multiple of the 32-thread warp; 128-512 all work well for a copy like this
MAX_BLOCKS = 65536  # 16M threads: fills any current GPU many times over; larger work loops in the kernel


def can_take(array: Any) -> bool:
    """Whether these kernels can run on ``array``: a float32 or float64 array that CUDA C kernels can be
    launched on (a CuPy array)."""
    return backend.supports_raw_kernels(array) and array.dtype.name in C_TYPE_NAMES


@functools.lru_cache(maxsize=1)
def cuda_source() -> str:
    """The CUDA C source of the kernels (read once)."""
    return SOURCE_PATH.read_text()


def kernel_name(operation: str, dtype: Any) -> str:
    """The C name of the kernel for ``operation`` ("im2col" or "col2im") on arrays of ``dtype``."""
    return f"{operation}_{C_TYPE_NAMES[dtype.name]}"


def launch_config(
    total: int, threads_per_block: int = THREADS_PER_BLOCK, max_blocks: int | None = None
) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for a 1-D launch over ``total`` elements.

    ``blocks = ceil(total / threads_per_block)``, one thread per element, but at most ``max_blocks``
    (default :data:`MAX_BLOCKS`); beyond that each thread takes several elements (a grid-stride loop).
    """
    max_blocks = MAX_BLOCKS if max_blocks is None else max_blocks
    blocks = min(-(-total // threads_per_block), max_blocks)  # -(-a // b) is ceil(a / b) for ints
    return blocks, threads_per_block


def kernel_arguments(source: Any, target: Any, x_shape: tuple, geometry: WindowGeometry, total: int) -> tuple:
    """The arguments of every kernel in ``im2col.cu``, typed as its C signature declares them:
    ``(source, target, N, C, H, W, kH, kW, sH, sW, pad_top, pad_left, dH, dW, H_out, W_out, total)``,
    the 14 sizes as ``int32`` and ``total`` as ``int64``.

    ``source``/``target``: the C-contiguous input and output arrays (x and cols, or cols and x).
    """
    xp = backend.xp_of(source)
    (top, _), (left, _) = geometry.pads  # bottom/right pads only decide H_out/W_out, passed as such
    sizes = (*x_shape, *geometry.kernel, *geometry.stride, top, left, *geometry.dilation, *geometry.out_size)
    return (source, target, *(xp.int32(size) for size in sizes), xp.int64(total))


def _launch(operation: str, source: Any, target: Any, x_shape: tuple, geometry: WindowGeometry) -> None:
    """Run the ``operation`` kernel for ``source``'s dtype, writing every element of ``target``."""
    total = target.size
    if total == 0:  # a launch with zero blocks is an error in CUDA; there is nothing to do anyway
        return
    kernel = backend.raw_kernel(cuda_source(), kernel_name(operation, source.dtype))
    blocks, threads = launch_config(total)
    kernel((blocks,), (threads,), kernel_arguments(source, target, x_shape, geometry, total))


def im2col_cuda(x: Any, geometry: WindowGeometry, cols: Any) -> Any:
    """The columns of ``x`` written into ``cols`` by the CUDA kernel: x (N, C, H, W) ->
    cols (C * kH * kW, N * H_out * W_out), a C-contiguous array of x's dtype. Returns ``cols``."""
    x = backend.xp_of(x).ascontiguousarray(x)  # the kernel indexes x as one flat C-ordered block
    _launch("im2col", x, cols, tuple(x.shape), geometry)
    return cols


def col2im_cuda(cols: Any, x_shape: tuple, geometry: WindowGeometry, result: Any) -> Any:
    """The adjoint of :func:`im2col_cuda` written into ``result``: cols (C * kH * kW, N * H_out * W_out) ->
    result (N, C, H, W) = ``x_shape``, a C-contiguous array of cols' dtype. Returns ``result``."""
    cols = backend.xp_of(cols).ascontiguousarray(cols)
    _launch("col2im", cols, result, tuple(x_shape), geometry)
    return result


CUDA_COLUMNS = ColumnKernels(im2col_cuda, col2im_cuda)  # the pair the fast convolution takes from the dispatch
