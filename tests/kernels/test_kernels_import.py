"""What the kernel sources must not do, checked on their syntax trees.

- No file in minigrad/kernels/ (fast/ included) imports numpy or cupy: they ask :mod:`minigrad.backend` for the
  array module (``backend.xp_of(x)``), which is what lets the same code run on the CPU and on a GPU.
- No kernel compares a device name (``== "cuda"``): device decisions are backend functions that say what they
  do (``backend.scatter_add_is_deterministic``, ``backend.prefers_cache_sized_chunks``).
- No module of kernels/ or functional/ imports another module's private (underscore) names, or keeps an
  unused import alive with ``_ = name``.
"""

import ast
from pathlib import Path

import pytest

import minigrad.functional
import minigrad.kernels

KERNELS_DIR = Path(minigrad.kernels.__file__).parent
KERNEL_FILES = sorted(KERNELS_DIR.rglob("*.py"))
LAYER_FILES = KERNEL_FILES + sorted(Path(minigrad.functional.__file__).parent.rglob("*.py"))
FORBIDDEN = {"numpy", "cupy", "cupyx"}


def file_id(path: Path) -> str:
    return str(path.relative_to(KERNELS_DIR.parent))


def forbidden_imports(source: str) -> list[str]:
    """Names of forbidden modules imported anywhere in ``source`` (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in FORBIDDEN]
    return found


def device_name_comparisons(source: str) -> list[int]:
    """Lines of ``source`` that compare something with the string "cuda" or "cpu" (==, !=, in)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in ("cuda", "cpu") for o in operands):
                lines.append(node.lineno)
    return lines


def private_imports_and_keep_alives(source: str) -> list[str]:
    """``from minigrad... import _name`` and ``_ = name`` statements in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minigrad"):
            found += [f"import {alias.name}" for alias in node.names if alias.name.startswith("_")]
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_"]:
            if isinstance(node.value, ast.Name):
                found.append(f"_ = {node.value.id}")
    return found


def test_the_checks_catch_what_they_look_for():
    sources = [
        "import numpy",
        "import numpy as np",
        "from numpy import zeros",
        "import cupy.linalg",
        "def f():\n    import cupyx.scipy",
        "from numpy.lib import stride_tricks",
    ]
    for source in sources:
        assert forbidden_imports(source), source
    assert not forbidden_imports("from minigrad import backend\nimport numbers\nfrom . import utils")
    assert device_name_comparisons('if backend.device_of(x) == "cuda":\n    pass') == [1]
    assert device_name_comparisons('y = "cpu" != device') == [1]
    assert not device_name_comparisons('if backend.scatter_add_is_deterministic(x):\n    name = "cuda"')
    assert private_imports_and_keep_alives("from minigrad.kernels.geometry import _pad, pair") == ["import _pad"]
    assert private_imports_and_keep_alives("from minigrad import backend\n_ = backend") == ["_ = backend"]
    assert not private_imports_and_keep_alives("from minigrad.kernels import geometry\n_, b = 1, 2")


@pytest.mark.parametrize("path", KERNEL_FILES, ids=file_id)
def test_kernel_files_do_not_import_numpy_or_cupy(path):
    found = forbidden_imports(path.read_text())
    assert not found, f"{path.name} imports {found}; get the array module with backend.xp_of(x) instead"


@pytest.mark.parametrize("path", KERNEL_FILES, ids=file_id)
def test_kernel_files_ask_the_backend_instead_of_comparing_device_names(path):
    lines = device_name_comparisons(path.read_text())
    assert not lines, f"{path.name} compares a device name on lines {lines}; add a backend function instead"


@pytest.mark.parametrize("path", LAYER_FILES, ids=file_id)
def test_no_private_names_cross_modules_and_no_kept_alive_imports(path):
    found = private_imports_and_keep_alives(path.read_text())
    assert not found, f"{path.name}: {found}; make the name public where it is shared, or drop the import"
