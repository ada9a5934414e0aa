"""Optimizer: the base class that holds parameter groups and per-parameter state.

An optimizer updates parameters from their gradients. Everything that is not the update rule itself
lives here, shaped like PyTorch's ``torch.optim.Optimizer`` so habits carry over:

- ``param_groups``: a list of dicts, each ``{"params": [Tensor, ...], "lr": ..., <other hyperparameters>}``.
  Learning-rate schedulers change ``param_groups[i]["lr"]``; the update rule reads it at every step.
- ``state``: per-parameter buffers (momentum, Adam's moments, a step count), created on the first step.
  Unlike PyTorch it is keyed by ``id(param)``: ``optimizer.state[id(p)]["momentum_buffer"]``.
- ``zero_grad()``, ``step()``, ``state_dict()`` / ``load_state_dict()``.

Subclasses write only ``_check_group`` (validate hyperparameters) and ``_update`` (the rule for one group).

Saving without pickle: ``state_dict()`` holds only NumPy arrays, Python numbers, bools, tuples, lists and
dicts. :func:`flatten_state_dict` turns it into ``{"state/0/momentum_buffer": array, "param_groups/0/lr":
array(0.1), ...}``, every value a NumPy array, which ``numpy.savez`` stores with ``allow_pickle=False``;
:func:`unflatten_state_dict` turns it back.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy

from minigrad import backend
from minigrad.tensor import Tensor


class Optimizer:
    """Base class of SGD, Adam and AdamW: parameter groups, state, zero_grad and state dicts.

    Optimizer(params, defaults)

    ``params`` is an iterable of Tensors, or of dicts ``{"params": [...], "lr": ...}`` (one per group,
    any hyperparameter a group leaves out comes from ``defaults``).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._check_group(self.defaults, where="")
        # State is keyed by id(param): a Tensor may one day compare with `==` elementwise,
        # which makes it a poor dict key; the param_groups keep every parameter alive, so ids stay unique.
        self.state: dict[int, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []

        if isinstance(params, (Tensor, set)):
            raise TypeError(
                f"{self.name}: params must be an ordered iterable (a list) of Tensors or of dicts, got "
                f"{type(params).__name__}; pass list(model.parameters())"
            )
        params = list(params)
        if len(params) == 0:
            raise ValueError(f"{self.name}: got an empty parameter list; pass the parameters of a model that has some")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    @property
    def name(self) -> str:
        """The class name, used in every error message."""
        return type(self).__name__

    # ----- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones come from ``defaults``)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self.name}: a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self.name}: a parameter group needs a 'params' entry (a list of Tensors)")
        index = len(self.param_groups)
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if len(params) == 0:
            raise ValueError(f"{self.name}: parameter group {index} is empty; give it at least one Tensor")
        for position, param in enumerate(params):
            where = f"parameter {position} of group {index}"
            if not isinstance(param, Tensor):
                raise TypeError(f"{self.name}: {where} is a {type(param).__name__}, not a minigrad Tensor")
            if not param.requires_grad:
                raise ValueError(
                    f"{self.name}: {where} (shape {param.shape}) does not require grad, so it would never be "
                    f"updated; create it with requires_grad=True or leave it out of the optimizer"
                )
            if not param.is_leaf:
                raise ValueError(
                    f"{self.name}: {where} (shape {param.shape}) is not a leaf tensor (it was computed by an op); "
                    f"optimize the leaf it came from"
                )
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError(f"{self.name}: a parameter appears twice (in group {index}); give each parameter once")

        group = {**self.defaults, **param_group, "params": params}
        self._check_group(group, where=f" in parameter group {index}")
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        """Raise ValueError for bad hyperparameters; ``where`` says which group (subclasses extend this)."""
        lr = group.get("lr")
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or lr < 0:
            raise ValueError(f"{self.name}: invalid learning rate lr={lr!r}{where}; use a number >= 0")
        weight_decay = group.get("weight_decay", 0)
        if weight_decay < 0:
            raise ValueError(f"{self.name}: invalid weight_decay={weight_decay!r}{where}; use a number >= 0")

    # ----- the training-loop API ---------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (default, frees memory) or fill them with zeros in place."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.data.fill(0)
                    param.grad.bump_version()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient (those with ``grad is None`` are skipped).

        ``closure`` (optional, as in PyTorch) recomputes the loss; its value is returned.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.shape != param.shape:
                    raise ValueError(
                        f"{self.name}: gradient shape {param.grad.shape} does not match parameter shape "
                        f"{param.shape}; the grad must have the parameter's shape"
                    )
                self._update(param, param.grad.data, self.state.setdefault(id(param), {}), group)
                # In place, as torch's step is: a graph built before this step and still to be
                # backpropagated saved the old values, and its backward now refuses to run.
                param.bump_version()
        return loss

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update ``param.data`` in place from ``grad`` (its raw array); ``state`` is this parameter's state."""
        raise NotImplementedError

    # ----- saving and loading ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as plain data, shaped like PyTorch's.

        ``{"state": {param_index: {"momentum_buffer": ndarray, "step": int, ...}},
           "param_groups": [{"params": [param_index, ...], "lr": 0.1, ...}, ...]}``

        Parameters are numbered 0, 1, ... across all groups in order. Arrays are NumPy *copies*
        (PyTorch returns references; a copy cannot change under you while a checkpoint is written).
        """
        index_of: dict[int, int] = {}
        param_groups = []
        for group in self.param_groups:
            indices = []
            for param in group["params"]:
                index_of.setdefault(id(param), len(index_of))
                indices.append(index_of[id(param)])
            param_groups.append({**_hyperparameters(group), "params": indices})
        state = {}
        for group in self.param_groups:
            for param in group["params"]:
                if self.state.get(id(param)):
                    state[index_of[id(param)]] = {
                        key: numpy.array(backend.to_numpy(value), copy=True) if _is_array(value) else value
                        for key, value in self.state[id(param)].items()
                    }
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (checked against this optimizer's groups and shapes).

        Hyperparameters come from ``state_dict`` (like PyTorch); buffers are copied onto each parameter's
        device and dtype.
        """
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if groups is None or "state" not in state_dict:
            raise ValueError(f"{self.name}.load_state_dict: expected a dict with 'state' and 'param_groups' keys")
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{self.name}.load_state_dict: the state dict has {len(groups)} parameter groups but this "
                f"optimizer has {len(self.param_groups)}; build the optimizer with the same groups"
            )
        params_by_index: dict[int, Tensor] = {}
        for number, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{self.name}.load_state_dict: parameter group {number} has {len(saved['params'])} "
                    f"parameters in the state dict but {len(group['params'])} here; build the optimizer with "
                    f"the same parameters"
                )
            for index, param in zip(saved["params"], group["params"]):
                params_by_index[int(index)] = param

        new_state: dict[int, dict[str, Any]] = {}
        for index, saved_state in state_dict["state"].items():
            if int(index) not in params_by_index:
                raise ValueError(f"{self.name}.load_state_dict: state for parameter {index}, which no group lists")
            param = params_by_index[int(index)]
            buffers = {}
            for key, value in saved_state.items():
                if _is_array(value) and value.ndim > 0:
                    if tuple(value.shape) != param.shape:
                        raise ValueError(
                            f"{self.name}.load_state_dict: '{key}' of parameter {index} has shape "
                            f"{tuple(value.shape)} but the parameter has shape {param.shape}; the state dict "
                            f"belongs to a different model"
                        )
                    # A fresh array on the parameter's device and dtype, never sharing memory with the dict.
                    value = param.xp.array(backend.to_numpy(value), dtype=param.dtype, copy=True)
                elif _is_array(value):
                    value = value.item()  # a 0-d array (e.g. from an .npz) back to a Python number
                buffers[key] = value
            new_state[id(param)] = buffers

        for saved, group in zip(groups, self.param_groups):
            hyperparameters = _hyperparameters(saved)
            if "betas" in hyperparameters:
                hyperparameters["betas"] = tuple(hyperparameters["betas"])  # a list after a JSON/npz round trip
            group.update(hyperparameters)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{self.name} ("]
        for number, group in enumerate(self.param_groups):
            settings = ", ".join(f"{key}={value}" for key, value in group.items() if key != "params")
            lines.append(f"  group {number}: {len(group['params'])} params, {settings}")
        return "\n".join(lines + [")"])


def _is_array(value: Any) -> bool:
    return isinstance(value, numpy.ndarray) or backend.is_cupy_array(value)


def _hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    """A copy of a group's settings without its parameter list."""
    return {key: copy.deepcopy(value) for key, value in group.items() if key != "params"}


# ---------------------------------------------------------------------------
# The flat form: every value a NumPy array, so numpy.savez needs no pickle.
# ---------------------------------------------------------------------------
def flatten_state_dict(state_dict: dict[str, Any]) -> dict[str, numpy.ndarray]:
    """An optimizer state dict as ``{"state/<param>/<name>": array, "param_groups/<g>/<key>": array}``.

    Buffers stay arrays; numbers become 0-d arrays; ``params`` lists and ``betas`` tuples become 1-d arrays.
    ``numpy.savez(path, **flat)`` then ``numpy.load(path, allow_pickle=False)`` round-trips it.
    """
    flat: dict[str, numpy.ndarray] = {}
    for index, buffers in state_dict["state"].items():
        for key, value in buffers.items():
            flat[f"state/{index}/{key}"] = numpy.asarray(backend.to_numpy(value) if _is_array(value) else value)
    for number, group in enumerate(state_dict["param_groups"]):
        for key, value in group.items():
            if value is None:
                raise ValueError(f"flatten_state_dict: param_groups[{number}]['{key}'] is None, which .npz cannot hold")
            flat[f"param_groups/{number}/{key}"] = numpy.asarray(value)
    return flat


def unflatten_state_dict(flat: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`flatten_state_dict` (also accepts the ``NpzFile`` that ``numpy.load`` returns)."""
    state: dict[int, dict[str, Any]] = {}
    groups: dict[int, dict[str, Any]] = {}
    for name in flat:
        kind, number, key = name.split("/", 2)
        value = numpy.asarray(flat[name])
        if kind == "state":
            # Buffers stay arrays; a 0-d entry is a count such as Adam's "step".
            state.setdefault(int(number), {})[key] = value.item() if value.ndim == 0 else value
        elif kind == "param_groups":
            if key == "params":
                value = [int(index) for index in value]
            elif value.ndim == 0:
                value = value.item()
            else:
                value = tuple(value.tolist())  # e.g. betas
            groups.setdefault(int(number), {})[key] = value
        else:
            raise ValueError(
                f"unflatten_state_dict: unexpected key {name!r}; keys start with 'state/' or 'param_groups/'"
            )
    return {"state": state, "param_groups": [groups[number] for number in sorted(groups)]}
