"""The op registry: one table of differentiable ops that the tests and ``minigrad gradcheck`` walk."""

from minigrad.testing.opinfo import ErrorCase, OpInfo, Sample
from minigrad.testing.registry import all_ops, get_op

__all__ = ["ErrorCase", "OpInfo", "Sample", "all_ops", "get_op"]
