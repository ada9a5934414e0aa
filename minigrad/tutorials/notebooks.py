"""Chapters as Jupyter notebooks (nbformat 4 JSON, written without the nbformat package).

``minigrad tutorials --notebooks DIR`` writes ``DIR/NN_chapter.ipynb`` for every chapter:

- the prose becomes markdown cells, every python block a code cell (skeletons too: a student fills them in);
- a first code cell sets up what the test runner provides: ``FIGURES`` (``figures/`` next to the notebook),
  the working directory (the repository's ``tutorials/``, so ``Path("..")`` is the repository, as in the tests)
  and the seeds;
- output blocks are left out (the notebook shows what the code really prints);
- ``<details>`` and ``<summary>`` lines become a "Solution" heading (a collapsed HTML block cannot span cells);
- a check written before its solution fails until the skeleton is filled in: its cell is tagged
  ``raises-exception`` (Jupyter and nbclient then run on past it), and it runs once more after the solution;
- ``no-run`` blocks become raw cells: shown, never run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from minigrad.tutorials.parse import Chapter, parse_chapter
from minigrad.tutorials.runner import chapters_in

SETUP = '''\
# What the tutorial runner sets up before a chapter (minigrad/tutorials/runner.py), for this notebook.
import os
import random
from pathlib import Path

import numpy

import minigrad
from minigrad.tutorials import find_tutorials

NOTEBOOK_FOLDER = globals().get("NOTEBOOK_FOLDER", Path.cwd())   # kept when this cell runs again
FIGURES = NOTEBOOK_FOLDER / "figures"                              # figures land next to the notebook
FIGURES.mkdir(exist_ok=True)
os.chdir(find_tutorials())                                         # the chapter's code runs from tutorials/
__file__ = str(find_tutorials() / {name!r})
minigrad.manual_seed(0)
numpy.random.seed(0)
random.seed(0)
'''
DETAILS = re.compile(r"^\s*</?details>\s*$|^\s*<summary>(?P<summary>.*)</summary>\s*$")


def _lines(text: str) -> list[str]:
    """A cell's source as nbformat keeps it: lines with their newlines, the last one without."""
    lines = text.strip("\n").split("\n")
    return [line + "\n" for line in lines[:-1]] + lines[-1:]


def _cell(kind: str, text: str, number: int, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "id": f"cell-{number}", "metadata": {}, "source": _lines(text)}
    if tags:
        cell["metadata"]["tags"] = list(tags)
    if kind == "code":
        cell["execution_count"] = None
        cell["outputs"] = []
    return cell


def chapter_notebook(chapter: Chapter) -> dict[str, Any]:
    """The nbformat-4 notebook of one chapter, as a JSON-ready dict."""
    lines = chapter.text.splitlines()
    blocks = {block.fence_line: block for block in chapter.blocks}
    outputs = {block.output.fence_line: block.output for block in chapter.blocks if block.output}
    solved: set[str] = set()
    cells: list[dict[str, Any]] = []
    prose: list[str] = []

    def add(kind: str, text: str, tags: tuple[str, ...] = ()) -> None:
        if text.strip():
            cells.append(_cell(kind, text, len(cells) + 1, tags))

    def flush() -> None:
        add("markdown", "\n".join(prose))
        prose.clear()

    add("code", SETUP.format(name=chapter.path.name))
    checks_after = {exercise.solution.fence_line: exercise for exercise in chapter.exercises}
    fences = {fence.fence_line: fence for fence in chapter.fences}
    number = 1
    while number <= len(lines):
        if number in fences:
            fence = fences[number]
            block = blocks.get(number)
            if block is not None or number in outputs:
                flush()
            if number in outputs:
                pass  # what the code printed: the notebook shows it when the cell runs
            elif block is None:
                prose.extend(lines[number - 1 : fence.end_line])  # another language: shown as Markdown
            elif block.kind == "no-run":
                add("raw", block.source)
            elif block.kind == "check" and block.exercise_name not in solved:
                add("code", block.source, ("raises-exception",))  # fails until the skeleton is filled in
            else:
                add("code", block.source)
                if block.kind == "solution":
                    solved.add(block.exercise_name)
                    exercise = checks_after[number]
                    if exercise.check.fence_line < exercise.solution.fence_line:
                        add("markdown", f"The check of `{exercise.name}` again, now on the solution:")
                        add("code", exercise.check.source)
            number = fence.end_line + 1
            continue
        line = lines[number - 1]
        details = DETAILS.match(line)
        if details:
            if details["summary"]:
                prose.append(f"#### {details['summary']}")
        else:
            prose.append(line)
        number += 1
    flush()
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "minigrad": {"chapter": chapter.path.name},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_notebook(path: Path, folder: Path) -> Path:
    """Write the chapter at ``path`` as ``folder/<chapter>.ipynb``; returns the notebook's path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{Path(path).stem}.ipynb"
    notebook = chapter_notebook(parse_chapter(path))
    target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def write_notebooks(tutorials: Path, folder: Path, chapters: list[Path] | None = None) -> list[Path]:
    """Every chapter of ``tutorials`` (or the given ones) as a notebook in ``folder``."""
    return [write_notebook(path, Path(folder)) for path in (chapters_in(tutorials) if chapters is None else chapters)]
