"""Shared fixtures: torch, torchinfo and safetensors (hard errors in CI when missing) and the device list."""

from __future__ import annotations

import os

import pytest

from minigrad import backend

REQUIRE_TORCH = os.environ.get("MINIGRAD_REQUIRE_TORCH", "") not in ("", "0")
REQUIRE_SAFETENSORS = os.environ.get("MINIGRAD_REQUIRE_SAFETENSORS", "") not in ("", "0")


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


def import_torchinfo():
    """Import torchinfo (the figures ``minigrad.summary`` must agree with); it comes with torch in the
    test extra, so MINIGRAD_REQUIRE_TORCH=1 (CI) makes a missing torchinfo fail instead of skipping."""
    try:
        import torchinfo
    except ImportError:
        if REQUIRE_TORCH:
            pytest.fail("torchinfo is required (MINIGRAD_REQUIRE_TORCH=1) but is not installed: "
                        "pip install torchinfo==1.8.0", pytrace=False)
        pytest.skip("torchinfo is not installed; the summary comparison needs it (pip install 'minigrad[test]')")
    return torchinfo


@pytest.fixture(scope="session")
def torchinfo():
    return import_torchinfo()


@pytest.fixture(scope="session")
def safetensors_numpy():
    """``safetensors.numpy``; in CI (MINIGRAD_REQUIRE_SAFETENSORS=1) a missing package fails instead of skipping."""
    try:
        import safetensors.numpy
    except ImportError:
        if REQUIRE_SAFETENSORS:
            pytest.fail("safetensors is required (MINIGRAD_REQUIRE_SAFETENSORS=1) but is not installed: "
                        "pip install safetensors", pytrace=False)
        pytest.skip("safetensors is not installed; the .safetensors tests need it (pip install 'minigrad[test]')")
    return safetensors.numpy


def _no_gpu_reason() -> str:
    """Why the cuda tests cannot run here (empty when a GPU answers)."""
    try:
        backend.get_xp("cuda")
        return ""
    except RuntimeError as error:
        return str(error).split(". Install it with")[0]


def pytest_configure(config):
    choice = config.getoption("--device")
    config.minigrad_devices = {"all": ["cpu", "cuda"], "cpu": ["cpu"], "cuda": ["cuda"]}[choice]
    if choice == "cuda" and _no_gpu_reason():
        raise pytest.UsageError(f"--device cuda was asked for, but {_no_gpu_reason()}")


def pytest_generate_tests(metafunc):
    """Every test that takes the ``device`` fixture runs once per device of ``--device``.

    Tests that parametrise ``device`` themselves (with their own values) are left as they are.
    """
    if "device" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if "device" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize("device", metafunc.config.minigrad_devices, indirect=True)


@pytest.fixture
def device(request) -> str:
    """The device a test runs on: "cpu", or "cuda" (skipped, with the reason, where no GPU answers).

    The skip is raised here, in one place, so ``-ra`` shows one line with the count of cuda tests
    skipped rather than one line per test.
    """
    if request.param == "cuda" and _no_gpu_reason():
        pytest.skip(f"cuda: {_no_gpu_reason()}")
    return request.param
