"""The root conftest.py: the suite runs with pytest-xdist (two workers unless ``-n`` says otherwise) and
without it (a bare ``pip install pytest``, an IDE's runner), and xdist workers never start workers of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = "def test_one():\n    assert 1 + 1 == 2\n\ndef test_two():\n    assert 2 * 2 == 4\n"


def run_pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """pytest on a two-test file under the repository's root conftest and setup.cfg (a copy of both in
    ``tmp_path``, so the run collects nothing else)."""
    for name in ("conftest.py", "setup.cfg"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "test_tiny.py").write_text(TINY)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options, "test_tiny.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_without_xdist_the_suite_runs_in_one_process(tmp_path):
    result = run_pytest(tmp_path, "-p", "no:xdist")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "created:" not in result.stdout


def test_with_xdist_two_workers_by_default_and_n_0_turns_them_off(tmp_path):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed")
    default = run_pytest(tmp_path)
    assert default.returncode == 0, default.stdout + default.stderr
    assert "2 workers [2 items]" in default.stdout  # and no worker started workers (that would not finish)
    serial = run_pytest(tmp_path, "-n", "0")
    assert serial.returncode == 0 and "created:" not in serial.stdout and "2 passed" in serial.stdout
