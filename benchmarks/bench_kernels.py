"""Each layer op of GoogLeNet at its CIFAR shapes (batch 32), minigrad vs torch, forward and forward+backward.

    python -m benchmarks.bench_kernels [--quick] [--smoke] [--json PATH] [--device cuda]   # any harness option

The ops are called the way the model calls them: ``minigrad.functional`` on Tensors (so the Function
wrapper, the graph and gradient accumulation are timed too) against ``torch.nn.functional`` on torch
tensors made from the same arrays. "fwd" runs under ``no_grad`` (evaluation); "fwd+bwd" builds the graph,
then backpropagates a random upstream gradient into every input that wants one (training).

Shapes: the cifar stem keeps Inception 3 at 32x32, 4 at 16x16 and 5 at 8x8 (see minigrad/models/inception.py):
e.g. "3x3 96->128 @32" is inception3a's 3x3 branch. Conv flops: 2 * N * C_out * H_out * W_out * C_in * kH * kW
for the forward; the backward computes the input gradient and the weight gradient, each as many again.

With ``device="cuda"`` the inputs, the upstream gradient and batch norm's running statistics live on the GPU
(CuPy arrays in minigrad, cuda tensors in torch); they are made from the same NumPy arrays either way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import Row, timed_row, torch_device

GROUP = "kernels"
BATCH = 32


@dataclass
class KernelCase:
    """One op at one shape.

    inputs: the shapes of the op's array arguments (an image batch, a weight, ...), with whether each
    wants a gradient in training; ``minigrad_op(*tensors)`` and ``torch_op(*tensors)`` compute the same
    thing. forward_flops: flops of one forward call, None where the op does no multiply-adds worth counting.
    backward_flops: flops of the backward alone.
    """

    name: str
    inputs: Sequence[tuple[tuple[int, ...], bool]]
    minigrad_op: Callable
    torch_op: Callable
    forward_flops: float | None = None
    backward_flops: float | None = None
    quick: bool = False  # part of the --quick selection


def conv_case(c_in: int, c_out: int, kernel: int, size: int, batch: int = BATCH, stride: int = 1,
              input_grad: bool = True, label: str = "", quick: bool = False) -> KernelCase:
    """A "same"-padded convolution with bias (the paper variant's BasicConv2d conv) on (batch, c_in, size, size)."""
    import torch

    import minigrad.functional as F

    padding = kernel // 2
    size_out = (size + 2 * padding - kernel) // stride + 1
    flops = 2.0 * batch * c_out * size_out**2 * c_in * kernel**2
    # The backward does a weight-gradient GEMM always, and an input-gradient GEMM unless the input is the image.
    backward_flops = flops * (2 if input_grad else 1)
    return KernelCase(
        name=f"conv {kernel}x{kernel} {c_in}->{c_out} @{size}{label}",
        inputs=[((batch, c_in, size, size), input_grad), ((c_out, c_in, kernel, kernel), True), ((c_out,), True)],
        minigrad_op=lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
        torch_op=lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding),
        forward_flops=flops, backward_flops=backward_flops, quick=quick,
    )


def cases(batch: int = BATCH, smoke: bool = False, device: str = "cpu", on_torch: Any = None) -> list[KernelCase]:
    """The benchmarked ops; ``smoke`` shrinks every shape to a toy one (for the harness's own test).

    device, on_torch: where minigrad's and torch's batch norm keep their running statistics.
    """
    import torch
    import torch.nn.functional as TF

    import minigrad.functional as F

    if smoke:
        batch = 2

    def channels(count: int) -> int:
        return max(4, count // 16) if smoke else count

    def max_pool_case(c: int, size: int, stride: int, quick: bool = False) -> KernelCase:
        # The paper variant's pools: 3x3/1 pad 1 (ceil mode) in every branch 4, 3x3/2 pad 1 between stages.
        return KernelCase(
            f"max_pool 3x3/{stride} {c}ch @{size}", [((batch, c, size, size), True)],
            lambda x: F.max_pool2d(x, 3, stride=stride, padding=1, ceil_mode=True),
            lambda x: TF.max_pool2d(x, 3, stride=stride, padding=1, ceil_mode=True), quick=quick,
        )

    def batch_norm_case(c: int, size: int, quick: bool = False) -> KernelCase:
        running = {}  # running statistics, updated in place each training call as in the model

        def minigrad_op(x, gamma, beta):
            import minigrad

            stats = running.setdefault("minigrad", (minigrad.zeros(c, device=device), minigrad.ones(c, device=device)))
            return F.batch_norm(x, *stats, gamma, beta, training=True)

        def torch_op(x, gamma, beta):
            stats = running.setdefault("torch", (torch.zeros(c, device=on_torch), torch.ones(c, device=on_torch)))
            return TF.batch_norm(x, *stats, gamma, beta, training=True)

        return KernelCase(
            f"batch_norm train {c}ch @{size}", [((batch, c, size, size), True), ((c,), True), ((c,), True)],
            minigrad_op, torch_op, quick=quick,
        )

    def concat_case(branches: Sequence[int], size: int, block: str, quick: bool = False) -> KernelCase:
        total = sum(branches)
        return KernelCase(
            f"cat {'+'.join(map(str, branches))}->{total} @{size} ({block})",
            [((batch, c, size, size), True) for c in branches],
            lambda *xs: F.cat(list(xs), dim=1), lambda *xs: torch.cat(xs, dim=1), quick=quick,
        )

    def elementwise_case(name: str, shape: tuple[int, ...], minigrad_op: Callable, torch_op: Callable,
                         quick: bool = False) -> KernelCase:
        return KernelCase(name, [(shape, True)], minigrad_op, torch_op, quick=quick)

    c = channels
    relu_shape = (batch, c(192), 32, 32)
    activation_shape = (batch, c(480), 16, 16)
    return [
        # convolutions: the cifar stem, then a 1x1, 3x3 and 5x5 of each stage
        conv_case(3, c(192), 3, 32, batch, input_grad=False, label=" (stem)"),
        conv_case(c(192), c(64), 1, 32, batch, quick=True),
        conv_case(c(96), c(128), 3, 32, batch, quick=True),
        conv_case(c(16), c(32), 5, 32, batch),
        conv_case(c(480), c(192), 1, 16, batch, quick=True),
        conv_case(c(112), c(224), 3, 16, batch),
        conv_case(c(24), c(64), 5, 16, batch),
        conv_case(c(832), c(384), 1, 8, batch),
        conv_case(c(192), c(384), 3, 8, batch, quick=True),
        conv_case(c(48), c(128), 5, 8, batch),
        # pooling: branch 4 of inception3a and 4e, and the pools between stages
        max_pool_case(c(192), 32, 1, quick=True),
        max_pool_case(c(528), 16, 1),
        max_pool_case(c(480), 32, 2, quick=True),
        max_pool_case(c(832), 16, 2),
        KernelCase(
            f"adaptive_avg_pool 1x1 {c(1024)}ch @8", [((batch, c(1024), 8, 8), True)],
            lambda x: F.adaptive_avg_pool2d(x, (1, 1)), lambda x: TF.adaptive_avg_pool2d(x, (1, 1)),
        ),
        # batch norm in training mode, over 192 to 832 channels
        batch_norm_case(c(192), 32, quick=True),
        batch_norm_case(c(480), 16),
        batch_norm_case(c(832), 8),
        # the concatenation that ends every Inception block
        concat_case([c(64), c(128), c(32), c(32)], 32, "3a", quick=True),
        concat_case([c(256), c(320), c(128), c(128)], 16, "4e"),
        # elementwise: the ReLU after every batch norm, dropout before the classifier and at activation size
        elementwise_case(f"relu {relu_shape}", relu_shape, F.relu, torch.relu, quick=True),
        elementwise_case(
            f"dropout p=0.4 {(batch, c(1024))}", (batch, c(1024)),
            lambda x: F.dropout(x, 0.4, training=True), lambda x: TF.dropout(x, 0.4, training=True),
        ),
        elementwise_case(
            f"dropout p=0.4 {activation_shape}", activation_shape,
            lambda x: F.dropout(x, 0.4, training=True), lambda x: TF.dropout(x, 0.4, training=True), quick=True,
        ),
    ]


def model_conv_cases(batch: int = BATCH, smoke: bool = False) -> list[KernelCase]:
    """One case per distinct convolution that the CIFAR-stem GoogLeNet runs (full width, batch 32; width 1/16,
    batch 2 with ``smoke``), in the order the model first runs them.

    The shapes are not listed by hand: one forward pass of the model as ``minigrad train`` runs it (fused by
    ``fuse_inception_1x1``) records every ``conv2d_forward`` call the functional layer makes through the
    kernels' dispatch point, so the stacked 1x1 convolutions of each block appear as the one wider conv the
    model really runs. The target for each of them: backward at most twice its own forward.
    """
    import minigrad
    from minigrad.kernels import dispatch
    from minigrad.models import fuse_inception_1x1, inception_v1

    width, batch = (0.0625, 2) if smoke else (1.0, batch)
    model = fuse_inception_1x1(inception_v1(num_classes=10, stem="cifar", width=width, seed=0)).eval()
    shapes: dict[tuple[int, int, int, int], None] = {}  # (C_in, C_out, kernel, size), insertion-ordered
    original = dispatch.conv2d_forward

    def record(x, weight, bias=None, stride=1, padding=0, *args, **kwargs):
        kernel = weight.shape[2]
        if stride not in (1, (1, 1)) or padding not in (kernel // 2, (kernel // 2,) * 2):
            raise AssertionError(f"model_conv_cases assumes 'same' stride-1 convs; got stride {stride}, "
                                 f"padding {padding} for weight {weight.shape}")
        shapes.setdefault((x.shape[1], weight.shape[0], kernel, x.shape[2]), None)
        return original(x, weight, bias, stride, padding, *args, **kwargs)

    dispatch.conv2d_forward = record
    try:
        with minigrad.no_grad():
            model(minigrad.zeros(1, 3, 32, 32))
    finally:
        dispatch.conv2d_forward = original
    return [conv_case(c_in, c_out, kernel, size, batch, input_grad=c_in != 3, label=" (stem)" if c_in == 3 else "")
            for c_in, c_out, kernel, size in shapes]


def make_calls(case: KernelCase, seed: int = 0, device: str = "cpu", on_torch: Any = None
               ) -> dict[str, Callable[[], object] | None]:
    """The four timed calls of a case: minigrad/torch x forward/forward+backward, on the same numbers.

    minigrad runs on ``device``, torch on ``on_torch`` (a torch.device); with ``on_torch`` None the torch
    calls are None (a CPU-only torch on a GPU machine: nothing to compare with).
    """
    import torch

    import minigrad

    generator = np.random.default_rng(seed)
    arrays = [generator.standard_normal(shape, dtype=np.float32) for shape, _ in case.inputs]
    wants_grad = [needs for _, needs in case.inputs]
    minigrad_inputs = [minigrad.Tensor(a, requires_grad=needs, device=device) for a, needs in zip(arrays, wants_grad)]
    with minigrad.no_grad():
        out_shape = case.minigrad_op(*minigrad_inputs).shape
    upstream = generator.standard_normal(out_shape, dtype=np.float32)  # a random gradient, as from a loss
    minigrad_upstream = minigrad.Tensor(upstream, device=device)

    def minigrad_forward():
        with minigrad.no_grad():
            return case.minigrad_op(*minigrad_inputs)

    def minigrad_train():
        for tensor in minigrad_inputs:
            tensor.grad = None  # a fresh gradient each call, as after optimizer.zero_grad()
        case.minigrad_op(*minigrad_inputs).backward(minigrad_upstream)

    calls = {"minigrad_forward": minigrad_forward, "torch_forward": None,
             "minigrad_train": minigrad_train, "torch_train": None}
    if on_torch is None:
        return calls
    torch_inputs = [torch.tensor(a, requires_grad=needs, device=on_torch) for a, needs in zip(arrays, wants_grad)]
    torch_upstream = torch.from_numpy(upstream).to(on_torch)

    def torch_forward():
        with torch.no_grad():
            return case.torch_op(*torch_inputs)

    def torch_train():
        for tensor in torch_inputs:
            tensor.grad = None
        case.torch_op(*torch_inputs).backward(torch_upstream)

    return {**calls, "torch_forward": torch_forward, "torch_train": torch_train}


def run(quick: bool = False, smoke: bool = False, repeats: int | None = None, warmup: int = 1,
        progress: Callable[[Row], None] | None = None, device: str = "cpu", model_convs: bool = False) -> list[Row]:
    """Time every case (the --quick subset with ``quick`` or ``smoke``); two rows per case, "fwd" and "fwd+bwd".

    The fwd+bwd row's extra "bwd/fwd" is minigrad's backward time (fwd+bwd minus fwd) over its forward
    time (the target for every conv: at most 2). ``device``: "cpu" or "cuda", for both libraries.
    ``model_convs``: instead of the op list, every distinct conv of the model (:func:`model_conv_cases`), the
    harness's "convlayers" group.
    """
    on_torch = torch_device(device)
    if model_convs:
        selected = model_conv_cases(smoke=smoke)
    else:
        selected = [case for case in cases(smoke=smoke, device=device, on_torch=on_torch)
                    if case.quick or not (quick or smoke)]
    group = "convlayers" if model_convs else GROUP
    if repeats is None:
        repeats = 1 if smoke else 3 if quick else 7
    progress = progress or (lambda row: None)
    rows = []
    for case in selected:
        calls = make_calls(case, device=device, on_torch=on_torch)
        timing = {"device": device, "warmup": warmup, "repeats": repeats}
        forward = timed_row(group, f"{case.name} fwd", calls["minigrad_forward"], calls["torch_forward"],
                            flops=case.forward_flops, **timing)
        training_flops = None if case.forward_flops is None else case.forward_flops + case.backward_flops
        train = timed_row(group, f"{case.name} fwd+bwd", calls["minigrad_train"], calls["torch_train"],
                          flops=training_flops, **timing)
        if forward.minigrad_ms > 0:
            train.extra["bwd/fwd"] = round((train.minigrad_ms - forward.minigrad_ms) / forward.minigrad_ms, 2)
        for row in (forward, train):
            rows.append(row)
            progress(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """This group alone, through the harness (which takes every option: --quick, --smoke, --device, --json)."""
    from benchmarks.__main__ import main as harness_main

    harness_main(["--only", GROUP, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
