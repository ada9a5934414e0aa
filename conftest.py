"""Loaded by pytest before anything else (tests/ and tutorials/ alike).

One BLAS / OpenMP thread per test process. The suite is thousands of small NumPy and torch calls: with
several threads each, the threads of the two libraries wait on each other (torch's spin while NumPy's
BLAS runs), and a busy 2-core machine makes that 3-10x slower. Parallelism comes from pytest-xdist
workers instead: two of them when xdist is installed and no ``-n`` was given (``pytest_cmdline_main``
below); without xdist (a bare ``pip install pytest``, an IDE's runner) the suite runs in one process.
These must be set before NumPy or torch is first imported. A value already in the environment wins.
"""

import os

import pytest

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


XDIST_WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """``-n 2`` when pytest-xdist is installed and the command line chose no ``-n`` (``-n 0`` turns it off);
    nothing without xdist, so that plain pytest runs the suite in one process instead of stopping at an
    unknown option. Runs before xdist reads the option (this conftest registers after the xdist plugin)."""
    if hasattr(config, "workerinput") or "PYTEST_XDIST_WORKER" in os.environ:
        return  # an xdist worker: it must not start workers of its own
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "numprocesses", None) is None:
        if not (config.option.collectonly or getattr(config.option, "usepdb", False)):
            config.option.numprocesses = XDIST_WORKERS
            if config.option.dist == "no":
                config.option.dist = "load"


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
