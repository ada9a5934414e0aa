"""Tests of minigrad/tutorials/parse.py: blocks and their markers, output blocks and their matching, value spans,
exercises, and the clear errors for a chapter that breaks the syntax."""

from __future__ import annotations

import pytest

from minigrad.tutorials.parse import (
    ChapterSyntaxError,
    output_matches,
    parse_blocks,
    parse_chapter,
    parse_fences,
    parse_spans,
)


# ----- blocks ------------------------------------------------------------------------------------------
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
    blocks = parse_blocks(text)
    assert [b.number for b in blocks] == [1, 2, 3]
    assert [b.first_line for b in blocks] == [3, 9, 13]
    assert [(b.fence_line, b.end_line) for b in blocks] == [(2, 4), (8, 10), (12, 16)]
    assert [b.markers for b in blocks] == [(), ("no-run", 'active="md"'), ()]
    assert [b.kind for b in blocks] == ["code", "no-run", "code"]
    assert blocks[0].source == "a = 1\n"
    assert blocks[2].source == "c = 3\nif c:\n    d = 4\n"  # the fence's indent is removed, no more
    assert blocks[1].title == "block 2 (line 9: `b = 2`)"


def test_parse_blocks_ignores_a_python_fence_shown_inside_a_longer_fence():
    text = "````markdown\n```python\nraise RuntimeError\n```\n````\n```python\nx = 1\n```\n"
    assert [b.source for b in parse_blocks(text)] == ["x = 1\n"]
    assert [f.info for f in parse_fences(text)] == ["markdown", "python"]


def test_exercise_markers_give_the_kind_and_the_name():
    text = "```python exercise=first\n...\n```\n```python check=first\n1\n```\n```python solution=first\n2\n```\n"
    blocks = parse_blocks(text)
    assert [(b.kind, b.exercise_name) for b in blocks] == [("exercise", "first"), ("check", "first"),
                                                          ("solution", "first")]


# ----- output blocks -------------------------------------------------------------------------------------
def test_an_output_block_right_after_a_python_block_belongs_to_it():
    text = "```python\nprint(1)\n```\n\n```output\n1\n```\n\n```python\nx = 2\n```\n"
    first, second = parse_blocks(text)
    assert first.output is not None and first.output.source == "1\n" and first.output.fence_line == 5
    assert second.output is None


def test_an_output_block_after_prose_or_at_the_start_is_an_error_naming_its_line():
    with pytest.raises(ChapterSyntaxError, match=r"ch\.md: the output block at line 5 does not follow a python"):
        parse_blocks("```python\nprint(1)\n```\nprose\n```output\n1\n```\n", "ch.md")
    with pytest.raises(ChapterSyntaxError, match="line 1 does not follow"):
        parse_blocks("```output\n1\n```\n", "ch.md")
    with pytest.raises(ChapterSyntaxError, match="line 5 does not follow"):  # after a bash block
        parse_blocks("```bash\nls\n```\n\n```output\n1\n```\n", "ch.md")


def test_an_output_block_after_a_block_that_never_runs_is_an_error():
    with pytest.raises(ChapterSyntaxError, match="follows a block that never runs"):
        parse_blocks("```python no-run\nprint(1)\n```\n```output\n1\n```\n", "ch.md")
    with pytest.raises(ChapterSyntaxError, match="never runs"):
        parse_blocks("```python exercise=e\nprint(1)\n```\n```output\n1\n```\n", "ch.md")


@pytest.mark.parametrize("expected, printed", [
    ("a\nb\n", "a\nb\n"),
    ("a   \nb", "a\nb   \n\n\n"),                       # trailing whitespace and blank lines at the end
    ("first\n...\nlast\n", "first\nlast\n"),            # '...' as a line: zero lines
    ("first\n...\nlast\n", "first\n1\n2\n3\nlast\n"),   # ... or many
    ("...\n", "anything\nat all\n"),
    ("...\n", ""),
    ("loss 2.3... after ... steps\n", "loss 2.3026 after 280 steps\n"),  # '...' inside a line: any text
    ("x = ...\n", "x = \n"),
])
def test_output_matching_accepts(expected, printed):
    assert output_matches(expected, printed)


@pytest.mark.parametrize("expected, printed", [
    ("a\nb\n", "a\nc\n"),
    ("a\n", "a\nb\n"),                                  # an extra line
    ("a\nb\n", "a\n"),                                  # a missing line
    ("  a\n", "a\n"),                                   # leading whitespace counts
    ("loss 2.3...\n", "loss 1.9\n"),
    ("x ...\n", "x 1\ny 2\n"),                          # '...' inside a line does not cross lines
    ("first\n...\nlast\n", "first\nlast but one\n"),
    ("a.b\n", "a-b\n"),                                  # no regular expressions: '.' is a dot
])
def test_output_matching_rejects(expected, printed):
    assert not output_matches(expected, printed)


# ----- spans ------------------------------------------------------------------------------------------
def spans_of(text: str):
    return parse_spans(text, parse_fences(text), "ch.md")


def test_value_measured_and_format_spans_with_their_lines():
    text = ('# T\n\nThe model has <span data-value="count">1,234</span> weights,\n'
            'or <span data-format=".1f" data-value="count / 1e3">1.2</span> thousand. A step takes\n'
            "<span data-measured=\"f'{t:.1f}'\">2.3</span> s, measured here.\n")
    value, formatted, measured = spans_of(text)
    assert (value.line, value.expression, value.text, value.format) == (3, "count", "1,234", None)
    assert not value.measured
    assert (formatted.line, formatted.expression, formatted.format) == (4, "count / 1e3", ".1f")
    assert (measured.line, measured.expression, measured.text, measured.measured) == (5, "f'{t:.1f}'", "2.3", True)


def test_html_entities_are_unescaped_and_spans_inside_code_are_code():
    text = ('<span data-value="a &lt; b &amp;&amp; &quot;x&quot;">1 &lt; 2</span>\n\n'
            '```html\n<span data-value="never">evaluated</span>\n```\n')
    (span,) = spans_of(text)
    assert span.expression == 'a < b && "x"' and span.text == "1 < 2"


def test_an_expression_may_hold_a_greater_than_sign_in_its_quotes():
    (span,) = spans_of('<span data-value="len(x) > 3" data-format="">True</span>\n')
    assert span.expression == "len(x) > 3" and span.text == "True" and span.format == ""


def test_malformed_spans_are_errors_naming_the_line():
    with pytest.raises(ChapterSyntaxError, match="malformed value span at line 2"):
        spans_of('prose\nsee <span data-value="x">42 and never closed\n')
    with pytest.raises(ChapterSyntaxError, match="malformed value span at line 1"):
        spans_of("<span data-value=x>42</span>\n")
    with pytest.raises(ChapterSyntaxError, match="exactly one of data-value and data-measured"):
        spans_of('<span data-value="x" data-measured="y">1</span>\n')
    with pytest.raises(ChapterSyntaxError, match="empty expression"):
        spans_of('<span data-value=" ">1</span>\n')


def test_a_measured_span_needs_measured_here_in_its_paragraph_or_the_one_before():
    with pytest.raises(ChapterSyntaxError, match="line 3 .*needs the words 'measured here'"):
        spans_of('A paragraph.\n\nIt takes <span data-measured="t">2.3</span> s.\n')
    spans_of('Times measured here:\n\n| step | <span data-measured="t">2.3</span> s |\n')  # the paragraph before


# ----- exercises -------------------------------------------------------------------------------------
EXERCISE = """# Chapter

## Exercise

Write `double(x)`, twice x.

```python exercise=double
def double(x):
    ...
```

```python check=double
assert double(2) == 4
```

<details>
<summary>Solution</summary>

```python solution=double
def double(x):
    return 2 * x
```

</details>
"""


def test_an_exercise_has_its_three_blocks_and_its_statement(tmp_path):
    (exercise,) = parse_chapter(tmp_path / "01_x.md", EXERCISE).exercises
    assert exercise.name == "double"
    assert exercise.skeleton.source.startswith("def double(x):\n    ...")
    assert exercise.check.source == "assert double(2) == 4\n"
    assert "return 2 * x" in exercise.solution.source
    assert exercise.statement == "Write `double(x)`, twice x."


@pytest.mark.parametrize("remove, missing", [("check=double", "check"), ("solution=double", "solution"),
                                             ("exercise=double", "exercise")])
def test_an_exercise_without_one_of_its_blocks_is_an_error(tmp_path, remove, missing):
    text = EXERCISE.replace(f"```python {remove}", "```python")
    with pytest.raises(ChapterSyntaxError, match=rf"01_x\.md: exercise 'double' .* has no ```python {missing}=double"):
        parse_chapter(tmp_path / "01_x.md", text)


def test_a_repeated_or_bad_exercise_name_is_an_error(tmp_path):
    text = EXERCISE + "\n```python check=double\nassert True\n```\n"
    with pytest.raises(ChapterSyntaxError, match="a second check=double"):
        parse_chapter(tmp_path / "01_x.md", text)
    with pytest.raises(ChapterSyntaxError, match="needs a NAME"):
        parse_chapter(tmp_path / "01_x.md", "```python exercise=\n...\n```\n")
