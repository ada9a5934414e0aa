"""Tests of the tutorial runner (tutorials/conftest.py) and of what every chapter links to.

The chapters themselves run as tests through the runner (``pytest tutorials``); here we check that the
runner parses blocks right, shares one namespace, skips what it should, sets up seeds, figures and the
working directory, and reports a failure by chapter, block and line. And that every figure, chapter and
source file a chapter links to exists, with the functions it names.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def _load_runner():
    # Loaded by path under its own name: pytest has already imported it as a conftest, and tutorials/
    # is not a package.
    spec = importlib.util.spec_from_file_location("tutorial_runner_under_test", TUTORIALS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


def write_chapter(directory: Path, name: str, blocks: list[str], marker: str = "") -> Path:
    """A chapter file whose python blocks are `blocks`, with prose between them."""
    parts = [f"# {name}\n"]
    for number, source in enumerate(blocks, start=1):
        parts.append(f"Some prose before block {number}.\n\n```python{marker}\n{source.strip()}\n```\n")
    path = directory / name
    path.write_text("\n".join(parts))
    return path


# ----- parsing ---------------------------------------------------------------------------------------
def test_parse_blocks_finds_python_blocks_with_their_lines_and_markers():
    text = "\n".join([
        "# Title",                 # 1
        "```python",               # 2
        "a = 1",                   # 3
        "```",                     # 4
        "```bash",                 # 5
        "echo not python",         # 6
        "```",                     # 7
        "```py no-run active=\"md\"",  # 8
        "b = 2",                   # 9
        "```",                     # 10
        "- a list item:",          # 11
        "   ```python",            # 12
        "   c = 3",                # 13
        "   if c:",                # 14
        "       d = 4",            # 15
        "   ```",                  # 16
    ])
    blocks = runner.parse_blocks(text)
    assert [b.number for b in blocks] == [1, 2, 3]
    assert [b.first_line for b in blocks] == [3, 9, 13]
    assert [b.markers for b in blocks] == [(), ("no-run", 'active="md"'), ()]
    assert blocks[0].source == "a = 1\n"
    assert blocks[2].source == "c = 3\nif c:\n    d = 4\n"  # the fence's indent is removed, no more
    assert blocks[1].title == "block 2 (line 9: `b = 2`)"


def test_parse_blocks_ignores_a_python_fence_shown_inside_a_longer_fence():
    text = "````markdown\n```python\nraise RuntimeError\n```\n````\n```python\nx = 1\n```\n"
    blocks = runner.parse_blocks(text)
    assert [b.source for b in blocks] == ["x = 1\n"]


# ----- running -----------------------------------------------------------------------------------------
def test_blocks_share_one_namespace_and_no_run_blocks_are_skipped(tmp_path):
    path = write_chapter(tmp_path, "01_shared.md", ["x = 20", "y = x + 1", "z = y * 2"])
    path.write_text(path.read_text() + "\n```python no-run\nraise RuntimeError('must not run')\n```\n")
    namespace = runner.run_chapter(path)
    assert namespace["z"] == 42


def test_working_directory_figures_and_backend_are_set_up_and_restored(tmp_path):
    path = write_chapter(tmp_path, "01_setup.md", [
        "import os, matplotlib\ncwd = os.getcwd()\nbackend_name = matplotlib.get_backend()\nfigures = FIGURES",
    ])
    before = os.getcwd()
    namespace = runner.run_chapter(path)
    assert os.getcwd() == before
    assert Path(namespace["cwd"]) == tmp_path.resolve()
    assert namespace["figures"] == tmp_path.resolve() / "figures" and namespace["figures"].is_dir()
    assert namespace["backend_name"].lower() == "agg"
    assert namespace["__name__"] == "__main__" and namespace["__file__"] == str(path.resolve())


def test_each_chapter_starts_from_the_same_seeds(tmp_path):
    path = write_chapter(tmp_path, "01_seeds.md", [
        "import random\nimport numpy as np\nimport minigrad\n"
        "draws = (minigrad.randn(3).numpy(), np.random.rand(3), random.random())",
    ])
    first = runner.run_chapter(path)["draws"]
    minigrad.manual_seed(123)  # disturb every generator in between
    np.random.seed(123)  # noqa: NPY002  (the legacy generator is one of those the runner seeds)
    second = runner.run_chapter(path)["draws"]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    minigrad.manual_seed(0)
    np.testing.assert_array_equal(first[0], minigrad.randn(3).numpy())


# ----- reporting failures -------------------------------------------------------------------------------
def test_a_failure_names_chapter_block_first_line_and_the_failing_line(tmp_path):
    path = write_chapter(tmp_path, "03_broken.md", [
        "value = 1",
        "total = value + 1\nassert total == 3, 'total is wrong'",
        "never = True",
    ])
    failing_line = path.read_text().splitlines().index("assert total == 3, 'total is wrong'") + 1
    before = os.getcwd()
    with pytest.raises(runner.ChapterError) as raised:
        runner.run_chapter(path)
    message = str(raised.value)
    assert message.startswith("03_broken.md: block 2 (line")
    assert "`total = value + 1`" in message  # the block's first line
    assert f"failed at line {failing_line} (line 2 of the block)" in message
    assert f'03_broken.md", line {failing_line}' in message  # the traceback points into the .md file
    assert "AssertionError: total is wrong" in message
    assert "conftest.py" not in message  # the runner's own frames are left out
    assert isinstance(raised.value.__cause__, AssertionError)
    assert os.getcwd() == before


def test_a_failure_inside_a_function_from_an_earlier_block_points_at_the_call(tmp_path):
    blocks = ["def invert(x):\n    return 1 / x", "ok = invert(2)\nbad = invert(0)"]
    path = write_chapter(tmp_path, "03_deeper.md", blocks)
    lines = path.read_text().splitlines()
    call_line, inner_line = lines.index("bad = invert(0)") + 1, lines.index("    return 1 / x") + 1
    with pytest.raises(runner.ChapterError) as raised:
        runner.run_chapter(path)
    message = str(raised.value)
    expected = f"block 2 (line {call_line - 1}: `ok = invert(2)`) failed at line {call_line} (line 2 of the block)"
    assert expected in message
    assert f'03_deeper.md", line {inner_line}, in invert' in message  # and the traceback goes on into it


def test_a_syntax_error_is_reported_with_its_block(tmp_path):
    path = write_chapter(tmp_path, "04_syntax.md", ["ok = 1", "def broken(:\n    pass"])
    with pytest.raises(runner.ChapterError, match=r"04_syntax\.md: block 2 \(line \d+: `def broken\(:`\)"):
        runner.run_chapter(path)


def test_pytest_collects_one_item_per_chapter_and_reports_the_block(tmp_path):
    shutil.copy(TUTORIALS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "README.md").write_text("```python\nraise RuntimeError('README is not a chapter')\n```\n")
    write_chapter(tmp_path, "01_good.md", ["a = 1", "assert a == 1"])
    write_chapter(tmp_path, "02_bad.md", ["b = 1", "c = b / 0"])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 failed, 1 passed" in output, output
    assert "02_bad.md: block 2 (line" in output and "`c = b / 0`" in output, output
    assert "ZeroDivisionError" in output, output
    assert "README" not in output, output


# ----- what the chapters point to -------------------------------------------------------------------
CHAPTERS = sorted(path for path in TUTORIALS.glob("*.md") if runner.CHAPTER_NAME.match(path.name))
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
CODE_BLOCK = re.compile(r"^ *(`{3,}|~{3,}).*?^ *\1\s*$", flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_every_linked_file_and_figure_exists_and_named_functions_are_defined(chapter):
    problems = []
    prose = CODE_BLOCK.sub("", chapter.read_text())  # `a[i](x)` in code is indexing, not a link
    for match in LINK.finditer(prose):
        target = match["target"]
        if "://" in target:
            continue
        file = (chapter.parent / target).resolve()
        if not file.exists():
            problems.append(f"{target}: no such file")
            continue
        # [`name`](file.py) or [`Class.method`](file.py): the last name must be defined in that file.
        name = re.fullmatch(r"`(?:[\w.]+\.)?(\w+)(?:\(.*\))?`", match["text"])
        if file.suffix == ".py" and name:
            pattern = rf"^\s*(def|class)\s+{name[1]}\b|^{name[1]}\s*[:=]"
            if not re.search(pattern, file.read_text(), flags=re.MULTILINE):
                problems.append(f"{target}: defines no `{name[1]}`")
    assert not problems, f"{chapter.name}: " + "; ".join(problems)


def test_every_chapter_is_in_the_readme():
    readme = (TUTORIALS / "README.md").read_text()
    missing = [chapter.name for chapter in CHAPTERS if f"({chapter.name})" not in readme]
    assert not missing, f"tutorials/README.md does not link {missing}"
