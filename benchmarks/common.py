"""What every benchmark shares: devices, threads, timing, the GEMM ceiling, peak memory, and the one results table.

The rules that make a comparison with PyTorch fair on a shared 2-core machine:

* **Same process, same threads.** torch gets ``torch.set_num_threads(n)`` with ``n`` the number of threads
  numpy's BLAS (OpenBLAS) uses, read from the library itself (:func:`blas_info`).
* **Back to back.** A case times minigrad and torch alternately, call after call, after warm-up calls, and
  keeps the *median* of each (:func:`time_pair`). Other people's jobs slow both sides alike, so the ratio
  minigrad / torch is the number to trust; the absolute milliseconds drift with the machine's load.
* **Peak memory in a fresh process.** Allocators keep freed memory (glibc's heap, torch's caches), so a
  process that already ran one library cannot measure the other fairly. :func:`measure_in_subprocess`
  starts a new Python for each (case, library); the worker builds the model, resets the kernel's high-water
  mark of resident memory, runs one step, and reports the peak above what it held before
  (:func:`peak_rss_increase`).
* **On a GPU, the same device for both.** ``--device cuda`` runs minigrad on CuPy and torch on
  ``torch.device("cuda")`` (:func:`torch_device`; a torch built without CUDA is not compared at all, its
  column says why). GPU calls return before the work is done, so every timed call ends by waiting for its
  device (:func:`wait_for`), and warm-up calls come first (CuPy compiles each kernel on its first call).
  Both do true float32: torch's TF32 shortcut for convolutions is turned off. Peak memory is counted by
  each library's own GPU allocator in this process (:func:`gpu_peak_increase`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from minigrad import backend, blas

MB = 2**20  # memory is reported in MiB
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_HAS_NO_CUDA = "n/a: torch has no CUDA"  # the torch column on a GPU when the installed torch is a CPU build


# ----- one result ------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table: a case timed in minigrad and in torch.

    flops: floating-point operations of one call (2 per multiply-add), the same for both libraries;
    None where counting them means nothing (pooling, batch norm, concatenation).
    extra: anything else worth keeping (images/s, backward/forward ratio), shown in the notes column.
    torch_note: why ``torch_ms`` is None (torch did not run on this device), shown in its column.
    """

    group: str
    case: str
    minigrad_ms: float | None
    torch_ms: float | None
    flops: float | None = None
    minigrad_peak_mb: float | None = None
    torch_peak_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    torch_note: str | None = None

    @property
    def ratio(self) -> float | None:
        """minigrad time / torch time: below 1 means minigrad is faster."""
        if self.minigrad_ms is None or not self.torch_ms:
            return None
        return self.minigrad_ms / self.torch_ms

    def gflops(self, milliseconds: float | None) -> float | None:
        """Achieved GFLOP/s of a call that took ``milliseconds``."""
        if self.flops is None or not milliseconds:
            return None
        return self.flops / (milliseconds * 1e-3) / 1e9


# ----- devices -----------------------------------------------------------------------------------
def exit_unless_available(device: str, program: str) -> None:
    """Stop with one line (backend's reason) and exit status 2 when minigrad cannot run on ``device``:
    without a GPU, ``--device cuda`` is a usage error, not a traceback from inside the first case."""
    try:
        backend.get_xp(device)
    except RuntimeError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def torch_device(device: str) -> Any:
    """The ``torch.device`` to compare with minigrad on ``device``, or None where torch cannot run there
    (a CPU-only torch build asked for "cuda": comparing against CPU torch would mislead).

    On the GPU it also turns off TF32 in torch's convolutions and matrix multiplies (cuDNN convolutions
    use it by default on Ampere and newer GPUs): CuPy's matmul does true float32, so torch must too.
    """
    import torch

    if backend.check_device(device) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        return None
    if hasattr(torch.backends.cudnn, "conv"):  # torch 2.9 and later; mixing old and new flags is an error
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device("cuda")


def wait_for(library: str, device: str) -> Callable[[], None]:
    """A function that returns once ``library``'s queued work on ``device`` is done (a no-op on the CPU).

    GPU calls only queue kernels and return at once; a clock read without waiting times the queueing.
    """
    if backend.check_device(device) == "cpu":
        return lambda: None
    if library == "minigrad":
        return lambda: backend.synchronize(device)
    import torch

    return torch.cuda.synchronize


def gpu_name() -> str:
    """The name of the GPU CuPy uses (e.g. "NVIDIA H100 80GB HBM3")."""
    cupy = backend.get_xp("cuda")
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def torch_twin_module() -> Any:
    """tests/models/torch_googlenet.py, the torch twin of minigrad's GoogLeNet that the parity tests use,
    imported by file path (the tests folder is not an installed package)."""
    path = os.path.join(REPO_ROOT, "tests", "models", "torch_googlenet.py")
    spec = importlib.util.spec_from_file_location("torch_googlenet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- threads and the BLAS ---------------------------------------------------------------------
def blas_info() -> dict[str, Any]:
    """How numpy's matrix multiply runs: {"threads", "source", "library", "core"}.

    threads: the thread count OpenBLAS itself reports (asked through threadpoolctl, see minigrad/blas.py);
    without OpenBLAS, OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / the CPUs this
    process may run on. core: the kernel OpenBLAS chose, which OPENBLAS_CORETYPE can force.
    """
    threads = blas.get_threads()
    if threads:
        return {"threads": threads, "source": "OpenBLAS", "library": "OpenBLAS", "core": blas.core_name()}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name, "").isdigit():
            return {"threads": int(os.environ[name]), "source": name, "library": "unknown", "core": None}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"threads": cpus, "source": "CPU count", "library": "unknown", "core": None}


def set_blas_threads(threads: int) -> None:
    """Tell numpy's OpenBLAS to use ``threads`` threads (through threadpoolctl, see minigrad/blas.py)."""
    if not blas.set_threads(threads):
        raise RuntimeError(f"--threads {threads}: cannot find OpenBLAS in this process to set its threads; "
                           "set OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) before starting Python instead")


def setup_threads(threads: int | None = None) -> dict[str, Any]:
    """Give torch as many threads as numpy's BLAS has; return what was set, for the table's header.

    threads: use this many in both instead. One thread makes small cases far steadier on a busy machine,
    where multithreaded calls wait for a descheduled thread.
    """
    import torch

    if threads is not None:
        set_blas_threads(threads)
    info = blas_info()
    torch.set_num_threads(info["threads"])
    info["torch_threads"] = torch.get_num_threads()
    return info


# ----- timing ------------------------------------------------------------------------------------
def time_pair(
    minigrad_call: Callable[[], Any], torch_call: Callable[[], Any] | None, warmup: int = 1, repeats: int = 5,
    settle: float = 0.01, device: str = "cpu",
) -> tuple[float, float | None]:
    """Median milliseconds of each call over ``repeats`` runs, after ``warmup`` runs of each.

    The two calls alternate (minigrad, torch, minigrad, torch, ...) so that a burst of load from another
    process lands on both; the median ignores the odd run that a burst hit hard. Before each timed call
    the clock waits ``settle`` seconds (not counted): after a call, torch's OpenMP threads and OpenBLAS's
    threads keep spinning for a few milliseconds waiting for more work, and would steal the next call's CPU.
    On a GPU each call is timed until its device has finished (:func:`wait_for`), and at least one warm-up
    call runs first: CuPy compiles a kernel the first time it is called, and both allocators fill their pools.
    ``torch_call`` None: torch does not run on this device; its time is None.
    """
    if backend.check_device(device) != "cpu":
        warmup = max(warmup, 1)
    calls = [(minigrad_call, wait_for("minigrad", device), [])]
    if torch_call is not None:
        calls.append((torch_call, wait_for("torch", device), []))
    for _ in range(warmup):  # first calls pay for page faults, BLAS thread start-up, torch's kernel choice
        for call, wait, _ in calls:
            call()
            wait()
    for _ in range(repeats):
        for call, wait, times in calls:
            time.sleep(settle)
            start = time.perf_counter()
            call()
            wait()
            times.append(time.perf_counter() - start)
    medians = [statistics.median(times) * 1e3 for _, _, times in calls]
    return medians[0], medians[1] if torch_call is not None else None


def throughput(images: int, minigrad_ms: float, torch_ms: float | None) -> dict[str, float]:
    """{"img/s", "torch img/s"} of a call that handles ``images`` images (torch's left out when it did not run)."""
    rates = {"img/s": round(images / minigrad_ms * 1e3, 1)}
    if torch_ms:
        rates["torch img/s"] = round(images / torch_ms * 1e3, 1)
    return rates


def timed_row(
    group: str, case: str, minigrad_call: Callable[[], Any], torch_call: Callable[[], Any] | None, *,
    device: str = "cpu", warmup: int = 1, repeats: int = 5, flops: float | None = None, images: int | None = None,
) -> Row:
    """Time a case with :func:`time_pair` and make its row; ``images``: the batch size, to add images/s.
    ``torch_call`` None: torch has no CUDA, and its column says so."""
    minigrad_ms, torch_ms = time_pair(minigrad_call, torch_call, warmup, repeats, device=device)
    return Row(group, case, minigrad_ms, torch_ms, flops=flops,
               extra={} if images is None else throughput(images, minigrad_ms, torch_ms),
               torch_note=None if torch_call is not None else TORCH_HAS_NO_CUDA)


def gemm_ceiling(size: int = 2048, repeats: int = 7, device: str = "cpu") -> dict[str, Any]:
    """GFLOP/s of one float32 (size x size) @ (size x size) matrix multiply on ``device``: in minigrad's
    array library (numpy, or cupy on "cuda") and in torch (None where torch cannot run on ``device``).

    A matrix multiply is the fastest thing these libraries do; numpy's figure (cupy's, i.e. cuBLAS, on a GPU)
    is the ceiling that a convolution (im2col + matmul) can at best reach, and "% of ceiling" is measured
    against it. Flops: 2 * size^3 (one multiply and one add per term). The *best* of ``repeats`` runs,
    as befits a ceiling: on a shared machine the median is what the load allowed, not what the CPU can do.
    """
    generator = np.random.default_rng(0)
    a = generator.standard_normal((size, size), dtype=np.float32)
    b = generator.standard_normal((size, size), dtype=np.float32)
    device_a, device_b = backend.to_device(a, device), backend.to_device(b, device)
    calls = {"minigrad": (lambda: device_a @ device_b, wait_for("minigrad", device))}
    on_torch = torch_device(device)
    if on_torch is not None:
        import torch

        torch_a, torch_b = torch.from_numpy(a).to(on_torch), torch.from_numpy(b).to(on_torch)
        calls["torch"] = (lambda: torch_a @ torch_b, wait_for("torch", device))
    best = dict.fromkeys(calls, float("inf"))
    for call, wait in calls.values():  # warm up (BLAS threads, cuBLAS handles and workspaces)
        call()
        wait()
    for _ in range(repeats):
        for name, (call, wait) in calls.items():
            time.sleep(0.01)
            start = time.perf_counter()
            call()
            wait()
            best[name] = min(best[name], time.perf_counter() - start)
    flops = 2.0 * size**3
    return {"size": size, "device": device, "library": backend.get_xp(device).__name__,
            "gflops": flops / best["minigrad"] / 1e9,
            "torch_gflops": flops / best["torch"] / 1e9 if "torch" in best else None}


# ----- peak memory -------------------------------------------------------------------------------
def _memory_status_kib() -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (its high-water mark) from /proc/self/status, in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def peak_rss_increase(run: Callable[[], Any]) -> float:
    """MiB of resident memory that ``run()`` needed at its peak, above what the process held before it.

    On Linux, writing "5" to /proc/self/clear_refs resets the high-water mark to the current resident
    size, so the peak after ``run`` minus the size before it is exactly the step's own peak. Where that
    file is missing (macOS), ``ru_maxrss`` is used: it only grows, so call this in a fresh process.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        before = _memory_status_kib()["VmRSS"]
        run()
        return (_memory_status_kib()["VmHWM"] - before) / 1024
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        run()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before) / MB


def gpu_peak_increase(library: str, run: Callable[[], Any]) -> float:
    """MiB of GPU memory that ``run()`` needed at its peak, above what ``library`` held before it.

    Each library's allocator counts its own bytes, exactly, so one process can measure both (unlike
    resident memory on the CPU): torch through ``torch.cuda.max_memory_allocated``, minigrad through a
    CuPy memory hook that adds up what CuPy's memory pool hands out and takes back during ``run``. Both
    count the blocks handed out (rounded up to 512 bytes), not what the pools keep cached.
    """
    if library == "torch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / MB
    hook = _cupy_peak_hook()
    with hook:  # registered for the calls inside the block only
        run()
    backend.synchronize("cuda")
    return hook.peak / MB


def _cupy_peak_hook() -> Any:
    """A ``cupy.cuda.MemoryHook`` whose ``peak`` is the most bytes in use at once, counted from zero when made.

    CuPy calls ``malloc_postprocess`` each time its pool hands out a block (a cached one too) and
    ``free_postprocess`` each time one comes back, with the block's rounded size as ``mem_size``.
    """
    import cupy  # only after backend found a GPU (gpu_peak_increase runs on "cuda" only)

    class PeakMemoryHook(cupy.cuda.MemoryHook):
        name = "PeakMemoryHook"

        def __init__(self) -> None:
            super().__init__()
            self.in_use = self.peak = 0

        def malloc_postprocess(self, **details: Any) -> None:  # a block handed out by the pool
            self.in_use += details["mem_size"]
            self.peak = max(self.peak, self.in_use)

        def free_postprocess(self, **details: Any) -> None:  # a block given back (may predate the hook)
            self.in_use -= details["mem_size"]

    return PeakMemoryHook()


def measure_in_subprocess(module: str, arguments: Sequence[str], timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> <arguments>`` in a fresh interpreter; return the JSON object
    that its last line of output holds (the workers print exactly one such line)."""
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *arguments],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"memory worker benchmarks.{module} {' '.join(arguments)} failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-2000:]}"
        )
    return json.loads(lines[-1])


# ----- the table -----------------------------------------------------------------------------------
def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _notes(extra: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:,.1f}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in extra.items())


COLUMNS = ["case", "minigrad ms", "torch ms", "ratio", "GFLOP/s", "% ceil", "% ceil torch",
           "peak MiB mg", "peak MiB torch", "notes"]


def format_table(rows: Sequence[Row], ceiling_gflops: float) -> str:
    """The results as an aligned text table, one line per row and a blank line between groups."""
    cells = []
    for row in rows:
        minigrad_gflops, torch_gflops = row.gflops(row.minigrad_ms), row.gflops(row.torch_ms)
        cells.append((row.group, [
            row.case,
            _number(row.minigrad_ms),
            row.torch_note if row.torch_ms is None and row.torch_note else _number(row.torch_ms),
            _number(row.ratio, 2),
            _number(minigrad_gflops),
            _number(None if minigrad_gflops is None else 100 * minigrad_gflops / ceiling_gflops, 0),
            _number(None if torch_gflops is None else 100 * torch_gflops / ceiling_gflops, 0),
            _number(row.minigrad_peak_mb, 0),
            _number(row.torch_peak_mb, 0),
            _notes(row.extra),
        ]))
    widths = [max([len(COLUMNS[i])] + [len(line[i]) for _, line in cells]) for i in range(len(COLUMNS))]

    def format_line(line: Sequence[str]) -> str:
        # The case and the notes read left to right; numbers line up on the right.
        parts = [line[0].ljust(widths[0])] + [line[i].rjust(widths[i]) for i in range(1, len(line) - 1)]
        return ("  ".join(parts) + "  " + line[-1]).rstrip()

    lines = [format_line(COLUMNS), format_line(["-" * width for width in widths])]
    previous_group = None
    for group, line in cells:
        if previous_group is not None and group != previous_group:
            lines.append("")
        lines.append(format_line(line))
        previous_group = group
    return "\n".join(lines)


def rows_to_json(rows: Sequence[Row], header: dict[str, Any]) -> dict[str, Any]:
    """The same results as a JSON-ready dict: the header (machine, threads, ceiling) and one object per row,
    with the derived columns (ratio, GFLOP/s, % of ceiling) written out."""
    ceiling = header["gemm_ceiling"]["gflops"]
    entries = []
    for row in rows:
        entry = asdict(row)
        minigrad_gflops, torch_gflops = row.gflops(row.minigrad_ms), row.gflops(row.torch_ms)
        entry.update(
            ratio=row.ratio, minigrad_gflops=minigrad_gflops, torch_gflops=torch_gflops,
            minigrad_percent_of_ceiling=None if minigrad_gflops is None else 100 * minigrad_gflops / ceiling,
            torch_percent_of_ceiling=None if torch_gflops is None else 100 * torch_gflops / ceiling,
        )
        entries.append(entry)
    return {"header": header, "rows": entries}
