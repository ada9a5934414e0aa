"""``minigrad.viz``: the computation graph as Graphviz DOT text, per op or per module.

    >>> from minigrad.viz import to_dot, render
    >>> loss = F.cross_entropy(model(x), y)
    >>> print(to_dot(loss, model=model))                            # one node per op
    >>> text = to_dot(model=model, input=x, collapse="module")       # one node per layer
    >>> render(text, "googlenet.svg")                                # needs Graphviz installed

**The graph is already there.** Every tensor made by an op remembers its ``creator`` (a Function),
and every Function remembers its ``inputs``. Walking ``tensor.creator -> fn.inputs -> creator ...``
from the output visits the whole graph; :func:`to_dot` does that walk with an explicit stack
(GoogLeNet is too deep for recursion) and writes one DOT line per node and per edge.

**collapse="op"** draws that graph as it is: a box per Function (its class name and output shape)
and an ellipse per leaf tensor (parameters named by their ``model.named_parameters()`` name).

**collapse="module"** draws one box per module, because GoogLeNet has about a thousand ops. The
Functions know nothing about modules, so :func:`to_dot` runs ``model(input)`` itself, with the
forward of every module at the chosen ``depth`` temporarily wrapped (and restored afterwards).
When a wrapped module returns, the wrapper walks back from its outputs and claims every Function
it meets until it reaches the module's own inputs: *a module owns the ops between its inputs and
its outputs*. Then every edge between two ops is redrawn between their owners; the weights and
constants a module uses are hidden inside its box. Ops run outside any module (e.g. the flatten in
``GoogLeNet.forward``, or the ``cat`` of an Inception block's branches at depth 2) keep a box of
their own. A module that returns its input unchanged (Identity) owns no op and does not appear.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minigrad.autograd import Function
from minigrad.nn.module import Module, Parameter
from minigrad.tensor import Tensor

GRAPH_STYLE = (
    '  graph [rankdir=TB, fontname="Helvetica"];\n'
    '  node [shape=box, style="rounded,filled", fillcolor="white", fontname="Helvetica", fontsize=10];\n'
    '  edge [arrowsize=0.7];\n'
)


# ----- small helpers ----------------------------------------------------------------------------
def _named_outputs(output: Any, name: str = "output") -> list[tuple[str, Tensor]]:
    """The tensors in a model's output with a name each: a named tuple gives its field names
    (GoogLeNet's ``InceptionOutputs(aux1, aux2, logits)``), a tuple ``output[0]``, ``output[1]`` ..."""
    if isinstance(output, Tensor):
        return [(name, output)]
    if isinstance(output, dict):
        return [pair for key, value in output.items() for pair in _named_outputs(value, str(key))]
    if isinstance(output, (tuple, list)):
        fields = getattr(output, "_fields", None) or [f"{name}[{i}]" for i in range(len(output))]
        return [pair for field, value in zip(fields, output) for pair in _named_outputs(value, field)]
    return []


def _quote(text: str) -> str:
    """A DOT string literal; ``\\n`` inside a label is DOT's own line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def _function_label(fn: Function) -> str:
    return type(fn).__name__ + "\n" + ", ".join(_shape_text(shape) for shape in fn.output_shapes)


def _leaf_label(leaf: Tensor, input_ids: set[int], parameter_names: dict[int, str]) -> tuple[str, str]:
    """(label, fill colour) of a leaf: the model's input, a named parameter, or another tensor."""
    if id(leaf) in input_ids:
        name, color = "input", "lightyellow"
    elif id(leaf) in parameter_names:
        name, color = parameter_names[id(leaf)], "lightblue"
    elif leaf.requires_grad:
        name, color = "parameter" if isinstance(leaf, Parameter) else "leaf (requires grad)", "lightblue"
    else:
        name, color = "tensor", "gray95"  # data or a constant such as the 2.0 in `x + 2.0`
    return name + "\n" + _shape_text(leaf.shape), color


# ----- walking the graph ------------------------------------------------------------------------
def walk_graph(roots: list[Tensor]) -> tuple[list[Function], list[Tensor], list[tuple[Any, Function]]]:
    """Every Function and leaf tensor the roots depend on, and the edges (producer, consumer Function).

    A producer is a Function (the creator of the tensor that flows along the edge) or a leaf Tensor.
    The Functions come in forward order (each after everything it depends on), found by an
    iterative depth-first search as in :func:`minigrad.autograd.topological_order`; in that order
    Graphviz draws an Inception block's branches left to right, as the code runs them.
    """
    functions: list[Function] = []
    visited: set[int] = set()
    stack: list[tuple[Function, bool]] = [(root.creator, False) for root in reversed(roots) if root.creator]
    while stack:
        fn, inputs_done = stack.pop()
        if inputs_done:  # everything fn depends on is listed: list fn
            functions.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        if getattr(fn, "freed", False):
            raise RuntimeError(
                "to_dot: this graph was freed by backward(); call to_dot before loss.backward(), "
                "or call loss.backward(retain_graph=True)"
            )
        stack.append((fn, True))
        for tensor in reversed(fn.inputs):  # reversed: the first input is popped, so listed, first
            if tensor is not None and tensor.creator is not None and id(tensor.creator) not in visited:
                stack.append((tensor.creator, False))

    leaves: list[Tensor] = []
    edges: list[tuple[Any, Function]] = []
    for fn in functions:
        for tensor in fn.inputs:
            if tensor is None:  # an absent optional input, such as bias=None
                continue
            if tensor.creator is not None:
                edges.append((tensor.creator, fn))
                continue
            if id(tensor) not in visited:
                visited.add(id(tensor))
                leaves.append(tensor)
            edges.append((tensor, fn))
    return functions, leaves, edges


# ----- which module made which Function ---------------------------------------------------------
def modules_at_depth(model: Module, depth: int) -> list[tuple[str, Module]]:
    """The modules drawn as boxes: those ``depth`` levels below the model (depth 1: its children),
    plus any childless module above that depth (e.g. GoogLeNet's ``maxpool1`` at depth 2)."""
    chosen = []
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if level == depth or (0 < level < depth and next(module.children(), None) is None):
            chosen.append((name, module))
    return chosen


def _claim(name: str, inputs: list[Tensor], outputs: list[Tensor], owner: dict[int, tuple[Function, str]]) -> None:
    """Mark as ``name``'s every Function between the module's ``inputs`` and its ``outputs``."""
    stop = {id(tensor) for tensor in inputs}
    stack = [tensor for tensor in outputs if id(tensor) not in stop]
    while stack:
        fn = stack.pop().creator
        if fn is None or id(fn) in owner:  # a leaf, or an op already claimed by an earlier module
            continue
        owner[id(fn)] = (fn, name)  # keeping fn alive keeps its id() from being reused by a new op
        stack.extend(t for t in fn.inputs if t is not None and id(t) not in stop)


def _traced_forward(name: str, forward: Callable, owner: dict, output_shapes: dict) -> Callable:
    """``forward`` plus, after it returns, the claim of the ops it ran."""

    def traced(*args: Any, **kwargs: Any) -> Any:
        output = forward(*args, **kwargs)
        inputs = [tensor for _, tensor in _named_outputs([*args, *kwargs.values()])]
        outputs = [tensor for _, tensor in _named_outputs(output)]
        _claim(name, inputs, outputs, owner)
        output_shapes[name] = [tensor.shape for tensor in outputs]
        return output

    return traced


def run_keeping_buffers(model: Module, input: Any) -> Any:
    """``model(input)`` in the model's current mode, with its buffers (batch-norm running statistics)
    put back afterwards, so that drawing a graph does not change the model."""
    saved_buffers = [(buffer, buffer.data.copy()) for buffer in model.buffers()]
    try:
        return model(input)
    finally:
        for buffer, values in saved_buffers:
            buffer.data[...] = values


def trace_modules(model: Module, input: Any, depth: int = 1) -> tuple[Any, dict[int, tuple[Function, str]], dict]:
    """Run ``model(input)`` and say which module (at ``depth``) made each Function of the graph.

    Returns (output, owner, output_shapes): ``owner[id(fn)] = (fn, module name)`` for every claimed
    Function, ``output_shapes[module name]`` = the shapes the module returned. The model runs in its
    current mode (train mode shows GoogLeNet's aux heads), see :func:`run_keeping_buffers`.
    """
    if depth < 1:
        raise ValueError(f"to_dot: depth must be >= 1 (1 draws the model's children), got {depth}")
    owner: dict[int, tuple[Function, str]] = {}
    output_shapes: dict[str, list[tuple[int, ...]]] = {}
    chosen = modules_at_depth(model, depth)
    # Module.__call__ calls self.forward: an instance attribute named forward is found before the
    # class's method, so setting one wraps this module only, and deleting it restores the method.
    saved_forwards = [(module, module.__dict__.get("forward")) for _, module in chosen]
    try:
        for name, module in chosen:
            module.forward = _traced_forward(name, module.forward, owner, output_shapes)
        output = run_keeping_buffers(model, input)
    finally:
        for module, own_forward in saved_forwards:
            if own_forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = own_forward
    return output, owner, output_shapes


# ----- writing DOT ------------------------------------------------------------------------------
def to_dot(
    output: Any = None,
    collapse: str = "op",
    model: Module | None = None,
    input: Any = None,
    depth: int = 1,
) -> str:
    """The computation graph that produced ``output`` as Graphviz DOT text.

    collapse="op": one node per Function and per leaf tensor; pass ``model`` to name parameters.
    collapse="module": one node per module at ``depth`` (1: the model's children, e.g. conv1 ...
    inception3a ... fc); needs ``model`` and ``input`` and runs ``model(input)`` itself (see the
    module docstring). ``output`` may be a Tensor or a (named) tuple of them, e.g. GoogLeNet's
    ``InceptionOutputs``; call to_dot before ``backward()``, which frees the graph.
    """
    if collapse not in ("op", "module"):
        raise ValueError(f"to_dot: collapse must be 'op' or 'module', got {collapse!r}")
    owner: dict[int, tuple[Function, str]] = {}
    module_shapes: dict[str, list[tuple[int, ...]]] = {}
    if input is not None:
        if model is None or output is not None:
            raise ValueError("to_dot: pass either output=, or model= and input= (to_dot then runs model(input))")
        if collapse == "module":
            output, owner, module_shapes = trace_modules(model, input, depth)
        else:
            output = run_keeping_buffers(model, input)
    elif collapse == "module":
        raise ValueError(
            "to_dot: collapse='module' needs model= and input=: to_dot runs model(input) itself to see "
            "which module makes which op, e.g. to_dot(model=model, input=x, collapse='module')"
        )
    elif output is None:
        raise ValueError("to_dot: pass the output tensor to draw, or model= and input=")

    named_roots = _named_outputs(output)
    if not any(tensor.creator is not None for _, tensor in named_roots):
        raise ValueError(
            "to_dot: the output has no graph (no creator): it was computed under no_grad(), or from tensors "
            "that do not require grad. Compute it with gradients on (outside no_grad) to draw it"
        )
    functions, leaves, edges = walk_graph([tensor for _, tensor in named_roots])
    parameter_names = {id(p): name for name, p in model.named_parameters()} if model is not None else {}
    input_ids = {id(tensor) for _, tensor in _named_outputs(input, "input")} if input is not None else set()

    # Give every drawn thing a short node id, in forward order; a claimed Function maps to its module's box.
    node_of: dict[int, str] = {}
    lines: list[str] = []
    module_nodes: dict[str, str] = {}
    modules = dict(model.named_modules()) if model is not None else {}
    for index, fn in enumerate(functions):
        if id(fn) not in owner:
            node_of[id(fn)] = f"f{index}"
            lines.append(f"  f{index} [label={_quote(_function_label(fn))}];")
            continue
        module_name = owner[id(fn)][1]
        if module_name not in module_nodes:  # the module's first op: declare its box
            module_nodes[module_name] = f"m{len(module_nodes)}"
            shapes = ", ".join(_shape_text(shape) for shape in module_shapes.get(module_name, []))
            label = f"{module_name}\n{type(modules[module_name]).__name__}\n{shapes}"
            lines.append(f'  {module_nodes[module_name]} [label={_quote(label)}, fillcolor="lightgoldenrod1"];')
        node_of[id(fn)] = module_nodes[module_name]

    consumers: dict[int, list[Function]] = {}
    for producer, consumer in edges:
        consumers.setdefault(id(producer), []).append(consumer)
    for index, leaf in enumerate(leaves):
        if id(leaf) not in input_ids and all(id(fn) in owner for fn in consumers[id(leaf)]):
            continue  # a weight or constant used only inside module boxes: hidden in them
        node_of[id(leaf)] = f"t{index}"
        label, color = _leaf_label(leaf, input_ids, parameter_names)
        lines.append(f'  t{index} [label={_quote(label)}, shape=ellipse, fillcolor="{color}"];')
    drawn_edges: dict[tuple[str, str], None] = {}  # a dict as an ordered set: each edge drawn once
    for producer, consumer in edges:
        edge = (node_of.get(id(producer)), node_of[id(consumer)])
        if edge[0] is not None and edge[0] != edge[1]:  # None: a hidden leaf; equal: inside one module
            drawn_edges[edge] = None
    for index, (name, tensor) in enumerate(named_roots):
        if tensor.creator is None:
            continue
        label = f"{name}\n{_shape_text(tensor.shape)}"
        lines.append(f'  out{index} [label={_quote(label)}, shape=ellipse, fillcolor="palegreen"];')
        drawn_edges[(node_of[id(tensor.creator)], f"out{index}")] = None

    body = "\n".join(lines + [f"  {a} -> {b};" for a, b in drawn_edges])
    return "digraph minigrad {\n" + GRAPH_STYLE + body + "\n}\n"


# ----- drawing it -------------------------------------------------------------------------------
def render(dot_text: str, path: str | Path, format: str = "svg") -> Path:
    """Draw DOT text to an image file (svg, png or pdf) with Graphviz; returns the path written.

    Needs the ``graphviz`` Python package and the Graphviz ``dot`` program; without them this
    raises a RuntimeError saying what to install.
    """
    if format not in ("svg", "png", "pdf"):
        raise ValueError(f"render: format must be 'svg', 'png' or 'pdf', got {format!r}")
    try:
        import graphviz
    except ImportError:
        graphviz = None
    missing = [what for what, absent in (
        ("the graphviz Python package", graphviz is None),
        ("the Graphviz 'dot' program", shutil.which("dot") is None),
    ) if absent]
    if missing:
        raise RuntimeError(
            f"render: drawing a graph needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            "not installed. Install both: `pip install graphviz` and the Graphviz binary "
            "(e.g. `apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`). "
            "Without them, save the text (Path('graph.dot').write_text(dot_text)) and paste it into an "
            "online Graphviz viewer."
        )
    path = Path(path)
    path.write_bytes(graphviz.Source(dot_text).pipe(format=format))
    return path
