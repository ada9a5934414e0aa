"""Differentiable ops, one Function subclass each, imported as ``F`` (like ``torch.nn.functional``).

    >>> import minigrad.functional as F
    >>> loss = F.cross_entropy(F.linear(x, W, b), targets)
"""

from minigrad.functional.elementwise import add, div, exp, log, mul, neg, pow, relu, sigmoid, sqrt, sub, tanh
from minigrad.functional.linear import linear, matmul
from minigrad.functional.loss import cross_entropy, log_softmax, softmax
from minigrad.functional.nn_ops import (
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    cat,
    conv2d,
    dropout,
    max_pool2d,
    split,
)
from minigrad.functional.reduction import max, mean, sum
from minigrad.functional.shape import flatten, getitem, permute, reshape, transpose

__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "cat", "conv2d", "dropout", "max_pool2d", "split",
    "add", "cross_entropy", "div", "exp", "flatten", "getitem", "linear", "log", "log_softmax", "matmul",
    "max", "mean", "mul", "neg", "permute", "pow", "relu", "reshape", "sigmoid", "softmax", "sqrt", "sub",
    "sum", "tanh", "transpose",
]
