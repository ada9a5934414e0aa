"""Time minigrad's conv2d kernels against PyTorch at GoogLeNet's CIFAR shapes (batch 32).

    python benchmarks/bench_conv_kernels.py [--reps 15] [--dtype float32] [--quick]

Both libraries run in this process with the same thread count (numpy's BLAS threads = torch threads).
Calls alternate between the two and the *minimum* time of each is kept, which filters out the noise of a
shared machine best. Prints the ratio minigrad / torch (below 1 means minigrad is faster).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from minigrad.kernels import conv

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


def min_times(functions: dict, reps: int) -> dict:
    """Call each function ``reps`` times, alternating between them; the best time of each, in ms."""
    best = {name: float("inf") for name in functions}
    for function in functions.values():
        function()  # warm up (first-touch page faults, BLAS thread start)
    for _ in range(reps):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


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

    times = min_times(
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
    args = parser.parse_args()
    torch.set_num_threads(blas_threads())
    shapes = [SHAPES[0], SHAPES[3]] if args.quick else SHAPES
    print(f"threads={torch.get_num_threads()} dtype={args.dtype} reps={args.reps} (min times, ms)")
    print(f"{'shape':<18} {'fwd mg':>7} {'torch':>7} {'ratio':>6}   {'bwd mg':>7} {'torch':>7} {'ratio':>6}")
    for name, *shape in shapes:
        t = bench_shape(*shape, dtype=args.dtype, reps=args.reps)
        print(
            f"{name:<18} {t['mg_fwd']:7.1f} {t['torch_fwd']:7.1f} {t['mg_fwd'] / t['torch_fwd']:6.2f}   "
            f"{t['mg_bwd']:7.1f} {t['torch_bwd']:7.1f} {t['mg_bwd'] / t['torch_bwd']:6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
