"""Fixtures for the distributed tests: a world of one rank (no MPI) in place of the process's world."""

from __future__ import annotations

import pytest

from minigrad.distributed import world as world_module


@pytest.fixture
def single_world():
    """The process's world replaced by a world of size 1 without MPI for the test (then put back)."""
    saved = world_module._world
    world_module._world = world_module.World()
    yield world_module._world
    world_module._world = saved
