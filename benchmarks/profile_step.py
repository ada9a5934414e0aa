"""Where one training step of ``minigrad train``'s model spends its time: cProfile over a few steps.

    python -m benchmarks.profile_step                      # the default demo: width 0.125, batch 64
    python -m benchmarks.profile_step --width 1 --batch-size 32 --threads 2

Builds the model, optimizer and loss exactly as ``minigrad train`` does (``TrainConfig`` with the options
given), takes one batch of its training set, runs two steps to warm up (gradients, optimizer state, scratch
buffers), times a few, then profiles a few more and prints the functions with the most time of their own
(NumPy's ufuncs, ``matmul`` included, count as the time of the Python function that calls them: every
matrix product of the fast convolutions runs in ``conv_rows.product``, ``conv._grouped_matmul`` or
``conv._accumulate_weight_grad``). Tutorial 15 reads such a profile op by op.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.125, help="network width (default: 0.125, the demo's)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: numpy's default)")
    parser.add_argument("--steps", type=int, default=3, help="steps timed, and steps profiled (default: 3)")
    parser.add_argument("--top", type=int, default=15, help="functions listed (default: 15)")
    args = parser.parse_args(argv)

    from minigrad import backend, blas, train
    from minigrad.train import TrainConfig

    if args.threads:
        blas.set_threads(args.threads)
    config = replace(TrainConfig(progress=False), width=args.width, batch_size=args.batch_size,
                     train_size=args.batch_size, test_size=args.batch_size)
    backend.manual_seed(config.seed)
    train_set, test_set = train.build_datasets(config)
    model = train.build_model(config, len(train_set.classes))
    optimizer = train.build_optimizer(config, model)
    images, labels = next(iter(train.build_loaders(config, train_set, test_set)[0]))
    model.train()

    def step() -> None:
        loss = train.compute_loss(model, model(images), labels, config.aux_weight, config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_ms = (time.perf_counter() - started) / args.steps * 1e3
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.steps):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    profiled_ms = stats.total_tt / args.steps * 1e3
    print(f"width {args.width}, batch {args.batch_size}, BLAS threads {blas.get_threads()}: "
          f"{step_ms:.0f} ms per step ({profiled_ms:.0f} ms profiled)")
    print(f"{'own ms/step':>12}{'share':>7}{'calls':>7}  function")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[: args.top]
    for (file, line, name), (_, calls, tottime, _, _) in rows:
        own_ms = tottime / args.steps * 1e3
        print(f"{own_ms:12.1f}{own_ms / profiled_ms:7.0%}{calls // args.steps:7d}  {Path(file).name}:{line} {name}")


if __name__ == "__main__":
    main()
