"""Shared fixtures: torch (a hard error in CI when missing) and the device list."""

from __future__ import annotations

import os

import pytest

from minigrad import backend

REQUIRE_TORCH = os.environ.get("MINIGRAD_REQUIRE_TORCH", "") not in ("", "0")


def import_torch():
    """Import torch; in CI (MINIGRAD_REQUIRE_TORCH=1) a missing torch fails instead of skipping."""
    try:
        import torch
    except ImportError:
        if REQUIRE_TORCH:
            pytest.fail("torch is required (MINIGRAD_REQUIRE_TORCH=1) but is not installed: "
                        "pip install torch==2.13.0", pytrace=False)
        pytest.skip("torch is not installed; the reference tests need it (pip install 'minigrad[test]')")
    return torch


@pytest.fixture(scope="session")
def torch():
    return import_torch()


# "cuda" joins only when a GPU answers, so a CPU machine shows one skip (tests/test_devices.py), not hundreds.
DEVICES = ["cpu", "cuda"] if backend.cuda_available() else ["cpu"]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Run a test on every available device (cuda skips cleanly without a GPU)."""
    return request.param
