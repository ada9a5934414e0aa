"""Run every tutorial chapter as a test: each ``tutorials/NN_*.md`` is ONE pytest item.

The runner itself is :mod:`minigrad.tutorials` (``parse.py`` reads a chapter, ``runner.py`` runs it); this file
only hands the chapters to pytest. The ```` ```python ```` blocks of a chapter run in order, in one shared
namespace, as a student running the chapter top to bottom (or as the notebook ``minigrad tutorials --notebooks``
writes) would.

Why not a plugin: pytest-markdown-docs (the maintained one, 0.9.x) makes every code block its own test.
Chapters build up across blocks (a tensor made in block 2 is trained in block 7); its ``continuation`` marker
re-runs all earlier blocks before each block, so a chapter's cost becomes quadratic and its figures are redrawn
again and again. It also needs a new dependency, and it checks neither printed output nor the prose.

What a chapter can rely on (the runner sets it up before the first block):

- the working directory is the chapter's folder (``tutorials/``), so ``Path("..")`` is the repository;
- ``FIGURES``: a ``pathlib.Path`` to the folder for figures (created), already in the namespace. Here it is a
  temporary folder, so the tests never touch the tracked ``tutorials/figures/`` (each chapter's test fails if
  that folder changed); only ``python tutorials/make_figures.py`` writes there. A chapter must not rebind it;
- matplotlib uses the non-interactive Agg backend (``plt.show()`` is not needed: save figures);
- fixed seeds: ``minigrad.manual_seed(0)``, ``numpy.random.seed(0)``, ``random.seed(0)``;
- a chapter may choose the kernels (``minigrad.kernels.use("fast")``): the choice ends with the chapter.

Block markers (words after ``python`` on the fence line):

- ```` ```python ````                 runs;
- ```` ```python no-run ````          shown, never run (illustrations, GPU-only code): a raw cell in the notebooks
  ``minigrad tutorials --notebooks`` writes (for jupytext users, add its ``active="md"`` marker too);
- ```` ```python exercise=NAME ````   an exercise's skeleton: shown, not run here; ``minigrad exercises DIR``
  writes it to ``DIR/NN_chapter/NAME.py`` for a student to fill in;
- ```` ```python check=NAME ````      its check (shown, or inside ``<details>``): runs right after the solution
  here, and on the student's file in ``minigrad check DIR``;
- ```` ```python solution=NAME ````   its solution, inside ``<details><summary>Solution</summary>`` at the
  chapter's end: runs where it stands, then the check. The suite proves that each check fails on its unfilled
  skeleton (tests/tutorials/test_exercises.py).

What is checked besides "no block raises":

- an ```` ```output ```` block right after a python block: what that block printed must equal it (trailing
  whitespace ignored; a line ``...`` matches any lines, ``...`` inside a line any text);
- ``<span data-value="EXPR">TEXT</span>`` in the prose: after the last block, ``str(EXPR)`` (or
  ``format(EXPR, SPEC)`` with ``data-format="SPEC"``) must equal TEXT; a machine-dependent number is
  ``<span data-measured="EXPR">TEXT</span>``: EXPR must evaluate, TEXT is not compared, and its paragraph says
  "measured here".

GPU code that *should* run where a GPU exists is an ordinary block guarded by ``if minigrad.cuda_available():``,
so tests, make_figures.py and notebooks all behave the same.

A failure names the chapter, the block number and its first line, and the traceback starts at the failing line
*of the Markdown file* (code is compiled with the ``.md`` path and its real line numbers, so editors and
tracebacks point straight at it). Wrong output blocks and spans are listed together, each with its line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from minigrad.tutorials.parse import CHAPTER_NAME, ChapterSyntaxError
from minigrad.tutorials.runner import ChapterError, run_chapter

TRACKED_FIGURES = Path(__file__).resolve().parent / "figures"


def figures_state(folder: Path = TRACKED_FIGURES) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime in ns) of every file in ``folder``: what a test must leave as it found it."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*")} if folder.is_dir() else {}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".md" and CHAPTER_NAME.match(file_path.name):
        return ChapterFile.from_parent(parent, path=file_path)
    return None


class ChapterFile(pytest.File):
    def collect(self):
        yield ChapterItem.from_parent(self, name="chapter")


class ChapterItem(pytest.Item):
    def runtest(self) -> None:
        tracked = self.path.parent / "figures"
        before = figures_state(tracked)
        with tempfile.TemporaryDirectory(prefix=f"minigrad_{self.path.stem}_") as folder:
            run_chapter(self.path, figures=Path(folder) / "figures")
        after = figures_state(tracked)
        changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
        if changed:
            raise ChapterError(f"{self.path.name}: running it changed {tracked} ({', '.join(changed)}); a chapter "
                               "writes its figures to FIGURES, which is a temporary folder under the tests")

    def repr_failure(self, excinfo: pytest.ExceptionInfo, style: Any = None) -> str:
        if isinstance(excinfo.value, (ChapterError, ChapterSyntaxError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"tutorial {self.path.name}"
