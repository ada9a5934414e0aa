"""The whole GoogLeNet, minigrad vs the same network in torch: eval forward and one training step.

    python -m benchmarks.bench_googlenet [--quick] [--smoke] [--json PATH]

Models: the paper variant with aux heads, 10 classes, full width, as built by
``minigrad.models.inception_v1`` and by the torch twin the parity tests use (tests/models/torch_googlenet.py),
the twin loading minigrad's state dict so both start from the same weights.

* cifar stem, 32x32 images, batch 32 (Inception 3 at 32x32, 4 at 16x16, 5 at 8x8: the heavy one);
* imagenet stem on 32x32 images, batch 128 (the maps shrink to 8x8 at Inception 3, 1x1 at 5).

"eval fwd": ``model.eval()`` then a forward under no_grad. "train step": ``model.train()``, forward (logits
and both aux logits), ``googlenet_loss`` (loss + 0.3 * aux losses), zero_grad, backward, SGD step
(lr 0.01, momentum 0.9, weight decay 5e-4). Flops are counted by torch's FlopCounterMode on the twin.
Peak memory is measured in a fresh process per (case, library): see benchmarks/common.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import (
    Row,
    measure_in_subprocess,
    peak_rss_increase,
    set_blas_threads,
    setup_threads,
    time_pair,
)

GROUP = "googlenet"
NUM_CLASSES = 10
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class ModelCase:
    """One network configuration: the stem, the channel width, the batch and the image size."""

    stem: str
    batch: int
    width: float = 1.0
    image_size: int = 32

    @property
    def label(self) -> str:
        return f"googlenet {self.stem} w{self.width:g} b{self.batch}"


def model_cases(quick: bool = False, smoke: bool = False) -> list[ModelCase]:
    """cifar stem at batch 32 and imagenet stem at batch 128 (quick: cifar only; smoke: tiny width and batch)."""
    if smoke:
        return [ModelCase("cifar", batch=2, width=0.125)]
    cases = [ModelCase("cifar", batch=32)]
    return cases if quick else cases + [ModelCase("imagenet", batch=128)]


def torch_twin_module() -> Any:
    """tests/models/torch_googlenet.py, imported by file path (the tests folder is not an installed package)."""
    path = os.path.join(REPO_ROOT, "tests", "models", "torch_googlenet.py")
    spec = importlib.util.spec_from_file_location("torch_googlenet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_minigrad(case: ModelCase) -> Any:
    from minigrad.models import inception_v1

    return inception_v1(num_classes=NUM_CLASSES, stem=case.stem, width=case.width, seed=0)


def build_torch(case: ModelCase, minigrad_model: Any = None) -> Any:
    """The torch twin; with ``minigrad_model`` given, loaded with its weights and buffers."""
    import torch

    model = torch_twin_module().torch_googlenet(num_classes=NUM_CLASSES, stem=case.stem, width=case.width)
    if minigrad_model is not None:
        state = {key: torch.from_numpy(np.array(value)) for key, value in minigrad_model.state_dict().items()}
        model.load_state_dict(state)
    return model


def make_batch(case: ModelCase, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    images = generator.standard_normal((case.batch, 3, case.image_size, case.image_size), dtype=np.float32)
    return images, generator.integers(0, NUM_CLASSES, case.batch)


def minigrad_steps(model: Any, images: np.ndarray, targets: np.ndarray) -> dict[str, Callable[[], Any]]:
    """minigrad's eval forward and training step on one fixed batch."""
    import minigrad
    from minigrad import optim
    from minigrad.models import googlenet_loss

    x = minigrad.Tensor(images)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def eval_forward():
        model.eval()
        with minigrad.no_grad():
            return model(x)

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss = googlenet_loss(model(x), targets)
        loss.backward()
        optimizer.step()
        return loss

    return {"eval": eval_forward, "train": train_step}


def torch_steps(model: Any, images: np.ndarray, targets: np.ndarray) -> dict[str, Callable[[], Any]]:
    """torch's eval forward and training step, written exactly as minigrad's."""
    import torch

    x, y = torch.from_numpy(images), torch.from_numpy(targets)
    loss_function = torch_twin_module().googlenet_loss
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def eval_forward():
        model.eval()
        with torch.no_grad():
            return model(x)

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss = loss_function(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return {"eval": eval_forward, "train": train_step}


def count_flops(case: ModelCase) -> dict[str, float]:
    """Flops of one eval forward and one training step (forward + backward) at ``case.batch``.

    Counted by torch's FlopCounterMode (convolutions and matrix multiplies, 2 per multiply-add) on the
    twin at batch 2, then scaled: every counted op is linear in the batch. The SGD update is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    small = ModelCase(case.stem, batch=2, width=case.width, image_size=case.image_size)
    model = build_torch(small)
    images, targets = make_batch(small)
    steps = torch_steps(model, images, targets)
    counts = {}
    for mode in ("eval", "train"):
        with FlopCounterMode(display=False) as counter:
            steps[mode]()
        counts[mode] = counter.get_total_flops() * case.batch / small.batch
    return counts


def memory_worker(library: str, case: ModelCase, mode: str, steps: int, threads: int) -> dict[str, float]:
    """In a fresh process: build one library's model, then the peak resident memory of ``steps`` calls of
    ``mode`` above what the process held after building it (weights, the batch, the imports)."""
    images, targets = make_batch(case)
    if library == "minigrad":  # this process never imports torch
        set_blas_threads(threads)
        calls = minigrad_steps(build_minigrad(case), images, targets)
    else:
        setup_threads(threads)
        calls = torch_steps(build_torch(case), images, targets)

    def run_steps():
        for _ in range(steps):
            calls[mode]()

    return {"peak_mb": peak_rss_increase(run_steps)}


def measure_memory(case: ModelCase, mode: str, steps: int) -> tuple[float, float]:
    """Peak MiB of minigrad and of torch, each measured by :func:`memory_worker` in its own process."""
    import torch

    peaks = []
    for library in ("minigrad", "torch"):
        arguments = ["--memory-worker", library, "--stem", case.stem, "--batch", str(case.batch),
                     "--width", str(case.width), "--mode", mode, "--steps", str(steps),
                     "--threads", str(torch.get_num_threads())]  # the same threads as the timed runs
        peaks.append(measure_in_subprocess("bench_googlenet", arguments)["peak_mb"])
    return peaks[0], peaks[1]


def run(quick: bool = False, smoke: bool = False, memory: bool = True,
        progress: Callable[[Row], None] | None = None) -> list[Row]:
    """Two rows per model case: "eval fwd" and "train step". Full: 1 warm-up + 3 measured runs each, peak
    memory over 2 steps; quick and smoke: 1 warm-up + 2 measured, memory of the training step only, over 1 step."""
    warmup, repeats = 1, (2 if quick or smoke else 3)
    rows = []
    for case in model_cases(quick, smoke):
        flops = count_flops(case)
        minigrad_model = build_minigrad(case)
        torch_model = build_torch(case, minigrad_model)
        images, targets = make_batch(case)
        minigrad_calls = minigrad_steps(minigrad_model, images, targets)
        torch_calls = torch_steps(torch_model, images, targets)
        for mode, name in (("eval", "eval fwd"), ("train", "train step")):
            minigrad_ms, torch_ms = time_pair(minigrad_calls[mode], torch_calls[mode], warmup, repeats)
            row = Row(GROUP, f"{case.label} {name}", minigrad_ms, torch_ms, flops=flops[mode], extra={
                "img/s": round(case.batch / minigrad_ms * 1e3, 1),
                "torch img/s": round(case.batch / torch_ms * 1e3, 1),
            })
            if memory and (mode == "train" or not (quick or smoke)):
                steps = 1 if quick or smoke else 2
                row.minigrad_peak_mb, row.torch_peak_mb = measure_memory(case, mode, steps)
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    # The memory worker, started by measure_memory in a fresh process (not meant to be typed by hand).
    parser.add_argument("--memory-worker", choices=["minigrad", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--stem", default="cifar", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["eval", "train"], default="train", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        case = ModelCase(args.stem, batch=args.batch, width=args.width)
        print(json.dumps(memory_worker(args.memory_worker, case, args.mode, args.steps, args.threads)))
        return
    from benchmarks.__main__ import main as harness_main

    harness_argv = ["--only", "googlenet"] + ["--quick"] * args.quick + ["--smoke"] * args.smoke
    harness_main(harness_argv + (["--json", args.json] if args.json else []))


if __name__ == "__main__":
    main()
