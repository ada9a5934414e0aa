"""Running a chapter: its python blocks in order in one namespace, checking what they print and what the prose says.

:func:`run_chapter` is what ``pytest tutorials``, ``tutorials/make_figures.py``, ``minigrad check`` and the tests
use. What a chapter can rely on (set up before its first block):

- the working directory is the chapter's folder (``tutorials/``), so ``Path("..")`` is the repository;
- ``FIGURES``: a ``pathlib.Path`` to the folder figures go to (created), already in the namespace. Under pytest
  and ``minigrad check`` it is a temporary folder; only ``tutorials/make_figures.py`` passes
  ``tutorials/figures/``. A chapter must not rebind it (the runner fails the chapter if it does);
- matplotlib uses the non-interactive Agg backend (``plt.show()`` is not needed: save figures);
- fixed seeds: ``minigrad.manual_seed(0)``, ``numpy.random.seed(0)``, ``random.seed(0)``;
- a chapter may choose the kernels (``minigrad.kernels.use("fast")``): the choice ends with the chapter.

What the runner checks, besides the blocks raising nothing:

- a block followed by an ```` ```output ```` block must print (to ``sys.stdout``) text equal to it, trailing
  whitespace ignored; a line ``...`` matches any lines, ``...`` in a line any text. All mismatches of a chapter
  are reported together, each with a diff naming the file and the output block's line;
- after the last block, each ``<span data-value="EXPR">TEXT</span>`` of the prose: ``str(EXPR)`` (or
  ``format(EXPR, SPEC)`` with ``data-format="SPEC"``) evaluated in the chapter's namespace must equal TEXT;
  a ``data-measured`` span must evaluate, and its TEXT is not compared;
- exercises: a skeleton (``exercise=NAME``) is not run; its solution (``solution=NAME``) runs where it stands,
  then its check (``check=NAME``), wherever the check is written. How an exercise runs can be replaced
  (``exercises=``): ``minigrad check`` runs a student's file instead of the solution.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import random
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minigrad.tutorials.parse import Block, Chapter, Exercise, Span, output_matches, parse_chapter

# How an exercise runs, at its solution's place: (chapter, exercise, namespace) -> the output mismatches found.
ExerciseHandler = Callable[[Chapter, Exercise, dict], "list[str] | None"]


class ChapterError(Exception):
    """A chapter failed: a block raised, printed the wrong thing, or a span disagrees; the message says where."""


def setup_namespace(path: Path, figures: Path) -> dict[str, Any]:
    """Seeds, the Agg backend and the ``FIGURES`` folder; returns the chapter's fresh namespace."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy

    import minigrad

    minigrad.manual_seed(0)
    numpy.random.seed(0)  # noqa: NPY002  (on purpose: also fixes any legacy np.random.* call in a chapter)
    random.seed(0)
    figures.mkdir(parents=True, exist_ok=True)
    # "__main__", as in a notebook; __file__ lets a chapter find files next to itself.
    return {"__name__": "__main__", "__file__": str(path), "FIGURES": figures}


def compile_block(path: Path, block: Block) -> Any:
    """The block's code compiled with the .md path and its real line numbers (tracebacks point into the file)."""
    return compile("\n" * (block.first_line - 1) + block.source, str(path), "exec")


def run_block(chapter: Chapter, block: Block, namespace: dict, mismatches: list[str] | None = None) -> None:
    """Run one block in ``namespace``; raise :class:`ChapterError` if it raises. When the block has an output
    block and ``mismatches`` is a list, compare what it printed and append a described mismatch."""
    path = chapter.path
    compare = block.output is not None and mismatches is not None
    printed = io.StringIO()
    try:
        code = compile_block(path, block)
        with contextlib.redirect_stdout(printed) if compare else contextlib.nullcontext():
            exec(code, namespace)
    except Exception as error:
        raise ChapterError(describe_failure(path, block, error)) from error
    finally:
        if compare:
            sys.stdout.write(printed.getvalue())  # still shown (pytest -s, make_figures.py --verbose)
    if compare and not output_matches(block.output.source, printed.getvalue()):
        mismatches.append(describe_mismatch(path, block, printed.getvalue()))


def describe_mismatch(path: Path, block: Block, printed: str) -> str:
    """'<chapter>: block N printed something else than its output block at line M' and a diff."""
    where = f"{path.name} line {block.output.fence_line}"
    diff = difflib.unified_diff(block.output.source.splitlines(), printed.splitlines(),
                                f"the output block ({where})", "what the block printed", lineterm="")
    return (f"{path.name}: {block.title} printed something else than its output block at line "
            f"{block.output.fence_line} ('...' lines match any lines, '...' in a line any text):\n" + "\n".join(diff))


def check_span(span: Span, namespace: dict, path: Path) -> str | None:
    """None when the span is right; else what is wrong with it (naming the file, line, expected and got)."""
    where = f"{path.name}:{span.line}: {span.source}"
    try:
        value = eval(compile(span.expression, f"{path}:{span.line}", "eval"), namespace)
        shown = str(value) if span.format is None else format(value, span.format)
    except Exception as error:
        return f"{where}: evaluating {span.expression!r} raised {type(error).__name__}: {error}"
    if not span.measured and shown != span.text:
        how = "str(...)" if span.format is None else f"format(..., {span.format!r})"
        return f"{where}: expected {span.text!r}, got {shown!r} ({how} of {span.expression})"
    return None


def solution_then_check(chapter: Chapter, exercise: Exercise, namespace: dict) -> list[str]:
    """The default way an exercise runs in a chapter: its solution in the chapter's namespace, then its check.
    Returns the output-block mismatches of the two."""
    mismatches: list[str] = []
    run_block(chapter, exercise.solution, namespace, mismatches)
    run_block(chapter, exercise.check, namespace, mismatches)
    return mismatches


def run_chapter(path: Path | str, namespace: dict[str, Any] | None = None, *, figures: Path | str | None = None,
                exercises: ExerciseHandler | None = None, stop_after: str | None = None,
                check_values: bool = True, chapter: Chapter | None = None) -> dict[str, Any]:
    """Run the chapter at ``path`` top to bottom and check its output blocks and value spans; return the namespace.

    - namespace: the namespace to run in (default: a fresh one from :func:`setup_namespace`; one passed in
      keeps its own ``FIGURES`` if it has one);
    - figures: the folder ``FIGURES`` names (default: a new temporary folder; ``tutorials/make_figures.py``
      passes ``tutorials/figures``);
    - exercises: how each exercise runs, at its solution's place (default: the solution, then the check);
    - stop_after: stop after the exercise of that name (output blocks already run are still compared; spans
      are not);
    - check_values: compare the output blocks and spans (``minigrad check`` does not: the chapter is not the
      student's).

    Raises :class:`ChapterError` (chained to the original exception) naming the failing block, or listing every
    wrong output block and span.
    """
    import matplotlib.pyplot as plt

    from minigrad import kernels

    path = Path(path).resolve()
    chapter = parse_chapter(path) if chapter is None else chapter
    figures = Path(tempfile.mkdtemp(prefix="minigrad_figures_")) if figures is None else Path(figures).resolve()
    namespace = setup_namespace(path, figures) if namespace is None else namespace
    figures = namespace.setdefault("FIGURES", figures)  # a namespace passed in keeps its own FIGURES
    handler = exercises or solution_then_check
    by_solution = {exercise.solution.first_line: exercise for exercise in chapter.exercises}
    if stop_after is not None and stop_after not in {exercise.name for exercise in chapter.exercises}:
        raise ValueError(f"{path.name} has no exercise {stop_after!r} (it has "
                         f"{[exercise.name for exercise in chapter.exercises]})")
    problems: list[str] = []
    previous_directory = os.getcwd()
    os.chdir(path.parent)
    stopped = False
    try:
        with kernels.use(kernels.mode()):  # the mode as it is now: a chapter's own choice ends with it
            for block in chapter.blocks:
                if block.kind == "solution":
                    exercise = by_solution[block.first_line]
                    found = handler(chapter, exercise, namespace) or []
                    problems += found if check_values else []
                    if exercise.name == stop_after:
                        stopped = True
                        break
                elif block.kind == "code":
                    run_block(chapter, block, namespace, problems if check_values else None)
    finally:
        os.chdir(previous_directory)
        plt.close("all")
    if namespace.get("FIGURES") != figures:
        problems.append(f"{path.name}: the chapter rebinds FIGURES (to {namespace.get('FIGURES')!r}); use the "
                        "FIGURES the runner provides (a notebook's first cell sets it too), so that tests never "
                        "write into tutorials/figures")
    if check_values and not stopped:
        problems += [problem for span in chapter.spans if (problem := check_span(span, namespace, path))]
    if problems:
        raise ChapterError("\n\n".join(problems))
    return namespace


def describe_failure(path: Path, block: Block, error: BaseException, extra_files: tuple[str, ...] = ()) -> str:
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
    kind = f" [{block.kind}={block.exercise_name}]" if block.exercise_name else ""
    return f"{path.name}: {block.title}{kind} failed{where}\n{chapter_traceback(error, (str(path), *extra_files))}"


def chapter_traceback(error: BaseException, files: tuple[str, ...]) -> str:
    """The traceback of ``error`` from the first frame in one of ``files`` on (the runner's frames left out)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in files:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def chapters_in(directory: Path) -> list[Path]:
    """The chapter files (``NN_name.md``) of a folder, in order."""
    from minigrad.tutorials.parse import CHAPTER_NAME

    return sorted(path for path in Path(directory).glob("*.md") if CHAPTER_NAME.match(path.name))


def find_tutorials(explicit: Path | str | None = None) -> Path:
    """The folder of the chapters: ``explicit`` if given, else the repository's ``tutorials/`` next to the package.

    Raises FileNotFoundError saying what to do when it is not there (minigrad installed without its repository).
    """
    if explicit is not None:
        folder = Path(explicit).resolve()
        if not chapters_in(folder):
            raise FileNotFoundError(f"--tutorials {folder}: no chapter files (NN_name.md) there")
        return folder
    folder = Path(__file__).resolve().parents[2] / "tutorials"
    if not chapters_in(folder):
        raise FileNotFoundError(
            f"the tutorials are not at {folder}: this minigrad was installed without its repository. Clone it and "
            "install it editable (pip install -e .), or pass --tutorials DIR, the folder of the NN_name.md chapters")
    return folder
