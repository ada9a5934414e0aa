"""The table of every differentiable op: each family's module contributes its ``OPS`` list."""

from __future__ import annotations

import importlib

from minigrad.testing.opinfo import OpInfo

# One module per family of ops; adding a family is adding its module name here.
FAMILIES = ["minigrad.testing.ops_core", "minigrad.testing.ops_nn"]


def all_ops() -> list[OpInfo]:
    """Every registered op, in table order."""
    ops: list[OpInfo] = []
    for name in FAMILIES:
        ops.extend(importlib.import_module(name).OPS)
    return ops


def get_op(name: str) -> OpInfo:
    for op in all_ops():
        if op.name == name:
            return op
    raise KeyError(f"no op named {name!r} in the registry; known: {[op.name for op in all_ops()]}")
