"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), with PyTorch's update rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from minigrad.optim.optimizer import Optimizer
from minigrad.tensor import Tensor


class Adam(Optimizer):
    """Adam, exactly as ``torch.optim.Adam`` defines it.

    Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = g + weight_decay * p                   # L2 penalty in the gradient (AdamW decays p instead)
        m = beta1 * m + (1 - beta1) * g            # running mean of the gradient
        v = beta2 * v + (1 - beta2) * g * g        # running mean of its square
        v_max = max(v_max, v)  if amsgrad          # Reddi et al. 2018: never let the step size grow back
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``m`` and ``v`` start at zero, which biases them towards zero early on; dividing by
    ``1 - beta**t`` (the bias correction, Kingma & Ba section 3) removes that. Note ``eps`` is added
    *after* the bias correction of ``sqrt(v)``, as PyTorch does.
    """

    decoupled_weight_decay = False  # AdamW sets this to True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        betas = group["betas"]
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(
                f"{self.name}: invalid betas={betas!r}{where}; give two numbers in [0, 1), e.g. (0.9, 0.999)"
            )
        if group["eps"] < 0:
            raise ValueError(f"{self.name}: invalid eps={group['eps']!r}{where}; use a small number >= 0 such as 1e-8")

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        xp = param.xp
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param.data)  # m: same shape, dtype and device as the parameter
            state["exp_avg_sq"] = xp.zeros_like(param.data)  # v
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        if weight_decay != 0:
            if self.decoupled_weight_decay:
                param.data *= 1 - lr * weight_decay  # AdamW: shrink the weights directly
            else:
                grad = grad + weight_decay * param.data  # Adam: L2 penalty, which m and v then rescale

        # m = beta1 * m + (1 - beta1) * g, written as m += (1 - beta1) * (g - m): PyTorch's lerp form.
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad

        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if group["amsgrad"]:
            if "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = xp.zeros_like(param.data)
            max_exp_avg_sq = state["max_exp_avg_sq"]
            xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            second_moment = max_exp_avg_sq
        else:
            second_moment = exp_avg_sq
        denominator = xp.sqrt(second_moment) / bias_correction2_sqrt + eps
        param.data -= (lr / bias_correction1) * (exp_avg / denominator)


class AdamW(Adam):
    """AdamW: Adam with *decoupled* weight decay, exactly as ``torch.optim.AdamW`` defines it.

    AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)

    The same update as :class:`Adam`, except that weight decay shrinks the parameter before the step,
    ``p = p * (1 - lr * weight_decay)``, instead of entering the gradient. Through Adam's division by
    ``sqrt(v)``, an L2 term in the gradient is rescaled per weight; decoupled, every weight decays at the
    same rate (Loshchilov & Hutter 2019). Note the default weight_decay is 1e-2, not 0.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
