"""The tutorials' links into the source, with line anchors: ``[`col2im`](../minigrad/kernels/im2col.py#L63-L83)``.

Each link to a kernel function must carry a line anchor, the anchored lines must exist, and they must hold the
definition of the name in the link text, so that a link cannot silently point at the wrong lines after the code
moves. When the code moves, rewrite the anchors with

    python tests/test_tutorial_links.py          # sets every anchor to its definition's lines

The tests at the end check every link, with or without an anchor: the file or figure exists, and a linked
``.py`` file defines the name in the link text. (The runner itself is tested in tests/tutorials/.)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.md"))
# [text](../minigrad/...py) with an optional #Lstart or #Lstart-Lend anchor.
SOURCE_LINK = re.compile(
    r"\[(?P<text>[^\]]*)\]\((?P<path>\.\./minigrad/[^)#\s]+\.py)(?:#L(?P<start>\d+)(?:-L(?P<end>\d+))?)?\)")
CODE_NAME = re.compile(r"`(?:[\w.]+\.)?(?P<name>\w+)(?:\(.*\))?`")  # `name`, `Class.method`, `name(...)`
NEEDS_ANCHOR = "../minigrad/kernels/"  # every link to a named kernel function carries a line anchor


def defines(lines: list[str], name: str) -> bool:
    """Whether ``lines`` hold the definition of ``name``: ``def name``, ``class name`` or ``name = ...``
    (also ``other = name = ...``)."""
    pattern = rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b|^(?:\w+\s*=\s*)*{name}\s*[:=]"
    return any(re.search(pattern, line) for line in lines)


def link_problems(markdown: str, base: Path) -> list[str]:
    """What is wrong with the source links of a chapter's ``markdown`` (paths relative to ``base``)."""
    problems = []
    for match in SOURCE_LINK.finditer(markdown):
        path, name = base / match["path"], CODE_NAME.fullmatch(match["text"])
        label = f"[{match['text']}]({match['path']}{'#L' + match['start'] if match['start'] else ''}...)"
        if not path.is_file():
            problems.append(f"{label}: no such file")
            continue
        if match["start"] is None:
            if name and match["path"].startswith(NEEDS_ANCHOR):
                problems.append(f"{label}: a link to a kernel function needs a line anchor (#Lstart-Lend)")
            continue
        lines = path.read_text().splitlines()
        start, end = int(match["start"]), int(match["end"] or match["start"])
        if not 1 <= start <= end <= len(lines):
            problems.append(f"{label}: lines {start}-{end} are not inside the file's {len(lines)} lines")
        elif name and not defines(lines[start - 1 : end], name["name"]):
            problems.append(f"{label}: lines {start}-{end} do not define `{name['name']}`")
    return problems


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_anchored_links_land_on_the_definition_they_name(chapter):
    problems = link_problems(chapter.read_text(), chapter.parent)
    fix = " (python tests/test_tutorial_links.py sets the anchors)"
    assert not problems, f"{chapter.name}: " + "; ".join(problems) + fix


def test_the_chapters_link_their_formulas_to_the_reference_kernels_with_anchors():
    anchored = [match for chapter in CHAPTERS for match in SOURCE_LINK.finditer(chapter.read_text())
                if match["start"] and match["path"].startswith(NEEDS_ANCHOR)]
    linked = {(match["path"], CODE_NAME.fullmatch(match["text"])["name"]) for match in anchored
              if CODE_NAME.fullmatch(match["text"])}
    for reference in [("conv.py", "conv2d_backward"), ("im2col.py", "col2im"), ("max_pool.py", "max_pool2d_forward"),
                      ("avg_pool.py", "adaptive_avg_pool2d_forward"), ("batchnorm.py", "batch_norm_backward"),
                      ("dropout.py", "dropout_forward"), ("concat.py", "split_backward")]:
        assert (NEEDS_ANCHOR + reference[0], reference[1]) in linked, reference


def test_the_check_catches_a_wrong_range_a_missing_anchor_and_a_missing_file(tmp_path):
    source = tmp_path / "minigrad" / "kernels" / "k.py"
    source.parent.mkdir(parents=True)
    source.write_text("import x\n\n\ndef f(a):\n    return a\n\n\ng = h = f\n")
    base = tmp_path / "tutorials"
    base.mkdir()
    good = ["[`f`](../minigrad/kernels/k.py#L4-L5)", "[`g`](../minigrad/kernels/k.py#L4-L8)",
            "[`h`](../minigrad/kernels/k.py#L8)", "[the file](../minigrad/kernels/k.py)"]
    assert link_problems(" ".join(good), base) == []
    bad = {"[`f`](../minigrad/kernels/k.py#L1-L3)": "do not define `f`",
           "[`f`](../minigrad/kernels/k.py#L4-L20)": "not inside the file's 8 lines",
           "[`f`](../minigrad/kernels/k.py)": "needs a line anchor",
           "[`f`](../minigrad/kernels/gone.py#L1)": "no such file"}
    for link, message in bad.items():
        (problem,) = link_problems(link, base)
        assert message in problem, (link, problem)


# ----- rewriting the anchors ------------------------------------------------------------------------
def definition_span(path: Path, name: str) -> tuple[int, int] | None:
    """(first, last) line of the definition of ``name`` at the top of ``path`` (decorators included); for
    ``alias = name_of_a_function``, from that function's first line to the alias."""
    tree = ast.parse(path.read_text())
    spans: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            spans[node.name] = (first, node.end_lineno)
            for member in node.body if isinstance(node, ast.ClassDef) else []:
                if isinstance(member, ast.FunctionDef):
                    spans.setdefault(member.name, (member.lineno, member.end_lineno))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            span = (node.lineno, node.end_lineno)
            if isinstance(node.value, ast.Name) and node.value.id in spans:  # an alias of a function above
                span = (spans[node.value.id][0], node.end_lineno)
            for target in targets:
                if isinstance(target, ast.Name):
                    spans[target.id] = span
    return spans.get(name)


def rewrite_anchors(markdown: str, base: Path) -> str:
    """Every named link to a kernel file with its anchor set to the definition's lines."""
    def anchored(match: re.Match) -> str:
        name = CODE_NAME.fullmatch(match["text"])
        if not (name and match["path"].startswith(NEEDS_ANCHOR)):
            return match[0]
        span = definition_span(base / match["path"], name["name"])
        if span is None:
            return match[0]
        return f"[{match['text']}]({match['path']}#L{span[0]}-L{span[1]})"

    return SOURCE_LINK.sub(anchored, markdown)


def test_rewriting_sets_each_anchor_to_the_definition(tmp_path):
    source = tmp_path / "minigrad" / "kernels" / "k.py"
    source.parent.mkdir(parents=True)
    source.write_text("import x\n\n\n@decorate\ndef f(a):\n    return a\n\n\ng = f\n")
    base = tmp_path / "tutorials"
    base.mkdir()
    text = "[`f`](../minigrad/kernels/k.py#L1-L2) and [`g`](../minigrad/kernels/k.py) and [k](../minigrad/kernels/k.py)"
    fixed = rewrite_anchors(text, base)
    assert fixed == ("[`f`](../minigrad/kernels/k.py#L4-L6) and [`g`](../minigrad/kernels/k.py#L4-L9) and "
                     "[k](../minigrad/kernels/k.py)")
    assert link_problems(fixed, base) == []


# ----- what the chapters point to -------------------------------------------------------------------
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


if __name__ == "__main__":
    for chapter in CHAPTERS:
        text = chapter.read_text()
        fixed = rewrite_anchors(text, chapter.parent)
        if fixed != text:
            chapter.write_text(fixed)
            print(f"{chapter.name}: anchors updated")
    sys.exit(0)
