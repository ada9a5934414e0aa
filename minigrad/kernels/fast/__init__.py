"""The fast kernels: the same numbers as the reference kernels of :mod:`minigrad.kernels`, sooner.

Each module replaces one reference module, names it, and is tested against it (tests/kernels/fast/):

- ``im2col.py``: im2col/col2im into reused buffers, one strided copy (replaces ``kernels/im2col.py``);
- ``cuda_im2col.py`` with ``cuda/im2col.cu``: the same two as CUDA C, opt-in (``MINIGRAD_CUDA_KERNELS=1``);
- ``conv.py``: three methods, chosen per call (``choose_method``): "columns" (im2col into scratch buffers,
  batch chunks under a memory budget, the 1x1 swap shortcut, the weight gradient turned round), "pointwise"
  (a 1x1 kernel as one product per sample, no copies) and "rows" (replaces ``kernels/conv.py``);
- ``conv_rows.py``: the "rows" method, for shallow stride-1 kernels: im2col along the width only, the kernel
  rows added by shifting;
- ``batch_chunks.py``: the pooling kernels' cache-sized batch chunks;
- ``max_pool.py``: the separable max (flattened for stride 1), int8 winner codes, the maxima alone when no
  gradient is coming, one scatter-add backward (replaces ``kernels/max_pool.py``);
- ``avg_pool.py``: average pooling by matrices where a cost model says it pays, adaptive pooling's global
  and block shortcuts (replaces ``kernels/avg_pool.py``);
- ``batchnorm.py``: per-channel sums by einsum, fewer passes, no stored ``x_hat`` (replaces
  ``kernels/batchnorm.py``).

:mod:`minigrad.kernels.dispatch` chooses between them and the references.
"""
