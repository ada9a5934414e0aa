"""Tests of minigrad/tutorials/cli.py: ``minigrad exercises``, ``minigrad check`` and ``minigrad tutorials
--notebooks`` end to end, on the real chapters and on a temporary folder of student files."""

from __future__ import annotations

import json
from pathlib import Path

from minigrad.cli import main
from minigrad.tutorials.parse import parse_chapter

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"


def test_exercises_then_check_end_to_end_on_the_real_chapters(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["exercises", str(work)]) == 0
    out = capsys.readouterr().out
    exercises = {(path.stem, e.name) for path in sorted(TUTORIALS.glob("[0-9][0-9]_*.md"))
                 for e in parse_chapter(path).exercises}
    assert {(p.parent.name, p.stem) for p in work.glob("*/*.py")} == exercises
    assert f"{len(exercises)} skeletons written, 0 kept" in out

    # The unfilled skeleton of chapter 2 fails, with what is wrong, and the command exits non-zero.
    assert main(["check", str(work), "02"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL 02/value_exp_pow: the check failed: TypeError: unsupported operand")
    assert lines[0].endswith("(value_exp_pow.py is still the unfilled skeleton)")
    assert lines[-1] == "0 of 1 exercises pass"

    # Filled in with the chapter's own solution, it passes.
    chapter = parse_chapter(TUTORIALS / "02_autograd.md")
    (work / "02_autograd" / "value_exp_pow.py").write_text(chapter.exercises[0].solution.source)
    assert main(["check", str(work), "02_autograd"]) == 0
    assert capsys.readouterr().out.splitlines() == ["PASS 02/value_exp_pow", "1 of 1 exercises pass"]

    # A second `minigrad exercises` keeps the student's work, and says so.
    assert main(["exercises", str(work)]) == 0
    out = capsys.readouterr().out
    assert f"kept  {work / '02_autograd' / 'value_exp_pow.py'} (already there" in out
    assert f"0 skeletons written, {len(exercises)} kept" in out
    assert (work / "02_autograd" / "value_exp_pow.py").read_text() == chapter.exercises[0].solution.source


def test_exercises_and_check_with_a_relative_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the chapter runs in tutorials/: the student's relative path must still hold
    assert main(["exercises", "work"]) == 0
    chapter = parse_chapter(TUTORIALS / "02_autograd.md")
    Path("work/02_autograd/value_exp_pow.py").write_text(chapter.exercises[0].solution.source)
    capsys.readouterr()
    assert main(["check", "work", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "PASS 02/value_exp_pow"


def test_check_of_a_missing_folder_or_chapter_is_a_clear_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert "no folder" in capsys.readouterr().err
    assert main(["check", str(tmp_path), "99"]) == 2
    assert "no chapter '99'" in capsys.readouterr().err
    assert main(["exercises", str(tmp_path), "--tutorials", str(tmp_path / "none")]) == 2
    assert "no chapter files" in capsys.readouterr().err


def test_tutorials_notebooks_writes_every_chapter_or_the_chosen_ones(tmp_path, capsys):
    assert main(["tutorials", "--notebooks", str(tmp_path / "all")]) == 0
    chapters = sorted(TUTORIALS.glob("[0-9][0-9]_*.md"))
    assert sorted(p.name for p in (tmp_path / "all").glob("*.ipynb")) == [p.stem + ".ipynb" for p in chapters]
    assert main(["tutorials", "01", "--notebooks", str(tmp_path / "one")]) == 0
    (notebook,) = (tmp_path / "one").glob("*.ipynb")
    assert notebook.name == "01_arrays_and_devices.ipynb" and json.loads(notebook.read_text())["nbformat"] == 4
    assert "wrote" in capsys.readouterr().out
