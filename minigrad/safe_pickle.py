"""Unpickling with an allow-list: the one guard every pickle minigrad reads goes through.

Why: unpickling runs code. A pickle names globals by module and name (``os.system``, say) and asks for
them to be called while it loads, so ``pickle.load`` on a file from the internet is as dangerous as
running a script from it. Every global a pickle names passes through ``Unpickler.find_class``, both in
the ``GLOBAL``/``STACK_GLOBAL`` opcodes and in the older ``INST``, ``OBJ`` and extension-registry paths,
so an unpickler whose ``find_class`` returns only what is on a list, and raises for everything else,
cannot be made to call anything that is not on the list. The allowed objects must themselves be safe
to call with any arguments (a dict constructor, a function that checks its inputs).

Used by :mod:`minigrad.data.cifar` (NumPy arrays in the CIFAR archives) and
:mod:`minigrad.models.torch_pickle` (tensors in PyTorch ``.pth`` files). Imports only the standard
library, so any layer of the package may use it.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, ClassVar


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed`` and refuses every other one.

    Subclasses set ``allowed``: {(module, name): object}. ``source`` names the file (or member) in the
    refusal message, and ``hint`` says what the file was expected to hold and what to do instead.
    The refusal is a ``pickle.UnpicklingError`` raised before the global is imported, let alone called.
    """

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {}
    hint: ClassVar[str] = "only plain data is allowed"

    def __init__(self, file: Any, *, source: str = "a pickle", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name} from {self.source}: {self.hint} (loading arbitrary "
            f"globals could run code, so nothing else is imported or called)"
        )
