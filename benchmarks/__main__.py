"""``python -m benchmarks``: kernels, the whole GoogLeNet and training, minigrad vs torch, in one table.

    python -m benchmarks                      # everything (about 10 minutes on 2 cores)
    python -m benchmarks --quick              # a subset in about a minute
    python -m benchmarks --only kernels --json results.json

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import Row, format_table, gemm_ceiling, rows_to_json, setup_threads

GROUPS = ("kernels", "googlenet", "train")
TRAIN_CONTRACT = "benchmarks/bench_train.py must define run(quick=False, smoke=False, progress=None) -> list[Row]"


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
    """Everything a reader needs to judge the numbers: versions, threads, BLAS, environment, GEMM ceiling."""
    import numpy
    import torch

    # Smoke runs use one thread: on a busy machine a multithreaded toy call waits for descheduled threads.
    threads = setup_threads(args.threads if args.threads or not args.smoke else 1)
    ceiling = gemm_ceiling(size=256 if args.smoke else 2048, repeats=2 if args.smoke else 7)
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_start": load_average(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "threads": threads,
        # Set on some machines to work around old OpenBLAS bugs; they choose (and can slow) numpy's kernels.
        "environment": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                                  "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "gemm_ceiling": ceiling,
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
    }


def describe_header(header: dict[str, Any]) -> str:
    threads, ceiling = header["threads"], header["gemm_ceiling"]
    environment = ", ".join(f"{name}={value}" for name, value in header["environment"].items() if value is not None)
    lines = [
        f"minigrad benchmarks ({header['mode']}), {header['date']}, {header['cpu']}, {header['cores']} cores, "
        f"load average {header['load_average_start'] or 0:.2f} at start",
        f"python {header['python']}, numpy {header['numpy']}, torch {header['torch']}; threads: numpy's BLAS "
        f"{threads['threads']} ({threads['source']}, core {threads['core']}), torch {threads['torch_threads']}",
        f"environment: {environment or 'no OPENBLAS_*/OMP_* variables set'}",
        f"GEMM ceiling (float32 {ceiling['size']}x{ceiling['size']} matmul): numpy "
        f"{ceiling['numpy_gflops']:.0f} GFLOP/s (the '% ceil' reference), torch {ceiling['torch_gflops']:.0f} GFLOP/s",
    ]
    return "\n".join(lines)


def run_group(group: str, args: argparse.Namespace, progress: Any) -> tuple[list[Row], str | None]:
    """The rows of one group, or no rows and a note saying why it was skipped."""
    if group == "kernels":
        from benchmarks import bench_kernels

        return bench_kernels.run(quick=args.quick, smoke=args.smoke, progress=progress), None
    if group == "googlenet":
        from benchmarks import bench_googlenet

        return bench_googlenet.run(quick=args.quick, smoke=args.smoke, memory=not args.no_memory,
                                   progress=progress), None
    try:
        bench_train = importlib.import_module("benchmarks.bench_train")
    except ModuleNotFoundError as error:
        if error.name != "benchmarks.bench_train":
            raise
        return [], f"train: skipped, benchmarks/bench_train.py does not exist yet ({TRAIN_CONTRACT})"
    if not callable(getattr(bench_train, "run", None)):
        return [], f"train: skipped, {TRAIN_CONTRACT}"
    return bench_train.run(quick=args.quick, smoke=args.smoke, progress=progress), None


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset with fewer repeats (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="toy shapes, seconds: checks that the harness runs")
    parser.add_argument("--only", choices=GROUPS, action="append",
                        help="run only this group (repeat for several); default: all")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the header as JSON to PATH")
    parser.add_argument("--threads", type=int, help="threads for numpy's BLAS and torch (default: numpy's BLAS "
                        "default, 1 with --smoke)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the chosen groups, print the table, write the JSON; returns the JSON-ready results."""
    args = parse_arguments(argv)
    started = time.perf_counter()
    header = machine_header(args)
    print(describe_header(header), flush=True)

    def progress(row: Row) -> None:  # one line per case as it finishes, so a long run shows it is alive
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        print(f"  [{row.group}] {row.case}: {row.minigrad_ms:.1f} ms vs torch {row.torch_ms:.1f} ms "
              f"(ratio {ratio})", file=sys.stderr, flush=True)

    rows, notes = [], []
    for group in args.only or GROUPS:
        group_rows, note = run_group(group, args, progress)
        rows.extend(group_rows)
        if note:
            notes.append(note)
    header["load_average_end"] = load_average()
    header["seconds"] = round(time.perf_counter() - started, 1)
    header["notes"] = notes

    print()
    print(format_table(rows, header["gemm_ceiling"]["numpy_gflops"]))
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
