"""The autograd engine: the Function base, the graph, and backward.

Read this file top to bottom; it is the whole engine.

1. Every differentiable op is a subclass of :class:`Function` with a ``forward`` and a ``backward``
   on raw arrays (NumPy or CuPy). ``forward`` may save what ``backward`` needs on ``self``.
2. ``SomeOp.apply(*tensors, **options)`` runs ``forward`` and, when gradients are wanted, records the
   Function as the ``creator`` of its outputs. The Function keeps its ``inputs``; that is the graph.
3. ``backward(root)`` orders the Functions topologically (iteratively: GoogLeNet's graph is deep
   enough to overflow Python's recursion limit), then walks them from the root to the leaves. Each
   Function turns the gradients of its outputs into gradients of its inputs (the chain rule); when
   a tensor feeds several Functions, the gradients flowing back from each are *added*.
4. In-place changes are counted (``Tensor.version``, as in PyTorch). A Function records the version of
   each tensor its backward reads (its ``saves``); if an in-place op changed one before backward, the
   saved array no longer holds what forward saw, and backward raises instead of returning wrong gradients.
"""

from __future__ import annotations

import contextlib
from typing import Any

from minigrad import backend
from minigrad.tensor import Tensor

_grad_enabled = True


def is_grad_enabled() -> bool:
    """False inside a ``no_grad()`` block."""
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) that records no graph: for evaluation and for updates.

    >>> with no_grad():
    ...     y = model(x)          # y.requires_grad is False, nothing is kept for backward
    """

    def __init__(self) -> None:
        # A stack, not one slot: as a decorator the same object is entered again by recursive calls.
        self.previous: list[bool] = []

    def __enter__(self) -> None:
        global _grad_enabled
        self.previous.append(_grad_enabled)
        _grad_enabled = False

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self.previous.pop()


class Function:
    """One differentiable op. Subclasses implement ``forward`` and ``backward`` on raw arrays.

    ``forward(*arrays, **options)`` returns one array, or a tuple of arrays for several outputs.
    ``backward(*grad_outputs)`` gets one gradient per output (same shape as that output) and returns
    one gradient per input, in order (a single array when there is one input); ``None`` for an input
    that needs no gradient. ``self.needs_input_grad[i]`` says whether input ``i`` wants one.

    ``saves`` says which arrays ``backward`` reads as forward saw them: the op's "inputs" (``Mul`` keeps
    ``a`` and ``b``), its "outputs" (``Exp`` keeps ``exp(x)``), both or neither (``Add`` keeps only shapes).
    An op called with ``inplace=True`` writes its result over its first input's array.
    """

    inputs: tuple[Tensor | None, ...]
    needs_input_grad: tuple[bool, ...]
    n_outputs: int
    saves: tuple[str, ...] = ("inputs",)

    def forward(self, *arrays: Any, **options: Any) -> Any:
        raise NotImplementedError

    def backward(self, *grad_outputs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor | None, **options: Any) -> Any:
        """Run the op on tensors and record it in the graph; returns a Tensor or a tuple of them.

        ``inputs`` are Tensors (or ``None`` for an absent optional input such as a bias);
        ``options`` are plain Python values passed to ``forward`` (axes, strides, ...).
        """
        fn = cls()
        devices = {t.device for t in inputs if t is not None}
        if len(devices) > 1:
            shapes = ", ".join(f"{tuple(t.shape)} on {t.device}" for t in inputs if t is not None)
            raise RuntimeError(
                f"{cls.__name__.lower()}: inputs live on different devices ({shapes}); "
                "move them to one device with .to('cpu') or .to('cuda')"
            )
        # Known before forward runs, so forward can skip saving what no backward will need (under no_grad).
        fn.needs_input_grad = tuple(_grad_enabled and t is not None and t.requires_grad for t in inputs)
        record = any(fn.needs_input_grad)
        if record:
            check_not_overwritten(fn, inputs)
        arrays = [None if t is None else t.data for t in inputs]
        outputs = fn.forward(*arrays, **options)
        if options.get("inplace"):  # forward wrote over its first input's array: count the change
            inputs[0].bump_version()
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)

        # Integer outputs (indices, counts) never carry gradients.
        results = tuple(Tensor(array, requires_grad=record and array.dtype.kind == "f") for array in outputs)
        for result in results:  # a view of an input (reshape, split, an in-place op) counts with it
            source = memory_source(result.data, inputs)
            if source is not None:
                result.version_counter = source.version_counter
        if record:
            fn.inputs = inputs
            fn.n_outputs = len(results)
            fn.output_shapes = tuple(array.shape for array in outputs)
            for index, result in enumerate(results):
                result.creator, result.output_index, result.creator_version = fn, index, result.version
            # (which, index, counter, version now) of each tensor backward reads: see check_saved_versions
            saved = [("input", i, t) for i, t in enumerate(inputs) if t is not None] if "inputs" in cls.saves else []
            saved += [("output", i, t) for i, t in enumerate(results)] if "outputs" in cls.saves else []
            fn.saved_versions = [(which, i, t.version_counter, t.version) for which, i, t in saved]
        return results[0] if single else results


def memory_source(array: Any, inputs: tuple[Tensor | None, ...]) -> Tensor | None:
    """The input whose array ``array`` is (an in-place op's output) or may be a view of (reshape, split).

    A fresh array owns its memory (``base`` is None), so only views need the bounds check."""
    for tensor in inputs:
        if tensor is not None and (array is tensor.data or array.base is not None
                                   and backend.xp_of(array).may_share_memory(array, tensor.data)):
            return tensor
    return None


def check_not_overwritten(fn: Function, inputs: tuple[Tensor | None, ...]) -> None:
    """Refuse an input that an in-place op changed after its creator made it.

    Its creator's place in the graph describes the values it had then: a gradient sent through it now
    would be the gradient of other values. (PyTorch moves the tensor's history onto the in-place op
    instead; minigrad's in-place op returns a new tensor for the new values, so use that one.)
    """
    for index, tensor in enumerate(inputs):
        if tensor is not None and tensor.creator is not None and tensor.version != tensor.creator_version:
            raise RuntimeError(
                f"{type(fn).__name__.lower()}: input {index} (shape {tensor.shape}) was overwritten by an in-place "
                f"operation after {type(tensor.creator).__name__.lower()} made it (now at version {tensor.version}, "
                f"made at version {tensor.creator_version}), so the graph no longer describes its values; use the "
                "tensor the in-place op returned (x = F.relu(x, inplace=True)), or the op without inplace"
            )


def check_saved_versions(fn: Function) -> None:
    """Raise if an in-place op changed a tensor that ``fn`` saved for backward (PyTorch's check)."""
    for which, index, counter, version in fn.saved_versions:
        if counter.value != version:
            op, name = type(fn).__name__.lower(), f"{which} {index}"
            shape = fn.inputs[index].shape if which == "input" else fn.output_shapes[index]
            raise RuntimeError(
                f"{op}: one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: {op}'s {name}, of shape {shape}, is at version {counter.value}; expected version "
                f"{version} (when {op} saved it). Use the op without inplace=True, or change the tensor only "
                "after backward() (an optimizer step between forward and backward does this too)"
            )


def topological_order(root: Function) -> list[Function]:
    """Every Function that ``root`` depends on, each after all the Functions that use its outputs.

    An iterative depth-first search: a Function is appended once all its inputs' creators have
    been appended (post-order); the reversed list starts at ``root`` and ends at the leaves.
    """
    order: list[Function] = []
    visited: set[int] = set()
    stack: list[tuple[Function, bool]] = [(root, False)]
    while stack:
        fn, inputs_done = stack.pop()
        if inputs_done:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for tensor in fn.inputs:
            if tensor is not None and tensor.creator is not None and id(tensor.creator) not in visited:
                stack.append((tensor.creator, False))
    return order[::-1]


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

    ``grad`` is the upstream gradient (the same shape as ``root``); it may be omitted only when
    ``root`` holds one value, where it defaults to 1. The graph's saved arrays are freed afterwards
    unless ``retain_graph=True`` (then backward may be called again on the same graph).
    """
    xp = root.xp
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for a tensor with one value, but this "
                f"one has shape {tuple(root.shape)}; pass grad= of that shape, or reduce first "
                f"(e.g. loss.sum() or loss.mean())"
            )
        grad = xp.ones_like(root.data)
    else:
        # In the root's dtype: a float64 grad for a float32 loss must not turn every gradient into float64.
        grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
        if grad.shape != root.data.shape:
            raise RuntimeError(
                f"backward: grad has shape {tuple(grad.shape)} but the tensor has shape {tuple(root.shape)}"
            )
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no creator; did you build it inside "
            "no_grad(), or forget requires_grad=True on the inputs?"
        )
    if root.creator is None:  # backward on a leaf: its gradient is grad itself
        root.accumulate_grad(grad)
        return

    # Gradients waiting for each Function, one slot per output: {id(fn): [grad or None, ...]}.
    pending: dict[int, list[Any]] = {id(root.creator): [None] * root.creator.n_outputs}
    pending[id(root.creator)][root.output_index] = grad
    if root.retains_grad:
        root.accumulate_grad(grad)

    for fn in topological_order(root.creator):
        if getattr(fn, "freed", False):
            raise RuntimeError(
                "backward: trying to go through the graph a second time after its saved arrays were "
                "freed; pass retain_graph=True to the first backward() if you need to call it twice"
            )
        grad_outputs = pending.pop(id(fn), None)
        if grad_outputs is None:  # no gradient reached this Function (e.g. an unused output)
            continue
        if any(g is None for g in grad_outputs):  # outputs nobody used get a zero gradient
            like = next(g for g in grad_outputs if g is not None)
            grad_outputs = [
                xp.zeros(shape, dtype=like.dtype) if g is None else g
                for g, shape in zip(grad_outputs, fn.output_shapes)
            ]
        check_saved_versions(fn)
        input_grads = fn.backward(*grad_outputs)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(fn.inputs):  # zip() below would silently drop the missing ones
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned {len(input_grads)} gradients for {len(fn.inputs)} inputs; "
                "return one per input (None for an input that needs none)"
            )

        for tensor, needs, input_grad in zip(fn.inputs, fn.needs_input_grad, input_grads):
            if not needs or input_grad is None:
                continue
            if input_grad.shape != tensor.data.shape:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape {tuple(input_grad.shape)} "
                    f"for an input of shape {tuple(tensor.shape)} (a bug in that op)"
                )
            if tensor.creator is None or tensor.retains_grad:
                tensor.accumulate_grad(input_grad)
            if tensor.creator is not None:
                slots = pending.setdefault(id(tensor.creator), [None] * tensor.creator.n_outputs)
                index = tensor.output_index
                slots[index] = input_grad if slots[index] is None else slots[index] + input_grad
        if not retain_graph:
            _free(fn)


def _free(fn: Function) -> None:
    """Drop what ``fn`` saved for backward (arrays can be large); keep only what marks it as freed."""
    n_outputs, output_shapes = fn.n_outputs, fn.output_shapes
    fn.__dict__.clear()
    fn.n_outputs, fn.output_shapes, fn.freed, fn.inputs = n_outputs, output_shapes, True, ()
