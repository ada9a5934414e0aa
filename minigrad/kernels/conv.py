"""2-D convolution (cross-correlation, as in PyTorch), forward and backward, as im2col + matrix multiply.

Forward, for every group g of channels (``groups=1``: one group holding them all):

    cols = im2col(x)                                         # (C_in * kH * kW, N * H_out * W_out)
    out_matrix[g] = weight_matrix[g] @ cols[g]               # (C_out/groups, N * H_out * W_out)
    out = out_matrix.reshape(C_out, N, H_out, W_out).transpose(1, 0, 2, 3) + bias

where ``weight_matrix = weight.reshape(C_out, C_in/groups * kH * kW)`` and ``cols[g]`` is the block of rows
of group g's input channels. Backward, with ``grad_matrix`` the upstream gradient laid out like
``out_matrix``:

    grad_weight[g] = grad_matrix[g] @ cols[g].T              # sum over every window of every sample
    grad_cols[g]   = weight_matrix[g].T @ grad_matrix[g]
    grad_x         = col2im(grad_cols)                       # overlapping windows add up
    grad_bias      = grad_out.sum over (N, H_out, W_out)

What keeps it fast without hiding that idea:

- **One big matrix multiply** per group and chunk, never one per sample. Per-sample products
  (``matmul`` over a batch axis) would save the two axis-swapping copies, but each BLAS call starts and
  joins its threads, and on a busy 2-core machine one call per sample was 10-30x slower than one call
  over the whole batch (measured with numpy's OpenBLAS at GoogLeNet's 1x1 shapes).
- **1x1 convolutions** (stride 1, no padding) skip im2col: a 1x1 window holds one pixel's channels, so
  the columns are x itself with N and C swapped (``x.transpose(1, 0, 2, 3)``, one plain copy), and the
  input gradient is the column gradient swapped back (no col2im).
- **Bounded memory**: the columns are C_in*kH*kW/C_out times larger than the output (9x for a 3x3 conv
  keeping its channel count). The batch is cut into chunks whose columns fit in ``max_buffer_bytes``
  (default :data:`DEFAULT_BUFFER_BYTES`); one buffer is reused for every chunk and every call (a fresh
  one would be page-faulted in each time), and the results do not depend on the chunking. The
  backward recomputes the columns chunk by chunk instead of keeping them alive between forward and
  backward: one extra copy instead of a 9x larger memory footprint for every layer of a network.
- **No extra copies**: im2col writes the windows once in the layout the multiply wants, the matrix
  products write straight into preallocated arrays (``matmul(..., out=...)``), and the swap back to
  (N, C, H, W) is one copy that also adds the bias.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minigrad import backend
from minigrad.kernels.im2col import WindowGeometry, col2im, im2col, window_geometry
from minigrad.kernels.utils import Pads, pads_per_side, pair

DEFAULT_BUFFER_BYTES = 256 * 2**20  # largest column buffer one conv2d call may hold (per chunk of the batch)

# Scratch arrays kept between calls, keyed by (device, dtype, role). A fresh 100 MiB array costs page
# faults (the OS maps and zeroes every page on first touch: ~10 ms, as much as the im2col copy itself);
# a reused one is already mapped. Nothing returned to a caller or kept in a ctx points into them, and
# kernels run one at a time (not thread-safe). :func:`release_buffers` gives the memory back.
_scratch: dict = {}


def set_buffer_budget(nbytes: int) -> None:
    """Change :data:`DEFAULT_BUFFER_BYTES`, the column-buffer budget of calls that pass none."""
    global DEFAULT_BUFFER_BYTES
    if int(nbytes) < 1:
        raise ValueError(f"conv2d: the buffer budget must be a positive number of bytes, got {nbytes!r}")
    DEFAULT_BUFFER_BYTES = int(nbytes)


def release_buffers() -> None:
    """Free the scratch arrays conv2d keeps between calls (they come back on the next call)."""
    _scratch.clear()


def _scratch_array(like: Any, shape: tuple, role: str) -> Any:
    """An uninitialised C-contiguous array of ``shape`` and ``like``'s dtype and device, reused across
    calls: a view into a flat buffer kept in ``_scratch`` under ``role``, grown when it is too small."""
    size = 1
    for length in shape:
        size *= length
    key = (backend.device_of(like), like.dtype.str, role)
    if key not in _scratch or _scratch[key].size < size:
        _scratch.pop(key, None)  # free the old buffer before allocating the larger one
        _scratch[key] = backend.xp_of(like).empty(size, dtype=like.dtype)
    return _scratch[key][:size].reshape(shape)


class ConvContext(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass (the input itself, not its columns)."""

    x: Any
    weight: Any
    has_bias: bool
    geometry: WindowGeometry
    groups: int
    max_buffer_bytes: int


def normalize_padding(padding: Any, kernel_size: Any, stride: Any, dilation: Any, op: str = "conv2d") -> Pads:
    """Padding as pads per side ``((top, bottom), (left, right))``.

    ``padding``: an int, a pair ``(pH, pW)``, pads per side, ``"valid"`` (no padding) or ``"same"`` (output
    as large as the input; stride 1 only). For "same" the total pad along an axis is ``d * (k - 1)``; when
    it is odd (even kernels) the extra pixel goes on the bottom/right, as in PyTorch.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if pair(stride, "stride", op, minimum=1) != (1, 1):
            raise ValueError(
                f"{op}: padding='same' needs stride 1, got stride {stride!r} (PyTorch has the same rule); "
                f"pass the padding as numbers instead"
            )
        kernel = pair(kernel_size, "kernel_size", op, minimum=1)
        dilation = pair(dilation, "dilation", op, minimum=1)
        totals = [dilation[axis] * (kernel[axis] - 1) for axis in range(2)]
        return ((totals[0] // 2, totals[0] - totals[0] // 2), (totals[1] // 2, totals[1] - totals[1] // 2))
    return pads_per_side(padding, op)


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    max_buffer_bytes: int | None = None,
) -> tuple[Any, ConvContext]:
    """2-D convolution: x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None
    -> (out (N, C_out, H_out, W_out), ctx for :func:`conv2d_backward`).

    ``out[n, o] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]``
    with c running over the input channels of o's group. ``H_out = floor((H + pads - d(kH-1) - 1)/s) + 1``.
    """
    geometry = _check_arguments(x, weight, bias, stride, padding, dilation, groups)
    budget = DEFAULT_BUFFER_BYTES if max_buffer_bytes is None else int(max_buffer_bytes)
    xp = backend.xp_of(x)
    n, out_channels = x.shape[0], weight.shape[0]
    out_h, out_w = geometry.out_size
    out = xp.empty((n, out_channels, out_h, out_w), dtype=x.dtype)
    weight_matrix = weight.reshape(out_channels, -1)

    for start, stop, cols in _column_chunks(x, geometry, budget):
        chunk = stop - start
        out_matrix = _scratch_array(x, (out_channels, cols.shape[1]), "rows")
        _grouped_matmul(weight_matrix, cols, out_matrix, groups)
        # (C_out, chunk, H_out*W_out) -> (chunk, C_out, H_out*W_out): one copy, bias added on the way.
        out_matrix = out_matrix.reshape(out_channels, chunk, out_h * out_w).transpose(1, 0, 2)
        out_chunk = out[start:stop].reshape(chunk, out_channels, out_h * out_w)
        if bias is None:
            out_chunk[...] = out_matrix
        else:
            xp.add(out_matrix, bias.reshape(-1, 1), out=out_chunk)
    return out, ConvContext(x, weight, bias is not None, geometry, groups, budget)


def conv2d_backward(
    grad_out: Any,
    ctx: ConvContext,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d_forward`: grad_out (N, C_out, H_out, W_out) -> (grad_x, grad_weight,
    grad_bias) with the shapes of x, weight and bias; entries not needed (or no bias) are None."""
    x, weight, geometry, groups = ctx.x, ctx.weight, ctx.geometry, ctx.groups
    n, out_channels = x.shape[0], weight.shape[0]
    out_h, out_w = geometry.out_size
    expected = (n, out_channels, out_h, out_w)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"conv2d backward: grad_out has shape {tuple(grad_out.shape)}, expected {expected}")
    xp = backend.xp_of(grad_out)
    grad_out = grad_out.astype(x.dtype, copy=False)
    weight_matrix = weight.reshape(out_channels, -1)

    grad_bias = grad_out.sum(axis=(0, 2, 3)) if (need_bias_grad and ctx.has_bias) else None
    grad_x = xp.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    grad_weight_matrix = xp.zeros(weight_matrix.shape, dtype=x.dtype) if need_weight_grad else None
    if not (need_input_grad or need_weight_grad):
        return None, None, grad_bias

    chunks = _column_chunks(x, geometry, ctx.max_buffer_bytes, fill=need_weight_grad)
    for start, stop, cols in chunks:
        chunk = stop - start
        # grad_out[chunk] laid out like the forward's out_matrix: (C_out, chunk * H_out * W_out).
        grad_matrix = _scratch_array(x, (out_channels, cols.shape[1]), "rows")
        grad_matrix.reshape(out_channels, chunk, out_h * out_w)[...] = (
            grad_out[start:stop].reshape(chunk, out_channels, -1).transpose(1, 0, 2)
        )
        if need_weight_grad:
            _accumulate_weight_grad(grad_matrix, cols, grad_weight_matrix, groups)
        if need_input_grad:
            # The columns are no longer needed: their buffer receives the column gradient.
            grad_cols = cols
            _grouped_matmul(weight_matrix, grad_matrix, grad_cols, groups, transpose_weight=True)
            if _is_pointwise(geometry):  # the adjoint of the plain axis swap is the swap back
                grad_x[start:stop] = _swap_batch_and_channels(grad_cols, (chunk, *x.shape[1:]))
            else:
                col2im(
                    grad_cols,
                    (chunk, *x.shape[1:]),
                    geometry.kernel,
                    geometry.stride,
                    geometry.pads,
                    geometry.dilation,
                    out=grad_x[start:stop],
                )
    grad_weight = grad_weight_matrix.reshape(weight.shape) if need_weight_grad else None
    return grad_x, grad_weight, grad_bias


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _is_pointwise(geometry: WindowGeometry) -> bool:
    """True for a 1x1 kernel with stride 1 and no padding: a plain matrix multiply over channels."""
    return geometry.kernel == (1, 1) and geometry.stride == (1, 1) and geometry.pads == ((0, 0), (0, 0))


def _swap_batch_and_channels(matrix: Any, x_shape: tuple) -> Any:
    """View a (C, N * H * W) matrix as the (N, C, H, W) array it holds (axes swapped, no copy)."""
    n, c, h, w = x_shape
    return matrix.reshape(c, n, h, w).transpose(1, 0, 2, 3)


def _column_chunks(x: Any, geometry: WindowGeometry, max_buffer_bytes: int, fill: bool = True):
    """Yield ``(start, stop, cols)``: im2col of ``x[start:stop]`` for consecutive batch chunks
    (with ``fill=False`` only the buffer, for a caller that writes its own columns).

    A chunk holds as many samples as fit in ``max_buffer_bytes`` of columns (at least one sample).
    All chunks, and all calls, share one scratch buffer.
    """
    n, in_channels = x.shape[:2]
    (kernel_h, kernel_w), (out_h, out_w) = geometry.kernel, geometry.out_size
    rows, columns_per_sample = in_channels * kernel_h * kernel_w, out_h * out_w
    bytes_per_sample = rows * columns_per_sample * x.dtype.itemsize
    chunk = max(1, min(n, max_buffer_bytes // bytes_per_sample))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        cols = _scratch_array(x, (rows, (stop - start) * columns_per_sample), "columns")
        if fill and _is_pointwise(geometry):
            # A 1x1 window holds one pixel's channels: the columns are x itself with N and C swapped,
            # a plain copy with no window view and no padding (im2col would do the same, more slowly).
            _swap_batch_and_channels(cols, (stop - start, *x.shape[1:]))[...] = x[start:stop]
        elif fill:
            im2col(
                x[start:stop], geometry.kernel, geometry.stride, geometry.pads, geometry.dilation, out=cols
            )
        yield start, stop, cols


def _by_group(matrix: Any, groups: int) -> Any:
    """View a (rows, columns) matrix as (groups, rows/groups, columns): one block of rows per group."""
    rows, columns = matrix.shape
    return matrix.reshape(groups, rows // groups, columns)


def _grouped_matmul(
    weight_matrix: Any, inputs: Any, out: Any, groups: int, transpose_weight: bool = False
) -> None:
    """``out[g] = W[g] @ inputs[g]`` (or ``W[g].T @ inputs[g]``) for every group g, written into ``out``.

    ``weight_matrix``: (C_out, K_g); ``inputs``/``out``: matrices whose rows split into ``groups`` equal
    consecutive blocks. One ``matmul`` call does every group: it loops over the groups in C, calling BLAS
    once per group (once in all for ``groups=1``).
    """
    weights = _by_group(weight_matrix, groups)  # (groups, C_out/groups, K_g)
    if transpose_weight:
        weights = weights.transpose(0, 2, 1)
    backend.xp_of(inputs).matmul(weights, _by_group(inputs, groups), out=_by_group(out, groups))


def _accumulate_weight_grad(grad_matrix: Any, cols: Any, grad_weight_matrix: Any, groups: int) -> None:
    """``grad_weight[g] += grad_matrix[g] @ cols[g].T`` for every group (one chunk's share of the sum).

    Computed as ``(cols[g] @ grad_matrix[g].T).T``: the same numbers, but OpenBLAS runs this orientation
    of the long-inner-dimension product 5-45% faster on GoogLeNet's shapes (AVX-512 kernel; equal on the
    older Haswell one). The transpose of the small (C_out, K) result is free (a view) before the add.
    """
    grad_by_group = _by_group(grad_matrix, groups).transpose(0, 2, 1)  # (groups, columns, C_out/groups), a view
    product = backend.xp_of(cols).matmul(_by_group(cols, groups), grad_by_group)  # (groups, K_g, C_out/groups)
    _by_group(grad_weight_matrix, groups)[...] += product.transpose(0, 2, 1)


def _check_arguments(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> WindowGeometry:
    """Validate conv2d's arguments (raising errors that name the shapes and the fix); return the geometry."""
    if x.ndim != 4:
        raise ValueError(
            f"conv2d: expected a 4-D input (N, C_in, H, W), got shape {tuple(x.shape)}; "
            f"add a batch axis with x[None] or reshape the input"
        )
    if weight.ndim != 4:
        raise ValueError(
            f"conv2d: expected a 4-D weight (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}"
        )
    for name, array in (("input", x), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        if array.dtype.kind != "f":
            raise TypeError(f"conv2d: {name} must be floating point, got dtype {array.dtype}; cast it first")
        if array.dtype != x.dtype:
            raise TypeError(
                f"conv2d: {name} has dtype {array.dtype} but the input has {x.dtype}; cast both to one dtype"
            )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    in_channels, out_channels = x.shape[1], weight.shape[0]
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide both in_channels={in_channels} and out_channels={out_channels} "
            f"(input {tuple(x.shape)}, weight {tuple(weight.shape)}); choose groups that divides both"
        )
    if weight.shape[1] * groups != in_channels:
        raise ValueError(
            f"conv2d: input has {in_channels} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {weight.shape[1] * groups} (input {tuple(x.shape)}); pass an input with "
            f"{weight.shape[1] * groups} channels or a weight of shape "
            f"({out_channels}, {in_channels // groups}, {weight.shape[2]}, {weight.shape[3]})"
        )
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(
            f"conv2d: bias must have shape (C_out,) = ({out_channels},), got {tuple(bias.shape)}"
        )
    kernel = tuple(weight.shape[2:])
    stride = pair(stride, "stride", "conv2d", minimum=1)
    dilation = pair(dilation, "dilation", "conv2d", minimum=1)
    pads = normalize_padding(padding, kernel, stride, dilation, op="conv2d")
    return window_geometry(x.shape, kernel, stride, pads, dilation, op="conv2d")
