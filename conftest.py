"""Loaded by pytest before anything else (tests/ and tutorials/ alike).

One BLAS / OpenMP thread per test process. The suite is thousands of small NumPy and torch calls: with
several threads each, the threads of the two libraries wait on each other (torch's spin while NumPy's
BLAS runs), and a busy 2-core machine makes that 3-10x slower. Parallelism comes from pytest-xdist
workers instead (``-n 2`` in setup.cfg). These must be set before NumPy or torch is first imported.
A value already in the environment wins.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


def pytest_addoption(parser):
    """``--device``: which devices the device-parametrised tests run on (see tests/conftest.py)."""
    parser.addoption(
        "--device",
        choices=("all", "cpu", "cuda"),
        default=os.environ.get("MINIGRAD_TEST_DEVICE", "all"),
        help="run the device-parametrised tests on cpu, cuda or both (default: all, where cuda skips "
        "without a GPU; also set by MINIGRAD_TEST_DEVICE). --device cuda fails at once without a GPU.",
    )
