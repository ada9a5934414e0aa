"""The world of one rank (no MPI): every collective hands back its input; init() falls back to it without
mpi4py, and refuses to where mpiexec started several copies or MPI was asked for. (Several ranks:
tests/distributed/test_mpiexec.py.)"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np
import pytest

from minigrad import distributed
from minigrad.distributed import World
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


# ----- CuPy arrays (on the simulated GPU of tests/simulated_cupy.py) ---------------------------------------
class Done:
    def Test(self) -> bool:
        return True


class LoopbackComm:
    """An MPI communicator of ``size`` ranks that all hold this rank's arrays; records what MPI was handed."""

    def __init__(self, size: int) -> None:
        self.size, self.handed = size, []

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return self.size

    def Dup(self):
        return self

    def Iallreduce(self, send, result, op):
        self.handed.append(type(send).__name__)
        result[...] = send * self.size
        return Done()


@pytest.fixture
def gpu_world(monkeypatch):
    """A World of two identical ranks over LoopbackComm, with the simulated CuPy plugged into minigrad."""
    if importlib.util.find_spec("cupy") is None:
        if os.environ.get("MINIGRAD_REQUIRE_CUPY", "") not in ("", "0"):
            pytest.fail("CuPy is required (MINIGRAD_REQUIRE_CUPY=1) but is not installed", pytrace=False)
        pytest.skip("the simulated GPU reads real CuPy's names: pip install cupy-cuda12x (imports without a GPU)")
    from tests import simulated_cupy

    simulated_cupy.install(monkeypatch)
    # MPI's reduction names only (importing mpi4py.MPI would start MPI in this test process).
    monkeypatch.setattr(world_module, "_import_mpi", lambda: types.SimpleNamespace(SUM="sum", MAX="max", MIN="min"))
    return World(LoopbackComm(2))


@pytest.mark.parametrize("cuda_aware", [False, True], ids=["through the host", "CUDA-aware MPI"])
def test_device_arrays_come_back_on_the_device(gpu_world, cuda_aware):
    from minigrad import backend

    gpu_world.cuda_aware = cuda_aware
    array = backend.to_device(np.arange(4.0), "cuda")
    total = gpu_world.all_reduce(array)
    assert backend.device_of(total) == "cuda"
    np.testing.assert_array_equal(backend.to_numpy(total), 2 * np.arange(4.0))
    assert gpu_world.comm.handed == ["DeviceArray" if cuda_aware else "ndarray"]


def test_sync_batchnorm_and_gradient_averaging_run_on_device_arrays(gpu_world):
    import minigrad
    from minigrad import nn

    rng = np.random.default_rng(0)
    x, upstream = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    sync = distributed.SyncBatchNorm(3, world=gpu_world).double().to("cuda")
    plain = nn.BatchNorm2d(3).double()
    x_cuda = minigrad.Tensor(x, device="cuda", requires_grad=True)
    sync(x_cuda).backward(minigrad.Tensor(upstream, device="cuda"))
    x_cpu = minigrad.Tensor(np.concatenate([x, x]), requires_grad=True)
    plain(x_cpu).backward(minigrad.Tensor(np.concatenate([upstream, upstream])))
    np.testing.assert_allclose(x_cuda.grad.numpy(), x_cpu.grad.numpy()[:4], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sync.running_var.numpy(), plain.running_var.numpy(), rtol=1e-12)
    distributed.allreduce_gradients(sync.parameters(), gpu_world)
    assert sync.weight.grad.device == "cuda"
    np.testing.assert_allclose(sync.weight.grad.numpy(), plain.weight.grad.numpy() / 2, rtol=1e-12)
