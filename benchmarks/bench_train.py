"""Training benchmark: the default ``minigrad train`` run, and the same run in PyTorch.

    python -m benchmarks.bench_train              # the default run: 3 epochs of SyntheticShapes (long)
    python -m benchmarks.bench_train --quick      # 1 epoch on 1,024 images: proves it works, a rough ratio
    python -m benchmarks.bench_train --epochs 2   # the default run, shortened
    python -m benchmarks.bench_train --smoke      # toy sizes, seconds
    python -m benchmarks.bench_train --quick --threads 1   # both libraries on one thread
    python -m benchmarks.bench_train --quick --device cuda # minigrad on CuPy, torch on the same GPU

Both frameworks train the model ``minigrad train`` builds (GoogLeNet, paper variant, cifar stem, width 0.125,
aux heads, dropout) from the same initial weights (torch's twin from tests/models/torch_googlenet.py loads
minigrad's state dict) on the same batches (two DataLoaders with the same seed give the same shuffles,
crops and flips), with the same optimizer and schedule (``minigrad train``'s defaults, AdamW with a onecycle
schedule; torch.optim's twins for torch). Only the dropout masks differ.

Each epoch's time covers loading and augmenting the batches, forward, loss, backward and the update; the
test-set evaluation after it is timed apart. minigrad trains first and torch after, not interleaved:
torch's OpenMP threads keep spinning after each op and starve NumPy's BLAS threads when the two
alternate op by op. Threads are equal: torch gets as many as NumPy's OpenBLAS uses (``--threads N`` sets
both; on a 2-core machine busy with other work, 2 threads can be several times slower than 1 for both).

It also times one training step on one batch of the default size (minigrad and torch alternating, the
median of a few), the quickest way to see the ratio.

On a GPU (``--device cuda``) minigrad trains as ``minigrad train --device cuda`` does (its DataLoader puts each
batch on the GPU); torch's loaders stay on the CPU and each batch moves with ``.to("cuda")``, the way torch
code is written. Each epoch's clock stops only once the GPU has finished. A torch without CUDA does not run.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmarks.common import (
    TORCH_HAS_NO_CUDA,
    Row,
    exit_unless_available,
    setup_threads,
    throughput,
    timed_row,
    torch_device,
    torch_twin_module,
    wait_for,
)

GROUP = "train"


def benchmark_config(quick: bool = False, smoke: bool = False, epochs: int | None = None, device: str = "cpu") -> Any:
    """``minigrad train``'s defaults on ``device``; quick: 1 epoch on 1,024 images; smoke: toy sizes."""
    from minigrad.train import TrainConfig

    config = TrainConfig(progress=False, device=device)
    if quick:
        config = replace(config, epochs=1, train_size=1024, test_size=512)
    if smoke:
        config = replace(config, epochs=1, train_size=64, test_size=64, width=0.125, batch_size=32)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    return config


@dataclass
class RunResult:
    """What one framework's training run measured."""

    framework: str
    epoch_seconds: list[float]  # training time of each epoch (batches + steps, no evaluation)
    eval_seconds: list[float]
    images_per_epoch: int
    test_acc: list[float]

    @property
    def seconds_per_epoch(self) -> float:
        return sum(self.epoch_seconds) / len(self.epoch_seconds)

    @property
    def images_per_s(self) -> float:
        return self.images_per_epoch / self.seconds_per_epoch


class Setup:
    """Everything both frameworks share: the config, the data, and minigrad's freshly initialised model."""

    def __init__(self, config: Any) -> None:
        from minigrad import backend, train

        self.config = config
        backend.manual_seed(config.seed)
        self.train_set, self.test_set = train.build_datasets(config)
        self.num_classes = len(self.train_set.classes)
        self.model = train.build_model(config, self.num_classes)
        self.initial_state = self.model.state_dict()

    def loaders(self, device: str | None = None) -> tuple[Any, Any]:
        """A fresh (train, test) loader pair: each pair yields exactly the same batches, put on ``device``
        (default: the run's device)."""
        from minigrad import train

        config = self.config if device is None else replace(self.config, device=device)
        return train.build_loaders(config, self.train_set, self.test_set)


def train_minigrad(setup: Setup, report: Callable[[str], None]) -> RunResult:
    """The loop of ``minigrad.train.fit`` (without its progress bar and files), timed per epoch."""
    from minigrad import train

    config, model = setup.config, setup.model
    wait = wait_for("minigrad", config.device)
    train_loader, test_loader = setup.loaders()
    optimizer = train.build_optimizer(config, model)
    scheduler = train.build_scheduler(config, optimizer, len(train_loader))
    result = RunResult("minigrad", [], [], len(train_loader) * config.batch_size, [])
    for epoch in range(config.epochs):
        model.train()
        started = time.perf_counter()
        for images, labels in train_loader:
            loss = train.compute_loss(model, model(images), labels, config.aux_weight, config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        wait()  # the GPU may still be working through the last steps
        result.epoch_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        _, test_acc = train.evaluate(model, test_loader)
        result.eval_seconds.append(time.perf_counter() - started)
        result.test_acc.append(test_acc)
        report(f"minigrad epoch {epoch + 1}: {result.epoch_seconds[-1]:.1f} s, test acc {test_acc:.3f}")
    return result


def build_torch_model(setup: Setup, on_torch: Any = None) -> Any:
    """The torch twin of the run's model, holding minigrad's initial weights, on the torch.device ``on_torch``."""
    import torch

    config = setup.config
    twin = torch_twin_module().torch_googlenet(num_classes=setup.num_classes, aux_logits=config.aux_weight > 0,
                                               variant=config.variant, stem=config.stem, width=config.width,
                                               dropout=config.dropout)
    twin.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in setup.initial_state.items()})
    return twin.to(on_torch or torch.device("cpu"))


def torch_optimizer(setup: Setup, twin: Any) -> Any:
    """torch.optim's twin of the optimizer train.build_optimizer builds (sgd, adam or adamw, same settings)."""
    import torch

    config = setup.config
    if config.optimizer == "sgd":
        return torch.optim.SGD(twin.parameters(), lr=config.lr, momentum=config.momentum,
                               nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    if config.optimizer in ("adam", "adamw"):
        optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return optimizer_class(twin.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"bench_train: no torch twin for optimizer {config.optimizer!r}; use sgd, adam or adamw")


def torch_schedule(setup: Setup, optimizer: Any, steps_per_epoch: int) -> Any:
    """torch's twin of the schedule train.build_scheduler builds (stepped once per batch); None for "constant"."""
    import torch

    config, schedules = setup.config, torch.optim.lr_scheduler
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        pct_start = 0.25 if total != 4 else 0.5  # as train.build_scheduler (0.25 divides by zero at 4 steps)
        return schedules.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=pct_start,
                                    cycle_momentum=config.optimizer == "sgd" and config.momentum > 0)
    if config.schedule == "cosine":
        return schedules.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        return schedules.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if config.schedule == "constant":
        return None
    raise ValueError(f"bench_train: no torch twin for schedule {config.schedule!r}")


def torch_batch(tensor: Any, on_torch: Any) -> Any:
    """A batch of minigrad's CPU loader as a torch tensor on ``on_torch``."""
    import torch

    return torch.from_numpy(tensor.numpy()).to(on_torch)


def torch_accuracy(twin: Any, loader: Any, on_torch: Any) -> float:
    import torch

    twin.eval()
    correct = count = 0
    with torch.no_grad():
        for images, labels in loader:
            logits = twin(torch_batch(images, on_torch))
            correct += int((logits.argmax(dim=1).cpu().numpy() == labels.numpy()).sum())
            count += len(labels)
    return correct / count


def train_torch(setup: Setup, report: Callable[[str], None], on_torch: Any) -> RunResult:
    """The same run in torch on ``on_torch``: same initial weights, same batches, same optimizer and schedule."""
    config = setup.config
    wait = wait_for("torch", config.device)
    loss_function = torch_twin_module().googlenet_loss
    twin = build_torch_model(setup, on_torch)
    train_loader, test_loader = setup.loaders(device="cpu")  # torch moves each batch itself
    optimizer = torch_optimizer(setup, twin)
    scheduler = torch_schedule(setup, optimizer, len(train_loader))
    result = RunResult("torch", [], [], len(train_loader) * config.batch_size, [])
    for epoch in range(config.epochs):
        twin.train()
        started = time.perf_counter()
        for images, labels in train_loader:
            outputs = twin(torch_batch(images, on_torch))
            loss = loss_function(outputs, torch_batch(labels, on_torch), aux_weight=config.aux_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        wait()
        result.epoch_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        result.test_acc.append(torch_accuracy(twin, test_loader, on_torch))
        result.eval_seconds.append(time.perf_counter() - started)
        report(f"torch epoch {epoch + 1}: {result.epoch_seconds[-1]:.1f} s, test acc {result.test_acc[-1]:.3f}")
    return result


def time_one_step(setup: Setup, repeats: int, on_torch: Any) -> Row:
    """The row of one training step (forward, loss, backward, SGD update) on one batch of the run's size:
    median ms, minigrad and torch alternating, each with its own copy of the initial weights (torch's None:
    torch does not run on this device)."""
    from minigrad import train

    config = setup.config
    model = train.build_model(config, setup.num_classes)
    model.load_state_dict(setup.initial_state)
    optimizer = train.build_optimizer(config, model)
    images, labels = next(iter(setup.loaders()[0]))
    model.train()

    def minigrad_step() -> None:
        loss = train.compute_loss(model, model(images), labels, config.aux_weight, config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    torch_step = None
    if on_torch is not None:
        twin = build_torch_model(setup, on_torch)
        optimizer_of_twin = torch_optimizer(setup, twin)
        loss_function = torch_twin_module().googlenet_loss
        torch_images, torch_labels = torch_batch(images, on_torch), torch_batch(labels, on_torch)
        twin.train()

        def torch_step() -> None:
            loss = loss_function(twin(torch_images), torch_labels, aux_weight=config.aux_weight)
            optimizer_of_twin.zero_grad()
            loss.backward()
            optimizer_of_twin.step()

    return timed_row(GROUP, f"train step w{config.width:g} b{config.batch_size}", minigrad_step, torch_step,
                     device=config.device, warmup=1, repeats=repeats, images=config.batch_size)


def describe(config: Any) -> str:
    return (f"{config.dataset} {config.train_size}/{config.test_size}, GoogLeNet {config.variant} {config.stem} "
            f"stem w{config.width:g}, batch {config.batch_size}, {config.epochs} epoch(s), {config.optimizer} "
            f"lr {config.lr:g} {config.schedule}, on {config.device}")


def run(quick: bool = False, smoke: bool = False, progress: Callable[[Row], None] | None = None,
        epochs: int | None = None, report: Callable[[str], None] | None = None, device: str = "cpu") -> list[Row]:
    """Rows for ``python -m benchmarks``: one training step, then whole epochs (time per epoch), on ``device``."""
    report = report or (lambda line: None)
    progress = progress or (lambda row: None)
    config = benchmark_config(quick, smoke, epochs, device)
    on_torch = torch_device(device)
    setup = Setup(config)
    rows = [time_one_step(setup, repeats=2 if quick or smoke else 5, on_torch=on_torch)]
    progress(rows[-1])
    minigrad_result = train_minigrad(setup, report)
    torch_result = None if on_torch is None else train_torch(setup, report, on_torch)
    minigrad_ms = minigrad_result.seconds_per_epoch * 1e3
    torch_ms = None if torch_result is None else torch_result.seconds_per_epoch * 1e3
    extra = throughput(minigrad_result.images_per_epoch, minigrad_ms, torch_ms)  # the same batches in both
    extra["test acc"] = round(minigrad_result.test_acc[-1], 3)
    if torch_result is not None:
        extra["torch test acc"] = round(torch_result.test_acc[-1], 3)
    rows.append(Row(GROUP, f"train epoch w{config.width:g} b{config.batch_size} ({config.train_size} images)",
                    minigrad_ms, torch_ms, extra=extra,
                    torch_note=None if torch_result is not None else TORCH_HAS_NO_CUDA))
    progress(rows[-1])
    return rows


def format_results(rows: list[Row]) -> str:
    """The brief table: framework, seconds/epoch, images/s, final test accuracy, ratio; then the step."""
    step, epoch = rows
    lines = [f"{'framework':<10}{'s/epoch':>10}{'images/s':>10}{'test acc':>10}{'ratio':>8}"]
    for framework, milliseconds, prefix in (("minigrad", epoch.minigrad_ms, ""), ("torch", epoch.torch_ms, "torch ")):
        if milliseconds is None:
            lines.append(f"{framework:<10}  {epoch.torch_note}")
            continue
        ratio = f"{milliseconds / epoch.torch_ms:>8.2f}" if epoch.torch_ms else f"{'-':>8}"
        lines.append(f"{framework:<10}{milliseconds / 1e3:>10.1f}{epoch.extra[prefix + 'img/s']:>10.1f}"
                     f"{epoch.extra[prefix + 'test acc']:>10.3f}{ratio}")
    torch_step = step.torch_note if step.torch_ms is None else f"{step.torch_ms:.0f} ms, ratio {step.ratio:.2f}"
    lines.append(f"one training step ({step.case[len('train step '):]}): minigrad {step.minigrad_ms:.0f} ms, "
                 f"torch {torch_step}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs (default: minigrad train's, 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 1,024 training images")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks that the benchmark runs")
    parser.add_argument("--threads", type=int, help="threads for numpy's BLAS and torch (default: numpy's BLAS "
                        "default); 1 is far steadier on a busy machine")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both frameworks train (default: cpu); cuda needs CuPy and a GPU")
    args = parser.parse_args(argv)
    exit_unless_available(args.device, f"{parser.prog} --device {args.device}")
    threads = setup_threads(args.threads)
    config = benchmark_config(args.quick, args.smoke, args.epochs, args.device)
    print(f"{describe(config)}; threads: numpy's BLAS {threads['threads']} ({threads['source']}), "
          f"torch {threads['torch_threads']}", flush=True)
    started = time.perf_counter()
    rows = run(args.quick, args.smoke, epochs=args.epochs, report=lambda line: print("  " + line, flush=True),
               device=args.device)
    print()
    print(format_results(rows))
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"ratio = minigrad time / torch time (below 1: minigrad faster); took {time.perf_counter() - started:.0f} s"
          f"{load}")


if __name__ == "__main__":
    main()
