"""minigrad: a deep-learning library from scratch on NumPy (CPU) and CuPy (GPU).

    >>> import minigrad
    >>> x = minigrad.tensor([[1.0, 2.0]], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad                       # tensor([[2., 4.]])
"""

from minigrad import functional
from minigrad.autograd import Function, is_grad_enabled, no_grad
from minigrad.backend import cuda_available, manual_seed

# `minigrad.gradcheck(...)` and `minigrad.summary(...)` are the functions (the tools users call);
# `from minigrad.gradcheck import fixed_state` still reaches the modules.
from minigrad.gradcheck import gradcheck
from minigrad.summary import summary
from minigrad.tensor import Tensor, arange, float32, float64, int64, ones, randn, tensor, zeros

__version__ = "0.1.0"

__all__ = [
    "Function", "Tensor", "arange", "cuda_available", "float32", "float64", "functional", "int64",
    "gradcheck", "is_grad_enabled", "manual_seed", "no_grad", "ones", "randn", "summary", "tensor", "zeros",
]
