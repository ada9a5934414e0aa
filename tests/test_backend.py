"""The backend: which array module owns what, moving arrays, the GPU error, seeded RNG, scatter-add."""

from __future__ import annotations

import sys

import numpy
import pytest

from minigrad import backend


def test_xp_lookup_for_devices_and_arrays():
    assert backend.get_xp("cpu") is numpy
    assert backend.xp_of(numpy.zeros(3)) is numpy
    assert backend.xp_of([1.0, 2.0]) is numpy  # anything that is not a CuPy array is NumPy's
    assert backend.device_of(numpy.zeros(3)) == "cpu"
    assert backend.check_device("cuda:0") == "cuda"


@pytest.mark.parametrize("device", ["tpu", "CPU", "", 3, None])
def test_unknown_device_names_the_valid_ones(device):
    with pytest.raises(ValueError, match=r"unknown device .*'cpu', 'cuda'"):
        backend.get_xp(device)


@pytest.mark.skipif(backend.cuda_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("call", [
    lambda: backend.get_xp("cuda"),
    lambda: backend.get_xp("cuda:1"),
    lambda: backend.to_device(numpy.zeros(2), "cuda"),
    lambda: backend.rng("cuda"),
])
def test_cuda_without_gpu_says_how_to_install(call):
    with pytest.raises(RuntimeError, match=r"device 'cuda' is not available.*pip install 'minigrad\[gpu\]'"):
        call()
    assert backend.cuda_available() is False


def test_to_device_cpu_is_a_no_op_and_to_numpy_gives_numpy():
    array = numpy.arange(6.0).reshape(2, 3)
    assert backend.to_device(array, "cpu") is array
    listed = backend.to_numpy([[1, 2], [3, 4]])
    assert isinstance(listed, numpy.ndarray) and listed.shape == (2, 2)
    numpy.testing.assert_array_equal(backend.to_numpy(array), array)


def test_manual_seed_reproduces_draws_and_different_seeds_differ():
    backend.manual_seed(123)
    first = backend.rng("cpu").standard_normal(5)
    backend.manual_seed(123)
    again = backend.rng("cpu").standard_normal(5)
    backend.manual_seed(124)
    other = backend.rng("cpu").standard_normal(5)
    numpy.testing.assert_array_equal(first, again)
    assert not numpy.allclose(first, other)


def test_manual_seed_also_seeds_a_generator_made_later(monkeypatch):
    monkeypatch.setattr(backend, "_generators", {})  # as in a fresh process: no generator made yet
    backend.manual_seed(7)
    fresh = backend.rng("cpu").random(4)
    numpy.testing.assert_array_equal(fresh, numpy.random.default_rng(7).random(4))


def test_rng_state_round_trip(monkeypatch):
    monkeypatch.setattr(backend, "_generators", {})  # a fresh process: an earlier test may have drawn on cuda
    backend.manual_seed(5)
    state = backend.get_rng_state()
    assert state["seed"] == 5 and "cuda" not in state  # no GPU generator was used
    drawn = backend.rng("cpu").random(3)
    backend.set_rng_state(state)
    numpy.testing.assert_array_equal(backend.rng("cpu").random(3), drawn)


def test_rng_state_from_an_older_checkpoint_is_the_bare_cpu_state():
    backend.manual_seed(6)
    bare = backend.rng("cpu").bit_generator.state
    drawn = backend.rng("cpu").random(3)
    backend.set_rng_state(bare)
    numpy.testing.assert_array_equal(backend.rng("cpu").random(3), drawn)


class NumpyRandomState:
    """Stands in for CuPy's RandomState (same method signatures, NumPy arrays) to test without a GPU."""

    def __init__(self, seed):
        self.generator = numpy.random.default_rng(seed)

    def random_sample(self, size=None, dtype=float):
        return self.generator.random(size, dtype=dtype)

    def standard_normal(self, size=None, dtype=float):
        return self.generator.standard_normal(size, dtype=dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return self.generator.uniform(low, high, size).astype(dtype)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return self.generator.normal(loc, scale, size).astype(dtype)


def test_cuda_generator_is_counter_based_and_its_state_resumes_exactly():
    generator = backend.CudaGenerator(11, make_generator=NumpyRandomState)
    first = generator.random((2, 3), dtype=numpy.float32)
    saved = dict(generator.state)
    assert saved == {"seed": 11, "draws": 1} and first.dtype == numpy.float32 and first.shape == (2, 3)
    following = [generator.standard_normal(4), generator.uniform(-1, 1, 5), generator.normal(2.0, 0.5, 6)]
    assert generator.state["draws"] == 4

    resumed = backend.CudaGenerator(0, make_generator=NumpyRandomState)
    resumed.state = saved
    again = [resumed.standard_normal(4), resumed.uniform(-1, 1, 5), resumed.normal(2.0, 0.5, 6)]
    for expected, got in zip(following, again):
        numpy.testing.assert_array_equal(got, expected)
    assert -1 <= again[1].min() and again[1].max() < 1

    # Each draw has its own stream: the same size drawn twice differs, and another seed differs.
    fresh = backend.CudaGenerator(11, make_generator=NumpyRandomState)
    numpy.testing.assert_array_equal(fresh.random((2, 3), dtype=numpy.float32), first)
    assert not numpy.array_equal(fresh.random((2, 3), dtype=numpy.float32), first)
    other = backend.CudaGenerator(12, make_generator=NumpyRandomState)
    assert not numpy.array_equal(other.random((2, 3), dtype=numpy.float32), first)


def test_rng_state_saves_and_restores_the_cuda_generator(monkeypatch):
    monkeypatch.setattr(backend, "_generators", {"cuda": backend.CudaGenerator(3, make_generator=NumpyRandomState)})
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    backend.rng("cuda").random(2)
    state = backend.get_rng_state()
    assert state["cuda"] == {"seed": 3, "draws": 1}
    backend.rng("cuda").random(2)
    backend.set_rng_state(state)
    assert backend.rng("cuda").state == {"seed": 3, "draws": 1}


def test_synchronize_on_the_cpu_is_a_no_op():
    assert backend.synchronize("cpu") is None
    with pytest.raises(ValueError, match="unknown device"):
        backend.synchronize("tpu")


def test_scatter_add_adds_repeated_indices():
    target = numpy.zeros(4, dtype=numpy.float32)
    backend.scatter_add(target, numpy.array([1, 1, 3, 1]), numpy.array([1.0, 2.0, 5.0, 4.0], dtype=numpy.float32))
    numpy.testing.assert_array_equal(target, [0.0, 7.0, 0.0, 5.0])  # plain `target[idx] += v` would give 4 at 1
    assert target.dtype == numpy.float32

    rows = numpy.zeros((3, 2))
    backend.scatter_add(rows, (numpy.array([0, 2, 0]),), numpy.ones((3, 2)))
    numpy.testing.assert_array_equal(rows, [[2, 2], [0, 0], [1, 1]])


def test_sliding_window_view_is_a_view_of_every_window():
    array = numpy.arange(10.0).reshape(2, 5)
    windows = backend.sliding_window_view(array, (3,), axis=(1,))
    assert windows.shape == (2, 3, 3)
    numpy.testing.assert_array_equal(windows[1, 2], [7.0, 8.0, 9.0])
    assert numpy.shares_memory(windows, array)


@pytest.mark.skipif(backend.cuda_available(), reason="a GPU (or the simulated one) answers here")
def test_cuda_without_cupy_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # what `import cupy` meets where CuPy is not installed
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", None)
    with pytest.raises(RuntimeError, match=r"device 'cuda' is not available: CuPy is not installed\. Install it with "
                                           r"pip install 'minigrad\[gpu\]'"):
        backend.get_xp("cuda")
    assert backend.cuda_available() is False
