"""Read minigrad's source with ``ast`` and list what it asks of the array module, to check it against CuPy.

Three walks, each over one file's source text:

- :func:`xp_uses`: every attribute chain on an *array module* (``xp.zeros``, ``xp.lib.stride_tricks.x``,
  ``xp.add.at``, ``xp.float32``), with the keyword names and the positional count of each call.
  An expression is an array module when it is one of the ways minigrad spells it:
  ``backend.xp_of(a)`` / ``backend.get_xp(d)`` (or ``xp_of``/``get_xp`` inside backend.py),
  ``_import_cupy()``, ``<anything>.xp`` (``tensor.xp``, ``self.xp``, ``param.xp``), a parameter named
  ``xp``, a name assigned from one of these (``xp = backend.xp_of(x)``), or ``import cupy``/``cupyx``.
- :func:`array_member_uses`: every ``.name`` / ``.name(...)`` whose name is a member of
  ``numpy.ndarray`` (``reshape``, ``astype``, ``strides``, ``T``), the flag read by ``.flags.<flag>``,
  plus ``@=`` (``__imatmul__``).
  Receivers that cannot be arrays are left out: ``self``/``cls``, names bound by an import (modules,
  classes, functions) and array modules (those are :func:`xp_uses`).
- :func:`numpy_calls` and :func:`cupy_imports`: direct calls into NumPy, and imports of CuPy.

:func:`check_use` then looks each use up in CuPy (``cupy``, ``cupyx``, ``cupy.ndarray`` or its flags) and returns
what CuPy lacks, or None. Signatures come from :func:`inspect.signature` or, for Cython functions and
ufuncs, from the signature CuPy embeds as the first line of their docstring.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

XP_FACTORIES = {"xp_of", "get_xp", "_import_cupy"}  # functions that return an array module
CUPY_PACKAGES = ("cupy", "cupyx", "cupy_backends")
# Members of numpy.ndarray a method walk looks for (dunders are operators: checked through @= only).
NDARRAY_MEMBERS = frozenset(name for name in dir(numpy.ndarray) if not name.startswith("__"))
NOT_ARRAYS = {"self", "cls"}
IMPORT_FUNCTIONS = ("importlib.import_module", "import_module", "__import__")


@dataclass(frozen=True)
class Use:
    """One use of CuPy's API found in the source.

    kind: "xp" (chain on the array module ``root``) or "method" (member of ``cupy.ndarray``);
    chain: the attribute names after the module / array, e.g. ("add", "at"); called: whether the chain
    is called; positional / keywords: what the call passes (``starred`` when ``*a``/``**k`` hide some).
    """

    path: str
    line: int
    expression: str
    kind: str
    root: str
    chain: tuple[str, ...]
    called: bool = False
    positional: int = 0
    keywords: tuple[str, ...] = ()
    starred: bool = False

    @property
    def name(self) -> str:
        """The dotted name checked, e.g. ``cupy.add.at`` or ``cupy.ndarray.reshape``."""
        return ".".join((self.root, *self.chain))

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _short(node: ast.AST, limit: int = 100) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _call_shape(node: ast.AST, parents: dict) -> tuple[bool, int, tuple[str, ...], bool]:
    """(called, positional count, keyword names, starred) for ``node`` used as a call's function."""
    call = parents.get(node)
    if not (isinstance(call, ast.Call) and call.func is node):
        return False, 0, (), False
    starred = any(isinstance(arg, ast.Starred) for arg in call.args) or any(k.arg is None for k in call.keywords)
    keywords = tuple(k.arg for k in call.keywords if k.arg is not None)
    return True, sum(not isinstance(arg, ast.Starred) for arg in call.args), keywords, starred


# ---------------------------------------------------------------------------
# Scopes: which names hold an array module, function by function.
# ---------------------------------------------------------------------------
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(scope: ast.AST):
    """The nodes of ``scope``'s body, not descending into nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _module_root(node: ast.AST, xp_names: dict[str, str]) -> str | None:
    """"cupy"/"cupyx" when ``node`` evaluates to an array module (see the module docstring), else None."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        return "cupy" if name in XP_FACTORIES else None
    if isinstance(node, ast.Attribute) and node.attr == "xp":
        return "cupy"
    if isinstance(node, ast.Name):
        return xp_names.get(node.id)
    return None


def _scope_names(scope: ast.AST, inherited: dict[str, str]) -> dict[str, str]:
    """Names holding an array module inside ``scope``: inherited ones, ``xp`` parameters, assignments."""
    names = dict(inherited)
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        arguments = scope.args
        for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
            if arg.arg == "xp":
                names["xp"] = "cupy"
            else:
                names.pop(arg.arg, None)  # a parameter shadows an outer array module of that name
    changed = True
    while changed:  # to a fixed point, so ``module = xp`` aliases are followed
        changed = False
        for node in _own_nodes(scope):
            bound: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Assign):
                root = _module_root(node.value, names)
                bound = [(target.id, root) for target in node.targets if isinstance(target, ast.Name)]
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                if isinstance(node.target, ast.Name):
                    bound = [(node.target.id, _module_root(node.value, names))]
            elif isinstance(node, ast.Import):
                bound = [
                    ((alias.asname or alias.name).split(".")[0], alias.name.split(".")[0])
                    for alias in node.names
                    if alias.name.split(".")[0] in ("cupy", "cupyx") and not (alias.asname and "." in alias.name)
                ]
            for name, root in bound:
                if root is not None and names.get(name) != root:
                    names[name] = root
                    changed = True
    return names


def _scopes(tree: ast.Module):
    """Yield ``(scope, names)`` for the module and every function, lambda and class in it."""
    stack: list[tuple[ast.AST, dict[str, str]]] = [(tree, {})]
    while stack:
        scope, outer = stack.pop()
        # A class body's names are not visible inside its methods; a function's are (closures).
        names = _scope_names(scope, outer)
        yield scope, names
        inner = outer if isinstance(scope, ast.ClassDef) else names
        stack.extend((node, inner) for node in _own_nodes(scope) if isinstance(node, _SCOPES))


# ---------------------------------------------------------------------------
# Walk 1: the array module's namespace.
# ---------------------------------------------------------------------------
def xp_uses(source: str, path: str) -> tuple[list[Use], list[str]]:
    """Every attribute chain on an array module in ``source``; and the problems the walk cannot
    resolve (a name ``xp`` with no known binding, ``getattr(xp, <not a string>)``), as ``path:line: text``."""
    tree = ast.parse(source)
    parents = _parents(tree)
    uses: list[Use] = []
    unresolved: list[str] = []
    for scope, names in _scopes(tree):
        for node in _own_nodes(scope):
            if isinstance(node, ast.Attribute) and not (
                isinstance(parents.get(node), ast.Attribute) and parents[node].value is node
            ):
                # The outermost attribute of a chain: walk in to its base, stopping at an array module.
                chain, base = [], node
                while isinstance(base, ast.Attribute) and _module_root(base, names) is None:
                    chain.append(base.attr)
                    base = base.value
                root = _module_root(base, names)
                if root is not None and chain:
                    called, positional, keywords, starred = _call_shape(node, parents)
                    uses.append(Use(path, node.lineno, _short(parents[node] if called else node), "xp", root,
                                    tuple(reversed(chain)), called, positional, keywords, starred))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and node.args and _module_root(node.args[0], names) is not None):
                attribute = node.args[1] if len(node.args) > 1 else None
                if isinstance(attribute, ast.Constant) and isinstance(attribute.value, str):
                    uses.append(Use(path, node.lineno, _short(node), "xp", _module_root(node.args[0], names),
                                    tuple(attribute.value.split("."))))
                else:
                    unresolved.append(f"{path}:{node.lineno}: {_short(node)} (attribute name not a string literal)")
            elif isinstance(node, ast.Name) and node.id == "xp" and "xp" not in names:
                unresolved.append(f"{path}:{node.lineno}: name 'xp' with no binding the walk knows ({_short(node)})")
    return uses, unresolved


# ---------------------------------------------------------------------------
# Walk 2: members of the arrays themselves.
# ---------------------------------------------------------------------------
def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _module_getters(tree: ast.Module, imported: set[str]) -> set[str]:
    """Functions that only ever return an imported name, such as tensor.py's ``_functional()`` (a lazy
    ``from minigrad import functional``): what they return is a module, never an array."""
    getters = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
            if returns and all(isinstance(r.value, ast.Name) and r.value.id in imported for r in returns):
                getters.add(node.name)
    return getters


def array_member_uses(source: str, path: str) -> list[Use]:
    """Every ``.name`` / ``.name(...)`` with ``name`` a member of numpy.ndarray, on a receiver that may be an
    array; and every ``a @= b`` (as the member ``__imatmul__``)."""
    tree = ast.parse(source)
    parents = _parents(tree)
    imported = _imported_names(tree)
    not_arrays = NOT_ARRAYS | imported
    getters = _module_getters(tree, imported)
    uses: list[Use] = []
    for scope, names in _scopes(tree):
        for node in _own_nodes(scope):
            if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.MatMult):
                uses.append(Use(path, node.lineno, _short(node), "method", "cupy.ndarray", ("__imatmul__",)))
            if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)):
                continue
            if node.attr not in NDARRAY_MEMBERS or _module_root(node.value, names) is not None:
                continue
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in not_arrays:
                continue
            if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and (
                receiver.func.id == "super" or receiver.func.id in getters
            ):
                continue
            called, positional, keywords, starred = _call_shape(node, parents)
            uses.append(Use(path, node.lineno, _short(parents[node] if called else node), "method", "cupy.ndarray",
                            (node.attr,), called, positional, keywords, starred))
            flag = parents.get(node)
            if node.attr == "flags" and isinstance(flag, ast.Attribute) and flag.value is node:
                # CuPy's flags hold only c_contiguous, f_contiguous and owndata (NumPy's also writeable, ...).
                uses.append(Use(path, node.lineno, _short(flag), "method", "cupy.ndarray.flags", (flag.attr,)))
    return uses


# ---------------------------------------------------------------------------
# Walk 3: NumPy called directly, CuPy imported.
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NumpyCall:
    """A call ``numpy.<name>(...)``: where, in which function (``Class.method``), and the expression."""

    path: str
    line: int
    function: str
    name: str
    expression: str
    arguments: tuple[ast.expr, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.function, self.name)


def numpy_calls(source: str, path: str) -> list[NumpyCall]:
    """Every call of a function reached through an ``import numpy`` (any alias) or ``from numpy import``."""
    tree = ast.parse(source)
    modules, functions = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name for alias in node.names if alias.name.split(".")[0] == "numpy")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy":
            functions.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    calls: list[NumpyCall] = []

    def visit(node: ast.AST, qualname: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, f"{qualname}.{child.name}" if qualname else child.name)
                continue
            if isinstance(child, ast.Call):
                dotted = dotted_name(child.func)
                name = None
                if dotted and dotted.split(".")[0] in modules:
                    name = "numpy." + dotted.split(".", 1)[1] if "." in dotted else None
                elif dotted in functions:
                    name = functions[dotted]
                if name:
                    calls.append(NumpyCall(path, child.lineno, qualname or "<module>", name, _short(child),
                                           tuple(child.args) + tuple(k.value for k in child.keywords)))
            visit(child, qualname)

    visit(tree, "")
    return calls


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def cupy_imports(source: str, path: str) -> list[str]:
    """``path:line: statement`` for every import of cupy/cupyx (also through importlib or __import__)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Call) and dotted_name(node.func) in IMPORT_FUNCTIONS:
            first = node.args[0] if node.args else None
            modules = [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else []
        if any(module.split(".")[0] in CUPY_PACKAGES for module in modules):
            found.append(f"{path}:{node.lineno}: {_short(node)}")
    return found


# ---------------------------------------------------------------------------
# Looking a use up in CuPy.
# ---------------------------------------------------------------------------
_DOC_SIGNATURE = re.compile(r"^\s*(?:[\w.]+\.)?\w+\((?P<params>.*)\)\s*(?:->.*)?$")


def _split_top_level(text: str) -> list[str]:
    """Split on the commas not inside brackets or quotes."""
    pieces, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(current)
            current = ""
            continue
        current += char
    return [piece.strip() for piece in pieces + [current] if piece.strip()]


def signature_from_doc(first_line: str) -> inspect.Signature | None:
    """The signature in a Cython docstring's first line, e.g. ``maximum(x1, x2, /, out=None, \\*, dtype=None)``
    or ``RawKernel(str code, str name, tuple options=())``; None when the line is not a signature.

    Cython type names are dropped and defaults replaced by None (only names and kinds matter here).
    """
    match = _DOC_SIGNATURE.match(first_line.replace("\\", ""))
    if not match:
        return None
    params = []
    for piece in _split_top_level(match.group("params")):
        name, has_default = piece.split("=", 1)[0].strip(), "=" in piece
        if name not in ("/", "*"):
            stars = name[: len(name) - len(name.lstrip("*"))]
            name = stars + name.lstrip("*").split()[-1] if name.lstrip("*").split() else name  # "int n" -> "n"
        params.append(f"{name}=None" if has_default else name)
    source = f"def f({', '.join(params)}): pass"
    try:
        ast.parse(source)
    except SyntaxError:
        return None
    namespace: dict[str, Any] = {}
    exec(compile(source, "<cupy docstring signature>", "exec"), namespace)  # a def built from names only
    return inspect.signature(namespace["f"])


def signature_of(obj: Any) -> inspect.Signature | None:
    """``inspect.signature(obj)``, else the docstring's embedded signature, else None.

    A leading ``self`` is dropped: methods are checked as called on an instance.
    """
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        doc = (getattr(obj, "__doc__", None) or "").strip()
        signature = signature_from_doc(doc.splitlines()[0]) if doc else None
    if signature is None:
        return None
    params = list(signature.parameters.values())
    if params and params[0].name == "self":
        signature = signature.replace(parameters=params[1:])
    return signature


def resolve(use: Use, namespaces: dict[str, Any]) -> tuple[Any, str | None, bool]:
    """``(object, None, False)`` for the object ``use`` names in CuPy; ``(None, missing, load_error)`` when a
    part is missing, ``load_error`` True when looking it up raised something else than AttributeError
    (a lazy submodule such as ``cupy.cuda.curand`` loads a CUDA library that this machine may not have)."""
    obj = namespaces[use.root]
    for depth, attribute in enumerate(use.chain):
        name = ".".join((use.root, *use.chain[: depth + 1]))
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            return None, name, False
        except Exception as error:
            return None, f"{name} ({type(error).__name__}: {' '.join(str(error).split())})", True
    return obj, None, False


def _numpy_twin(chain: tuple[str, ...]) -> Any:
    """The object at ``numpy.<chain>``, or a fresh sentinel when NumPy has none."""
    obj: Any = numpy
    for attribute in chain:
        obj = getattr(obj, attribute, None)
    return obj if obj is not None else object()


def check_use(use: Use, namespaces: dict[str, Any], unchecked: set[str]) -> str | None:
    """What CuPy lacks for ``use`` (a message naming file:line and the expression), or None when it fits.

    namespaces: {"cupy": cupy, "cupyx": cupyx, "cupy.ndarray": cupy.ndarray, "cupy.ndarray.flags": the class
    of an array's ``.flags``}. A called name whose
    signature cannot be read is added to ``unchecked`` (existence is still checked).
    """
    obj, missing, _ = resolve(use, namespaces)
    if missing:
        return f"{use.where}: {use.expression}: CuPy has no {missing}"
    if not use.called or (use.kind == "xp" and obj is _numpy_twin(use.chain)):
        return None  # a plain attribute, or NumPy's own object re-exported (a dtype): behaves as in NumPy
    signature = signature_of(obj)
    if signature is None:
        unchecked.add(use.name)
        return None
    dummies = [None] * use.positional
    keywords = dict.fromkeys(use.keywords)
    try:
        if use.starred:
            signature.bind_partial(**keywords)
        else:
            signature.bind(*dummies, **keywords)
    except TypeError as error:
        passed = ", ".join([f"{use.positional} positional"] + [f"{k}=" for k in use.keywords])
        return f"{use.where}: {use.expression}: {use.name}{signature} does not accept ({passed}): {error}"
    return None


def package_files(package: Path, under: tuple[str, ...] = ("",)) -> list[Path]:
    """The .py files of ``package`` whose path relative to it starts with one of ``under``."""
    files = sorted(package.rglob("*.py"))
    return [f for f in files if any(f.relative_to(package).as_posix().startswith(prefix) for prefix in under)]
