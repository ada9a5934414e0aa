"""The whole GoogLeNet, minigrad vs the same network in torch: eval forward and one training step.

    python -m benchmarks.bench_googlenet [--quick] [--smoke] [--json PATH] [--device cuda]   # any harness option

Models: the paper variant with aux heads, 10 classes, full width, as built by
``minigrad.models.inception_v1`` (then ``fuse_inception_1x1``, as ``minigrad train`` runs it) and by the
torch twin the parity tests use (tests/models/torch_googlenet.py), the twin loading minigrad's state dict so
both start from the same weights.

* cifar stem, 32x32 images, batch 32 (Inception 3 at 32x32, 4 at 16x16, 5 at 8x8: the heavy one);
* imagenet stem on 32x32 images, batch 128 (the maps shrink to 8x8 at Inception 3, 1x1 at 5).

"eval fwd": ``model.eval()`` then a forward under no_grad. "train step": ``model.train()``, forward (logits
and both aux logits), ``googlenet_loss`` (loss + 0.3 * aux losses), zero_grad, backward, SGD step
(lr 0.01, momentum 0.9, weight decay 5e-4). Flops are counted by torch's FlopCounterMode on the twin.
Peak memory on the CPU is measured in a fresh process per (case, library); on the GPU each library's
allocator counts its own bytes, in this process: see benchmarks/common.py. With ``device="cuda"`` both
models and the batch live on the GPU (minigrad's through ``Module.to("cuda")``, the twin's through
``.to(torch.device("cuda"))``), loaded with the same weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import (
    Row,
    gpu_peak_increase,
    measure_in_subprocess,
    peak_rss_increase,
    set_blas_threads,
    setup_threads,
    timed_row,
    torch_device,
    torch_twin_module,
)

GROUP = "googlenet"
NUM_CLASSES = 10


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


def build_minigrad(case: ModelCase) -> Any:
    """The model as ``minigrad train`` builds it: fused by ``fuse_inception_1x1`` (the same state dict)."""
    from minigrad.models import fuse_inception_1x1, inception_v1

    return fuse_inception_1x1(inception_v1(num_classes=NUM_CLASSES, stem=case.stem, width=case.width, seed=0))


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


def minigrad_steps(model: Any, images: np.ndarray, targets: np.ndarray, device: str = "cpu"
                   ) -> dict[str, Callable[[], Any]]:
    """minigrad's eval forward and training step on one fixed batch, the model and the batch on ``device``."""
    import minigrad
    from minigrad import backend, optim
    from minigrad.models import googlenet_loss

    model.to(device)
    x = minigrad.Tensor(images, device=device)
    targets = backend.to_device(targets, device)  # once, not at every step
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


def torch_steps(model: Any, images: np.ndarray, targets: np.ndarray, on_torch: Any = None
                ) -> dict[str, Callable[[], Any]]:
    """torch's eval forward and training step, written exactly as minigrad's, on the torch.device ``on_torch``."""
    import torch

    on_torch = on_torch or torch.device("cpu")
    model.to(on_torch)
    x, y = torch.from_numpy(images).to(on_torch), torch.from_numpy(targets).to(on_torch)
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


def memory_worker(library: str, case: ModelCase, mode: str, steps: int, threads: int | None,
                  device: str = "cpu") -> dict[str, float]:
    """Build one library's model on ``device``, then the peak memory of ``steps`` calls of ``mode`` above what
    was held after building it (weights, the batch, the imports): resident memory on the CPU (run this in a
    fresh process), the library's GPU allocator on "cuda"."""
    images, targets = make_batch(case)
    if library == "minigrad":  # the CPU worker process never imports torch
        if threads is not None:
            set_blas_threads(threads)
        calls = minigrad_steps(build_minigrad(case), images, targets, device)
    else:
        if threads is not None:
            setup_threads(threads)
        calls = torch_steps(build_torch(case), images, targets, torch_device(device))

    def run_steps():
        for _ in range(steps):
            calls[mode]()

    if device == "cpu":
        return {"peak_mb": peak_rss_increase(run_steps)}
    return {"peak_mb": gpu_peak_increase(library, run_steps)}


def measure_memory(case: ModelCase, mode: str, steps: int, device: str = "cpu") -> tuple[float, float | None]:
    """Peak MiB of minigrad and of torch (None where torch does not run on ``device``), each from a model
    built afresh (its first step also allocates the gradients and the momentum buffers).

    CPU: each in its own process (:func:`memory_worker`), since allocators keep freed memory. GPU: here,
    since each library's allocator counts only its own blocks.
    """
    import torch

    if device != "cpu":
        libraries = ["minigrad"] + (["torch"] if torch_device(device) is not None else [])
        peaks = [memory_worker(library, case, mode, steps, None, device)["peak_mb"] for library in libraries]
        return peaks[0], peaks[1] if len(peaks) > 1 else None
    peaks = []
    for library in ("minigrad", "torch"):
        arguments = ["--memory-worker", library, "--stem", case.stem, "--batch", str(case.batch),
                     "--width", str(case.width), "--mode", mode, "--steps", str(steps),
                     "--threads", str(torch.get_num_threads())]  # the same threads as the timed runs
        peaks.append(measure_in_subprocess("bench_googlenet", arguments)["peak_mb"])
    return peaks[0], peaks[1]


def run(quick: bool = False, smoke: bool = False, memory: bool = True,
        progress: Callable[[Row], None] | None = None, device: str = "cpu") -> list[Row]:
    """Two rows per model case: "eval fwd" and "train step". Full: 1 warm-up + 3 measured runs each, peak
    memory over 2 steps; quick and smoke: 1 warm-up + 2 measured, memory of the training step only, over 1 step.
    ``device``: "cpu" or "cuda", for both libraries (torch's column says so where it has no CUDA)."""
    warmup, repeats = 1, (2 if quick or smoke else 3)
    on_torch = torch_device(device)
    progress = progress or (lambda row: None)
    rows = []
    for case in model_cases(quick, smoke):
        flops = count_flops(case)
        minigrad_model = build_minigrad(case)
        images, targets = make_batch(case)
        torch_calls = dict.fromkeys(("eval", "train"))
        if on_torch is not None:  # the twin starts from minigrad's weights
            torch_calls = torch_steps(build_torch(case, minigrad_model), images, targets, on_torch)
        minigrad_calls = minigrad_steps(minigrad_model, images, targets, device)
        for mode, name in (("eval", "eval fwd"), ("train", "train step")):
            row = timed_row(GROUP, f"{case.label} {name}", minigrad_calls[mode], torch_calls[mode], device=device,
                            warmup=warmup, repeats=repeats, flops=flops[mode], images=case.batch)
            if memory and (mode == "train" or not (quick or smoke)):
                steps = 1 if quick or smoke else 2
                row.minigrad_peak_mb, row.torch_peak_mb = measure_memory(case, mode, steps, device)
            rows.append(row)
            progress(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """This group alone, through the harness (which takes every option); or, with --memory-worker, one
    CPU memory measurement in this fresh process."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--memory-worker" not in argv:
        from benchmarks.__main__ import main as harness_main

        harness_main(["--only", GROUP, *argv])
        return
    parser = argparse.ArgumentParser(description="the CPU memory worker of bench_googlenet")
    # The memory worker, started by measure_memory in a fresh process (not meant to be typed by hand).
    parser.add_argument("--memory-worker", choices=["minigrad", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--stem", default="cifar", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["eval", "train"], default="train", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    case = ModelCase(args.stem, batch=args.batch, width=args.width)
    print(json.dumps(memory_worker(args.memory_worker, case, args.mode, args.steps, args.threads)))


if __name__ == "__main__":
    main()
