"""The one place that knows NumPy from CuPy.

Every other module asks this one for its array module (``xp``) instead of
importing NumPy or CuPy itself, so the same code runs on the CPU and on a GPU
(Chainer calls this ``get_array_module``). CuPy is imported lazily: a machine
without it, or without a GPU, can still use every CPU feature. Where the best
way to do something differs by device, a function here says so by what it does
(:func:`scatter_add_is_deterministic`, :func:`prefers_cache_sized_chunks`), so
no kernel compares device names.

    >>> xp = get_xp("cpu")          # numpy
    >>> xp = xp_of(some_array)      # numpy or cupy, whichever owns the array
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy

DEVICES = ("cpu", "cuda")
GPU_INSTALL_HINT = "pip install 'minigrad[gpu]' (CuPy for CUDA 12) on a machine with an NVIDIA GPU"

_cupy: ModuleType | None = None
_cupy_error: str | None = None


def _import_cupy() -> ModuleType:
    """Import CuPy once and check that a GPU answers; raise a clear error otherwise."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is None:
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()  # raises when no driver / no GPU
            _cupy = cupy
            return cupy
        except ImportError:
            _cupy_error = "CuPy is not installed"
        except Exception as error:  # CUDA errors have several types across CuPy versions
            _cupy_error = f"CuPy cannot reach a GPU ({type(error).__name__}: {error})"
    raise RuntimeError(f"device 'cuda' is not available: {_cupy_error}. Install it with {GPU_INSTALL_HINT}.")


def cuda_available() -> bool:
    """True when CuPy imports and at least one GPU answers."""
    try:
        _import_cupy()
        return True
    except RuntimeError:
        return False


def check_device(device: str) -> str:
    """Return ``device`` normalised ("cpu" or "cuda"), or raise naming the valid ones."""
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"unknown device {device!r}: use one of {DEVICES}")
    return device.split(":")[0]


def get_xp(device: str) -> ModuleType:
    """The array module for a device: numpy for "cpu", cupy for "cuda"."""
    if check_device(device) == "cpu":
        return numpy
    return _import_cupy()


def is_cupy_array(array: Any) -> bool:
    """True for a CuPy array, without importing CuPy when it was never used."""
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def xp_of(array: Any) -> ModuleType:
    """The array module that owns ``array`` (numpy for anything that is not a CuPy array)."""
    return _cupy if is_cupy_array(array) else numpy


def device_of(array: Any) -> str:
    """"cuda" for a CuPy array, "cpu" otherwise."""
    return "cuda" if is_cupy_array(array) else "cpu"


def to_device(array: Any, device: str) -> Any:
    """Move (or copy, if it must) ``array`` to ``device``; a no-op when it is already there."""
    device = check_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    return _import_cupy().asarray(array)


def to_numpy(array: Any) -> numpy.ndarray:
    """A NumPy array holding the values of ``array`` (copied from the GPU if needed)."""
    if is_cupy_array(array):
        return array.get()
    return numpy.asarray(array)


# ---------------------------------------------------------------------------
# Random numbers: one seedable generator per device.
# ---------------------------------------------------------------------------
_generators: dict[str, Any] = {}
_DEFAULT_SEED = 0


class CudaGenerator:
    """The GPU's generator: the few ``numpy.random.Generator`` methods minigrad uses, on CuPy arrays.

    CuPy's own generators keep their state in GPU memory with no way to save and restore it, and a
    checkpoint must resume bit-for-bit. So this one is counter-based: draw number ``k`` comes from a
    fresh cuRAND Philox generator seeded with ``SeedSequence([seed, k])``. Its whole state is
    ``{"seed", "draws"}``, a JSON-safe dict. ``make_generator(seed)`` builds the per-draw generator
    (CuPy's ``RandomState``; the tests pass a NumPy stand-in to check the bookkeeping without a GPU).
    """

    def __init__(self, seed: int, make_generator: Any = None) -> None:
        self.seed, self.draws = int(seed), 0
        self._make_generator = make_generator or _philox_random_state

    def _next(self) -> Any:
        draw_seed = int(numpy.random.SeedSequence([self.seed, self.draws]).generate_state(1, numpy.uint64)[0])
        self.draws += 1
        return self._make_generator(draw_seed)

    def random(self, size: Any = None, dtype: Any = numpy.float64) -> Any:
        """Uniform values in [0, 1)."""
        return self._next().random_sample(size=size, dtype=dtype)

    def standard_normal(self, size: Any = None, dtype: Any = numpy.float64) -> Any:
        return self._next().standard_normal(size=size, dtype=dtype)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        return self._next().uniform(low=low, high=high, size=size)

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        return self._next().normal(loc=loc, scale=scale, size=size)

    @property
    def state(self) -> dict:
        return {"seed": self.seed, "draws": self.draws}

    @state.setter
    def state(self, state: dict) -> None:
        self.seed, self.draws = int(state["seed"]), int(state["draws"])


def generator_device(generator: Any) -> str | None:
    """"cuda" for a :class:`CudaGenerator`, "cpu" for a NumPy generator, None for anything else (CuPy's
    own generators, or a stand-in: their arrays' device is not known in advance)."""
    if isinstance(generator, CudaGenerator):
        return "cuda"
    if isinstance(generator, (numpy.random.Generator, numpy.random.RandomState)):
        return "cpu"
    return None


def _philox_random_state(seed: int) -> Any:
    cupy = _import_cupy()
    return cupy.random.RandomState(seed, method=cupy.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)


def _new_generator(device: str, seed: int) -> Any:
    if device == "cpu":
        return numpy.random.default_rng(seed)
    _import_cupy()  # the clear "not available" error, before any generator exists
    return CudaGenerator(seed)


def rng(device: str = "cpu") -> Any:
    """The random generator of ``device``: a ``numpy.random.Generator`` on "cpu", a :class:`CudaGenerator`
    (same method names, CuPy arrays) on "cuda". Both start from the seed of :func:`manual_seed`."""
    device = check_device(device)
    if device not in _generators:
        _generators[device] = _new_generator(device, _DEFAULT_SEED)
    return _generators[device]


def manual_seed(seed: int) -> None:
    """Seed the generator of every device, as ``torch.manual_seed`` does."""
    global _DEFAULT_SEED
    _DEFAULT_SEED = int(seed)
    for device in list(_generators):
        _generators[device] = _new_generator(device, _DEFAULT_SEED)


def get_rng_state() -> dict:
    """Every device generator's state as one JSON-safe dict; used by checkpoints.

    ``{"seed": s, "cpu": numpy's bit-generator state, "cuda": {"seed", "draws"}}`` (cuda only once used).
    """
    state: dict[str, Any] = {"seed": _DEFAULT_SEED, "cpu": rng("cpu").bit_generator.state}
    if "cuda" in _generators:
        state["cuda"] = _generators["cuda"].state
    return state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state` (or, from older checkpoints, a bare CPU state)."""
    global _DEFAULT_SEED
    if "bit_generator" in state:  # a checkpoint written before the per-device form
        rng("cpu").bit_generator.state = state
        return
    _DEFAULT_SEED = int(state["seed"])
    rng("cpu").bit_generator.state = state["cpu"]
    if "cuda" in state:
        rng("cuda").state = state["cuda"]
    elif "cuda" in _generators:  # the saved run never drew on the GPU: its generator starts afresh
        _generators["cuda"] = _new_generator("cuda", _DEFAULT_SEED)


def synchronize(device: str) -> None:
    """Wait until ``device`` has finished its queued work (GPU calls return before they finish; time
    them only after this). A no-op on the CPU."""
    if check_device(device) == "cuda":
        _import_cupy().cuda.get_current_stream().synchronize()


# ---------------------------------------------------------------------------
# What a kernel may ask about a device, instead of comparing device names itself.
# ---------------------------------------------------------------------------
def supports_raw_kernels(array: Any) -> bool:
    """Whether hand-written CUDA C kernels (:func:`raw_kernel`) can run on ``array``: True for CuPy arrays."""
    return is_cupy_array(array)


def scatter_add_is_deterministic(array: Any) -> bool:
    """Whether :func:`scatter_add` into arrays like ``array`` adds repeated indices in a fixed order.

    True on the CPU (``numpy.add.at`` adds in index order). False on a GPU: there it is one atomic add per
    value, and atomic adds to one element land in any order, so float sums change in the last bits from run
    to run.
    """
    return not is_cupy_array(array)


def prefers_cache_sized_chunks(array: Any) -> bool:
    """Whether a loop of passes over ``array`` runs faster on a few samples at a time than on the whole batch.

    True on the CPU: a chunk that fits in the cache is read from there on every pass, the whole batch from
    main memory. False on a GPU: each pass over a chunk is a kernel launch, and fewer, larger ones are faster.
    """
    return not is_cupy_array(array)


def prefers_fewer_copies_to_longer_products(array: Any) -> bool:
    """Whether a convolution over few channels on ``array`` runs faster with fewer copies of its input and
    several products (row columns, :mod:`minigrad.kernels.fast.conv_rows`) than with one long product.

    True on the CPU, where the copies run at memory speed (measured in benchmarks/README.md). False on a
    GPU, where it was never measured: there the one-product method stays.
    """
    return not is_cupy_array(array)


_raw_kernels: dict[tuple[str, str], Any] = {}


def raw_kernel(source: str, name: str) -> Any:
    """The CUDA C function ``name`` of ``source``, compiled once by CuPy (NVRTC) and cached."""
    key = (source, name)
    if key not in _raw_kernels:
        _raw_kernels[key] = _import_cupy().RawKernel(source, name)
    return _raw_kernels[key]


# ---------------------------------------------------------------------------
# The few functions whose spelling differs between NumPy and CuPy.
# ---------------------------------------------------------------------------
def scatter_add(target: Any, indices: Any, values: Any) -> None:
    """``target[indices] += values`` where repeated indices add up (unlike plain ``+=``)."""
    if is_cupy_array(target):
        import cupyx

        cupyx.scatter_add(target, indices, values)
    else:
        numpy.add.at(target, indices, values)


def sliding_window_view(array: Any, window_shape: tuple, axis: tuple) -> Any:
    """A read-only view of every window of ``array`` (no copy); see numpy's docs."""
    xp = xp_of(array)
    return xp.lib.stride_tricks.sliding_window_view(array, window_shape, axis=axis)
