"""How many threads NumPy's matrix multiply uses, read and changed while Python runs.

NumPy's wheels multiply matrices with OpenBLAS, which starts one thread per core. On a quiet machine that
pays; on a machine busy with other work it can cost many times over: every thread of a call must finish
before the call returns, so the call waits for whichever thread lost its core (benchmarks/README.md shows
both). The variable ``OPENBLAS_NUM_THREADS`` sets the count, but only before NumPy is imported; these
functions change it at any time, through ``threadpoolctl``, which finds the OpenBLAS loaded in this
process and calls it. ``minigrad train --threads N`` uses them. With another BLAS (MKL, Apple's
Accelerate) they report that they cannot, and change nothing.
"""

from __future__ import annotations

from typing import Any

import threadpoolctl


def _openblas() -> Any:
    """threadpoolctl's handle on every OpenBLAS loaded in this process (NumPy's, perhaps SciPy's), or None."""
    import numpy

    numpy.ones(1) @ numpy.ones(1)  # make sure NumPy's BLAS is loaded
    libraries = threadpoolctl.ThreadpoolController().select(internal_api="openblas")
    return libraries if libraries.lib_controllers else None


def get_threads() -> int | None:
    """The number of threads OpenBLAS uses for a matrix multiply, or None when there is no OpenBLAS."""
    libraries = _openblas()
    return None if libraries is None else int(libraries.lib_controllers[0].num_threads)


def set_threads(threads: int) -> bool:
    """Make OpenBLAS use ``threads`` threads from now on; False (and nothing changed) when there is none."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"blas.set_threads: threads must be a positive int, got {threads!r}")
    libraries = _openblas()
    if libraries is None:
        return False
    libraries.limit(limits=threads)  # kept until changed again (not used as a context manager)
    return True


def core_name() -> str | None:
    """The CPU kernel OpenBLAS chose (e.g. "SkylakeX", "Haswell"; ``OPENBLAS_CORETYPE`` can force it), or None."""
    libraries = _openblas()
    core = None if libraries is None else libraries.lib_controllers[0].info().get("architecture")
    return core or None
