"""Registry entries for the layer ops: conv2d, pooling, batch_norm, dropout, cat, split.

Samples cover the awkward cases a CNN meets: batch 1, odd sizes, 1x1 maps, a kernel as large as
the input, non-square kernels and strides, stride 2, padding, dilation, ceil_mode, groups.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy

import minigrad.functional as F
from minigrad import backend
from minigrad.tensor import Tensor
from minigrad.testing.opinfo import ErrorCase, OpInfo, Sample
from minigrad.testing.ops_core import distinct

Rng = numpy.random.Generator


# ----- conv2d ---------------------------------------------------------------------------------
def conv_samples(rng: Rng) -> Iterator[Sample]:
    def case(x_shape, w_shape, bias=True, name="", **kwargs):
        bias_array = rng.standard_normal(w_shape[0]) if bias else None
        return Sample((rng.standard_normal(x_shape), rng.standard_normal(w_shape), bias_array), kwargs, name)

    yield case((2, 3, 7, 7), (4, 3, 3, 3), padding=1, name="3x3 pad 1")
    yield case((1, 2, 6, 5), (3, 2, 3, 2), stride=2, name="batch 1, odd, stride 2, non-square kernel")
    yield case((2, 4, 5, 5), (6, 4, 1, 1), bias=False, name="1x1 no bias")
    yield case((2, 3, 8, 8), (2, 3, 5, 5), padding=2, name="5x5 pad 2")
    yield case((1, 4, 9, 9), (4, 2, 3, 3), groups=2, stride=(2, 1), padding=(1, 0), name="groups, mixed stride")
    yield case((2, 2, 7, 7), (3, 2, 3, 3), dilation=2, padding=1, name="dilation 2")
    yield case((2, 3, 4, 4), (2, 3, 4, 4), name="kernel equal to input")
    yield case((2, 3, 1, 1), (4, 3, 1, 1), name="1x1 map")
    yield case((1, 2, 6, 6), (3, 2, 3, 3), padding="same", name="padding same")
    yield case((1, 3, 5, 5), (3, 1, 3, 3), groups=3, padding=1, name="depthwise")


def conv_errors(rng: Rng) -> Iterator[ErrorCase]:
    x = rng.standard_normal((2, 4, 8, 8))
    yield ErrorCase(Sample((x, rng.standard_normal((5, 3, 3, 3)), None)), ValueError, r"conv2d.*4.*3")
    yield ErrorCase(Sample((x, rng.standard_normal((5, 4, 9, 9)), None)), ValueError, r"conv2d.*(larger|fit|kernel)")
    yield ErrorCase(Sample((x, rng.standard_normal((5, 4, 3, 3)), None), {"stride": 0}), ValueError, r"conv2d.*stride")
    yield ErrorCase(Sample((x, rng.standard_normal((6, 1, 3, 3)), None), {"groups": 3}), ValueError,
                    r"conv2d.*groups")
    yield ErrorCase(Sample((rng.standard_normal((4, 8, 8)), rng.standard_normal((5, 4, 3, 3)), None)), ValueError,
                    r"conv2d.*\(4, 8, 8\)")


# ----- pooling --------------------------------------------------------------------------------
def max_pool_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((distinct(rng, 2, 3, 7, 7),), {"kernel_size": 3, "stride": 2, "padding": 1}, "3x3/2 pad 1")
    yield Sample((distinct(rng, 1, 2, 6, 6),), {"kernel_size": 3, "stride": 2, "ceil_mode": True}, "batch 1, ceil")
    yield Sample((distinct(rng, 2, 2, 5, 5),), {"kernel_size": 2, "stride": 2, "ceil_mode": True}, "ceil last window")
    yield Sample((distinct(rng, 2, 2, 8, 7),), {"kernel_size": (3, 2), "stride": (2, 1)}, "non-square")
    yield Sample((distinct(rng, 1, 2, 7, 7),), {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2},
                 "dilation 2")
    yield Sample((distinct(rng, 2, 3, 4, 4),), {"kernel_size": 4}, "kernel equal to input")
    yield Sample((distinct(rng, 2, 3, 1, 1),), {"kernel_size": 1}, "1x1 map")
    yield Sample((distinct(rng, 2, 4, 6, 6),), {"kernel_size": 3, "stride": 1, "padding": 1}, "GoogLeNet branch 4")


def pool_errors(op: str):
    def errors(rng: Rng) -> Iterator[ErrorCase]:
        x = rng.standard_normal((2, 3, 4, 4))
        yield ErrorCase(Sample((x,), {"kernel_size": 6}), ValueError, rf"{op}.*does not fit")
        yield ErrorCase(Sample((x,), {"kernel_size": 2, "stride": 0}), ValueError, rf"{op}.*stride")
        yield ErrorCase(Sample((x,), {"kernel_size": 2, "padding": 2}), ValueError, rf"{op}.*padding")
        yield ErrorCase(Sample((rng.standard_normal((4, 4)),), {"kernel_size": 2}), ValueError, rf"{op}.*\(4, 4\)")

    return errors


def avg_pool_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((2, 3, 7, 7)),), {"kernel_size": 3, "stride": 2, "padding": 1}, "pad counts")
    yield Sample((rng.standard_normal((2, 3, 7, 7)),),
                 {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, "pad excluded")
    yield Sample((rng.standard_normal((1, 2, 6, 6)),), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
                 "batch 1, ceil")
    yield Sample((rng.standard_normal((2, 2, 5, 7)),), {"kernel_size": (2, 3), "stride": (1, 2)}, "non-square")
    yield Sample((rng.standard_normal((2, 2, 14, 14)),), {"kernel_size": 5, "stride": 3}, "paper aux head 14 -> 4")
    yield Sample((rng.standard_normal((2, 3, 4, 4)),), {"kernel_size": 2, "divisor_override": 3}, "divisor override")


def adaptive_samples(rng: Rng) -> Iterator[Sample]:
    for size, out in [((14, 14), 4), ((5, 5), 3), ((1, 1), 4), ((7, 7), 1), ((6, 9), (4, 2))]:
        yield Sample((rng.standard_normal((2, 3, *size)),), {"output_size": out}, f"{size} -> {out}")


# ----- batch norm -----------------------------------------------------------------------------
def batch_norm_samples(rng: Rng) -> Iterator[Sample]:
    def stats(channels):
        return {"running_mean": rng.standard_normal(channels), "running_var": rng.uniform(0.5, 2, channels)}

    x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
    w, b = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    yield Sample((x, w, b), {"training": True, **stats(3)}, "train 4-D (through batch statistics)")
    yield Sample((x, w, b), {"training": False, **stats(3)}, "eval 4-D (frozen running statistics)")
    yield Sample((rng.standard_normal((6, 4)), rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)),
                 {"training": True, **stats(4)}, "train (N, C)")
    yield Sample((rng.standard_normal((1, 2, 3, 3)), rng.uniform(0.5, 1.5, 2), rng.standard_normal(2)),
                 {"training": True, "momentum": None, **stats(2)}, "batch 1, cumulative momentum")
    yield Sample((rng.standard_normal((3, 2, 4, 4)), None, None), {"training": True, **stats(2)}, "no affine")


def batch_norm_op(x, weight, bias, *, running_mean, running_var, **kwargs):
    # Fresh copies each call: the running statistics are updated in place during training, and every one
    # of gradcheck's thousands of calls must start from the same state.
    return F.batch_norm(x, Tensor(running_mean.astype(x.dtype), device=x.device),
                        Tensor(running_var.astype(x.dtype), device=x.device), weight, bias, **kwargs)


def batch_norm_ref(torch, x, weight, bias, *, running_mean, running_var, **kwargs):
    if "momentum" in kwargs and kwargs["momentum"] is None:  # torch's functional form wants the factor:
        kwargs["momentum"] = 1.0  # a cumulative average over num_batches_tracked=1 batch
    return torch.nn.functional.batch_norm(x, torch.tensor(running_mean, dtype=x.dtype),
                                          torch.tensor(running_var, dtype=x.dtype), weight, bias, **kwargs)


def batch_norm_errors(rng: Rng) -> Iterator[ErrorCase]:
    x = rng.standard_normal((2, 3, 4, 4))
    yield ErrorCase(Sample((x, rng.standard_normal(4), rng.standard_normal(4)),
                           {"training": True, "running_mean": numpy.zeros(3), "running_var": numpy.ones(3)}),
                    ValueError, r"batch_norm.*\(4,\).*3 channels")
    yield ErrorCase(Sample((rng.standard_normal((1, 3)), None, None),
                           {"training": True, "running_mean": numpy.zeros(3), "running_var": numpy.ones(3)}),
                    ValueError, r"more than 1 value per channel")


# ----- dropout, cat, split --------------------------------------------------------------------
def dropout_op(x, *, p, seed=0, training=True):
    # A fresh generator with a fixed seed gives the same mask on every call: the mask is "frozen" while
    # gradcheck probes, which is what makes dropout checkable with finite differences.
    # The generator must live on x's device (a NumPy mask cannot multiply a CuPy array).
    generator = numpy.random.default_rng(seed) if x.device == "cpu" else backend.CudaGenerator(seed)
    return F.dropout(x, p, training, generator=generator)


def dropout_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((4, 6)),), {"p": 0.3}, "p 0.3")
    yield Sample((rng.standard_normal((2, 3, 4, 4)),), {"p": 0.5}, "4-D p 0.5")
    yield Sample((rng.standard_normal((3, 5)),), {"p": 0.0}, "p 0 (identity)")
    yield Sample((rng.standard_normal((3, 5)),), {"p": 1.0}, "p 1 (zeros, no NaN)")
    yield Sample((rng.standard_normal((3, 5)),), {"p": 0.7, "training": False}, "eval (identity)")


def dropout_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((2, 3)),), {"p": 1.5}), ValueError, r"dropout.*\[0, 1\].*1\.5")
    yield ErrorCase(Sample((rng.standard_normal((2, 3)),), {"p": -0.1}), ValueError, r"dropout.*-0\.1")


def cat_op(*xs, dim):
    return F.cat(xs, dim)


def cat_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample(tuple(rng.standard_normal((2, c, 4, 4)) for c in (3, 1, 5, 2)), {"dim": 1}, "Inception branches")
    yield Sample((rng.standard_normal((1, 3)), rng.standard_normal((2, 3))), {"dim": 0}, "batch axis")
    yield Sample((rng.standard_normal((2, 3)), rng.standard_normal((2, 4))), {"dim": -1}, "negative dim")


def cat_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 5, 4))), {"dim": 1}),
                    ValueError, r"cat.*\(2, 3, 4, 4\).*\(2, 3, 5, 4\)")


def split_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((2, 11, 3, 3)),), {"split_size_or_sections": [3, 1, 5, 2], "dim": 1}, "sizes")
    yield Sample((rng.standard_normal((7, 2)),), {"split_size_or_sections": 3, "dim": 0}, "chunk size, ragged last")


def split_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((2, 5)),), {"split_size_or_sections": [2, 2], "dim": 1}),
                    ValueError, r"split.*\[2, 2\].*5")


OPS = [
    OpInfo("conv2d", F.conv2d, lambda torch, x, w, b, **kw: torch.nn.functional.conv2d(x, w, b, **kw),
           conv_samples, conv_errors),
    OpInfo("max_pool2d", F.max_pool2d, lambda torch, x, **kw: torch.nn.functional.max_pool2d(x, **kw),
           max_pool_samples, pool_errors("max_pool2d")),
    OpInfo("avg_pool2d", F.avg_pool2d, lambda torch, x, **kw: torch.nn.functional.avg_pool2d(x, **kw),
           avg_pool_samples, pool_errors("avg_pool2d")),
    OpInfo("adaptive_avg_pool2d", F.adaptive_avg_pool2d,
           lambda torch, x, output_size: torch.nn.functional.adaptive_avg_pool2d(x, output_size), adaptive_samples,
           lambda rng: [ErrorCase(Sample((rng.standard_normal((2, 3, 4, 4)),), {"output_size": 0}), ValueError,
                                  r"adaptive_avg_pool2d.*output_size must be >= 1")]),
    OpInfo("batch_norm", batch_norm_op, batch_norm_ref, batch_norm_samples, batch_norm_errors),
    OpInfo("dropout", dropout_op, None, dropout_samples, dropout_errors),
    OpInfo("cat", cat_op, lambda torch, *xs, dim: torch.cat(xs, dim), cat_samples, cat_errors),
    OpInfo("split", F.split, lambda torch, x, split_size_or_sections, dim: torch.split(x, split_size_or_sections, dim),
           split_samples, split_errors),
]
