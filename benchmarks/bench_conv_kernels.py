"""Time minigrad's conv2d kernels against PyTorch at GoogLeNet's CIFAR shapes (batch 32).

    python benchmarks/bench_conv_kernels.py [--reps 15] [--dtype float32] [--quick]
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_conv_kernels.py --cpu-time   # busy machine: 1 thread

Both libraries run in this process with the same thread count (numpy's BLAS threads = torch threads).
Calls alternate between the two. Printed: the minimum time of each (the least disturbed run) and the
ratio minigrad / torch of those minima, and in brackets the median of the ratios of back-to-back pairs
(robust when other jobs share the machine). Below 1 means minigrad is faster.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from minigrad.kernels.fast import conv  # the kernels training runs (minigrad.kernels.conv: the reference)

# (name, batch, C_in, H=W, C_out, kernel, padding)
SHAPES = [
    ("1x1 192->64 @32", 32, 192, 32, 64, 1, 0),
    ("1x1 480->192 @16", 32, 480, 16, 192, 1, 0),
    ("1x1 832->384 @8", 32, 832, 8, 384, 1, 0),
    ("3x3 96->128 @32", 32, 96, 32, 128, 3, 1),
    ("3x3 96->208 @16", 32, 96, 16, 208, 3, 1),
    ("3x3 192->384 @8", 32, 192, 8, 384, 3, 1),
    ("5x5 16->32 @32", 32, 16, 32, 32, 5, 2),
]


def blas_threads() -> int:
    """The thread count numpy's BLAS uses (OPENBLAS_NUM_THREADS etc., else the CPU count)."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name):
            return int(os.environ[name])
    return os.cpu_count() or 1


CLOCK = time.perf_counter


def interleaved_times(functions: dict, reps: int) -> dict:
    """Call each function ``reps`` times, alternating between them; every time of each, in ms."""
    times = {name: [] for name in functions}
    for function in functions.values():
        function()  # warm up (first-touch page faults, BLAS thread start)
    for _ in range(reps):
        for name, function in functions.items():
            start = CLOCK()
            function()
            times[name].append((CLOCK() - start) * 1e3)
    return times


def summary(ours: list, theirs: list) -> str:
    """ "ours theirs ratio-of-minima (median paired ratio)"."""
    paired = sorted(a / b for a, b in zip(ours, theirs))
    return f"{min(ours):7.1f} {min(theirs):7.1f} {min(ours) / min(theirs):5.2f} ({paired[len(paired) // 2]:4.2f})"


def bench_shape(batch, c_in, size, c_out, kernel, padding, dtype, reps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c_in, size, size)).astype(dtype)
    weight = (rng.standard_normal((c_out, c_in, kernel, kernel)) / np.sqrt(c_in * kernel**2)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    out, ctx = conv.conv2d_forward(x, weight, bias, padding=padding)
    grad_out = rng.standard_normal(out.shape).astype(dtype)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    t_out = torch.nn.functional.conv2d(tx, tw, tb, padding=padding)
    t_grad = torch.tensor(grad_out)

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, tb, padding=padding)

    times = interleaved_times(
        {
            "mg_fwd": lambda: conv.conv2d_forward(x, weight, bias, padding=padding),
            "torch_fwd": torch_forward,
            "mg_bwd": lambda: conv.conv2d_backward(grad_out, ctx),
            "torch_bwd": lambda: torch.autograd.grad(t_out, (tx, tw, tb), t_grad, retain_graph=True),
        },
        reps,
    )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true", help="only the first 1x1 and 3x3 shapes")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process_time (CPU time; meaningful with one thread) instead of wall time",
    )
    args = parser.parse_args()
    global CLOCK
    if args.cpu_time:
        if blas_threads() != 1:
            parser.error("--cpu-time needs one thread: run with OPENBLAS_NUM_THREADS=1")
        CLOCK = time.process_time
    torch.set_num_threads(blas_threads())
    shapes = [SHAPES[0], SHAPES[3]] if args.quick else SHAPES
    clock = "CPU" if args.cpu_time else "wall"
    print(f"threads={torch.get_num_threads()} dtype={args.dtype} reps={args.reps} (min {clock} times, ms)")
    print(
        f"{'shape':<18} {'fwd mg':>7} {'torch':>7} {'ratio (paired)':>14}   {'bwd mg':>7} {'torch':>7} ratio"
    )
    for name, *shape in shapes:
        t = bench_shape(*shape, dtype=args.dtype, reps=args.reps)
        forward, backward = summary(t["mg_fwd"], t["torch_fwd"]), summary(t["mg_bwd"], t["torch_bwd"])
        print(f"{name:<18} {forward}   {backward}", flush=True)


if __name__ == "__main__":
    main()
