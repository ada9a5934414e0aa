"""The chapters' exercises for students: skeleton files to fill in, and their checks run on what was written.

``minigrad exercises DIR`` writes ``DIR/NN_chapter/NAME.py`` for every ``exercise=NAME`` block (never over a
file that is already there). A skeleton file is not self-contained: ``minigrad check DIR [CHAPTER]`` runs the
chapter's own code up to the exercise (the names it defined, ``np``, ``minigrad``, the chapter's helpers, are
there), then the student's file in a copy of that namespace, then the chapter's ``check=NAME`` block. It prints
``PASS NN/NAME`` or ``FAIL NN/NAME: what is wrong`` for each exercise.

:func:`audit_exercise` is the suite's proof that no check is vacuous: the check must fail on the unfilled
skeleton and pass on the solution.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from minigrad.tutorials.parse import Chapter, Exercise, parse_chapter
from minigrad.tutorials.runner import (
    ChapterError,
    chapter_traceback,
    chapters_in,
    compile_block,
    run_chapter,
    solution_then_check,
)

MESSAGE_LIMIT = 400  # characters of a FAIL line's explanation


@dataclass
class Outcome:
    """One exercise's result: ``PASS 04/NAME`` or ``FAIL 04/NAME: message``."""

    chapter: str  # the two-digit chapter number
    name: str
    passed: bool
    message: str = ""

    def __str__(self) -> str:
        return f"PASS {self.chapter}/{self.name}" if self.passed else f"FAIL {self.chapter}/{self.name}: {self.message}"


def exercise_file(folder: Path, chapter: Chapter, exercise: Exercise) -> Path:
    """Where a student's file for ``exercise`` lives: ``folder/NN_chapter/NAME.py``."""
    return Path(folder) / chapter.path.stem / f"{exercise.name}.py"


def skeleton_text(chapter: Chapter, exercise: Exercise, folder: Path | str = "DIR") -> str:
    """The file ``minigrad exercises`` writes: what the exercise asks (as comments), how to check it, the skeleton."""
    statement = "\n".join(f"# {line}".rstrip() for line in exercise.statement.splitlines())
    return (
        f"# Exercise {exercise.name!r} of chapter {chapter.number}: tutorials/{chapter.path.name}, "
        f"line {exercise.skeleton.fence_line}.\n#\n{statement}\n#\n"
        f"# Fill in the code below, then run:   minigrad check {folder} {chapter.number}\n"
        "# The check runs the chapter's own code up to this exercise first, so the names the chapter defined by then\n"
        "# (np, minigrad, the chapter's helpers and data) are there when this file runs; then it runs the chapter's\n"
        f"# check (the check={exercise.name} block, line {exercise.check.fence_line}). The solution is collapsed at "
        "the chapter's end.\n\n" + exercise.skeleton.source
    )


def select_chapters(tutorials: Path, chapter: str | None = None) -> list[Path]:
    """The chapter files of ``tutorials``, or those whose number or file name starts with ``chapter``."""
    paths = chapters_in(tutorials)
    if chapter is None:
        return paths
    wanted = chapter.removesuffix(".md")
    chosen = [path for path in paths if path.stem.startswith(wanted) or path.stem[:2] == wanted.zfill(2)]
    if not chosen:
        raise ValueError(f"no chapter {chapter!r} in {tutorials} (chapters: "
                         f"{', '.join(path.stem[:2] for path in paths)}); give a number such as 04 or a file name")
    return chosen


def write_exercises(tutorials: Path, folder: Path) -> tuple[list[Path], list[Path]]:
    """Write every chapter's skeletons into ``folder``; returns (written, kept): a file already there is kept."""
    written, kept = [], []
    for path in chapters_in(tutorials):
        chapter = parse_chapter(path)
        for exercise in chapter.exercises:
            target = exercise_file(folder, chapter, exercise)
            if target.exists():
                kept.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(skeleton_text(chapter, exercise, folder), encoding="utf-8")
            written.append(target)
    return written, kept


def _explain(error: BaseException, files: tuple[str, ...]) -> str:
    """One line: the exception and where it happened (the innermost line in the student's file or the chapter)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename in files]
    where = f" (at {Path(frames[-1].filename).name} line {frames[-1].lineno}: `{frames[-1].line}`)" if frames else ""
    text = str(error).strip()
    if isinstance(error, AssertionError) and not text:
        text = "assertion failed"
    message = re.sub(r"\s+", " ", f"{type(error).__name__}: {text}{where}")
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


def _code_lines(text: str) -> list[str]:
    """The lines of ``text`` that are neither blank nor a whole-line comment: a file's code, its header aside."""
    return [line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def check_students_chapter(path: Path, folder: Path) -> list[Outcome]:
    """Run one chapter with the student's files in place of its solutions; one outcome per exercise."""
    chapter = parse_chapter(path)
    outcomes: dict[str, Outcome] = {}
    where = Path(folder).resolve()  # now: the chapter runs in its own folder, so a relative path would move

    def student(chapter: Chapter, exercise: Exercise, namespace: dict) -> None:
        file = exercise_file(where, chapter, exercise)
        if not file.is_file():
            outcomes[exercise.name] = Outcome(chapter.number, exercise.name, False,
                                              f"no file {file} (minigrad exercises {folder} writes the skeletons)")
            return
        source = file.read_text(encoding="utf-8")
        unfilled = _code_lines(source) == _code_lines(exercise.skeleton.source)
        scope = dict(namespace)  # the student's code cannot break the chapter's own namespace for the next one
        files = (str(file), str(chapter.path))
        stage = f"{file.name} raised"
        try:
            exec(compile(source, str(file), "exec"), scope)
            stage = "the check failed"
            exec(compile_block(chapter.path, exercise.check), scope)
        except (Exception, SystemExit) as error:
            hint = f" ({file.name} is still the unfilled skeleton)" if unfilled else ""
            outcomes[exercise.name] = Outcome(chapter.number, exercise.name, False,
                                              f"{stage}: {_explain(error, files)}{hint}")
        else:
            outcomes[exercise.name] = Outcome(chapter.number, exercise.name, True)

    if chapter.exercises:
        printed = io.StringIO()
        try:
            with (tempfile.TemporaryDirectory(prefix="minigrad_check_") as figures, contextlib.redirect_stdout(printed),
                  contextlib.redirect_stderr(printed)):  # the chapter's own printing and progress bars
                run_chapter(path, figures=Path(figures) / "figures", exercises=student,
                            stop_after=chapter.exercises[-1].name, check_values=False, chapter=chapter)
        except ChapterError as error:
            first = str(error).splitlines()[0]
            for exercise in chapter.exercises:
                outcomes.setdefault(exercise.name, Outcome(
                    chapter.number, exercise.name, False, f"the chapter's own code failed before it: {first}"))
    return [outcomes[exercise.name] for exercise in chapter.exercises]


def check_exercises(tutorials: Path, folder: Path, chapter: str | None = None) -> list[Outcome]:
    """Check the student's files in ``folder`` against every chapter (or one); one outcome per exercise."""
    outcomes = []
    for path in select_chapters(tutorials, chapter):
        outcomes += check_students_chapter(path, Path(folder))
    return outcomes


@dataclass
class Audit:
    """What the check of one exercise said about its unfilled skeleton and about its solution."""

    skeleton_error: str | None  # the skeleton itself raised (a broken skeleton): what
    check_on_skeleton: str | None  # how the check failed on the skeleton; None: it passed (a vacuous check)
    check_on_solution: str | None  # None: passed
    check_on_wrong: list[str | None]  # for each wrong answer given: how the check failed; None: it passed


def audit_exercise(path: Path, name: str, wrong_answers: tuple[str, ...] = ()) -> Audit:
    """Run the chapter up to exercise ``name``; there, run its check on the unfilled skeleton file (the text
    ``minigrad exercises`` writes) and on each of ``wrong_answers``, each in a copy of the namespace as
    ``minigrad check`` does, then the solution and the check, as the chapter test does."""
    chapter = parse_chapter(path)
    result: dict[str, str | None] = {}

    def audit(chapter: Chapter, exercise: Exercise, namespace: dict) -> list[str]:
        if exercise.name != name:
            return solution_then_check(chapter, exercise, namespace)
        skeleton_file = f"<{exercise.name}.py as minigrad exercises writes it>"
        files = (str(chapter.path), skeleton_file)
        scope = dict(namespace)
        try:  # the very text of the student's file, header and all
            exec(compile(skeleton_text(chapter, exercise), skeleton_file, "exec"), scope)
            result["skeleton"] = None
        except Exception as error:
            result["skeleton"] = chapter_traceback(error, files)
        try:
            exec(compile_block(chapter.path, exercise.check), scope)
            result["on_skeleton"] = None
        except Exception as error:
            result["on_skeleton"] = _explain(error, files)
        result["on_wrong"] = []
        for answer in wrong_answers:
            scope = dict(namespace)
            try:
                exec(compile(answer, "<wrong answer>", "exec"), scope)
                exec(compile_block(chapter.path, exercise.check), scope)
                result["on_wrong"].append(None)
            except Exception as error:
                result["on_wrong"].append(_explain(error, files))
        try:
            solution_then_check(chapter, exercise, namespace)
            result["on_solution"] = None
        except ChapterError as error:
            result["on_solution"] = str(error)
        return []

    with tempfile.TemporaryDirectory(prefix="minigrad_audit_") as figures, contextlib.redirect_stdout(io.StringIO()):
        run_chapter(path, figures=Path(figures) / "figures", exercises=audit, stop_after=name, check_values=False,
                    chapter=chapter)
    return Audit(result["skeleton"], result["on_skeleton"], result["on_solution"], result["on_wrong"])


def print_outcomes(outcomes: list[Outcome], stream: TextIO | None = None) -> int:
    """Print one line per exercise and a summary; return the exit status (1 while any exercise fails)."""
    stream = sys.stdout if stream is None else stream
    for outcome in outcomes:
        print(outcome, file=stream)
    failed = sum(not outcome.passed for outcome in outcomes)
    print(f"{len(outcomes) - failed} of {len(outcomes)} exercises pass", file=stream)
    return 1 if failed or not outcomes else 0
