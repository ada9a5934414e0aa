"""Tests of minigrad/tutorials/runner.py and of its pytest wrapper tutorials/conftest.py: one shared namespace,
what is skipped, the set-up (seeds, FIGURES, working directory), output blocks and value spans checked, exercises
run as solution-then-check, and failures reported by chapter, block and line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad
from minigrad.tutorials.runner import ChapterError, find_tutorials, run_chapter

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"


def write_chapter(directory: Path, name: str, blocks: list[str], marker: str = "", after: str = "") -> Path:
    """A chapter file whose python blocks are `blocks`, with prose between them and `after` at the end."""
    parts = [f"# {name}\n"]
    for number, source in enumerate(blocks, start=1):
        parts.append(f"Some prose before block {number}.\n\n```python{marker}\n{source.strip()}\n```\n")
    path = directory / name
    path.write_text("\n".join(parts) + after)
    return path


# ----- running -----------------------------------------------------------------------------------------
def test_blocks_share_one_namespace_and_no_run_blocks_are_skipped(tmp_path):
    path = write_chapter(tmp_path, "01_shared.md", ["x = 20", "y = x + 1", "z = y * 2"])
    path.write_text(path.read_text() + "\n```python no-run\nraise RuntimeError('must not run')\n```\n")
    assert run_chapter(path)["z"] == 42


def test_working_directory_figures_and_backend_are_set_up_and_restored(tmp_path):
    path = write_chapter(tmp_path, "01_setup.md", [
        "import os, matplotlib\ncwd = os.getcwd()\nbackend_name = matplotlib.get_backend()\nfigures = FIGURES",
    ])
    before = os.getcwd()
    namespace = run_chapter(path, figures=tmp_path / "out" / "figures")
    assert os.getcwd() == before
    assert Path(namespace["cwd"]) == tmp_path.resolve()
    assert namespace["figures"] == (tmp_path / "out" / "figures").resolve() and namespace["figures"].is_dir()
    assert namespace["backend_name"].lower() == "agg"
    assert namespace["__name__"] == "__main__" and namespace["__file__"] == str(path.resolve())
    # Without figures=, FIGURES is a new temporary folder: never the chapter's own figures/.
    default = run_chapter(path)["figures"]
    assert default.is_dir() and default != tmp_path.resolve() / "figures"
    assert not (tmp_path / "figures").exists()


def test_a_chapter_that_rebinds_figures_fails(tmp_path):
    path = write_chapter(tmp_path, "01_rebind.md", ["from pathlib import Path\nFIGURES = Path('figures')"])
    with pytest.raises(ChapterError, match="01_rebind.md: the chapter rebinds FIGURES"):
        run_chapter(path)


def test_each_chapter_starts_from_the_same_seeds(tmp_path):
    path = write_chapter(tmp_path, "01_seeds.md", [
        "import random\nimport numpy as np\nimport minigrad\n"
        "draws = (minigrad.randn(3).numpy(), np.random.rand(3), random.random())",
    ])
    first = run_chapter(path)["draws"]
    minigrad.manual_seed(123)  # disturb every generator in between
    np.random.seed(123)  # noqa: NPY002  (the legacy generator is one of those the runner seeds)
    second = run_chapter(path)["draws"]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    minigrad.manual_seed(0)
    np.testing.assert_array_equal(first[0], minigrad.randn(3).numpy())


def test_running_a_real_chapter_leaves_the_tracked_figures_untouched(tmp_path):
    # Chapter 2 draws 02_graph.png; under the runner's default it goes to a temporary folder.
    tracked = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (TUTORIALS / "figures").glob("*")}
    namespace = run_chapter(TUTORIALS / "02_autograd.md", figures=tmp_path / "figures")
    assert (tmp_path / "figures" / "02_graph.png").is_file()
    assert namespace["FIGURES"] == (tmp_path / "figures").resolve()
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (TUTORIALS / "figures").glob("*")}
    assert after == tracked


# ----- output blocks and spans -----------------------------------------------------------------------
def test_output_blocks_are_compared_with_what_the_block_printed(tmp_path):
    path = tmp_path / "01_output.md"
    path.write_text("```python\nprint('loss', 2.302585)\nfor i in range(3):\n    print(i)\n```\n\n"
                    "```output\nloss 2.30...\n0\n...\n```\n")
    run_chapter(path)  # matches: '...' in the line, then a '...' line for 1 and 2


def test_a_wrong_output_block_fails_with_a_diff_naming_the_file_and_lines(tmp_path):
    path = tmp_path / "02_wrong.md"
    path.write_text("# Wrong\n\n```python\nprint('3 epochs')\n```\n\n```output\n4 epochs\n```\n\n"
                    "```python\nprint('fine')\n```\n\n```output\nfine\n```\n\n"
                    "```python\nprint('also wrong')\n```\n\n```output\nright\n```\n")
    with pytest.raises(ChapterError) as raised:
        run_chapter(path)
    message = str(raised.value)
    assert "02_wrong.md: block 1 (line 4: `print('3 epochs')`) printed something else than its output block at line 7" \
        in message
    assert "--- the output block (02_wrong.md line 7)" in message and "+++ what the block printed" in message
    assert "-4 epochs" in message and "+3 epochs" in message
    assert "block 3 (line 20: `print('also wrong')`)" in message  # every mismatch is reported, not only the first
    assert "fine" not in message


def test_value_spans_are_checked_after_the_chapter(tmp_path):
    path = write_chapter(tmp_path, "01_spans.md", ["epochs = 3\nlr = 0.004\nweights = 13_393_352"], after=(
        'It trains <span data-value="epochs">3</span> epochs at <span data-value="lr">0.004</span>, '
        '<span data-value="weights" data-format=",">13,393,352</span> weights,\n'
        '<span data-value="lr * 1000" data-format=".1f">4.0</span> per mille. A step takes '
        '<span data-measured="f\'{lr * 500:.1f}\'">9.9</span> s, measured here.\n'))
    run_chapter(path)  # the measured span's text (9.9, not 2.0) is not compared


def test_a_wrong_span_fails_naming_the_span_its_line_expected_and_got(tmp_path):
    path = write_chapter(tmp_path, "14_training.md", ["width = 0.125\nepochs = 3"], after=(
        'A quarter of the width: <span data-value="width">0.25</span>.\n'
        'Epochs: <span data-value="epochs" data-format="d">4</span>.\n'
        'Right: <span data-value="epochs">3</span>.\n'))
    lines = path.read_text().splitlines()
    with pytest.raises(ChapterError) as raised:
        run_chapter(path)
    message = str(raised.value)
    line = next(i for i, text in enumerate(lines, 1) if "0.25" in text)
    assert f'14_training.md:{line}: <span data-value="width">0.25</span>: expected \'0.25\', got \'0.125\'' in message
    assert f"14_training.md:{line + 1}:" in message and "expected '4', got '3' (format(..., 'd') of epochs)" in message
    assert f"14_training.md:{line + 2}:" not in message


def test_a_span_that_raises_fails_and_a_measured_span_must_evaluate(tmp_path):
    path = write_chapter(tmp_path, "01_raises.md", ["x = 1"], after=(
        'Undefined: <span data-value="y">1</span>. Measured here: <span data-measured="1 / 0">0.3</span> s.\n'))
    with pytest.raises(ChapterError) as raised:
        run_chapter(path)
    message = str(raised.value)
    assert "evaluating 'y' raised NameError" in message
    assert "evaluating '1 / 0' raised ZeroDivisionError" in message


# ----- exercises -------------------------------------------------------------------------------------
def exercise_chapter(directory: Path, solution: str = "def double(x):\n    return 2 * x") -> Path:
    path = directory / "05_exercise.md"
    path.write_text(
        "# Five\n\n```python\nbase = 21\n```\n\n## Exercise\n\nWrite double.\n\n"
        "```python exercise=double\ndef double(x):\n    ...\n```\n\n"
        "```python check=double\nassert double(base) == 42, f'double(21) is {double(base)}'\nprint('checked')\n```\n\n"
        "```output\nchecked\n```\n\n"
        f"<details>\n<summary>Solution</summary>\n\n```python solution=double\n{solution}\n```\n\n</details>\n")
    return path


def test_the_solution_runs_then_its_check_and_the_skeleton_never(tmp_path):
    namespace = run_chapter(exercise_chapter(tmp_path))
    assert namespace["double"](5) == 10


def test_a_wrong_solution_fails_in_its_check(tmp_path):
    path = exercise_chapter(tmp_path, solution="def double(x):\n    return x + 2")
    expected = (r"(?s)05_exercise\.md: block 3 \(line \d+: `assert double.*\) \[check=double\] "
                r"failed at line \d+.*AssertionError: double\(21\) is 23")
    with pytest.raises(ChapterError, match=expected):
        run_chapter(path)


# ----- reporting failures -------------------------------------------------------------------------------
def test_a_failure_names_chapter_block_first_line_and_the_failing_line(tmp_path):
    path = write_chapter(tmp_path, "03_broken.md", [
        "value = 1",
        "total = value + 1\nassert total == 3, 'total is wrong'",
        "never = True",
    ])
    failing_line = path.read_text().splitlines().index("assert total == 3, 'total is wrong'") + 1
    before = os.getcwd()
    with pytest.raises(ChapterError) as raised:
        run_chapter(path)
    message = str(raised.value)
    assert message.startswith("03_broken.md: block 2 (line")
    assert "`total = value + 1`" in message  # the block's first line
    assert f"failed at line {failing_line} (line 2 of the block)" in message
    assert f'03_broken.md", line {failing_line}' in message  # the traceback points into the .md file
    assert "AssertionError: total is wrong" in message
    assert "runner.py" not in message  # the runner's own frames are left out
    assert isinstance(raised.value.__cause__, AssertionError)
    assert os.getcwd() == before


def test_a_failure_inside_a_function_from_an_earlier_block_points_at_the_call(tmp_path):
    blocks = ["def invert(x):\n    return 1 / x", "ok = invert(2)\nbad = invert(0)"]
    path = write_chapter(tmp_path, "03_deeper.md", blocks)
    lines = path.read_text().splitlines()
    call_line, inner_line = lines.index("bad = invert(0)") + 1, lines.index("    return 1 / x") + 1
    with pytest.raises(ChapterError) as raised:
        run_chapter(path)
    message = str(raised.value)
    expected = f"block 2 (line {call_line - 1}: `ok = invert(2)`) failed at line {call_line} (line 2 of the block)"
    assert expected in message
    assert f'03_deeper.md", line {inner_line}, in invert' in message  # and the traceback goes on into it


def test_a_syntax_error_is_reported_with_its_block(tmp_path):
    path = write_chapter(tmp_path, "04_syntax.md", ["ok = 1", "def broken(:\n    pass"])
    with pytest.raises(ChapterError, match=r"04_syntax\.md: block 2 \(line \d+: `def broken\(:`\)"):
        run_chapter(path)


# ----- where the chapters are ------------------------------------------------------------------------
def test_find_tutorials_is_the_repository_folder_or_an_explicit_one(tmp_path):
    assert find_tutorials() == TUTORIALS
    write_chapter(tmp_path, "01_one.md", ["x = 1"])
    assert find_tutorials(tmp_path) == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match=r"--tutorials .*empty: no chapter files \(NN_name\.md\) there"):
        find_tutorials(tmp_path / "empty")


# ----- the pytest wrapper (tutorials/conftest.py) --------------------------------------------------------
def run_pytest(folder: Path) -> tuple[int, str]:
    shutil.copy(TUTORIALS / "conftest.py", folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(folder)],
                            cwd=folder, capture_output=True, text=True, timeout=120, env=environment)
    return result.returncode, result.stdout + result.stderr


def test_pytest_collects_one_item_per_chapter_and_reports_the_block(tmp_path):
    (tmp_path / "README.md").write_text("```python\nraise RuntimeError('README is not a chapter')\n```\n")
    write_chapter(tmp_path, "01_good.md", ["a = 1", "assert a == 1"])
    write_chapter(tmp_path, "02_bad.md", ["b = 1", "c = b / 0"])
    (tmp_path / "03_output.md").write_text("```python\nprint(1)\n```\n\n```output\n2\n```\n")
    (tmp_path / "04_syntax.md").write_text("```python\nprint(1)\n```\nprose\n```output\n1\n```\n")
    code, output = run_pytest(tmp_path)
    assert code == 1, output
    assert "3 failed, 1 passed" in output, output
    assert "02_bad.md: block 2 (line" in output and "`c = b / 0`" in output and "ZeroDivisionError" in output, output
    assert "03_output.md: block 1 (line 2: `print(1)`) printed something else" in output, output
    assert "04_syntax.md: the output block at line 5 does not follow a python block directly" in output, output
    assert "README" not in output, output


def test_under_pytest_a_chapter_writing_into_its_figures_folder_fails(tmp_path):
    (tmp_path / "figures").mkdir()
    write_chapter(tmp_path, "01_good.md", ["import matplotlib.pyplot as plt\nplt.plot([1, 2])\n"
                                           "plt.savefig(FIGURES / 'plot.png')"])
    write_chapter(tmp_path, "02_sneaky.md", ["from pathlib import Path\n"
                                             "(Path(__file__).parent / 'figures' / 'x.txt').write_text('x')"])
    code, output = run_pytest(tmp_path)
    assert code == 1 and "1 failed, 1 passed" in output, output
    assert f"02_sneaky.md: running it changed {tmp_path / 'figures'} (x.txt)" in output, output
    assert not (tmp_path / "figures" / "plot.png").exists()  # 01's figure went to a temporary folder


def test_make_figures_is_what_writes_the_chapters_figures_folder(tmp_path):
    shutil.copy(TUTORIALS / "make_figures.py", tmp_path / "make_figures.py")
    write_chapter(tmp_path, "01_plot.md", ["import matplotlib.pyplot as plt\nplt.plot([1, 2])\n"
                                           "plt.savefig(FIGURES / '01_plot.png')\nprint('drawn')"])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(tmp_path / "make_figures.py")], capture_output=True, text=True,
                            timeout=120, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "01_plot.md" in result.stdout and "ok  figures: 01_plot.png" in result.stdout, result.stdout
    assert (tmp_path / "figures" / "01_plot.png").is_file()
