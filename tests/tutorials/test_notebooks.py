"""Tests of minigrad/tutorials/notebooks.py: the cells a chapter becomes, and a generated notebook executed top to
bottom by a real Jupyter kernel (nbclient; a hard error when MINIGRAD_REQUIRE_NBCLIENT=1, as in CI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minigrad.tutorials.notebooks import SETUP, chapter_notebook, write_notebook, write_notebooks
from minigrad.tutorials.parse import parse_chapter

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
REQUIRE_NBCLIENT = os.environ.get("MINIGRAD_REQUIRE_NBCLIENT", "") not in ("", "0")

CHAPTER = """# A chapter

Some prose with a <span data-value="x">2</span>.

```python
x = 2
print(x)
```

```output
2
```

```bash
pip install minigrad
```

```python no-run
raise RuntimeError("never")
```

## Exercise

```python exercise=double
def double(v):
    ...
```

```python check=double
assert double(x) == 4
```

<details>
<summary>Solution</summary>

```python solution=double
def double(v):
    return 2 * v
```

</details>

The end.
"""


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_a_chapter_becomes_markdown_and_code_cells(tmp_path):
    notebook = chapter_notebook(parse_chapter(tmp_path / "01_a.md", CHAPTER))
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] == 5
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    cells = notebook["cells"]
    assert len({cell["id"] for cell in cells}) == len(cells)
    kinds = [(cell["cell_type"], source(cell).splitlines()[0]) for cell in cells]
    assert kinds == [
        ("code", SETUP.splitlines()[0]),
        ("markdown", "# A chapter"),
        ("code", "x = 2"),
        ("markdown", "```bash"),                      # other languages stay Markdown; the output block is gone
        ("raw", 'raise RuntimeError("never")'),       # no-run: shown, never run
        ("markdown", "## Exercise"),
        ("code", "def double(v):"),                   # the skeleton, to fill in
        ("code", "assert double(x) == 4"),            # the check, before the solution: fails until then
        ("markdown", "#### Solution"),                # <details>/<summary> lines become a heading
        ("code", "def double(v):"),
        ("markdown", "The check of `double` again, now on the solution:"),
        ("code", "assert double(x) == 4"),
        ("markdown", "The end."),
    ]
    assert cells[7]["metadata"] == {"tags": ["raises-exception"]} and cells[11]["metadata"] == {}
    code_cells = [cell for cell in cells if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code_cells)
    assert "<details>" not in json.dumps(notebook) and "```output" not in json.dumps(notebook)
    assert '<span data-value="x">2</span>' in source(cells[1])  # the span shows its text in Jupyter
    assert 'FIGURES = NOTEBOOK_FOLDER / "figures"' in source(cells[0])
    assert "os.chdir(find_tutorials())" in source(cells[0])


def test_every_chapter_becomes_a_valid_notebook_file(tmp_path):
    written = write_notebooks(TUTORIALS, tmp_path)
    assert [path.name for path in written] == [p.stem + ".ipynb" for p in sorted(TUTORIALS.glob("[0-9][0-9]_*.md"))]
    for path in written:
        notebook = json.loads(path.read_text())
        assert notebook["cells"][0]["cell_type"] == "code"
        code = "\n".join(source(c) for c in notebook["cells"] if c["cell_type"] == "code")
        compile(code, str(path), "exec")  # every code cell is valid Python


def test_a_generated_notebook_runs_top_to_bottom_in_a_real_kernel(tmp_path, monkeypatch):
    try:
        import nbclient
        import nbformat
    except ImportError:
        if REQUIRE_NBCLIENT:
            pytest.fail("nbclient is required (MINIGRAD_REQUIRE_NBCLIENT=1) but is not installed: "
                        "pip install nbclient ipykernel (the test extra has them)", pytrace=False)
        pytest.skip("nbclient is not installed (pip install 'minigrad[test]')")
    tracked = {p.name: p.stat().st_mtime_ns for p in (TUTORIALS / "figures").glob("*")}
    path = write_notebook(TUTORIALS / "02_autograd.md", tmp_path)
    notebook = nbformat.read(path, as_version=4)
    # The kernel is a new process: it imports this checkout's minigrad.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [(source(cell)[:60], output.get("ename")) for cell in code_cells for output in cell.outputs
              if output.output_type == "error"]
    tagged = [source(cell)[:60] for cell in code_cells if "raises-exception" in cell.metadata.get("tags", [])]
    assert [text for text, _ in errors] == tagged, errors  # only the check before its solution failed
    assert all(cell.execution_count for cell in code_cells)  # every cell ran
    printed = "".join(output.get("text", "") for cell in code_cells for output in cell.outputs)
    assert "a: " in printed and " vs " in printed  # the check, run again after the solution, printed its comparison
    assert (tmp_path / "figures" / "02_graph.png").is_file()  # FIGURES is next to the notebook
    assert {p.name: p.stat().st_mtime_ns for p in (TUTORIALS / "figures").glob("*")} == tracked
