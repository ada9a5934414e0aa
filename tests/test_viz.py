"""minigrad.viz: DOT text of the graph per op and per module, checked with a small DOT parser of our own."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from collections import Counter, namedtuple

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import nn
from minigrad.autograd import topological_order
from minigrad.viz import _quote, modules_at_depth, render, to_dot
from tests.test_summary import BranchNet

STATEMENT = re.compile(
    r"^\s*(?:(?:graph|node|edge) \[.*\]|(?P<source>\w+) -> (?P<target>\w+)|(?P<node>\w+) \[(?P<attributes>.*)\]);$"
)
LABEL = re.compile(r'label="((?:[^"\\]|\\.)*)"')


def parse_dot(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A strict little parser for the DOT that to_dot writes: {node id: label}, [(source, target)].

    Checks that braces balance outside string literals, that every line is one statement, that no
    node is declared twice, and that every edge's endpoints are declared nodes.
    """
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            in_string, escaped = (char != '"' or escaped), (char == "\\" and not escaped)
        elif char == '"':
            in_string = True
        elif char in "{}":
            depth += 1 if char == "{" else -1
            assert depth >= 0, "a } closes nothing"
    assert depth == 0 and not in_string, "unbalanced braces or an unterminated string"
    lines = text.strip().splitlines()
    assert lines[0] == "digraph minigrad {" and lines[-1] == "}"
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in lines[1:-1]:
        match = STATEMENT.match(line)
        assert match, f"not a DOT statement: {line!r}"
        if match["node"]:
            assert match["node"] not in nodes, f"node {match['node']} declared twice"
            label = LABEL.search(match["attributes"])
            nodes[match["node"]] = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], label[1])
        elif match["source"]:
            edges.append((match["source"], match["target"]))
    for source, target in edges:
        assert source in nodes and target in nodes, f"edge {source} -> {target} uses an undeclared node"
    assert len(set(edges)) == len(edges), "an edge is drawn twice"
    return nodes, edges


def named_edges(text: str) -> set[tuple[str, str]]:
    """The edges as (first line of source label, first line of target label)."""
    nodes, edges = parse_dot(text)
    return {(nodes[a].split("\n")[0], nodes[b].split("\n")[0]) for a, b in edges}


def random_input(*shape: int) -> minigrad.Tensor:
    return minigrad.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def check_with_graphviz(text: str) -> None:
    """Also let the real Graphviz parse it, where it is installed."""
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", "-o", "/dev/null"], input=text.encode(), check=True)


# ----- one node per op --------------------------------------------------------------------------
def test_op_graph_has_one_node_per_function_and_leaf():
    model = BranchNet()
    output = model(random_input(2, 3, 10, 10))
    text = to_dot(output, model=model)
    check_with_graphviz(text)
    nodes, edges = parse_dot(text)
    functions = topological_order(output.creator)
    op_labels = [label for node, label in nodes.items() if node.startswith("f")]
    assert Counter(label.split("\n")[0] for label in op_labels) == Counter(type(fn).__name__ for fn in functions)
    # Every parameter is a named leaf, with its shape.
    labels = set(nodes.values())
    for name, parameter in model.named_parameters():
        assert f"{name}\n({', '.join(map(str, parameter.shape))})" in labels
    # Each op's in-degree is the number of distinct tensors (or creators) it reads.
    in_degree = Counter(target for _, target in edges)
    expected = Counter()
    for fn in functions:
        producers = {id(t.creator) if t.creator is not None else id(t) for t in fn.inputs if t is not None}
        expected[type(fn).__name__] += len(producers)
    got = Counter()
    for node, label in nodes.items():
        if node.startswith("f"):
            got[label.split("\n")[0]] += in_degree[node]
    assert got == expected
    named = named_edges(text)
    assert ("fc.weight", "Linear") in named and ("block.branch2.2.weight", "Conv2d") in named
    cat = next(node for node, label in nodes.items() if label.startswith("Cat\n"))
    assert sorted(nodes[a].split("\n")[0] for a, b in edges if b == cat) == ["Conv2d", "Conv2d", "Conv2d"]
    assert "output\n(2, 5)" in labels and ("Linear", "output") in named


def test_op_graph_from_model_and_input_names_the_input():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    text = to_dot(model=model, input=random_input(2, 4))
    assert named_edges(text) == {("input", "Linear"), ("0.weight", "Linear"), ("0.bias", "Linear"),
                                 ("Linear", "ReLU"), ("ReLU", "output")}


def test_graph_with_shared_tensor_and_constant():
    x = minigrad.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = x * x + 2.0  # x feeds Mul twice: one edge; 2.0 becomes a constant leaf
    nodes, edges = parse_dot(to_dot(y))
    assert sorted(label.split("\n")[0] for label in nodes.values()) == sorted(
        ["Mul", "Add", "leaf (requires grad)", "tensor", "output"])
    assert len(edges) == 4  # x -> Mul, Mul -> Add, 2.0 -> Add, Add -> output


def test_named_tuple_outputs_are_labelled_by_field():
    Pair = namedtuple("Pair", ["left", "right"])
    x = minigrad.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    labels = set(parse_dot(to_dot(Pair(F.relu(x), F.exp(x))))[0].values())
    assert {"left\n(2, 3)", "right\n(2, 3)"} <= labels


# ----- one node per module ----------------------------------------------------------------------
def test_module_graph_of_children():
    model = BranchNet()
    text = to_dot(model=model, input=random_input(2, 3, 10, 10), collapse="module")
    check_with_graphviz(text)
    nodes, _ = parse_dot(text)
    assert "block\nBranches\n(2, 12, 5, 5)" in nodes.values()
    assert named_edges(text) == {("input", "stem"), ("stem", "block"), ("block", "grouped"), ("grouped", "pool"),
                                 ("pool", "flatten"), ("flatten", "fc"), ("fc", "output")}


def test_module_graph_at_depth_two_shows_branches_and_the_cat():
    model = BranchNet()
    text = to_dot(model=model, input=random_input(2, 3, 10, 10), collapse="module", depth=2)
    assert {name for name, _ in modules_at_depth(model, 2)} == {
        "stem.0", "stem.1", "stem.2", "block.branch1", "block.branch2", "block.branch3", "grouped", "pool",
        "flatten", "fc"}
    edges = named_edges(text)
    for branch in ("block.branch1", "block.branch2", "block.branch3"):
        assert ("stem.2", branch) in edges and (branch, "Cat") in edges  # the cat runs in Branches.forward itself
    assert ("Cat", "grouped") in edges and ("stem.0", "stem.1") in edges


def test_module_trace_leaves_the_model_as_it_was():
    model = BranchNet()  # train mode: batch norm would update its running statistics
    buffers = [b.numpy() for b in model.buffers()]
    to_dot(model=model, input=random_input(2, 3, 10, 10), collapse="module", depth=2)
    assert all("forward" not in module.__dict__ for module in model.modules())
    for before, after in zip(buffers, model.buffers()):
        np.testing.assert_array_equal(after.numpy(), before)
    assert all(module.training for module in model.modules())
    with pytest.raises(ValueError):  # the forward fails on 4 channels: forwards still restored
        to_dot(model=model, input=random_input(2, 4, 10, 10), collapse="module")
    assert all("forward" not in module.__dict__ for module in model.modules())


def test_errors_say_what_to_do():
    model = nn.Sequential(nn.Linear(4, 3))
    x = random_input(2, 4)
    with pytest.raises(ValueError, match="collapse='module' needs model= and input="):
        to_dot(model(x), collapse="module", model=model)
    with pytest.raises(ValueError, match="collapse must be 'op' or 'module'"):
        to_dot(model(x), collapse="layer")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        to_dot(model=model, input=x, collapse="module", depth=0)
    with pytest.raises(ValueError, match="either output=, or model= and input="):
        to_dot(model(x), model=model, input=x)
    with minigrad.no_grad():
        untracked = model(x)
    with pytest.raises(ValueError, match="no_grad"):
        to_dot(untracked)
    loss = model(x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        to_dot(loss)


def test_quote_escapes_dot_specials():
    assert _quote('a "b"\\c\nd') == r'"a \"b\"\\c\nd"'


# ----- GoogLeNet --------------------------------------------------------------------------------
def test_googlenet_module_graph():
    from minigrad.models import inception_v1

    model = inception_v1(width=0.25, init_weights=False, seed=0)  # train mode: the aux heads run
    text = to_dot(model=model, input=random_input(2, 3, 64, 64), collapse="module")
    check_with_graphviz(text)
    nodes, _ = parse_dot(text)
    names = {label.split("\n")[0] for label in nodes.values()}
    children = {name for name, _ in model.named_children()}
    assert children <= names  # conv1 ... inception3a ... aux1, aux2 ... fc
    assert {"input", "aux1", "aux2", "logits"} <= names
    edges = named_edges(text)
    chain = ["input", "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
             "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a",
             "inception5b", "avgpool"]
    assert set(zip(chain, chain[1:])) <= edges
    assert {("inception4a", "aux1"), ("inception4d", "aux2"), ("aux1", "aux1"), ("aux2", "aux2"),
            ("dropout", "fc"), ("fc", "logits")} <= edges
    assert all(module.training for module in model.modules())

    text = to_dot(model=model, input=random_input(1, 3, 64, 64), collapse="module", depth=2)
    edges = named_edges(text)
    for branch in ("branch1", "branch2", "branch3", "branch4"):
        assert ("maxpool2", f"inception3a.{branch}") in edges and (f"inception3a.{branch}", "Cat") in edges


# ----- rendering --------------------------------------------------------------------------------
def test_render_without_graphviz_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` now raises ImportError
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError) as info:
        render("digraph { a -> b; }", tmp_path / "graph.svg")
    message = str(info.value)
    for fragment in ("graphviz Python package", "'dot' program", "pip install graphviz", "apt-get install graphviz",
                     "online Graphviz viewer"):
        assert fragment in message
    assert not (tmp_path / "graph.svg").exists()


def test_render_with_package_but_no_binary(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", types.ModuleType("graphviz"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"needs the Graphviz 'dot' program, which is not installed"):
        render("digraph { a -> b; }", tmp_path / "graph.png", format="png")


def test_render_writes_what_graphviz_returns(monkeypatch, tmp_path):
    calls = []

    class Source:
        def __init__(self, text):
            calls.append(text)

        def pipe(self, format):
            return f"<{format} image>".encode()

    fake = types.ModuleType("graphviz")
    fake.Source = Source
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/dot")
    path = render("digraph { a -> b; }", tmp_path / "graph.png", format="png")
    assert path.read_bytes() == b"<png image>" and calls == ["digraph { a -> b; }"]
    with pytest.raises(ValueError, match="format must be"):
        render("digraph {}", tmp_path / "graph.jpg", format="jpg")


def test_render_for_real(tmp_path):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("the Graphviz dot program is not installed")
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    path = render(to_dot(model=model, input=random_input(2, 4)), tmp_path / "graph.svg")
    assert path.read_text().lstrip().startswith("<?xml") or "<svg" in path.read_text()


def test_a_fused_googlenet_draws_its_fused_module_and_an_unfused_one_the_paper_modules():
    from minigrad.models import fuse_inception_1x1, inception_v1

    def edges_at_depth_two(model):
        return named_edges(to_dot(model=model, input=random_input(1, 3, 32, 32), collapse="module", depth=2))

    plain = edges_at_depth_two(inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0))
    assert {(f"inception3a.branch{i}", "Cat") for i in (1, 2, 3, 4)} <= plain  # conv1's last op, ReLU, feeds them
    assert {("ReLU", f"inception3a.branch{i}") for i in (1, 2, 3, 4)} <= plain
    assert not any("fused" in a + b for a, b in plain)
    fused = edges_at_depth_two(fuse_inception_1x1(inception_v1(num_classes=10, stem="cifar", width=0.125, seed=0)))
    inception3a = {edge for edge in fused if "inception3a" in edge[0] + edge[1]}
    assert inception3a == {
        ("ReLU", "inception3a.fused_1x1"), ("ReLU", "inception3a.branch4"), ("inception3a.fused_1x1", "Cat"),
        ("inception3a.fused_1x1", "inception3a.branch2"), ("inception3a.fused_1x1", "inception3a.branch3"),
        ("inception3a.branch2", "Cat"), ("inception3a.branch3", "Cat"), ("inception3a.branch4", "Cat"),
    }
