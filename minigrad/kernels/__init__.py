"""Hand-written forward/backward kernels on raw arrays (NumPy or CuPy); no Tensor, no graph.

Two versions of each, side by side:

- the **reference** kernels, in this package (``im2col.py``, ``conv.py``, ``max_pool.py``, ``avg_pool.py``,
  ``batchnorm.py``, ``dropout.py``, ``concat.py``, on the window geometry of ``geometry.py``): the formulas
  of the tutorials, one function per direction;
- the **fast** kernels, in :mod:`minigrad.kernels.fast`: every speed trick, each naming the reference it
  replaces and tested against it.

:mod:`minigrad.kernels.dispatch` chooses between them for the whole library: ``MINIGRAD_KERNELS=reference``
in the environment, or ``minigrad.kernels.use("reference")`` / ``use("fast")`` (also a context manager).
"""

from minigrad.kernels.dispatch import mode, use

__all__ = ["mode", "use"]
