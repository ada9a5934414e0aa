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


def pytest_terminal_summary(terminalreporter):
    """Skips grouped by reason, one line each with a count (setup.cfg's ``-r`` leaves out pytest's own
    per-test skip lines: without a GPU the ~1,200 cuda cases would fill a screen with one reason)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{count:5d}  {reason}")
