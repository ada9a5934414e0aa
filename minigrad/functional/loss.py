"""Softmax, log-softmax and the cross-entropy loss, all numerically stable.

Subtracting the row maximum before ``exp`` changes nothing mathematically
(softmax(x) = softmax(x - c)) but keeps ``exp`` from overflowing for large logits.
"""

from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


def _log_softmax(x: Any, axis: int) -> Any:
    xp = backend.xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x); dy/dx applied to g: g - softmax(x) * sum(g)."""

    saves = ("outputs",)

    def forward(self, x: Any, axis: int) -> Any:
        self.axis = axis
        self.out = _log_softmax(x, axis)
        return self.out

    def backward(self, grad: Any) -> Any:
        xp = backend.xp_of(grad)
        return grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True)


class Softmax(Function):
    """s = exp(x) / sum(exp(x)); dy/dx applied to g: s * (g - sum(g * s))."""

    saves = ("outputs",)

    def forward(self, x: Any, axis: int) -> Any:
        self.axis = axis
        self.out = backend.xp_of(x).exp(_log_softmax(x, axis))
        return self.out

    def backward(self, grad: Any) -> Any:
        return self.out * (grad - (grad * self.out).sum(axis=self.axis, keepdims=True))


class CrossEntropy(Function):
    """Softmax cross-entropy from logits (N, C) and class indices (N,), fused for stability.

    With label smoothing eps the target distribution is q = (1 - eps) * onehot + eps / C, and
    loss_i = -sum_c q_c log softmax(x_i)_c. Its gradient is simply softmax(x_i) - q.
    """

    saves = ()

    def forward(self, logits: Any, targets: Any, label_smoothing: float, reduction: str) -> Any:
        xp = backend.xp_of(logits)
        n, classes = logits.shape
        log_probs = _log_softmax(logits, axis=1)
        rows = xp.arange(n)
        picked = log_probs[rows, targets]
        losses = -(1 - label_smoothing) * picked - label_smoothing * log_probs.mean(axis=1)
        self.log_probs, self.targets, self.rows = log_probs, targets, rows
        self.label_smoothing, self.reduction = label_smoothing, reduction
        if reduction == "mean":
            return losses.mean()
        return losses.sum() if reduction == "sum" else losses

    def backward(self, grad: Any) -> tuple:
        xp = backend.xp_of(grad)
        n, classes = self.log_probs.shape
        grad_logits = xp.exp(self.log_probs)  # softmax
        grad_logits -= self.label_smoothing / classes
        grad_logits[self.rows, self.targets] -= 1 - self.label_smoothing
        if self.reduction == "mean":
            grad_logits *= grad / n
        elif self.reduction == "sum":
            grad_logits *= grad
        else:
            grad_logits *= grad[:, None]
        return grad_logits, None


def _dim(op: str, x: Tensor, dim: int) -> int:
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of shape {x.shape}")
    return dim % x.ndim


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along ``dim``, without ever computing a softmax that could underflow to 0."""
    return LogSoftmax.apply(x, axis=_dim("log_softmax", x, dim))


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``."""
    return Softmax.apply(x, axis=_dim("softmax", x, dim))


def cross_entropy(
    logits: Tensor, targets: Any, label_smoothing: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy between logits (N, C) and integer class targets (N,), averaged over the batch.

    Matches ``torch.nn.functional.cross_entropy`` (including ``label_smoothing`` and ``reduction``
    in "mean", "sum", "none").
    """
    target_array = targets.data if isinstance(targets, Tensor) else logits.xp.asarray(targets)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}; flatten extra dimensions")
    if target_array.ndim != 1 or target_array.shape[0] != logits.shape[0]:
        raise ValueError(
            f"cross_entropy: targets of shape {tuple(target_array.shape)} do not match logits {logits.shape}; "
            f"pass one class index per row, shape ({logits.shape[0]},)"
        )
    if target_array.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: targets must be integer class indices, got dtype {target_array.dtype}; "
            f"use .astype('int64')"
        )
    classes = logits.shape[1]
    if target_array.size and (int(target_array.min()) < 0 or int(target_array.max()) >= classes):
        raise ValueError(
            f"cross_entropy: targets must lie in [0, {classes - 1}] for {classes} classes, got values from "
            f"{int(target_array.min())} to {int(target_array.max())}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return CrossEntropy.apply(
        logits, Tensor(target_array), label_smoothing=float(label_smoothing), reduction=reduction
    )
