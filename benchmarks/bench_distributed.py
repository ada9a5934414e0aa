"""Data-parallel benchmark: training steps per second with 1 and 2 processes at 1 BLAS thread each, against
one process with 2 threads, and the scaling efficiency.

    python -m benchmarks --only distributed             # in the harness's table
    python -m benchmarks.bench_distributed              # alone: GoogLeNet width 0.125, global batch 64
    python -m benchmarks.bench_distributed --width 1 --batch-size 32 --steps 4
    python -m benchmarks.bench_distributed --smoke      # toy sizes, seconds

Each case runs in a fresh process (``mpiexec -n 2`` for two ranks) with ``OPENBLAS_NUM_THREADS`` set before
NumPy starts. A case builds the model ``minigrad train`` builds (GoogLeNet, cifar stem, aux heads, paper
variant), runs warm-up steps, then times ``steps`` training steps on one fixed batch of random images:
forward, loss, backward, the gradient all-reduce and an SGD update, every rank starting and ending together
(a barrier on each side of the clock). The global batch is the same in every case: one process takes it
whole, two ranks take half each.

Scaling efficiency = images/s of the case / (number of cores it uses x images/s of one process on one
thread): 100% means that 2 cores train twice as fast as 1. Both ways of using two cores are measured: two
processes with one thread each (data parallelism), one process with two threads (BLAS's threads inside each
matrix multiply). torch has no counterpart here; its column says n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.common import REPO_ROOT, Row

GROUP = "distributed"
NO_TORCH = "n/a"


def _mpiexec() -> str | None:
    """The mpiexec beside this Python (the mpich wheel puts it there) or on the PATH; None without mpi4py."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def measure(ranks: int, threads: int, sync_bn: bool, width: float, batch_size: int, steps: int,
            warmup: int) -> float:
    """Milliseconds per training step of the global batch, in a fresh process (or ``ranks`` of them)."""
    command = [sys.executable, "-m", "benchmarks.bench_distributed", "--worker", "--width", str(width),
               "--batch-size", str(batch_size), "--steps", str(steps), "--warmup", str(warmup)]
    if sync_bn:
        command.append("--sync-bn")
    if ranks > 1:
        command = [_mpiexec(), "-n", str(ranks), *command]
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                   "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=3600)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark case failed ({' '.join(command)}):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])["ms_per_step"]


def worker(width: float, batch_size: int, steps: int, warmup: int, sync_bn: bool) -> None:
    """One rank (or the only process): time ``steps`` steps; rank 0 prints {"ms_per_step": ...} as JSON."""
    import numpy as np

    import minigrad
    from minigrad import distributed, optim
    from minigrad.models import googlenet_loss, inception_v1

    world = distributed.init()
    model = inception_v1(num_classes=10, stem="cifar", width=width, seed=0)
    if sync_bn:
        model = distributed.convert_sync_batchnorm(model)
    distributed.broadcast_parameters(model)
    optimizer = distributed.DistributedOptimizer(optim.SGD(list(model.parameters()), lr=0.01, momentum=0.9))
    rng = np.random.default_rng(world.rank)
    shard = batch_size // world.size
    images = minigrad.tensor(rng.standard_normal((shard, 3, 32, 32)).astype(np.float32))
    labels = minigrad.tensor(rng.integers(0, 10, shard))

    def step() -> None:
        loss = googlenet_loss(model(images), labels, aux_weight=0.3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    world.barrier()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    world.barrier()
    elapsed = time.perf_counter() - started
    if world.rank == 0:
        print(json.dumps({"ms_per_step": elapsed / steps * 1e3}), flush=True)


def run(quick: bool = False, smoke: bool = False, progress: Callable[[Row], None] | None = None,
        width: float | None = None, batch_size: int | None = None, steps: int | None = None) -> list[Row]:
    """Rows for ``python -m benchmarks``: the four cases and their scaling efficiency."""
    progress = progress or (lambda row: None)
    width = width or (0.0625 if smoke else 0.125)
    batch_size = batch_size or (8 if smoke else 64)
    steps = steps or (1 if smoke else 3 if quick else 8)
    warmup = 1 if smoke or quick else 2
    cases = [("1 process x 1 thread", 1, 1, False), ("1 process x 2 threads", 1, 2, False)]
    if _mpiexec() is not None:
        cases += [("2 processes x 1 thread, SyncBatchNorm", 2, 1, True),
                  ("2 processes x 1 thread, per-rank batch norm", 2, 1, False)]
    rows: list[Row] = []
    base = None
    for name, ranks, threads, sync_bn in cases:
        milliseconds = measure(ranks, threads, sync_bn, width, batch_size, steps, warmup)
        rate = batch_size / milliseconds * 1e3
        base = base or rate
        extra = {"img/s": round(rate, 1), "cores": ranks * threads,
                 "efficiency": f"{100 * rate / (ranks * threads * base):.0f}%"}
        rows.append(Row(GROUP, f"{name}, w{width:g} b{batch_size}", milliseconds, None, extra=extra,
                        torch_note=NO_TORCH))
        progress(rows[-1])
    if _mpiexec() is None:
        rows[-1].extra["note"] = "no mpi4py/mpiexec: pip install -e '.[mpi]' for the 2-process cases"
    return rows


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks that the benchmark runs")
    parser.add_argument("--width", type=float, help="GoogLeNet's channel multiplier (default 0.125)")
    parser.add_argument("--batch-size", type=int, help="the global batch (default 64)")
    parser.add_argument("--steps", type=int, help="timed steps per case (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one case, in its process
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.worker:
        worker(args.width, args.batch_size, args.steps, args.warmup, args.sync_bn)
        return
    from benchmarks.__main__ import cpu_name

    print(f"{cpu_name()}, {os.cpu_count()} cores")
    for row in run(args.quick, args.smoke, width=args.width, batch_size=args.batch_size, steps=args.steps):
        notes = ", ".join(f"{key} {value}" for key, value in row.extra.items())
        print(f"{row.case:<58}{row.minigrad_ms:>10.1f} ms/step  {notes}")


if __name__ == "__main__":
    main()
