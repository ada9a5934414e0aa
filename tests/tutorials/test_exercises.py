"""Tests of minigrad/tutorials/exercises.py: skeleton files, checks run on a student's files, and the proof that
no check in the chapters is vacuous: for EVERY exercise, the check fails on the unfilled skeleton and passes on
the solution."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from minigrad.tutorials.exercises import (
    audit_exercise,
    check_exercises,
    exercise_file,
    print_outcomes,
    skeleton_text,
    write_exercises,
)
from minigrad.tutorials.parse import parse_chapter
from minigrad.tutorials.runner import chapters_in

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
EXERCISES = [(path, exercise.name) for path in chapters_in(TUTORIALS) for exercise in parse_chapter(path).exercises]
# Answers that look plausible but are wrong, which an exercise's check must also reject (besides the skeleton).
WRONG_ANSWERS = {
    # The old check only looked at the images that changed, so a Cutout that changed nothing passed it.
    "cutout": ("class Cutout:\n    def __init__(self, size):\n        self.size = size\n\n"
               "    def __call__(self, batch, rng):\n        return batch.copy()\n",
               # a square always whole, top-left corner in the image: never clipped at the borders
               "class Cutout:\n    def __init__(self, size):\n        self.size = size\n\n"
               "    def __call__(self, batch, rng):\n        out = batch.copy()\n"
               "        for image in out:\n            top, left = rng.integers(0, 32 - self.size, size=2)\n"
               "            image[:, top : top + self.size, left : left + self.size] = 0\n        return out\n"),
}


@pytest.mark.parametrize("path, name", EXERCISES, ids=[f"{path.stem[:2]}-{name}" for path, name in EXERCISES])
def test_the_check_fails_on_the_unfilled_skeleton_and_passes_on_the_solution(path, name):
    audit = audit_exercise(path, name, WRONG_ANSWERS.get(name, ()))
    assert audit.skeleton_error is None, f"{path.name}: the skeleton of {name} itself raises:\n{audit.skeleton_error}"
    assert audit.check_on_skeleton is not None, (
        f"{path.name}: the check of {name} passes on the unfilled skeleton: it checks nothing a student must write")
    assert audit.check_on_solution is None, f"{path.name}: the solution of {name} fails its check:\n" \
                                            f"{audit.check_on_solution}"
    assert len(audit.check_on_wrong) == len(WRONG_ANSWERS.get(name, ()))
    passed_wrong = [answer for answer, failure in zip(WRONG_ANSWERS.get(name, ()), audit.check_on_wrong) if not failure]
    assert not passed_wrong, f"{path.name}: the check of {name} passes on a wrong answer:\n{passed_wrong[0]}"


def test_the_chapters_have_exercises_and_no_old_style_solution():
    assert len(EXERCISES) >= 13
    for path in chapters_in(TUTORIALS):
        chapter = parse_chapter(path)
        solutions = chapter.text.count("<summary>Solution</summary>")
        assert solutions <= len(chapter.exercises), (
            f"{path.name}: a <details> Solution without a ```python solution=NAME block (an exercise in the old "
            "style: skeleton no-run, checks inside the solution)")


# ----- a small tutorials folder of our own -------------------------------------------------------------
def write_tutorials(folder: Path) -> Path:
    folder.mkdir()
    (folder / "01_one.md").write_text(
        "# One\n\n```python\nbase = 21\n```\n\n## Exercise\n\nWrite `double(x)`.\n\n"
        "```python exercise=double\ndef double(x):\n    ...\n```\n\n"
        "```python check=double\nassert double(base) == 42, f'double(21) gave {double(base)}'\n```\n\n"
        "Write `triple(x)`.\n\n```python exercise=triple\ndef triple(x):\n    ...\n```\n\n"
        "```python check=triple\nassert triple(2) == 6, 'triple(2) is not 6'\n```\n\n"
        "<details>\n<summary>Solution</summary>\n\n"
        "```python solution=double\ndef double(x):\n    return 2 * x\n```\n\n"
        "```python solution=triple\ndef triple(x):\n    return 3 * x\n```\n\n</details>\n")
    (folder / "02_two.md").write_text("# Two\n\n```python\nx = 1\n```\n")  # no exercise
    (folder / "03_broken.md").write_text(
        "# Three\n\n```python\nraise RuntimeError('the chapter is broken')\n```\n\n"
        "```python exercise=e\ne = ...\n```\n\n```python check=e\nassert e == 1\n```\n\n"
        "```python solution=e\ne = 1\n```\n")
    return folder


def test_write_exercises_writes_one_file_each_and_keeps_existing_ones(tmp_path):
    tutorials = write_tutorials(tmp_path / "tutorials")
    written, kept = write_exercises(tutorials, tmp_path / "work")
    assert sorted(p.relative_to(tmp_path / "work").as_posix() for p in written) == [
        "01_one/double.py", "01_one/triple.py", "03_broken/e.py"]
    text = (tmp_path / "work" / "01_one" / "double.py").read_text()
    assert text.endswith("def double(x):\n    ...\n")
    assert "# Write `double(x)`." in text and "minigrad check" in text and "check=double block, line" in text
    compile(text, "double.py", "exec")  # a valid Python file
    (tmp_path / "work" / "01_one" / "double.py").write_text("def double(x):\n    return x + x\n")
    written, kept = write_exercises(tutorials, tmp_path / "work")
    assert written == [] and len(kept) == 3
    assert (tmp_path / "work" / "01_one" / "double.py").read_text() == "def double(x):\n    return x + x\n"


def test_check_says_pass_or_what_is_wrong_for_each_exercise(tmp_path):
    tutorials = write_tutorials(tmp_path / "tutorials")
    work = tmp_path / "work"
    write_exercises(tutorials, work)
    chapter = parse_chapter(tutorials / "01_one.md")
    assert (work / "01_one" / "double.py").read_text() == skeleton_text(chapter, chapter.exercises[0], work)

    outcomes = check_exercises(tutorials, work)  # all unfilled
    assert [(o.chapter, o.name, o.passed) for o in outcomes] == [("01", "double", False), ("01", "triple", False),
                                                                 ("03", "e", False)]
    assert "double(21) gave None" in outcomes[0].message and "still the unfilled skeleton" in outcomes[0].message
    assert "the chapter's own code failed before it: 03_broken.md: block 1" in outcomes[2].message

    (work / "01_one" / "double.py").write_text("def double(x):\n    return x * 2\n")
    (work / "01_one" / "triple.py").write_text("def triple(x):\n    return x + 3\n")
    outcomes = check_exercises(tutorials, work, "01")
    assert [str(o) for o in outcomes] == [
        "PASS 01/double",
        "FAIL 01/triple: the check failed: AssertionError: triple(2) is not 6 "
        "(at 01_one.md line 28: `assert triple(2) == 6, 'triple(2) is not 6'`)"]
    stream = io.StringIO()
    assert print_outcomes(outcomes, stream) == 1
    assert stream.getvalue().splitlines()[-1] == "1 of 2 exercises pass"

    (work / "01_one" / "triple.py").write_text("def triple(x):\n    return x * 3\n")
    assert print_outcomes(check_exercises(tutorials, work, "01_one"), io.StringIO()) == 0


def test_a_missing_file_a_raising_file_and_a_file_that_breaks_the_namespace(tmp_path):
    tutorials = write_tutorials(tmp_path / "tutorials")
    work = tmp_path / "work"
    (work / "01_one").mkdir(parents=True)
    (work / "01_one" / "double.py").write_text("def double(x):\n    return 2 * x\nbase = 0\nimport sys\nsys.exit(3)\n")
    double, triple = check_exercises(tutorials, work, "01")
    assert not double.passed and double.message.startswith("double.py raised: SystemExit: 3 (at double.py line 5")
    chapter = parse_chapter(tutorials / "01_one.md")
    expected_file = exercise_file(work, chapter, chapter.exercises[1]).resolve()
    assert not triple.passed
    assert triple.message == f"no file {expected_file} (minigrad exercises {work} writes the skeletons)"
    # A student's `base = 0` stays in the student's copy of the namespace: the next exercise still sees 21.
    (work / "01_one" / "double.py").write_text("def double(x):\n    return 2 * x\nbase = 0\n")
    (work / "01_one" / "triple.py").write_text("assert base == 21\ndef triple(x):\n    return 3 * x\n")
    assert [o.passed for o in check_exercises(tutorials, work, "01")] == [False, True]


def test_an_unknown_chapter_is_a_clear_error(tmp_path):
    tutorials = write_tutorials(tmp_path / "tutorials")
    with pytest.raises(ValueError, match=r"no chapter '07' in .* \(chapters: 01, 02, 03\)"):
        check_exercises(tutorials, tmp_path, "07")
