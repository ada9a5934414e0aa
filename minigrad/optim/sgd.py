"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay (PyTorch's rule)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from minigrad.optim.optimizer import Optimizer
from minigrad.tensor import Tensor


class SGD(Optimizer):
    """Stochastic gradient descent, exactly as ``torch.optim.SGD`` defines it.

    SGD(params, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0)

    For each parameter ``p`` with gradient ``g``, with ``mu`` the momentum and ``d`` the dampening::

        g = g + weight_decay * p             # L2 penalty folded into the gradient
        v = g                  (first step)  # the momentum buffer starts at the gradient, not at zero
        v = mu * v + (1 - d) * g   (later)
        g = g + mu * v  if nesterov  else  v
        p = p - lr * g

    This is PyTorch's form (Sutskever et al. 2013 put ``lr`` inside the buffer instead; the two differ
    when ``lr`` changes during training). ``p.data`` is updated in place, so views of it stay valid.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr, "momentum": momentum, "dampening": dampening, "nesterov": nesterov, "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum={group['momentum']!r}{where}; use a number >= 0 (0.9 is usual)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"SGD: nesterov=True needs momentum > 0 and dampening=0{where} (got momentum={group['momentum']}, "
                f"dampening={group['dampening']}); set momentum (e.g. 0.9) or nesterov=False"
            )

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        # Python floats keep float32 arrays float32 (NumPy 2 treats them as "weak" scalars).
        lr, momentum, dampening = float(group["lr"]), float(group["momentum"]), float(group["dampening"])
        weight_decay = float(group["weight_decay"])

        if weight_decay != 0:
            grad = grad + weight_decay * param.data  # a new array: the caller's .grad is left untouched
        if momentum != 0:
            velocity = state.get("momentum_buffer")
            if velocity is None:
                velocity = state["momentum_buffer"] = grad.copy()
            else:
                velocity *= momentum
                velocity += (1 - dampening) * grad
            grad = grad + momentum * velocity if group["nesterov"] else velocity
        param.data -= lr * grad
