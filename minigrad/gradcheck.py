"""A finite-difference gradient checker that cannot pass by accident.

For a function f of tensors, pick a random direction ``v`` in output space (the *upstream
gradient*) and compare, for every entry x_i of every input that requires grad,

    analytic:  d<v, f(x)>/dx_i       from one call to backward(v)
    numeric:   (<v, f(x + eps e_i)> - <v, f(x - eps e_i)>) / (2 eps)   (central differences)

Why a random ``v`` and not ``f(x).sum()``: some ops have an output whose sum never changes
(batch norm's normalised output sums to 0 per channel), so the gradient of the sum is zero and a
backward that returns zeros would pass. Why float64: with eps = 1e-6, float32's rounding error
(about 1e-7 relative) divided by 2 eps swamps the signal; float64's (1e-16) does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy

from minigrad import backend
from minigrad.tensor import Tensor, float64


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with central differences; its message is the table."""

    def __init__(self, report: GradcheckReport) -> None:
        super().__init__(f"gradient check failed\n{report}")
        self.report = report


@dataclass
class InputReport:
    """How one input's analytic gradient compared with the numeric one."""

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    passed: bool


@dataclass
class GradcheckReport:
    """Per-input results; ``str(report)`` is a table, ``report.passed`` the verdict."""

    rows: list[InputReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((row.max_rel_error for row in self.rows), default=0.0)

    def __str__(self) -> str:
        name_width = max([len("input"), *(len(r.name) for r in self.rows)]) + 2  # fits parameter names
        header = (f"{'input':<{name_width}}{'shape':<20}{'checked':>8}{'max abs err':>13}{'max rel err':>13}"
                  f"  {'worst at':<16}ok")
        lines = [header, "-" * len(header)]
        for r in self.rows:
            lines.append(
                f"{r.name:<{name_width}}{str(r.shape):<20}{r.checked:>8}{r.max_abs_error:>13.2e}"
                f"{r.max_rel_error:>13.2e}  {str(r.worst_index):<16}{'yes' if r.passed else 'NO'}"
            )
        return "\n".join(lines)


# Stateful code (running statistics, dropout masks) must behave identically on every one of the
# thousands of calls a check makes. `fixed_state` snapshots that state; gradcheck restores the
# snapshot before each call.
_state_restorers: list[Callable[[], None]] = []


@contextlib.contextmanager
def fixed_state(*modules: Any) -> Iterator[None]:
    """Freeze the buffers of ``modules`` (e.g. BatchNorm running stats) and every device's random
    generator (so dropout draws the same mask) while gradcheck probes.

    >>> with fixed_state(model):
    ...     gradcheck(model, [x], params=list(model.parameters()))
    """
    buffers = [buffer for module in modules for buffer in module.buffers()]
    saved_buffers = [buffer.data.copy() for buffer in buffers]
    saved_generators = backend.get_rng_state()

    def restore() -> None:
        for buffer, saved in zip(buffers, saved_buffers):
            buffer.data[...] = saved
        # A GPU generator first used after the snapshot starts afresh from the seed at every call, instead
        # of drawing on from where the last call stopped (set_rng_state does that).
        backend.set_rng_state(saved_generators)

    _state_restorers.append(restore)
    try:
        yield
    finally:
        _state_restorers.remove(restore)
        restore()


def _unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(j) for j in numpy.unravel_index(flat_index, shape))


def _restore_state() -> None:
    for restore in _state_restorers:
        restore()


def _contract(outputs: Any, directions: list[Any]) -> float:
    """<v, f(x)> summed over every output."""
    outs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return float(sum(backend.to_numpy((out.data * v).sum()) for out, v in zip(outs, directions)))


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    params: Iterable[Tensor] = (),
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    seed: int = 0,
    max_checks_per_input: int | None = None,
    raise_on_failure: bool = True,
) -> GradcheckReport:
    """Check ``fn(*inputs)``'s gradients against central differences; return the report.

    ``inputs``: the arguments of ``fn``; float tensors among them are cast to float64 and those with
    ``requires_grad`` are checked. ``params``: tensors ``fn`` uses without taking them as arguments
    (a model's parameters); they are checked too, cast to float64 in place for the check and
    restored afterwards. An entry passes when |analytic - numeric| <= atol + rtol * |numeric|.
    ``max_checks_per_input`` probes a random subset of entries of large inputs (default: all).
    Raises :class:`GradcheckError` on failure unless ``raise_on_failure=False``.
    """
    rng = numpy.random.default_rng(seed)
    # order="C": the probe below perturbs entries through a flat view, which a transposed
    # (Fortran-ordered) copy would not give (reshape(-1) would copy, and the probes would change nothing).
    args = [
        Tensor(a.data.astype(float64, order="C"), requires_grad=a.requires_grad)
        if isinstance(a, Tensor) and a.dtype.kind == "f" else a
        for a in inputs
    ]
    params = list(params)
    original_params = [(p.data, p.grad) for p in params]
    for p in params:
        p.data = p.data.astype(float64, order="C")
    named = [(f"input {i}", a) for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    named += [(getattr(p, "name", None) or f"param {i}", p) for i, p in enumerate(params) if p.requires_grad]
    if not named:
        raise ValueError("gradcheck: no input or parameter requires grad, so there is nothing to check")

    try:
        # Analytic gradients along a random upstream direction.
        for _, t in named:
            t.grad = None
        _restore_state()
        outputs = fn(*args)
        outs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        directions = [backend.get_xp(o.device).asarray(rng.standard_normal(o.shape)) for o in outs]
        for out, v in zip(outs, directions):
            if out.requires_grad:
                out.backward(v, retain_graph=True)
        analytic = [backend.to_numpy(t.grad.data) if t.grad is not None else numpy.zeros(t.shape) for _, t in named]

        report = GradcheckReport()
        for (name, t), grad in zip(named, analytic):
            flat = t.data.reshape(-1)  # a view: writing into it perturbs the tensor
            indices = numpy.arange(flat.size)
            if max_checks_per_input is not None and flat.size > max_checks_per_input:
                indices = rng.choice(flat.size, size=max_checks_per_input, replace=False)
            numeric = numpy.empty(len(indices))
            for k, i in enumerate(indices):
                original = flat[i].item()
                flat[i] = original + eps
                _restore_state()
                plus = _contract(fn(*args), directions)
                flat[i] = original - eps
                _restore_state()
                minus = _contract(fn(*args), directions)
                flat[i] = original
                numeric[k] = (plus - minus) / (2 * eps)
            picked = grad.reshape(-1)[indices]
            abs_error = numpy.abs(picked - numeric)
            # Relative to |numeric|, floored at atol/rtol so that entries near zero are not divided by ~0;
            # then "passes" is exactly rel_error <= rtol, i.e. |a - n| <= atol + rtol |n|.
            rel_error = abs_error / (numpy.abs(numeric) + atol / rtol)
            ok = abs_error <= atol + rtol * numpy.abs(numeric)
            worst = int(numpy.argmax(abs_error - (atol + rtol * numpy.abs(numeric)))) if len(indices) else 0
            report.rows.append(
                InputReport(
                    name=name,
                    shape=tuple(t.shape),
                    checked=len(indices),
                    max_abs_error=float(abs_error.max(initial=0.0)),
                    max_rel_error=float(rel_error.max(initial=0.0)),
                    worst_index=_unravel(indices[worst], t.shape) if len(indices) else (),
                    passed=bool(ok.all()),
                )
            )
    finally:
        for p, (data, grad) in zip(params, original_params):
            p.data, p.grad = data, grad
    if raise_on_failure and not report.passed:
        raise GradcheckError(report)
    return report
