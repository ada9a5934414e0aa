"""Run every tutorial chapter as a test: each ``tutorials/NN_*.md`` is ONE pytest item.

The ```` ```python ```` blocks of a chapter run in order, in one shared namespace, as a student
running the chapter top to bottom (or as a Jupyter notebook opened with jupytext) would.

Why not a plugin: pytest-markdown-docs (the maintained one, 0.9.x) makes every code block its own
test. Chapters build up across blocks (a tensor made in block 2 is trained in block 7); its
``continuation`` marker re-runs all earlier blocks before each block, so a chapter's cost becomes
quadratic and its figures are redrawn again and again. It also needs a new dependency and the
``--markdown-docs`` flag. The runner below is small enough to read in one sitting.

What a chapter can rely on (the runner sets it up before the first block):

- the working directory is the chapter's folder (``tutorials/``), so ``Path("figures")`` is
  ``tutorials/figures/``; a notebook opened from ``tutorials/`` sees the same;
- ``FIGURES``: a ``pathlib.Path`` to ``tutorials/figures/`` (created), already in the namespace;
- matplotlib uses the non-interactive Agg backend (``plt.show()`` is not needed: save figures);
- fixed seeds: ``minigrad.manual_seed(0)``, ``numpy.random.seed(0)``, ``random.seed(0)``;
- a chapter may choose the kernels (``minigrad.kernels.use("fast")``): the choice ends with the chapter.

Block markers (words after ``python`` on the fence line):

- ```` ```python ````          runs;
- ```` ```python no-run ````   shown, never run by the tests (exercise skeletons, illustrations). In a
  notebook made with jupytext it is an ordinary cell: harmless for a skeleton. For code that must not run
  in a notebook either (GPU-only code on a laptop), add jupytext's own marker too,
  ```` ```python no-run active="md" ````, which makes it a raw (never executed) cell there.

GPU code that *should* run where a GPU exists is an ordinary block guarded by
``if minigrad.cuda_available():``, so tests, make_figures.py and notebooks all behave the same.

A failure names the chapter, the block number and its first line, and the traceback starts at
the failing line *of the Markdown file* (code is compiled with the ``.md`` path and its real line
numbers, so editors and tracebacks point straight at it).

``run_chapter(path)`` is also used by ``make_figures.py``.
"""

from __future__ import annotations

import os
import random
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHAPTER_NAME = re.compile(r"^\d\d_.*\.md$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
PYTHON_LANGUAGES = ("python", "py", "python3")


@dataclass
class Block:
    """One fenced code block: its source, the Markdown line its code starts on, and its markers."""

    number: int  # 1-based, counting only python blocks
    first_line: int  # line of the first code line in the .md file (1-based)
    source: str
    markers: tuple[str, ...]

    @property
    def title(self) -> str:
        first = next((line.strip() for line in self.source.splitlines() if line.strip()), "")
        return f"block {self.number} (line {self.first_line}: `{first}`)"


def parse_blocks(text: str) -> list[Block]:
    """Every python-fenced block of a Markdown text, in order (other languages are skipped)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = len(opening["indent"]), opening["fence"], opening["info"].split()
        # The block ends at a fence of the same character, at least as long (CommonMark's rule).
        end = i + 1
        while end < len(lines) and not re.match(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]):
            end += 1
        if info and info[0].lower() in PYTHON_LANGUAGES:
            # A fence indented (in a list, say) by n spaces: its code lines lose up to n leading spaces.
            code = [line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in lines[i + 1 : end]]
            blocks.append(Block(len(blocks) + 1, i + 2, "\n".join(code) + "\n", tuple(info[1:])))
        i = end + 1
    return blocks


class ChapterError(Exception):
    """A block of a chapter raised; the message says which block and where."""


def _setup_namespace(path: Path) -> dict[str, Any]:
    """Seeds, the Agg backend and the ``FIGURES`` folder; returns the chapter's fresh namespace."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy

    import minigrad

    minigrad.manual_seed(0)
    numpy.random.seed(0)  # noqa: NPY002  (on purpose: also fixes any legacy np.random.* call in a chapter)
    random.seed(0)
    figures = path.parent / "figures"
    figures.mkdir(exist_ok=True)
    # "__main__", as in a notebook; __file__ lets a chapter find files next to itself.
    return {"__name__": "__main__", "__file__": str(path), "FIGURES": figures}


def run_chapter(path: Path, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every runnable python block of the chapter at ``path``; return the namespace.

    Raises :class:`ChapterError` (chained to the original exception) naming the failing block.
    """
    import matplotlib.pyplot as plt

    from minigrad import kernels

    path = Path(path).resolve()
    namespace = _setup_namespace(path) if namespace is None else namespace
    previous_directory = os.getcwd()
    os.chdir(path.parent)
    try:
        with kernels.use(kernels.mode()):  # the mode as it is now: a chapter's own choice ends with it
            for block in parse_blocks(path.read_text()):
                if "no-run" in block.markers:
                    continue
                try:
                    # Padding with blank lines makes the line numbers of the code those of the .md file.
                    code = compile("\n" * (block.first_line - 1) + block.source, str(path), "exec")
                    exec(code, namespace)
                except Exception as error:
                    raise ChapterError(_describe_failure(path, block, error)) from error
    finally:
        os.chdir(previous_directory)
        plt.close("all")
    return namespace


def _describe_failure(path: Path, block: Block, error: Exception) -> str:
    """'<chapter>: block N (line L: `first line`) failed at line M' + the traceback from the block on."""
    # The innermost frame on a line of this block (a function from an earlier block may fail deeper down;
    # the traceback below shows that too).
    last_line = block.first_line + block.source.count("\n") - 1
    in_block = [
        frame for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename == str(path) and block.first_line <= (frame.lineno or 0) <= last_line
    ]
    where = ""
    if in_block:
        line = in_block[-1].lineno
        where = f" at line {line} (line {line - block.first_line + 1} of the block): `{in_block[-1].line}`"
    # Drop the runner's own frames: the traceback starts inside the chapter.
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(path):
        tb = tb.tb_next
    details = "".join(traceback.format_exception(type(error), error, tb))
    return f"{path.name}: {block.title} failed{where}\n{details}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".md" and CHAPTER_NAME.match(file_path.name):
        return ChapterFile.from_parent(parent, path=file_path)
    return None


class ChapterFile(pytest.File):
    def collect(self):
        yield ChapterItem.from_parent(self, name="chapter")


class ChapterItem(pytest.Item):
    def runtest(self) -> None:
        run_chapter(self.path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo, style: Any = None) -> str:
        if isinstance(excinfo.value, ChapterError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"tutorial {self.path.name}"
