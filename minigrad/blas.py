"""How many threads NumPy's matrix multiply uses, read and changed while Python runs.

NumPy's wheels multiply matrices with OpenBLAS, which starts one thread per core. On a quiet machine that
pays (on 2 cores the full-width GoogLeNet step ran 1.38x faster with two threads than with one, the
eighth-width demo about 1.2x). On a machine busy with other work it can cost many times over: every
thread of a call must finish before the call returns, so the call waits for whichever thread lost its
core. The variable ``OPENBLAS_NUM_THREADS`` sets the count, but only before NumPy is imported; these
functions ask the OpenBLAS library that NumPy loaded (found in the process's memory map, called through
``ctypes``, as the ``threadpoolctl`` package does) at any time. ``minigrad train --threads N`` uses them.
With another BLAS (MKL, Apple's Accelerate) or no ``/proc`` (macOS) they report that they cannot, and
change nothing.
"""

from __future__ import annotations

import ctypes
from typing import Any


def _openblas_library() -> ctypes.CDLL | None:
    """The OpenBLAS that numpy loaded (found in this process's memory map), or None (another BLAS, no /proc)."""
    import numpy

    numpy.ones(1) @ numpy.ones(1)  # make sure the BLAS is loaded
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _openblas_call(name: str, restype: Any, *arguments: int) -> Any:
    """Call OpenBLAS's ``name`` under whichever spelling this build exports (numpy's wheels prefix ``scipy_``
    and suffix ``64_``). Returns its result (True for a void function), or None when there is no OpenBLAS
    or it exports none of the spellings."""
    library = _openblas_library()
    if library is None:
        return None
    for symbol in (name, f"{name}64_", f"scipy_{name}64_", f"scipy_{name}"):
        function = getattr(library, symbol, None)
        if function is not None:
            function.restype = restype
            result = function(*arguments)
            return True if restype is None else result
    return None


def get_threads() -> int | None:
    """The number of threads OpenBLAS uses for a matrix multiply, or None when it cannot be asked."""
    threads = _openblas_call("openblas_get_num_threads", ctypes.c_int)
    return int(threads) if threads else None


def set_threads(threads: int) -> bool:
    """Make OpenBLAS use ``threads`` threads from now on; False (and nothing changed) when it cannot be reached."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"blas.set_threads: threads must be a positive int, got {threads!r}")
    return _openblas_call("openblas_set_num_threads", None, threads) is not None


def core_name() -> str | None:
    """The CPU kernel OpenBLAS chose (e.g. "SkylakeX", "Haswell"; ``OPENBLAS_CORETYPE`` can force it), or None."""
    core = _openblas_call("openblas_get_corename", ctypes.c_char_p)
    return core.decode() if core else None
