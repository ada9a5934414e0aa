"""The world of one rank (no MPI): every collective hands back its input; init() falls back to it without
mpi4py, and refuses to where mpiexec started several copies or MPI was asked for. (Several ranks:
tests/distributed/test_mpiexec.py.)"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from minigrad import distributed
from minigrad.distributed import world as world_module


def test_collectives_of_one_rank_return_their_input_as_new_arrays(single_world):
    array = np.arange(6.0).reshape(2, 3)
    for result in (single_world.all_reduce(array), single_world.all_reduce(array, "max"),
                   single_world.broadcast(array)):
        np.testing.assert_array_equal(result, array)
        assert result is not array and result.dtype == array.dtype
    assert single_world.broadcast_object({"a": 1}) == {"a": 1}
    assert single_world.all_gather_object("x") == ["x"]
    single_world.barrier()
    single_world.abort(1)  # nothing to end but this process, which the caller ends
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    np.testing.assert_array_equal(distributed.all_reduce(array), array)


def test_bad_arguments_are_named(single_world):
    with pytest.raises(ValueError, match="all_reduce: op must be one of"):
        single_world.all_reduce(np.ones(2), "product")
    with pytest.raises(ValueError, match=r"broadcast: root must be a rank in 0..0, got 1"):
        single_world.broadcast(np.ones(2), root=1)


@pytest.fixture
def no_mpi4py(monkeypatch, single_world):
    """As if mpi4py were not installed, and no world set up yet."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(world_module, "_world", None)
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_mpi4py_init_is_a_world_of_one(no_mpi4py):
    world = distributed.init(timeout=7.0)
    assert (world.rank, world.size, world.comm, world.timeout) == (0, 1, None, 7.0)
    assert distributed.init() is world


def test_without_mpi4py_asking_for_mpi_says_what_to_install(no_mpi4py):
    with pytest.raises(distributed.MPIUnavailable, match=r"pip install 'minigrad\[mpi\]'"):
        distributed.init(use_mpi=True)


def test_started_by_mpiexec_without_mpi4py_is_refused(no_mpi4py):
    no_mpi4py.setenv("PMI_SIZE", "4")  # as MPICH's mpiexec -n 4 sets it
    with pytest.raises(distributed.MPIUnavailable, match="started by mpiexec as one of 4"):
        distributed.init()


def test_the_timeout_comes_from_the_environment(no_mpi4py):
    no_mpi4py.setenv("MINIGRAD_COLLECTIVE_TIMEOUT", "12.5")
    assert distributed.init().timeout == 12.5
