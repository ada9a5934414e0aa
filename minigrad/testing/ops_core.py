"""Registry entries for the engine's ops: arithmetic, reductions, shapes, matmul, losses."""

from __future__ import annotations

from collections.abc import Iterator

import numpy

import minigrad.functional as F
from minigrad.testing.opinfo import ErrorCase, OpInfo, Sample

Rng = numpy.random.Generator


def away_from_zero(rng: Rng, *shape: int, margin: float = 0.1) -> numpy.ndarray:
    """Random values with |x| >= margin: finite differences must not straddle a kink at 0."""
    x = rng.standard_normal(shape)
    return numpy.where(x >= 0, x + margin, x - margin)


def positive(rng: Rng, *shape: int) -> numpy.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def distinct(rng: Rng, *shape: int) -> numpy.ndarray:
    """Values with no ties (a shuffled grid plus noise), so max has one winner per window."""
    size = int(numpy.prod(shape))
    return (rng.permutation(size) * 0.1 + rng.uniform(0, 0.01, size)).reshape(shape) - size * 0.05


BROADCAST_PAIRS = [  # (a shape, b shape, case name)
    ((3, 4), (3, 4), "same shape"),
    ((1, 5), (1, 5), "batch 1"),
    ((2, 3, 4), (4,), "trailing broadcast"),
    ((2, 1, 4), (3, 1), "both broadcast"),
    ((5,), (), "scalar"),
]


def binary_samples(make_b=lambda rng, *s: rng.standard_normal(s)):  # noqa: B008
    def samples(rng: Rng) -> Iterator[Sample]:
        for shape_a, shape_b, name in BROADCAST_PAIRS:
            yield Sample((rng.standard_normal(shape_a), make_b(rng, *shape_b)), name=name)

    return samples


def broadcast_error(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((2, 3)), rng.standard_normal((4,)))), ValueError,
                    r"\(2, 3\) and \(4,\) cannot be broadcast")


def unary_samples(make=lambda rng, *s: rng.standard_normal(s)):  # noqa: B008
    def samples(rng: Rng) -> Iterator[Sample]:
        yield Sample((make(rng, 3, 4),), name="2-D")
        yield Sample((make(rng, 1, 7),), name="batch 1, odd")
        yield Sample((make(rng, 2, 3, 5),), name="3-D")

    return samples


def reduction_samples(make=lambda rng, *s: rng.standard_normal(s)):  # noqa: B008
    def samples(rng: Rng) -> Iterator[Sample]:
        yield Sample((make(rng, 3, 4),), {"dim": None, "keepdim": False}, "all")
        yield Sample((make(rng, 3, 4),), {"dim": 1, "keepdim": False}, "dim 1")
        yield Sample((make(rng, 2, 3, 5),), {"dim": (0, 2), "keepdim": True}, "dims (0, 2) keepdim")
        yield Sample((make(rng, 1, 5),), {"dim": -1, "keepdim": False}, "batch 1, dim -1")

    return samples


def reduction_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((2, 3)),), {"dim": 2}), IndexError, "dim 2 is out of range")


def matmul_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((3, 4)), rng.standard_normal((4, 5))), name="2-D")
    yield Sample((rng.standard_normal((1, 4)), rng.standard_normal((4, 1))), name="batch 1")
    yield Sample((rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 2))), name="batched @ 2-D")
    yield Sample((rng.standard_normal((4,)), rng.standard_normal((4, 3))), name="vector @ matrix")
    yield Sample((rng.standard_normal((3, 4)), rng.standard_normal((4,))), name="matrix @ vector")


def matmul_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((3, 4)), rng.standard_normal((5, 2)))), ValueError,
                    r"matmul: shapes \(3, 4\) and \(5, 2\) cannot be multiplied")


def linear_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)), name="with bias")
    yield Sample((rng.standard_normal((1, 5)), rng.standard_normal((2, 5)), None), name="batch 1, no bias")
    x, weight, bias = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    yield Sample((x, weight, bias), name="3-D input")


def linear_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((4, 6)), rng.standard_normal((3, 5)), None)), ValueError,
                    r"linear: input of shape \(4, 6\) does not fit weight of shape \(3, 5\)")


def softmax_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((4, 5)),), {"dim": 1}, "2-D")
    yield Sample((rng.standard_normal((1, 3)),), {"dim": -1}, "batch 1")
    yield Sample((rng.standard_normal((2, 3, 4)),), {"dim": 1}, "middle dim")
    yield Sample((rng.standard_normal((3, 6)) * 50 + 500,), {"dim": 1}, "large magnitudes")


def cross_entropy_samples(rng: Rng) -> Iterator[Sample]:
    yield Sample((rng.standard_normal((4, 5)), rng.integers(0, 5, 4)), name="plain", no_grad=(1,))
    yield Sample((rng.standard_normal((1, 3)), numpy.array([2])), name="batch 1")
    yield Sample((rng.standard_normal((6, 4)) * 30, rng.integers(0, 4, 6)), name="large logits")
    yield Sample((rng.standard_normal((5, 3)), rng.integers(0, 3, 5)), {"label_smoothing": 0.1}, "label smoothing")
    yield Sample((rng.standard_normal((3, 4)), rng.integers(0, 4, 3)), {"reduction": "sum"}, "sum")
    yield Sample((rng.standard_normal((3, 4)), rng.integers(0, 4, 3)), {"reduction": "none"}, "none")


def cross_entropy_errors(rng: Rng) -> Iterator[ErrorCase]:
    yield ErrorCase(Sample((rng.standard_normal((4, 5)), numpy.array([0, 1, 7, 2]))), ValueError,
                    r"targets must lie in \[0, 4\]")
    yield ErrorCase(Sample((rng.standard_normal((4, 5)), numpy.array([0, 1]))), ValueError,
                    r"targets of shape \(2,\) do not match logits \(4, 5\)")
    yield ErrorCase(Sample((rng.standard_normal((4, 5, 2)), numpy.array([0, 1, 2, 3]))), ValueError,
                    r"logits must be \(N, C\)")


def getitem_samples(rng: Rng) -> Iterator[Sample]:
    x = rng.standard_normal((4, 5))
    yield Sample((x,), {"index": (slice(1, 3), slice(None, None, 2))}, "slices")
    yield Sample((x,), {"index": 2}, "integer")
    yield Sample((x,), {"index": (numpy.array([0, 2, 2, 3]),)}, "repeated integer array")
    paired = (numpy.array([0, 2]), numpy.array([1, 3]))
    yield Sample((rng.standard_normal((3, 4, 2)),), {"index": paired}, "paired arrays")
    yield Sample((x,), {"index": (Ellipsis, None, 1)}, "ellipsis and newaxis")


def _ref_sum(torch, x, dim=None, keepdim=False):
    return x.sum(dim=dim, keepdim=keepdim) if dim is not None else x.sum()


def _ref_mean(torch, x, dim=None, keepdim=False):
    return x.mean(dim=dim, keepdim=keepdim) if dim is not None else x.mean()


def _ref_max(torch, x, dim=None, keepdim=False):
    return torch.amax(x, dim=dim if dim is not None else tuple(range(x.ndim)), keepdim=keepdim)


def _ref_getitem(torch, x, index):
    index = tuple(torch.as_tensor(i) if isinstance(i, numpy.ndarray) else i for i in index) \
        if isinstance(index, tuple) else index
    return x[index]


OPS = [
    OpInfo("add", F.add, lambda torch, a, b: a + b, binary_samples(), broadcast_error),
    OpInfo("sub", F.sub, lambda torch, a, b: a - b, binary_samples(), broadcast_error),
    OpInfo("mul", F.mul, lambda torch, a, b: a * b, binary_samples(), broadcast_error),
    OpInfo("div", F.div, lambda torch, a, b: a / b, binary_samples(away_from_zero), broadcast_error),
    OpInfo("neg", F.neg, lambda torch, x: -x, unary_samples()),
    OpInfo("pow", F.pow, lambda torch, x, exponent: x**exponent,
           lambda rng: (Sample((positive(rng, 3, 4),), {"exponent": e}, f"exponent {e}") for e in (2, 0.5, -1.5))),
    OpInfo("pow_tensor", F.pow, lambda torch, x, y: x**y,
           lambda rng: (Sample((positive(rng, *a), rng.standard_normal(b)), name=n) for a, b, n in BROADCAST_PAIRS)),
    OpInfo("exp", F.exp, lambda torch, x: x.exp(), unary_samples()),
    OpInfo("log", F.log, lambda torch, x: x.log(), unary_samples(positive)),
    OpInfo("sqrt", F.sqrt, lambda torch, x: x.sqrt(), unary_samples(positive)),
    OpInfo("relu", F.relu, lambda torch, x: x.relu(), unary_samples(away_from_zero)),
    OpInfo("sigmoid", F.sigmoid, lambda torch, x: x.sigmoid(), unary_samples()),
    OpInfo("tanh", F.tanh, lambda torch, x: x.tanh(), unary_samples()),
    OpInfo("sum", F.sum, _ref_sum, reduction_samples(), reduction_errors),
    OpInfo("mean", F.mean, _ref_mean, reduction_samples(), reduction_errors),
    OpInfo("max", F.max, _ref_max, reduction_samples(distinct), reduction_errors),
    OpInfo("reshape", lambda x, shape: F.reshape(x, shape), lambda torch, x, shape: x.reshape(shape),
           lambda rng: [Sample((rng.standard_normal((2, 6)),), {"shape": (3, 4)}),
                        Sample((rng.standard_normal((1, 2, 3)),), {"shape": (-1,)}, "flatten with -1")],
           lambda rng: [ErrorCase(Sample((rng.standard_normal((2, 6)),), {"shape": (5, 3)}), ValueError,
                                  r"reshape: cannot reshape a tensor of shape \(2, 6\)")]),
    OpInfo("permute", lambda x, dims: F.permute(x, dims), lambda torch, x, dims: x.permute(dims),
           lambda rng: [Sample((rng.standard_normal((2, 3, 4, 5)),), {"dims": (0, 2, 3, 1)}, "NCHW to NHWC"),
                        Sample((rng.standard_normal((1, 3)),), {"dims": (1, 0)}, "transpose")],
           lambda rng: [ErrorCase(Sample((rng.standard_normal((2, 3)),), {"dims": (0, 0)}), ValueError,
                                  "not a permutation")]),
    OpInfo("transpose", F.transpose, lambda torch, x, dim0, dim1: x.transpose(dim0, dim1),
           lambda rng: [Sample((rng.standard_normal((2, 3, 4)),), {"dim0": 0, "dim1": 2}),
                        Sample((rng.standard_normal((1, 5)),), {"dim0": -1, "dim1": 0}, "negative dim")]),
    OpInfo("flatten", F.flatten, lambda torch, x, start_dim=0, end_dim=-1: x.flatten(start_dim, end_dim),
           lambda rng: [Sample((rng.standard_normal((2, 3, 4, 5)),), {"start_dim": 1}, "keep batch"),
                        Sample((rng.standard_normal((1, 3, 1, 1)),), {"start_dim": 1}, "1x1 map"),
                        Sample((rng.standard_normal((2, 3, 4)),), {"start_dim": 0, "end_dim": 1}, "first two")]),
    OpInfo("getitem", F.getitem, _ref_getitem, getitem_samples,
           lambda rng: [ErrorCase(Sample((rng.standard_normal((2, 3)),), {"index": 5}), IndexError,
                                  r"does not fit a tensor of shape \(2, 3\)")]),
    OpInfo("matmul", F.matmul, lambda torch, a, b: a @ b, matmul_samples, matmul_errors),
    OpInfo("linear", F.linear, lambda torch, x, w, b: torch.nn.functional.linear(x, w, b), linear_samples,
           linear_errors),
    OpInfo("softmax", F.softmax, lambda torch, x, dim: torch.softmax(x, dim), softmax_samples),
    OpInfo("log_softmax", F.log_softmax, lambda torch, x, dim: torch.log_softmax(x, dim), softmax_samples),
    OpInfo("cross_entropy", F.cross_entropy,
           lambda torch, x, t, **kw: torch.nn.functional.cross_entropy(x, t, **kw),
           cross_entropy_samples, cross_entropy_errors),
]
