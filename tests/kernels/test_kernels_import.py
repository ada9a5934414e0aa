"""The kernels must stay device-neutral: no file in minigrad/kernels/ may import numpy or cupy.

They ask :mod:`minigrad.backend` for the array module instead (``backend.xp_of(x)``), which is what lets
the same code run on the CPU and on a GPU.
"""

import ast
from pathlib import Path

import pytest

import minigrad.kernels

KERNELS_DIR = Path(minigrad.kernels.__file__).parent
FORBIDDEN = {"numpy", "cupy", "cupyx"}


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


def test_the_check_catches_every_import_form():
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


@pytest.mark.parametrize("path", sorted(KERNELS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_kernel_files_do_not_import_numpy_or_cupy(path):
    found = forbidden_imports(path.read_text())
    assert not found, f"{path.name} imports {found}; get the array module with backend.xp_of(x) instead"
