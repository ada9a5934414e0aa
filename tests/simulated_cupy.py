"""A simulated CuPy: CuPy's namespace and rules on top of NumPy's arithmetic, for machines without a GPU.

There is no GPU here, so minigrad's "cuda" path must be right by construction. This module stands in for
``cupy`` (and ``cupyx``) so that the whole library can run ``device="cuda"`` on the CPU and fail where a
real GPU run would fail. Device memory is :class:`DeviceArray`, a ``numpy.ndarray`` subclass; every
function and method computes with NumPy on plain views of it and hands DeviceArrays back. What it
enforces, each rule taken from CuPy's own code (``cupy/_core/core.pyx``, ``_kernel.pyx``,
``_routines_indexing.pyx``, ``cupy/random``):

1. **Only names CuPy has.** The namespace is built from ``dir(cupy)`` of the real, installed CuPy
   (which imports without a GPU): each name maps to NumPy's function of the same name. A name NumPy has
   but CuPy lacks (``numpy.geomspace``) raises AttributeError; a name CuPy has that is not simulated says so.
2. **CuPy's signatures.** Calls are bound to the real CuPy signature first (``inspect.signature``, or the
   one CuPy's Cython docstrings embed), so ``x.max(initial=0)``, ``cupy.take(..., mode=...)`` or a ufunc's
   ``where=`` raise TypeError as they do on a GPU.
3. **No implicit host <-> device copies.** A plain ``numpy.ndarray`` given to a ufunc, a function or an
   operator together with (or instead of) device arrays raises TypeError; only ``cupy.asarray``,
   ``cupy.array`` and ``cupy.asanyarray`` copy host data to the device (and indices, which CuPy copies
   itself). ``x[...] = numpy_array`` raises ValueError ("non-scalar numpy.ndarray cannot be used for fill"),
   as CuPy's basic-index assignment does. Python and NumPy scalars are fine. :func:`strict_numpy_conversions`
   makes ``numpy.asarray(device_array)`` raise TypeError too, as CuPy's ``__array__`` does.
4. **Arrays, never scalars, come back.** Reductions and integer indexing give 0-d DeviceArrays (CuPy does
   not return NumPy scalars); ``float()``, ``int()``, ``bool()`` and ``.item()`` work on them; ``operator.index``
   does not (CuPy's ndarray has no ``__index__``). ``.get()`` gives a plain NumPy copy.
5. **The GPU-only pieces minigrad uses:** ``random.RandomState(seed, method=...)`` and ``random.default_rng``
   with CuPy's method signatures and float32/float64-only dtypes, ``cuda.curand`` constants,
   ``cuda.runtime.getDeviceCount()``, ``cuda.get_current_stream().synchronize()``, ``cupyx.scatter_add``
   (with CuPy's dtype limits), ``lib.stride_tricks``; ``RawKernel`` and the other compiled-kernel classes
   raise :class:`NotSimulatedError`.

Using it: :func:`install` plugs it into ``minigrad.backend`` for one test (tests/test_simulated_gpu.py's
``simulated_gpu`` fixture); as a pytest plugin, ``python -m pytest -p tests.simulated_cupy --device cuda``
runs every device-parametrised test of the suite on it.

What it cannot see: timing, memory, CUDA C, and numbers CuPy computes differently (cuRAND's streams,
cuBLAS's summation order): the arithmetic is NumPy's. ``host_array[...] = device_array`` is let through
(NumPy reads an ndarray subclass without asking it; CuPy's ``__array__`` would refuse), and so is any branch
on ``isinstance(x, numpy.ndarray)``, True here and False on a GPU. Integer-array indices out of range raise
IndexError here; CuPy wraps them around.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import types
from typing import Any

import cupy as real_cupy  # imports without a GPU; only its names and signatures are read
import cupyx as real_cupyx
import numpy
import pytest

# NumPy's converters, kept before strict_numpy_conversions() may replace the public names.
_numpy_array = numpy.array
_numpy_asarray = numpy.asarray

HOST_ARRAY_MESSAGE = (
    "{where}: got a numpy.ndarray (host memory) where CuPy needs a cupy.ndarray (device memory); CuPy never "
    "copies implicitly: move it with cupy.asarray(...) (minigrad: backend.to_device(array, 'cuda'))"
)
IMPLICIT_CONVERSION_MESSAGE = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
    "explicitly. (minigrad: backend.to_numpy(array))"
)
SCALAR_TYPES = (bool, int, float, complex, numpy.generic)


class NotSimulatedError(NotImplementedError):
    """Real CuPy has this, but it cannot run on the CPU (compiled CUDA C) or the simulation leaves it out."""


# ---------------------------------------------------------------------------------------------
# Moving between the two views of the same memory.
# ---------------------------------------------------------------------------------------------
def _host(array: DeviceArray) -> numpy.ndarray:
    """A plain NumPy view of device memory, to compute on (no copy)."""
    return numpy.ndarray.view(array, numpy.ndarray)


def _device(array: numpy.ndarray) -> DeviceArray:
    """A NumPy result seen as device memory (no copy)."""
    return numpy.ndarray.view(array, DeviceArray)


def _unwrap(value: Any, where: str, views: list, allow_host: bool = False) -> Any:
    """``value`` with every DeviceArray (also inside lists, tuples and dicts) replaced by a host view.

    A plain numpy.ndarray raises TypeError unless ``allow_host``. ``views`` collects (host view, DeviceArray)
    pairs so that a result that *is* one of the views goes back as the original object.
    """
    if isinstance(value, DeviceArray):
        view = _host(value)
        views.append((view, value))
        return view
    if isinstance(value, numpy.ndarray):
        if allow_host:
            return value
        raise TypeError(HOST_ARRAY_MESSAGE.format(where=where))
    if isinstance(value, (list, tuple)):
        items = [_unwrap(item, where, views, allow_host) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {key: _unwrap(item, where, views, allow_host) for key, item in value.items()}
    return value


def _wrap(value: Any, views: list = ()) -> Any:
    """A NumPy result as CuPy gives it: arrays (and NumPy scalars, as 0-d arrays) in device memory."""
    for view, original in views:
        if value is view:  # an in-place result (out=..., copy=False): the caller's own array, as in CuPy
            return original
    if isinstance(value, DeviceArray):
        return value
    if isinstance(value, numpy.ndarray):
        return _device(value)
    if isinstance(value, numpy.generic):  # CuPy never hands back a NumPy scalar: a 0-d array instead
        return _device(_numpy_array(value))
    if isinstance(value, tuple):
        return tuple(_wrap(item, views) for item in value)
    if isinstance(value, list):
        return [_wrap(item, views) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# CuPy's signatures: from inspect, or from the first line of a Cython docstring.
# ---------------------------------------------------------------------------------------------
def _signature_from_docstring(obj: Any) -> inspect.Signature | None:
    """``_ndarray_base.sum(self, axis=None, dtype=None, out=None, keepdims=False) -> ...`` as a Signature.

    C types in front of a parameter (``int axis``, ``_ndarray_base b``) are dropped; defaults become None
    (only the names and kinds matter for binding).
    """
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    match = re.match(r"^[\w.]+\((.*)\)(\s*->.*)?$", lines[0].strip()) if lines else None
    if match is None:
        return None
    try:
        tree = ast.parse(f"def f({_drop_c_types(match.group(1))}): pass")
    except SyntaxError:
        return None
    arguments = tree.body[0].args
    parameters = []
    positional = arguments.posonlyargs + arguments.args
    first_default = len(positional) - len(arguments.defaults)
    for index, argument in enumerate(positional):
        default = None if index >= first_default else inspect.Parameter.empty
        parameters.append(inspect.Parameter(argument.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
    if arguments.vararg is not None:
        parameters.append(inspect.Parameter(arguments.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults):
        parameters.append(inspect.Parameter(argument.arg, inspect.Parameter.KEYWORD_ONLY,
                                            default=inspect.Parameter.empty if default is None else None))
    if arguments.kwarg is not None:
        parameters.append(inspect.Parameter(arguments.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def _drop_c_types(parameters: str) -> str:
    """``"self, int axis=-1, _ndarray_base b"`` -> ``"self, axis=-1, b"``."""
    cleaned = []
    for part in parameters.split(","):
        name, equals, default = part.partition("=")
        words = name.split()
        cleaned.append((words[-1] if words else "") + equals + default)
    return ",".join(cleaned)


def _signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return _signature_from_docstring(obj)


def _bind(signature: inspect.Signature | None, qualified_name: str, /, *args: Any, **kwargs: Any) -> None:
    """Raise TypeError, as CuPy would, when the call does not fit CuPy's signature."""
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{qualified_name}: {error} (CuPy's signature is {qualified_name}{signature})") from None


# ---------------------------------------------------------------------------------------------
# Device memory.
# ---------------------------------------------------------------------------------------------
class DeviceArray(numpy.ndarray):
    """An array in (simulated) GPU memory: ``cupy.ndarray``.

    Operators and NumPy ufuncs reach :meth:`__array_ufunc__`, NumPy functions :meth:`__array_function__`,
    and every public method runs NumPy's on a plain view after checking CuPy's signature.
    """

    __array_priority__ = 100  # CuPy's

    # ----- NumPy's entry points, answered the way cupy.ndarray answers them ---------------------
    def __array_ufunc__(self, ufunc: numpy.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """``numpy.exp(x)``, ``x + y``: CuPy's ufunc of the same name; ufunc methods (``numpy.add.at``) are
        not dispatched (CuPy returns NotImplemented, so NumPy raises TypeError)."""
        if method != "__call__":
            return NotImplemented
        target = cupy.__dict__.get(ufunc.__name__)
        if target is None:
            return NotImplemented
        if "out" in kwargs:
            if len(kwargs["out"]) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = kwargs["out"][0]
        for operand in inputs + ((kwargs["out"],) if "out" in kwargs else ()):
            if not isinstance(operand, (numpy.ndarray, *SCALAR_TYPES)):
                return NotImplemented
        if ufunc.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
            # CuPy's workaround for numpy/numpy#12142: a 0-d NumPy array in a comparison is used as a scalar.
            inputs = tuple(
                x.item() if isinstance(x, numpy.ndarray) and not isinstance(x, DeviceArray) and x.ndim == 0 else x
                for x in inputs
            )
        return target(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        """``numpy.concatenate([x, y])``: CuPy's function of the same module path and name, if it has one."""
        module: Any = cupy
        try:
            for part in func.__module__.split(".")[1:]:
                module = getattr(module, part)
            target = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        return target(*args, **kwargs)

    def __array__(self, dtype: Any = None, copy: Any = None) -> numpy.ndarray:
        raise TypeError(IMPLICIT_CONVERSION_MESSAGE)

    # ----- indexing -------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> DeviceArray:
        # Index arrays may be NumPy arrays or lists: CuPy copies them to the device (_prepare_slice_list).
        views: list = []
        index = _unwrap(index, "cupy.ndarray.__getitem__", views, allow_host=True)
        return _wrap(numpy.ndarray.__getitem__(_host(self), index))

    def __setitem__(self, index: Any, value: Any) -> None:
        views: list = []
        index = _unwrap(index, "cupy.ndarray.__setitem__", views, allow_host=True)
        if isinstance(value, DeviceArray):
            value = _host(value)
        elif _is_basic_index(index) and not isinstance(value, SCALAR_TYPES):
            # CuPy fills a basic-indexed view with a *scalar*; anything else from the host is refused.
            if isinstance(value, numpy.ndarray) and value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill "
                                 "(cupy.ndarray.__setitem__ with a host array: move it with cupy.asarray first)")
            if not isinstance(value, numpy.ndarray):
                raise TypeError(f"Unsupported type {type(value)} (cupy.ndarray.__setitem__ fills with a scalar)")
        numpy.ndarray.__setitem__(_host(self), index, value)

    def __iter__(self) -> Any:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))  # 0-d arrays for a 1-D array, as in CuPy

    # ----- conversions CuPy does (and does not) allow -------------------------------------------
    def __index__(self) -> int:
        raise TypeError("'cupy.ndarray' object cannot be interpreted as an integer (CuPy arrays have no "
                        "__index__; use int(x))")

    def __imatmul__(self, other: Any) -> Any:
        return NotImplemented  # CuPy has no in-place @=; Python falls back to x = x @ other

    def __repr__(self) -> str:
        return repr(self.get())

    def __str__(self) -> str:
        return str(self.get())

    def __format__(self, format_spec: str) -> str:
        return format(self.get(), format_spec)

    def __copy__(self) -> DeviceArray:
        return self.copy()

    def __deepcopy__(self, memo: dict) -> DeviceArray:
        return self.copy()

    # ----- what only CuPy arrays have -------------------------------------------------------------
    def get(self, stream: Any = None, order: str = "C", out: numpy.ndarray | None = None) -> numpy.ndarray:
        """A plain NumPy copy in host memory."""
        if out is not None:
            if isinstance(out, DeviceArray) or not isinstance(out, numpy.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            numpy.copyto(out, _host(self))
            return out
        return _numpy_array(_host(self), order=order, copy=True)

    def set(self, arr: numpy.ndarray, stream: Any = None) -> None:
        """Copy a host array into this device array (same dtype and shape)."""
        if isinstance(arr, DeviceArray) or not isinstance(arr, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        numpy.copyto(_host(self), arr)

    def scatter_add(self, slices: Any, value: Any) -> None:
        scatter_add(self, slices, value)

    @property
    def device(self) -> SimulatedDevice:
        return SimulatedDevice(0)

    def __getattr__(self, name: str) -> Any:  # only reached for names no class in the MRO defines
        if name in REAL_NDARRAY_NAMES:  # AttributeError, so that hasattr() still answers False
            raise AttributeError(f"cupy.ndarray.{name} exists in CuPy but is not simulated (tests/simulated_cupy.py)")
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")


def _is_basic_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(part is None or part is Ellipsis or isinstance(part, (int, slice, numpy.integer)) for part in parts)


def _refuse_numpy_only(name: str) -> property:
    """A numpy.ndarray member that cupy.ndarray lacks: AttributeError, as on a GPU."""

    def refuse(self: DeviceArray) -> Any:
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (NumPy arrays have it, CuPy's do not)")

    return property(refuse)


def _device_method(name: str) -> Any:
    """NumPy's method ``name`` on a host view, after checking the call against cupy.ndarray's signature."""
    numpy_method = getattr(numpy.ndarray, name)
    signature = _signature_from_docstring(getattr(real_cupy.ndarray, name))
    where = f"cupy.ndarray.{name}"

    def method(self: DeviceArray, *args: Any, **kwargs: Any) -> Any:
        _bind(signature, where, self, *args, **kwargs)
        host_self = _host(self)
        views: list = [(host_self, self)]
        args, kwargs = _unwrap_arguments(name, signature, args, kwargs, where, views, skip=1)
        return _wrap(numpy_method(host_self, *args, **kwargs), views)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"cupy.ndarray.{name}, computed by numpy.ndarray.{name}."
    return method


# Arguments CuPy copies to the device itself (``core.array(indices)`` in ``_take``, ``_ndarray_put``,
# ``_ndarray_compress``), so a NumPy array is fine there: name -> parameter names.
HOST_DATA_PARAMETERS = {"take": {"indices"}, "put": {"indices", "values"}, "compress": {"condition"}}


def _unwrap_arguments(name: str, signature: inspect.Signature | None, args: tuple, kwargs: dict, where: str,
                      views: list, skip: int = 0) -> tuple[list, dict]:
    """:func:`_unwrap` for a call's arguments, letting host arrays through where CuPy copies them itself.

    skip: how many leading parameters of ``signature`` are not in ``args`` (1 for a method's self).
    """
    allowed = HOST_DATA_PARAMETERS.get(name, set())
    names = list(signature.parameters)[skip:] if signature is not None else []
    args = [_unwrap(value, where, views, allow_host=index < len(names) and names[index] in allowed)
            for index, value in enumerate(args)]
    kwargs = {key: _unwrap(value, where, views, allow_host=key in allowed) for key, value in kwargs.items()}
    return args, kwargs


REAL_NDARRAY_NAMES = frozenset(dir(real_cupy.ndarray))
NUMPY_ONLY_MEMBERS = ("ctypes", "getfield", "setfield", "setflags", "resize", "to_device", "__array_namespace__",
                      "__array_interface__", "__array_struct__")
for _name in sorted(set(dir(numpy.ndarray)) & REAL_NDARRAY_NAMES):
    if not _name.startswith("_") and callable(getattr(numpy.ndarray, _name)) and _name not in DeviceArray.__dict__:
        setattr(DeviceArray, _name, _device_method(_name))
for _name in NUMPY_ONLY_MEMBERS:
    setattr(DeviceArray, _name, _refuse_numpy_only(_name))


# ---------------------------------------------------------------------------------------------
# Ufuncs and functions.
# ---------------------------------------------------------------------------------------------
class SimulatedUfunc:
    """``cupy.<ufunc>``: arguments are device arrays or scalars; keywords only ``out``, ``dtype``, ``casting``."""

    def __init__(self, numpy_ufunc: numpy.ufunc, real: Any) -> None:
        self._numpy = numpy_ufunc
        self.name, self.__name__ = real.name, numpy_ufunc.__name__
        self.nin, self.nout, self.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nin + numpy_ufunc.nout
        self.types = numpy_ufunc.types
        self._scatter_op = real._scatter_op  # which ufuncs have .at (add, subtract, maximum, ...)

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}' (simulated)>"

    def __call__(self, *args: Any, out: Any = None, dtype: Any = None, casting: str = "same_kind", **unknown: Any):
        where = f"cupy.{self.__name__}"
        if unknown:
            raise TypeError(f"Wrong arguments {unknown} ({where} takes out=, dtype= and casting= only)")
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(f"Wrong number of arguments for {where!r}. It must be either {self.nin} or "
                            f"{self.nargs} (with outputs), but given {len(args)}.")
        inputs, outs = args[: self.nin], args[self.nin:]
        if out is not None:
            if outs:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            outs = out if isinstance(out, tuple) else (out,)
        for position, operand in enumerate(inputs):
            if isinstance(operand, numpy.ndarray) and not isinstance(operand, DeviceArray):
                raise TypeError(HOST_ARRAY_MESSAGE.format(where=f"{where} (argument {position})"))
            if not isinstance(operand, (DeviceArray, *SCALAR_TYPES)):
                raise TypeError(f"Unsupported type {type(operand)} ({where} argument {position}: pass a "
                                f"cupy.ndarray or a scalar)")
        for operand in outs:
            if operand is not None and not isinstance(operand, DeviceArray):
                raise TypeError(f"{where}: out must be a cupy.ndarray, got {type(operand).__name__}")
        views: list = []
        host_inputs = _unwrap(inputs, where, views)
        host_outs = tuple(None if o is None else _host(o) for o in outs)
        options = {"casting": casting} if dtype is None else {"casting": casting, "dtype": dtype}
        if outs:
            self._numpy(*host_inputs, out=host_outs, **options)
            return outs[0] if self.nout == 1 else tuple(outs)
        return _wrap(self._numpy(*host_inputs, **options))

    def reduce(self, array: DeviceArray, axis: Any = 0, dtype: Any = None, out: Any = None, keepdims: bool = False):
        if self.__name__ == "add":
            return array.sum(axis, dtype, out, keepdims)
        if self.__name__ == "multiply":
            return array.prod(axis, dtype, out, keepdims)
        raise NotImplementedError(f"`{self.name}.reduce` is not supported yet")

    def accumulate(self, array: DeviceArray, axis: Any = 0, dtype: Any = None, out: Any = None):
        if self.__name__ == "add":
            return array.cumsum(axis, dtype, out)
        if self.__name__ == "multiply":
            return array.cumprod(axis, dtype, out)
        raise NotImplementedError(f"`{self.name}.accumulate` is not supported yet")

    def outer(self, a: Any, b: Any, **kwargs: Any) -> Any:
        a, b = cupy.asarray(a), cupy.asarray(b)
        return self(a.reshape(a.shape + (1,) * b.ndim), b.reshape((1,) * a.ndim + b.shape), **kwargs)

    def at(self, a: DeviceArray, indices: Any, b: Any = None) -> None:
        if self._scatter_op is None:
            raise NotImplementedError(f"`{self.name}.at` is not supported yet")
        if self.__name__ == "add":
            scatter_add(a, indices, b)
            return
        views: list = []
        self._numpy.at(_host(a), _unwrap(indices, f"cupy.{self.__name__}.at", views, allow_host=True),
                       _unwrap(b, f"cupy.{self.__name__}.at", views))


def _device_function(name: str, numpy_function: Any, real: Any, prefix: str = "cupy") -> Any:
    """CuPy's ``name``: bound to CuPy's signature, computed by NumPy on host views, results on the device."""
    signature = _signature(real)
    where = f"{prefix}.{name}"

    @functools.wraps(numpy_function)
    def function(*args: Any, **kwargs: Any) -> Any:
        _bind(signature, where, *args, **kwargs)
        views: list = []
        args, kwargs = _unwrap_arguments(name, signature, args, kwargs, where, views)
        return _wrap(numpy_function(*args, **kwargs), views)

    function.__wrapped__ = numpy_function
    return function


def _not_simulated(qualified_name: str, why: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotSimulatedError(f"{qualified_name} is not simulated: {why}")

    refuse.__name__ = qualified_name.rsplit(".", 1)[-1]
    return refuse


# ---------------------------------------------------------------------------------------------
# Host <-> device copies, and the few CuPy-only functions minigrad uses.
# ---------------------------------------------------------------------------------------------
def asarray(a: Any, dtype: Any = None, order: Any = None, *, copy: Any = None, blocking: bool = False) -> DeviceArray:
    """The array on the device: ``a`` itself when it is already there (and nothing changes), else a copy."""
    if isinstance(a, DeviceArray):
        host = _host(a)
        result = _numpy_asarray(host, dtype=dtype, order=order, copy=copy)
        return a if result is host else _device(result)
    # Host data (NumPy arrays, lists, scalars): a fresh copy in device memory, never a view of host memory.
    views: list = []
    return _device(_numpy_array(_unwrap(a, "cupy.asarray", views, allow_host=True), dtype=dtype,
                                order=order or "K", copy=True))


def asanyarray(a: Any, dtype: Any = None, order: Any = None, *, copy: Any = None, blocking: bool = False):
    return asarray(a, dtype, order, copy=copy, blocking=blocking)


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", subok: bool = False, ndmin: int = 0,
          *, blocking: bool = False) -> DeviceArray:
    """A device array from device or host data (host data is always copied)."""
    views: list = []
    host = _unwrap(obj, "cupy.array", views, allow_host=True)
    from_host = not isinstance(obj, DeviceArray)
    result = _numpy_array(host, dtype=dtype, copy=True if from_host else copy, order=order, ndmin=ndmin)
    return _wrap(result, views)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None, *, blocking: bool = True) -> numpy.ndarray:
    """A NumPy copy of a device array (host arrays are passed through as NumPy arrays)."""
    if isinstance(a, DeviceArray):
        return a.get(order=order, out=out)
    return _numpy_asarray(a, order=order)


def get_array_module(*args: Any) -> types.ModuleType:
    return cupy if any(isinstance(arg, DeviceArray) for arg in args) else numpy


# The order in which a GPU's atomicAdd lands repeated updates on one address is unspecified, and float
# addition is not associative, so CuPy's scatter_add (an atomicAdd per value) can round differently from
# run to run. "random" (the default) applies the updates in a fresh random order on every call, as a GPU
# may; "sequential" in index order, as numpy.add.at does (for tests that need bit-identical reruns).
ATOMIC_ORDER = "random"


def scatter_add(a: DeviceArray, slices: Any, value: Any) -> None:
    """``cupyx.scatter_add``: ``a[slices] += value`` where repeated indices add up, in the order
    :data:`ATOMIC_ORDER` says.

    CuPy supports only int32, float16, float32, float64, uint32 and uint64 targets (no int64).
    """
    if not isinstance(a, DeviceArray):
        raise TypeError(f"cupyx.scatter_add: the target must be a cupy.ndarray, got {type(a).__name__}")
    allowed = (numpy.int32, numpy.float16, numpy.float32, numpy.float64, numpy.uint32, numpy.uint64)
    if not issubclass(a.dtype.type, allowed):
        raise TypeError("cupy.add.at only supports int32, float16, float32, float64, uint32, uint64, as data type")
    views: list = []
    target = _host(a)
    slices = _unwrap(slices, "cupyx.scatter_add", views, allow_host=True)
    value = _unwrap(value, "cupyx.scatter_add", views)
    if ATOMIC_ORDER == "sequential":
        numpy.add.at(target, slices, value)
        return
    # Which element of `a` each update goes to (flat), then every update on its own, in a random order.
    destinations = numpy.arange(a.size).reshape(a.shape)[slices]
    values = numpy.broadcast_to(_numpy_asarray(value, dtype=a.dtype), destinations.shape).reshape(-1)
    order = numpy.random.default_rng().permutation(values.size)
    numpy.add.at(target, numpy.unravel_index(destinations.reshape(-1)[order], a.shape), values[order])


class SimulatedDevice:
    """``cupy.cuda.Device``: one GPU, number 0."""

    def __init__(self, device: int | None = None) -> None:
        self.id = 0 if device is None else int(device)

    def synchronize(self) -> None:
        STREAM.synchronize()

    def __enter__(self) -> SimulatedDevice:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id} (simulated)>"


class SimulatedStream:
    """``cupy.cuda.Stream``: work is done when the call returns; ``synchronize()`` only counts the calls."""

    def __init__(self) -> None:
        self.synchronize_calls = 0

    def synchronize(self) -> None:
        self.synchronize_calls += 1


STREAM = SimulatedStream()


class RandomState:
    """``cupy.random.RandomState``: cuRAND's generators, drawn here by NumPy's Philox bit generator.

    The numbers are not the ones a GPU draws; the seeding, the method names and signatures, the dtype rule
    (float32 or float64 only) and the device placement of the results are CuPy's.
    """

    def __init__(self, seed: Any = None, method: Any = None) -> None:
        methods = set(CURAND_METHODS.values())
        if method is not None and method not in methods:
            raise ValueError(f"cupy.random.RandomState: unknown method {method!r}; use one of {sorted(methods)}")
        self.method = CURAND_METHODS["CURAND_RNG_PSEUDO_DEFAULT"] if method is None else method
        self.seed(seed)

    def seed(self, seed: Any = None) -> None:
        if seed is not None:
            seed_array = _numpy_asarray(seed)
            if seed_array.dtype.kind not in "biu":
                raise TypeError("Seed must be an integer.")
            seed = int(seed_array)
            if seed < 0 or seed >= 2**64:
                raise ValueError("Seed must be an integer between 0 and 2**64 - 1")
        self._generator = numpy.random.Generator(numpy.random.Philox(seed))

    def random_sample(self, size: Any = None, dtype: Any = float) -> DeviceArray:
        dtype = _float_dtype(dtype)
        return _device(_numpy_asarray(self._generator.random(() if size is None else size, dtype=dtype)))

    def standard_normal(self, size: Any = None, dtype: Any = float) -> DeviceArray:
        return self.normal(size=size, dtype=dtype)

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None, dtype: Any = float) -> DeviceArray:
        dtype = _float_dtype(dtype)
        rand = self.random_sample(() if size is None else size, dtype=dtype)
        return (rand * (high - low) + low).astype(dtype, copy=False)

    def normal(self, loc: Any = 0.0, scale: Any = 1.0, size: Any = None, dtype: Any = float) -> DeviceArray:
        dtype = _float_dtype(dtype)
        values = self._generator.standard_normal(() if size is None else size, dtype=dtype)
        return (_device(_numpy_asarray(values)) * scale + loc).astype(dtype, copy=False)


class Generator:
    """``cupy.random.Generator`` (from ``cupy.random.default_rng(seed)``): NumPy's Generator API as far as CuPy
    has it. CuPy's has ``random``, ``standard_normal``, ``uniform`` and ``integers`` but no ``normal``,
    ``permutation`` or ``choice``; those raise AttributeError here too."""

    def __init__(self, seed: Any = None) -> None:
        self._generator = numpy.random.Generator(numpy.random.Philox(seed))

    def random(self, size: Any = None, dtype: Any = numpy.float64, out: Any = None) -> DeviceArray:
        values = _device(_numpy_asarray(self._generator.random(size, dtype=_float_dtype(dtype))))
        return _into(values, out)

    def standard_normal(self, size: Any = None, dtype: Any = numpy.float64, out: Any = None) -> DeviceArray:
        values = _device(_numpy_asarray(self._generator.standard_normal(size, dtype=_float_dtype(dtype))))
        return _into(values, out)

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None, dtype: Any = numpy.float64) -> DeviceArray:
        return (self.random(size, dtype) * (high - low) + low).astype(dtype, copy=False)

    def integers(self, low: Any, high: Any = None, size: Any = None, dtype: Any = numpy.int64,
                 endpoint: bool = False) -> DeviceArray:
        return _device(_numpy_asarray(self._generator.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def __getattr__(self, name: str) -> Any:
        where = "simulated " if name in dir(real_cupy.random.Generator) else ""
        raise AttributeError(f"{where}'cupy.random.Generator' object has no attribute {name!r}")


def _into(values: DeviceArray, out: Any) -> DeviceArray:
    if out is None:
        return values
    if not isinstance(out, DeviceArray):
        raise TypeError(f"out must be a cupy.ndarray, got {type(out).__name__}")
    out[...] = values
    return out


def _float_dtype(dtype: Any) -> numpy.dtype:
    dtype = numpy.dtype(dtype)
    if dtype.char not in ("f", "d"):
        raise TypeError("cupy.random only supports float32 and float64")
    return dtype


# cuRAND's generator types (curand.h), the values cupy.cuda.curand exposes.
CURAND_METHODS = {
    "CURAND_RNG_PSEUDO_DEFAULT": 100,
    "CURAND_RNG_PSEUDO_XORWOW": 101,
    "CURAND_RNG_PSEUDO_MRG32K3A": 121,
    "CURAND_RNG_PSEUDO_MTGP32": 141,
    "CURAND_RNG_PSEUDO_MT19937": 142,
    "CURAND_RNG_PSEUDO_PHILOX4_32_10": 161,
}


def sliding_window_view(x: DeviceArray, window_shape: Any, axis: Any = None, *, subok: bool = False,
                        writeable: bool = False) -> DeviceArray:
    if not isinstance(x, DeviceArray):
        raise TypeError(HOST_ARRAY_MESSAGE.format(where="cupy.lib.stride_tricks.sliding_window_view"))
    return _device(numpy.lib.stride_tricks.sliding_window_view(_host(x), window_shape, axis=axis,
                                                               writeable=writeable))


def as_strided(x: DeviceArray, shape: Any = None, strides: Any = None) -> DeviceArray:
    if not isinstance(x, DeviceArray):
        raise TypeError(HOST_ARRAY_MESSAGE.format(where="cupy.lib.stride_tricks.as_strided"))
    return _device(numpy.lib.stride_tricks.as_strided(_host(x), shape=shape, strides=strides))


# ---------------------------------------------------------------------------------------------
# The namespaces.
# ---------------------------------------------------------------------------------------------
class SimulatedModule(types.ModuleType):
    """A module of the simulation; a name it lacks says whether real CuPy has it."""

    def __init__(self, name: str, real: types.ModuleType | None) -> None:
        super().__init__(name, f"Simulated {name} (tests/simulated_cupy.py).")
        self._real_names = frozenset(dir(real)) if real is not None else frozenset()

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("__") and name in self._real_names:
            raise AttributeError(f"module {self.__name__!r} has {name!r} in real CuPy, but the simulation does not "
                                 f"provide it: add it to tests/simulated_cupy.py")
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _fill_from_numpy(module: SimulatedModule, real: types.ModuleType, numpy_module: types.ModuleType,
                     special: dict[str, Any]) -> None:
    """Give ``module`` every public name of ``real`` (CuPy) that ``numpy_module`` also has, mapped to NumPy's
    (wrapped), plus ``special``; every other name stays missing."""
    for name in dir(real):
        if name.startswith("_"):
            continue
        if name in special:
            setattr(module, name, special[name])
            continue
        if not hasattr(numpy_module, name) or isinstance(getattr(numpy_module, name), types.ModuleType):
            continue  # no NumPy twin (asnumpy, RawKernel, ...) or a submodule: simulated only where listed
        ours, theirs = getattr(numpy_module, name), getattr(real, name)
        if isinstance(theirs, real_cupy.ufunc) and isinstance(ours, numpy.ufunc):
            setattr(module, name, SimulatedUfunc(ours, theirs))
        elif isinstance(ours, type) or not callable(ours):
            setattr(module, name, ours)  # dtypes and scalar types (cupy.float32 is numpy.float32), constants
        else:
            setattr(module, name, _device_function(name, ours, theirs, prefix=module.__name__))


def _build() -> tuple[SimulatedModule, SimulatedModule]:
    not_on_cpu = "it compiles CUDA C for a GPU, which this CPU cannot run; test the code around it instead"
    random = SimulatedModule("cupy.random", real_cupy.random)
    random.RandomState, random.Generator, random.default_rng = RandomState, Generator, Generator

    cuda = SimulatedModule("cupy.cuda", real_cupy.cuda)
    properties = {"name": b"Simulated GPU (tests/simulated_cupy.py)", "major": 9, "minor": 0}
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                         getDeviceProperties=lambda device: dict(properties))
    cuda.curand = types.SimpleNamespace(**CURAND_METHODS)
    cuda.Device = SimulatedDevice
    cuda.get_current_stream = lambda device=None: STREAM

    stride_tricks = SimulatedModule("cupy.lib.stride_tricks", real_cupy.lib.stride_tricks)
    stride_tricks.sliding_window_view, stride_tricks.as_strided = sliding_window_view, as_strided
    lib = SimulatedModule("cupy.lib", real_cupy.lib)
    lib.stride_tricks = stride_tricks

    linalg = SimulatedModule("cupy.linalg", real_cupy.linalg)
    _fill_from_numpy(linalg, real_cupy.linalg, numpy.linalg, {})

    simulated = SimulatedModule("cupy", real_cupy)
    simulated.__version__ = real_cupy.__version__
    special = {
        "ndarray": DeviceArray, "asarray": asarray, "asanyarray": asanyarray, "array": array, "asnumpy": asnumpy,
        "get_array_module": get_array_module, "random": random, "cuda": cuda, "lib": lib, "linalg": linalg,
        "is_available": lambda: True,
    }
    for name in ("RawKernel", "RawModule", "ElementwiseKernel", "ReductionKernel", "fuse"):
        special[name] = _not_simulated(f"cupy.{name}", not_on_cpu)
    _fill_from_numpy(simulated, real_cupy, numpy, special)

    simulated_cupyx = SimulatedModule("cupyx", real_cupyx)
    simulated_cupyx.scatter_add = scatter_add
    return simulated, simulated_cupyx


cupy, cupyx = _build()


# ---------------------------------------------------------------------------------------------
# NumPy's own converters, made as strict as CuPy's __array__.
# ---------------------------------------------------------------------------------------------
def _refusing_device_arrays(numpy_function: Any) -> Any:
    @functools.wraps(numpy_function)
    def convert(*args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else kwargs.get("a", kwargs.get("object"))
        items = first if isinstance(first, (list, tuple)) else (first,)
        if any(isinstance(item, DeviceArray) for item in items):
            raise TypeError(f"numpy.{numpy_function.__name__}: {IMPLICIT_CONVERSION_MESSAGE}")
        return numpy_function(*args, **kwargs)

    return convert


STRICT_CONVERTERS = ("array", "asarray", "asanyarray", "ascontiguousarray", "asfortranarray")


def strict_numpy_conversions(monkeypatch: Any) -> None:
    """Make ``numpy.asarray(device_array)`` (and numpy.array, ...) raise TypeError, as CuPy's ``__array__`` does.

    NumPy converts an ndarray subclass without asking it, so without this the simulation would let through
    the one implicit device -> host copy CuPy refuses most often. Patched with ``monkeypatch`` (undone after
    the test); the simulation itself keeps NumPy's originals.
    """
    for name in STRICT_CONVERTERS:
        monkeypatch.setattr(numpy, name, _refusing_device_arrays(getattr(numpy, name)))



# ---------------------------------------------------------------------------------------------
# Plugging it into minigrad.
# ---------------------------------------------------------------------------------------------
def install(monkeypatch: Any) -> None:
    """Make ``device="cuda"`` everywhere in minigrad land on the simulation (undone with ``monkeypatch``).

    minigrad reaches CuPy only through ``minigrad.backend``: its module-level ``_cupy`` (what
    ``is_cupy_array`` tests against), ``_import_cupy`` (what ``get_xp("cuda")`` calls) and ``import cupyx``
    in ``scatter_add``. Caches that could hold device arrays or another device's generators start empty.
    ``sys.modules["cupy"]`` stays the real CuPy (tests/test_cupy_compat.py reads its names).
    """
    import sys

    from minigrad import backend
    from minigrad.kernels.fast import conv

    monkeypatch.setattr(backend, "_cupy", cupy)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_import_cupy", lambda: cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)  # `import cupyx` in backend.scatter_add
    monkeypatch.setattr(backend, "_generators", {})
    monkeypatch.setattr(backend, "_DEFAULT_SEED", backend._DEFAULT_SEED)  # manual_seed is undone too
    monkeypatch.setattr(backend, "_raw_kernels", {})
    monkeypatch.setattr(conv, "_scratch", {})  # conv2d's reused buffers, keyed by device
    monkeypatch.delenv("MINIGRAD_CUDA_KERNELS", raising=False)  # hand-written CUDA C cannot run here
    strict_numpy_conversions(monkeypatch)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: Any) -> None:
    """As a pytest plugin, run a whole session on the simulated GPU:

        python -m pytest -p tests.simulated_cupy --device cuda tests/

    runs every ``device``-parametrised test of the suite on "cuda" (here, the simulation). Nothing is undone:
    the session is the simulated GPU's. Loaded first, so tests/conftest.py already sees a GPU answering.
    """
    install(pytest.MonkeyPatch())
