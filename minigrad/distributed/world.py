"""The world of a data-parallel run: its ranks, and the collectives they call together, on MPI (mpi4py).

    world = init()                       # under `mpiexec -n 4`: rank 0..3 of 4; plain `python`: rank 0 of 1
    total = world.all_reduce(array)      # every rank gets the elementwise sum of every rank's array

MPI starts the same program N times (``mpiexec -n N python ...``); each copy is a *rank* with a number
``0 .. N-1``. They never share memory: everything they must agree on travels through *collectives*, calls
that every rank makes in the same order (an all-reduce sums an array over the ranks and hands everyone the
sum). Without mpi4py, or started without mpiexec, the world has one rank and every collective returns its
input: the same training code then runs, unchanged, in one process.

**A collective never hangs silently.** A blocking MPI call waits forever for a rank that crashed, hangs or
took another branch. Here each collective is started non-blocking and waited on with a deadline
(``timeout`` seconds, 300 by default, ``MINIGRAD_COLLECTIVE_TIMEOUT`` or ``--collective-timeout``). While a
rank waits it also answers "where are you?" messages on a second communicator. When its deadline passes it
asks every other rank: the ranks that answer are waiting too (and say in which collective); the ranks that
stay silent are the culprits, and :class:`CollectiveTimeout` names them. ``minigrad train --distributed``
then ends the whole job (``MPI_Abort``). A rank that *dies* is seen by ``mpiexec`` itself, which ends the job
at once and prints the dead process's PID (``minigrad train`` prints each rank's PID when it starts).

**On a GPU** the arrays are CuPy arrays. An MPI built with CUDA support ("CUDA-aware": Open MPI or MVAPICH
built with CUDA) reads and writes GPU memory directly: set ``MINIGRAD_CUDA_AWARE_MPI=1`` and the device
arrays go to MPI as they are, after the stream is synchronised. Otherwise (the ``mpich`` wheel from PyPI is
not CUDA-aware) each collective copies its array to the host and back, which is correct but slower. The
other road on NVIDIA GPUs is NCCL (``cupyx.distributed.init_process_group``), whose all-reduce runs over
NVLink; the tutorial chapter on data parallelism shows how it would slot in.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy

from minigrad import backend

MPI_INSTALL_HINT = "pip install 'minigrad[mpi]' (mpi4py and the MPICH library), then start with mpiexec -n N"
DEFAULT_TIMEOUT = 300.0  # seconds a collective may wait for the slowest rank
GRACE_SECONDS = 3.0  # after a timeout, how long the other ranks get to say where they are
SPIN_SECONDS = 0.01  # poll without sleeping this long first: ranks in step meet within microseconds
REDUCE_OPS = ("sum", "max", "min")
_PING, _ANSWER = 1, 2  # message tags on the control communicator


class DistributedError(RuntimeError):
    """Something went wrong between the ranks of a data-parallel run."""


class MPIUnavailable(DistributedError):
    """mpi4py (or an MPI library) is missing."""


class CollectiveTimeout(DistributedError):
    """A collective waited past its deadline; ``silent_ranks`` are the ranks that never reached it."""

    def __init__(self, message: str, silent_ranks: list[int]) -> None:
        super().__init__(message)
        self.silent_ranks = silent_ranks


def _import_mpi() -> Any:
    """mpi4py's MPI module (importing it initialises MPI), or :class:`MPIUnavailable` with the install line."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise MPIUnavailable(f"data-parallel training needs mpi4py and an MPI library ({error}); "
                             f"{MPI_INSTALL_HINT}") from None
    return MPI


def _launcher_size() -> int:
    """How many processes mpiexec says it started (1 when not started by mpiexec): MPICH's and Open MPI's
    launchers both put it in the environment."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


class World:
    """The ranks of one run and the collectives between them; ``comm=None`` is a world of one rank.

    World(comm=None, timeout=300.0)

    comm:    an mpi4py communicator (``MPI.COMM_WORLD``), or None for a single process
    timeout: seconds any collective may wait (None: forever)

    Every collective must be called by every rank, in the same order, with arrays of the same shape and
    dtype: that is MPI's contract, and what the timeout diagnosis checks.
    """

    def __init__(self, comm: Any = None, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.timeout = timeout
        # A second communicator for "where are you?" messages, so they never mix with the collectives.
        self._control = None if comm is None else comm.Dup()
        self._started = 0  # collectives started on this rank so far
        self._current = ""  # the name of the one this rank is waiting in ("" between collectives)
        self.cuda_aware = os.environ.get("MINIGRAD_CUDA_AWARE_MPI", "") not in ("", "0")

    def __repr__(self) -> str:
        kind = "single process" if self.comm is None else "MPI"
        return f"World(rank {self.rank} of {self.size}, {kind}, timeout={self.timeout})"

    # ----- collectives on arrays ----------------------------------------------------------------
    def all_reduce(self, array: Any, op: str = "sum") -> Any:
        """The elementwise ``op`` ("sum", "max" or "min") of ``array`` over all ranks, on every rank.

        array: any shape, NumPy or CuPy; returns a new array of the same shape, dtype and device (the input
        is left alone). With one rank, a copy of ``array``.
        """
        if op not in REDUCE_OPS:
            raise ValueError(f"all_reduce: op must be one of {REDUCE_OPS}, got {op!r}")
        if self.comm is None:
            return array.copy()
        send = self._to_mpi(array)
        result = backend.xp_of(send).empty_like(send)
        MPI = _import_mpi()
        mpi_op = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]
        self._collective("all_reduce", lambda: self.comm.Iallreduce(send, result, op=mpi_op))
        return self._from_mpi(result, array)

    def broadcast(self, array: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``array`` on every rank (a new array; every rank passes one of the same shape)."""
        self._check_root(root, "broadcast")
        if self.comm is None:
            return array.copy()
        buffer = self._to_mpi(array).copy()
        self._collective("broadcast", lambda: self.comm.Ibcast(buffer, root=root))
        return self._from_mpi(buffer, array)

    def barrier(self, timeout: float | None | str = "default") -> None:
        """Wait until every rank has called ``barrier`` (``timeout``: seconds, None for no limit)."""
        if self.comm is not None:
            self._collective("barrier", self.comm.Ibarrier, timeout)

    # ----- collectives on Python objects (pickled: small things such as a loader's state) --------
    def broadcast_object(self, value: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``value`` (any picklable object) on every rank; the others pass anything."""
        self._check_root(root, "broadcast_object")
        if self.comm is None:
            return value
        payload = numpy.frombuffer(pickle.dumps(value), dtype=numpy.uint8) if self.rank == root else None
        size = numpy.array([0 if payload is None else payload.size], dtype=numpy.int64)
        self._collective("broadcast_object", lambda: self.comm.Ibcast(size, root=root))
        buffer = payload.copy() if payload is not None else numpy.empty(int(size[0]), dtype=numpy.uint8)
        self._collective("broadcast_object", lambda: self.comm.Ibcast(buffer, root=root))
        return value if self.rank == root else pickle.loads(buffer.tobytes())

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's ``value``, as a list indexed by rank, on every rank."""
        if self.comm is None:
            return [value]
        payload = numpy.frombuffer(pickle.dumps(value), dtype=numpy.uint8)
        sizes = numpy.empty(self.size, dtype=numpy.int64)
        mine = numpy.array([payload.size], dtype=numpy.int64)
        self._collective("all_gather_object", lambda: self.comm.Iallgather(mine, sizes))
        offsets = numpy.concatenate([[0], numpy.cumsum(sizes)[:-1]])
        gathered = numpy.empty(int(sizes.sum()), dtype=numpy.uint8)
        self._collective("all_gather_object", lambda: self.comm.Iallgatherv(
            payload, [gathered, sizes.tolist(), offsets.tolist(), _import_mpi().BYTE]))
        return [pickle.loads(gathered[start : start + size].tobytes()) for start, size in zip(offsets, sizes)]

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (``MPI_Abort``); with one rank, nothing (the caller exits)."""
        if self.comm is not None:
            self.comm.Abort(code)

    # ----- devices --------------------------------------------------------------------------------
    def _to_mpi(self, array: Any) -> Any:
        """A contiguous buffer MPI can read: the device array itself with CUDA-aware MPI, else a host copy."""
        if backend.is_cupy_array(array):
            if self.cuda_aware:
                backend.synchronize("cuda")  # MPI reads the memory directly: the kernels must have finished
                return backend.xp_of(array).ascontiguousarray(array)
            return numpy.ascontiguousarray(backend.to_numpy(array))
        return numpy.ascontiguousarray(array)

    def _from_mpi(self, result: Any, like: Any) -> Any:
        return backend.to_device(result, backend.device_of(like))

    def _check_root(self, root: int, what: str) -> None:
        if not 0 <= root < self.size:
            raise ValueError(f"{what}: root must be a rank in 0..{self.size - 1}, got {root}")

    # ----- waiting with a deadline ------------------------------------------------------------------
    def _collective(self, name: str, start: Callable[[], Any], timeout: float | None | str = "default") -> None:
        """Start a non-blocking collective and wait for it, at most ``timeout`` seconds."""
        self._started += 1
        self._current = name
        try:
            self._wait(start(), name, self.timeout if timeout == "default" else timeout)
        finally:
            self._current = ""

    def _wait(self, request: Any, name: str, timeout: float | None) -> None:
        """Poll ``request`` until it completes: spin at first, then sleep a little longer each time (up to
        5 ms), answering other ranks' questions; past the deadline, find the missing ranks and raise."""
        started = time.perf_counter()
        pause = 1e-5
        while not request.Test():
            now = time.perf_counter()
            if now - started < SPIN_SECONDS:
                continue
            self._answer_questions()
            if timeout is not None and now - started > timeout:
                raise self._diagnose(name, now - started)
            time.sleep(pause)
            pause = min(2 * pause, 5e-3)

    def _answer_questions(self) -> None:
        """Tell every rank that asked where this one is: (collectives started, the one waited in)."""
        MPI = _import_mpi()
        status = MPI.Status()
        while self._control.Iprobe(source=MPI.ANY_SOURCE, tag=_PING, status=status):
            asker = status.Get_source()
            self._control.recv(source=asker, tag=_PING)
            self._control.send((self._started, self._current), dest=asker, tag=_ANSWER)

    def _diagnose(self, name: str, waited: float) -> CollectiveTimeout:
        """Ask every other rank where it is; the error names those that stay silent for GRACE_SECONDS."""
        MPI = _import_mpi()
        others = [rank for rank in range(self.size) if rank != self.rank]
        for rank in others:
            self._control.isend(None, dest=rank, tag=_PING)
        answers: dict[int, tuple[int, str]] = {}
        status = MPI.Status()
        give_up = time.perf_counter() + GRACE_SECONDS
        while len(answers) < len(others) and time.perf_counter() < give_up:
            self._answer_questions()  # a rank diagnosing at the same time asks us too
            while self._control.Iprobe(source=MPI.ANY_SOURCE, tag=_ANSWER, status=status):
                source = status.Get_source()
                answers[source] = self._control.recv(source=source, tag=_ANSWER)
            time.sleep(1e-3)
        silent = [rank for rank in others if rank not in answers]
        here = (self._started, name)
        waiting = [self.rank] + [rank for rank, answer in answers.items() if answer == here]
        elsewhere = {rank: answer for rank, answer in answers.items() if answer != here}
        message = (f"{name} (collective #{self._started}) timed out on rank {self.rank} of {self.size} after "
                   f"{waited:.1f} s: ")
        if silent:
            message += f"{_ranks(silent)} never reached it (far slower than the others, hung, or dead); "
        message += f"{_ranks(sorted(waiting))} waited in it"
        places: dict[tuple[int, str], list[int]] = {}
        for rank, answer in sorted(elsewhere.items()):
            places.setdefault(answer, []).append(rank)
        for (count, where), ranks in places.items():
            where = f"{where} (collective #{count})" if where else f"no collective (after #{count})"
            message += f"; {_ranks(ranks)} {'is' if len(ranks) == 1 else 'are'} in {where}"
        if places:
            message += ": the ranks called collectives in different orders"
        message += (". If a step is only slow, raise the limit (--collective-timeout, or "
                    "MINIGRAD_COLLECTIVE_TIMEOUT, in seconds)")
        return CollectiveTimeout(message, silent)


def _ranks(ranks: list[int]) -> str:
    """"rank 1" or "ranks 0, 2"."""
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


# ---------------------------------------------------------------------------------------------
# The process's world
# ---------------------------------------------------------------------------------------------
_world: World | None = None


def init(timeout: float | None = None, *, use_mpi: bool | None = None) -> World:
    """Set up (once) and return this process's :class:`World`.

    use_mpi: None (default) uses MPI when mpi4py imports and a world of size 1 otherwise; True requires
    mpi4py (:class:`MPIUnavailable` with the install line); False is always a world of size 1.
    timeout: seconds a collective may wait; default ``MINIGRAD_COLLECTIVE_TIMEOUT`` or 300. Calling
    ``init`` again returns the same world (with the new timeout when one is given).
    """
    global _world
    if _world is not None and (use_mpi is None or use_mpi == (_world.comm is not None)):
        if timeout is not None:
            _world.timeout = timeout
        return _world
    if timeout is None:
        timeout = float(os.environ.get("MINIGRAD_COLLECTIVE_TIMEOUT", DEFAULT_TIMEOUT))
    comm = None
    if use_mpi is not False:
        try:
            comm = _import_mpi().COMM_WORLD
        except MPIUnavailable:
            if _launcher_size() > 1:  # N copies, each thinking it is alone, would each write the same files
                raise MPIUnavailable(f"this process was started by mpiexec as one of {_launcher_size()}, but "
                                     f"mpi4py is not installed; {MPI_INSTALL_HINT}") from None
            if use_mpi:
                raise
    _world = World(comm, timeout)
    return _world


def get_world() -> World:
    """The world set up by :func:`init` (calling it with the defaults if nothing has yet)."""
    return _world if _world is not None else init()


def rank() -> int:
    """This process's rank, 0 .. world_size() - 1."""
    return get_world().rank


def world_size() -> int:
    """How many ranks the run has (1 without MPI)."""
    return get_world().size


def all_reduce(array: Any, op: str = "sum") -> Any:
    """:meth:`World.all_reduce` on the process's world: the elementwise ``op`` over ranks, on every rank."""
    return get_world().all_reduce(array, op)
