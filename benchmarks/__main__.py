"""``python -m benchmarks``: kernels, the whole GoogLeNet and training, minigrad vs torch, in one table.

    python -m benchmarks                      # everything (about 10 minutes on 2 cores)
    python -m benchmarks --quick              # a subset in about a minute
    python -m benchmarks --only kernels --json results.json
    python -m benchmarks --only convlayers    # every conv of the model: backward / forward per layer
    python -m benchmarks --only distributed   # 1 and 2 processes (mpiexec) against 2 threads: images/s
    python -m benchmarks --device cuda        # minigrad on CuPy against torch on the same GPU

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    TORCH_HAS_NO_CUDA,
    Row,
    exit_unless_available,
    format_table,
    gemm_ceiling,
    gpu_name,
    rows_to_json,
    setup_threads,
    torch_device,
)

GROUPS = ("kernels", "convlayers", "googlenet", "train", "distributed")
PROGRAM = "python -m benchmarks"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average: above the core count, other processes are competing for the CPU."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_header(args: argparse.Namespace) -> dict[str, Any]:
    """Everything a reader needs to judge the numbers: versions, threads, BLAS, environment, the device,
    the GEMM ceiling."""
    import numpy
    import torch

    # Smoke runs use one thread: on a busy machine a multithreaded toy call waits for descheduled threads.
    threads = setup_threads(args.threads if args.threads or not args.smoke else 1)
    on_gpu = args.device == "cuda"
    # A GPU multiplies 2048x2048 in well under a millisecond: a larger matrix keeps the clock's share small.
    size = 256 if args.smoke else 4096 if on_gpu else 2048
    ceiling = gemm_ceiling(size=size, repeats=2 if args.smoke else 7, device=args.device)
    header = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": args.device,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_start": load_average(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "threads": threads,
        # Set on some machines to work around old OpenBLAS bugs; they choose (and can slow) numpy's kernels.
        # MINIGRAD_KERNELS=reference times the reference kernels instead of the fast ones.
        "environment": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                                  "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                                  "MINIGRAD_KERNELS", "MINIGRAD_CUDA_KERNELS")},
        "gemm_ceiling": ceiling,
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
    }
    if on_gpu:
        import cupy

        on_torch = torch_device("cuda")
        header.update(gpu=gpu_name(), cupy=cupy.__version__, torch_cuda=torch.version.cuda,
                      torch_device=None if on_torch is None else str(on_torch),
                      torch_note=TORCH_HAS_NO_CUDA if on_torch is None else "float32 with TF32 off")
    return header


def describe_header(header: dict[str, Any]) -> str:
    threads, ceiling = header["threads"], header["gemm_ceiling"]
    environment = ", ".join(f"{name}={value}" for name, value in header["environment"].items() if value is not None)
    torch_ceiling = ceiling["torch_gflops"]
    lines = [
        f"minigrad benchmarks ({header['mode']}) on {header['device']}, {header['date']}, {header['cpu']}, "
        f"{header['cores']} cores, load average {header['load_average_start'] or 0:.2f} at start",
        f"python {header['python']}, numpy {header['numpy']}, torch {header['torch']}; threads: numpy's BLAS "
        f"{threads['threads']} ({threads['source']}, core {threads['core']}), torch {threads['torch_threads']}",
        f"environment: {environment or 'no OPENBLAS_*/OMP_* variables set'}",
    ]
    if header["device"] == "cuda":
        torch_side = header["torch_note"] if header["torch_device"] is None else (
            f"{header['torch_device']} (CUDA {header['torch_cuda']}, {header['torch_note']})")
        lines.append(f"GPU: {header['gpu']}, cupy {header['cupy']}; torch on the GPU: {torch_side}")
    lines.append(
        f"GEMM ceiling (float32 {ceiling['size']}x{ceiling['size']} matmul on {ceiling['device']}): "
        f"{ceiling['library']} {ceiling['gflops']:.0f} GFLOP/s (the '% ceil' reference), torch "
        + (TORCH_HAS_NO_CUDA if torch_ceiling is None else f"{torch_ceiling:.0f} GFLOP/s")
    )
    return "\n".join(lines)


def run_group(group: str, args: argparse.Namespace, progress: Any) -> list[Row]:
    """The rows of one group."""
    if group in ("kernels", "convlayers"):
        from benchmarks import bench_kernels

        return bench_kernels.run(quick=args.quick, smoke=args.smoke, progress=progress, device=args.device,
                                 model_convs=group == "convlayers")
    if group == "distributed":
        from benchmarks import bench_distributed

        return bench_distributed.run(quick=args.quick, smoke=args.smoke, progress=progress)
    if group == "googlenet":
        from benchmarks import bench_googlenet

        return bench_googlenet.run(quick=args.quick, smoke=args.smoke, memory=not args.no_memory,
                                   progress=progress, device=args.device)
    from benchmarks import bench_train

    return bench_train.run(quick=args.quick, smoke=args.smoke, progress=progress, device=args.device)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset with fewer repeats (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="toy shapes, seconds: checks that the harness runs")
    parser.add_argument("--only", choices=GROUPS, action="append",
                        help="run only this group (repeat for several); default: all")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the header as JSON to PATH")
    parser.add_argument("--threads", type=int, help="threads for numpy's BLAS and torch (default: numpy's BLAS "
                        "default, 1 with --smoke)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where minigrad runs, and torch beside it (default: cpu); cuda needs CuPy and a GPU")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the chosen groups, print the table, write the JSON; returns the JSON-ready results."""
    args = parse_arguments(argv)
    exit_unless_available(args.device, f"{PROGRAM} --device {args.device}")  # no GPU: one line, exit status 2
    started = time.perf_counter()
    header = machine_header(args)
    print(describe_header(header), flush=True)

    def progress(row: Row) -> None:  # one line per case as it finishes, so a long run shows it is alive
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        torch_time = (row.torch_note or "-") if row.torch_ms is None else f"{row.torch_ms:.1f} ms"
        print(f"  [{row.group}] {row.case}: {row.minigrad_ms:.1f} ms vs torch {torch_time} (ratio {ratio})",
              file=sys.stderr, flush=True)

    rows, notes = [], []
    # --quick leaves out the per-layer conv group (33 cases at full width) and the processes of the distributed
    # group; --only runs them.
    for group in args.only or [group for group in GROUPS if not (args.quick and group in ("convlayers",
                                                                                          "distributed"))]:
        rows.extend(run_group(group, args, progress))
    if header["device"] == "cuda" and header["torch_device"] is None:
        notes.append(f"torch {header['torch']} is a CPU build ({TORCH_HAS_NO_CUDA}), so minigrad ran alone; "
                     f"install a CUDA build of torch to compare on the GPU")
    header["load_average_end"] = load_average()
    header["seconds"] = round(time.perf_counter() - started, 1)
    header["notes"] = notes

    print()
    print(format_table(rows, header["gemm_ceiling"]["gflops"]))
    print()
    for note in notes:
        print(f"note: {note}")
    print(f"ratio = minigrad ms / torch ms (below 1: minigrad faster); medians of back-to-back runs. "
          f"Took {header['seconds']:.0f} s; load average {header['load_average_end'] or 0:.2f} at end.")
    loads = [load for load in (header["load_average_start"], header["load_average_end"]) if load is not None]
    busiest = max(loads, default=0.0)
    if header["cores"] and busiest > header["cores"]:
        print(f"warning: the machine was busy (load average up to {busiest:.1f} on {header['cores']} cores): other "
              f"processes shared the CPU, so times are inflated and multithreaded ones erratic; compare ratios, "
              f"re-run when it is quieter, or use --threads 1")
    results = rows_to_json(rows, header)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
