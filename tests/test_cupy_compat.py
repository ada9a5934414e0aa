"""Issue 8: the CuPy path is right by construction. Every name minigrad asks of its array module, and every
array member it uses, must exist in CuPy and accept the arguments minigrad passes.

There is no GPU here, but ``import cupy`` works without one: the check reads minigrad's source
(``tests/cupy_compat_walk.py``), looks each use up in ``cupy`` / ``cupyx`` / ``cupy.ndarray`` and binds
the call's keyword names and positional count to CuPy's signature. It cannot see values (a NumPy array
passed where CuPy wants a CuPy one); the device-parametrised suite does that on a GPU.

Without CuPy the CuPy lookups skip with the reason; with ``MINIGRAD_REQUIRE_CUPY=1`` (CI) they fail.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest

from tests import cupy_compat_walk as walk

REQUIRE_CUPY = os.environ.get("MINIGRAD_REQUIRE_CUPY", "") not in ("", "0")
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minigrad"
# Where a member call on an array can only be a tensor's data (part 2 of the check).
ARRAY_CODE = ("kernels/", "functional/", "nn/", "optim/", "tensor.py", "autograd.py")
# Where a direct NumPy call on tensor data would break on the GPU.
DEVICE_CODE = ("kernels/", "functional/", "nn/layers.py", "optim/")

# Called CuPy names whose signature neither inspect nor the docstring gives: name -> why that is fine.
# Stale entries fail (test_unchecked_signatures_are_listed).
UNCHECKED_SIGNATURES: dict[str, str] = {}

# Known incompatibilities in files this check may not fix: (path, expression) -> "reported, fix pending: ...".
REPORTED_INCOMPATIBILITIES: dict[tuple[str, str], str] = {}

# Names behind a lazy CuPy submodule that loads a CUDA library on first access, so they cannot be looked up
# on a machine without the CUDA libraries: name -> (the extension module that defines it, why it is used).
# Where the library loads, the name is checked like any other; where it does not, the extension's binary
# must still contain the name.
NEEDS_CUDA_LIBRARIES: dict[str, tuple[str, str]] = {
    "cupy.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10": (
        "cupy_backends.cuda.libs.curand",
        "backend._philox_random_state: cupy.cuda.curand loads libcurand on first access",
    ),
}

# Direct NumPy calls in device code that never touch tensor data: (path, function, expression) -> why.
# Calls whose every argument is ``backend.to_numpy(...)`` or a literal need no entry.
HOST_SIDE_NUMPY_CALLS: dict[tuple[str, str, str], str] = {
    ("minigrad/nn/layers.py", "_empty", "numpy.zeros(shape, dtype=float32)"):
        "a new parameter's storage, made on the CPU from a shape when the layer is built; Module.to moves it",
    ("minigrad/nn/layers.py", "BatchNormBase.__init__", "numpy.ones(num_features, dtype=float32)"):
        "initial weight / running_var, made on the CPU when the layer is built; Module.to moves them",
    ("minigrad/nn/layers.py", "BatchNormBase.__init__", "numpy.zeros(num_features, dtype=float32)"):
        "initial bias / running_mean, made on the CPU when the layer is built; Module.to moves them",
    ("minigrad/nn/layers.py", "BatchNormBase.__init__", "numpy.array(0, dtype=numpy.int64)"):
        "the num_batches_tracked counter, made on the CPU when the layer is built",
    ("minigrad/optim/optimizer.py", "flatten_state_dict",
     "numpy.asarray(backend.to_numpy(value) if _is_array(value) else value)"):
        "arrays go through backend.to_numpy first; the other values are Python numbers (e.g. Adam's step)",
    ("minigrad/optim/optimizer.py", "flatten_state_dict", "numpy.asarray(value)"):
        "a param_groups hyperparameter (a number, a params list, a betas tuple), never tensor data",
    ("minigrad/optim/optimizer.py", "unflatten_state_dict", "numpy.asarray(flat[name])"):
        "the flat form holds NumPy arrays (from flatten_state_dict or numpy.load); load_state_dict then "
        "copies each buffer onto its parameter's device",
}


@pytest.fixture(scope="module")
def cupy_namespaces() -> dict:
    """The namespaces a use is looked up in (see ``walk.check_use``); without CuPy, a skip, or a failure
    under MINIGRAD_REQUIRE_CUPY=1."""
    try:
        import cupy
        import cupyx
        from cupy._core.flags import Flags  # the type of ``array.flags`` (no array without a GPU)

        return {"cupy": cupy, "cupyx": cupyx, "cupy.ndarray": cupy.ndarray, "cupy.ndarray.flags": Flags}
    except Exception as error:  # ImportError, or a broken install failing in its own way
        reason = f"`import cupy` failed ({type(error).__name__}: {error})"
    # Outside the except block, so the report is this one line rather than a chained traceback.
    if REQUIRE_CUPY:
        pytest.fail(f"CuPy is required (MINIGRAD_REQUIRE_CUPY=1) but {reason}: pip install cupy-cuda12x", pytrace=False)
    pytest.skip(f"{reason}; the CuPy-compatibility check needs CuPy (no GPU): pip install cupy-cuda12x")


def _sources(under: tuple[str, ...] = ("",)) -> list[tuple[str, str]]:
    return [(f.relative_to(ROOT).as_posix(), f.read_text()) for f in walk.package_files(PACKAGE, under)]


@pytest.fixture(scope="module")
def xp_walk() -> tuple[list[walk.Use], list[str]]:
    uses, unresolved = [], []
    for path, source in _sources():
        found, problems = walk.xp_uses(source, path)
        uses += found
        unresolved += problems
    return uses, unresolved


@pytest.fixture(scope="module")
def member_uses() -> list[walk.Use]:
    return [use for path, source in _sources(ARRAY_CODE) for use in walk.array_member_uses(source, path)]


def _problems(uses: list[walk.Use], namespaces: dict) -> tuple[list[str], set[str], set[str]]:
    """(messages for what CuPy lacks, called names with no readable signature, reported names still used)."""
    messages, unchecked, reported = [], set(), set()
    for use in uses:
        _, missing, load_error = walk.resolve(use, namespaces)
        if load_error and use.name in NEEDS_CUDA_LIBRARIES:
            module, _ = NEEDS_CUDA_LIBRARIES[use.name]
            binary = Path(importlib.util.find_spec(module).origin).read_bytes()
            if use.chain[-1].encode() not in binary:
                messages.append(f"{use.where}: {use.expression}: {module} does not define {use.chain[-1]}")
            continue
        message = walk.check_use(use, namespaces, unchecked)
        if message and (use.path, use.expression) in REPORTED_INCOMPATIBILITIES:
            reported.add((use.path, use.expression))
        elif message:
            messages.append(message)
    return messages, unchecked, reported


# ---------------------------------------------------------------------------
# The walks find what is there.
# ---------------------------------------------------------------------------
def test_walk_finds_the_array_module_uses(xp_walk):
    uses, unresolved = xp_walk
    assert not unresolved, "the walk cannot tell what these are; teach tests/cupy_compat_walk.py:\n" + "\n".join(
        unresolved
    )
    assert len(uses) > 50, f"only {len(uses)} array-module uses found: the walk has stopped seeing them"
    names = {use.name for use in uses}
    # One use per way minigrad spells the array module (see the walk's docstring), so a binding pattern the
    # walk stops recognising shows up here rather than as a silently shorter list.
    for expected in (
        "cupy.lib.stride_tricks.sliding_window_view",  # xp = xp_of(array), in backend.py
        "cupyx.scatter_add",  # import cupyx
        "cupy.RawKernel",  # _import_cupy().RawKernel
        "cupy.random.RandomState",  # cupy = _import_cupy()
        "cupy.einsum",  # xp = backend.xp_of(x)
        "cupy.exp",  # backend.xp_of(x).exp(x)
        "cupy.zeros_like",  # xp = param.xp (optim/adam.py)
        "cupy.ones_like",  # xp = root.xp (autograd.py)
        "cupy.broadcast_shapes",  # a.xp.broadcast_shapes
        "cupy.minimum",  # a parameter named xp (kernels/avg_pool.py)
        "cupy.ones",  # backend.get_xp(device).ones
    ):
        assert expected in names, f"no use of {expected} found; found {sorted(names)}"


def test_walk_finds_the_array_members(member_uses):
    assert len(member_uses) > 100, f"only {len(member_uses)} array member uses found"
    called = {use.chain[0] for use in member_uses if use.called}
    assert {"reshape", "astype", "sum", "transpose", "view"} <= called, sorted(called)


# ---------------------------------------------------------------------------
# Everything found exists in CuPy and accepts what minigrad passes.
# ---------------------------------------------------------------------------
def test_array_module_uses_exist_in_cupy(xp_walk, cupy_namespaces):
    messages, _, _ = _problems(xp_walk[0], cupy_namespaces)
    assert not messages, "CuPy lacks what minigrad uses:\n" + "\n".join(messages)


def test_array_members_exist_on_cupy_ndarray(member_uses, cupy_namespaces):
    messages, _, _ = _problems(member_uses, cupy_namespaces)
    assert not messages, "cupy.ndarray lacks what minigrad uses:\n" + "\n".join(messages)


def test_unchecked_signatures_are_listed(xp_walk, member_uses, cupy_namespaces):
    _, unchecked, _ = _problems(xp_walk[0] + member_uses, cupy_namespaces)
    new = sorted(unchecked - set(UNCHECKED_SIGNATURES))
    stale = sorted(set(UNCHECKED_SIGNATURES) - unchecked)
    assert not new, f"no readable CuPy signature for {new}: check them by hand and list them with a reason"
    assert not stale, f"UNCHECKED_SIGNATURES lists {stale}, whose signatures are now checked (or unused)"


def test_allow_lists_have_no_stale_entries(xp_walk, member_uses, cupy_namespaces):
    _, _, reported = _problems(xp_walk[0] + member_uses, cupy_namespaces)
    stale = sorted(set(REPORTED_INCOMPATIBILITIES) - reported)
    assert not stale, f"REPORTED_INCOMPATIBILITIES lists {stale}, which are fixed or gone: remove them"
    used = {use.name for use in xp_walk[0]}
    stale_libraries = sorted(set(NEEDS_CUDA_LIBRARIES) - used)
    assert not stale_libraries, f"NEEDS_CUDA_LIBRARIES lists {stale_libraries}, no longer used"


# ---------------------------------------------------------------------------
# The check can fail: a synthetic source using what CuPy lacks.
# ---------------------------------------------------------------------------
NEGATIVE_SOURCE = '''
from minigrad import backend


def uses_what_cupy_lacks(x, mask):
    xp = backend.xp_of(x)
    total = xp.sum(x, where=mask)
    table = xp.fromregex("data.txt", "([0-9]+)", [("n", int)])
    picked = xp.take(x, mask, 0, None, "clip")
    peak = xp.maximum.reduce(x, axis=0, where=mask)
    shifted = xp.add(x, 1, where=mask)
    x.resize((2, 3))
    x @= mask
    x.flags.writeable = False
    return x.sum(axis=0, where=mask)
'''


def test_the_check_reports_what_cupy_lacks(cupy_namespaces):
    uses, unresolved = walk.xp_uses(NEGATIVE_SOURCE, "negative.py")
    uses += walk.array_member_uses(NEGATIVE_SOURCE, "negative.py")
    assert not unresolved
    messages, _, _ = _problems(uses, cupy_namespaces)
    report = "\n".join(messages)
    expected = {  # line in NEGATIVE_SOURCE -> a fragment of its message
        7: "xp.sum(x, where=mask): cupy.sum",
        8: "CuPy has no cupy.fromregex",
        9: "too many positional arguments",
        10: "cupy.maximum.reduce",
        11: "xp.add(x, 1, where=mask): cupy.add",
        12: "CuPy has no cupy.ndarray.resize",
        13: "CuPy has no cupy.ndarray.__imatmul__",
        14: "CuPy has no cupy.ndarray.flags.writeable",
        15: "x.sum(axis=0, where=mask): cupy.ndarray.sum",
    }
    for line, fragment in expected.items():
        assert any(m.startswith(f"negative.py:{line}: ") and fragment in m for m in messages), (
            f"line {line} ({fragment!r}) not reported; got:\n{report}"
        )
    assert len(messages) == len(expected), report


BINDINGS_SOURCE = '''
import cupyx
from minigrad import backend


def through_a_tensor(t):
    return t.xp.zeros(3), backend.get_xp("cuda").ones(2)


def through_a_parameter(xp):
    return xp.float32


def through_an_alias(x):
    module = backend.xp_of(x)
    alias = module
    return alias.lib.stride_tricks.sliding_window_view(x, 3, axis=0)


def in_a_closure(x):
    def inner():
        return xp.add.at(x, [0], 1)

    xp = backend.xp_of(x)
    return inner, cupyx.scatter_add(x, [0], 1)


def through_getattr(xp, name):
    return getattr(xp, "int8"), getattr(xp, name)


def unbound(x):
    return xp.zeros(1)
'''


def test_the_walk_follows_every_binding_pattern():
    uses, unresolved = walk.xp_uses(BINDINGS_SOURCE, "bindings.py")
    assert {(use.line, use.name) for use in uses} == {
        (7, "cupy.zeros"), (7, "cupy.ones"), (11, "cupy.float32"),
        (17, "cupy.lib.stride_tricks.sliding_window_view"), (22, "cupy.add.at"), (25, "cupyx.scatter_add"),
        (29, "cupy.int8"),
    }
    sliding = next(use for use in uses if use.chain[-1] == "sliding_window_view")
    assert (sliding.called, sliding.positional, sliding.keywords) == (True, 2, ("axis",))
    assert [problem.split(": ")[0] for problem in unresolved] == ["bindings.py:29", "bindings.py:33"]


def test_docstring_signatures_parse():
    maximum = walk.signature_from_doc(r"maximum(x1, x2, /, out=None, \*, casting='same_kind', dtype=None)")
    assert list(maximum.parameters) == ["x1", "x2", "out", "casting", "dtype"]
    assert maximum.parameters["casting"].kind.name == "KEYWORD_ONLY"
    kernel = walk.signature_from_doc("RawKernel(str code, str name, tuple options=(), *, bool jit=False)")
    assert list(kernel.parameters) == ["code", "name", "options", "jit"]
    method = walk.signature_from_doc("_ndarray_base.reshape(self, *shape, order='C', copy=None)")
    assert list(method.parameters) == ["self", "shape", "order", "copy"]
    assert walk.signature_from_doc("Gets the current CUDA stream.") is None


# ---------------------------------------------------------------------------
# Only backend.py knows CuPy; device code calls no NumPy function on tensor data.
# ---------------------------------------------------------------------------
def test_only_backend_imports_cupy():
    found = [line for path, source in _sources() for line in walk.cupy_imports(source, path)]
    outside = [line for line in found if not line.startswith("minigrad/backend.py:")]
    assert not outside, "only minigrad/backend.py may import CuPy:\n" + "\n".join(outside)
    assert found, "backend.py imports cupy and cupyx: the walk should see it"
    negative = "import importlib\nfrom cupyx import scatter_add\nm = importlib.import_module('cupy.cuda')\n"
    assert [line.split(": ")[0] for line in walk.cupy_imports(negative, "x.py")] == ["x.py:2", "x.py:3"]


def _host_side_by_construction(call: walk.NumpyCall) -> bool:
    """Every argument is a literal or already a NumPy array made by ``backend.to_numpy``."""
    return all(
        isinstance(arg, ast.Constant)
        or (isinstance(arg, ast.Call) and walk.dotted_name(arg.func) == "backend.to_numpy")
        for arg in call.arguments
    )


def test_device_code_calls_no_numpy_function_on_tensor_data():
    calls = [call for path, source in _sources(DEVICE_CODE) for call in walk.numpy_calls(source, path)]
    assert calls, "nn/layers.py builds its parameters with numpy.zeros: the walk should see it"
    keys = {(call.path, call.function, call.expression) for call in calls}
    unexplained = [
        f"{call.path}:{call.line} in {call.function}: {call.expression}"
        for call in calls
        if (call.path, call.function, call.expression) not in HOST_SIDE_NUMPY_CALLS
        and not _host_side_by_construction(call)
    ]
    assert not unexplained, (
        "NumPy called in device code (fails on CuPy arrays): use backend.xp_of(x) instead, or, if it never sees "
        "tensor data, list it in HOST_SIDE_NUMPY_CALLS with the reason:\n" + "\n".join(unexplained)
    )
    stale = sorted(set(HOST_SIDE_NUMPY_CALLS) - keys)
    assert not stale, f"HOST_SIDE_NUMPY_CALLS lists calls no longer in the source: {stale}"
    negative = "import numpy as np\nfrom numpy import sum as total\ndef f(x):\n    return np.abs(x) + total(x)\n"
    assert [(c.name, c.function) for c in walk.numpy_calls(negative, "n.py")] == [
        ("numpy.abs", "f"), ("numpy.sum", "f")
    ]
