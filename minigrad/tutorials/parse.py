"""Reading a chapter: its fenced blocks, the output blocks after them, its value spans and its exercises.

A chapter is a Markdown file ``tutorials/NN_name.md``. What this module finds in it:

- python blocks (```` ```python ````, also ``py``/``python3``), with the words after the language as markers:
  ``no-run`` (shown, never run), ``exercise=NAME`` (a skeleton), ``check=NAME`` (its check),
  ``solution=NAME`` (its solution);
- output blocks: a fence with the info string ``output`` right after a python block (only blank lines between):
  what that block must print;
- value spans in the prose: ``<span data-value="EXPR">TEXT</span>`` (``str(EXPR)``, or ``format(EXPR, SPEC)``
  with ``data-format="SPEC"``, must equal TEXT) and ``<span data-measured="EXPR">TEXT</span>`` (a number
  measured on the machine that runs the chapter: EXPR must evaluate, TEXT is not compared).

Nothing here runs code; :mod:`minigrad.tutorials.runner` does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

CHAPTER_NAME = re.compile(r"^\d\d_.*\.md$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
PYTHON_LANGUAGES = ("python", "py", "python3")
EXERCISE_KINDS = ("exercise", "check", "solution")
# The attributes may hold a '>' inside quotes (data-value="n > 3"); the text runs to the first </span>.
_ATTRIBUTES = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
SPAN = re.compile(
    rf"<span\b(?P<attributes>{_ATTRIBUTES}\bdata-(?:value|measured)\s*={_ATTRIBUTES})>(?P<text>.*?)</span>", re.DOTALL)
ATTRIBUTE = re.compile(r"(?P<name>[\w-]+)\s*=\s*(?:\"(?P<double>[^\"]*)\"|'(?P<single>[^']*)')")
MEASURED_WORDS = "measured here"


class ChapterSyntaxError(ValueError):
    """A chapter's Markdown breaks the runner's syntax (a stray output block, a malformed span, an exercise
    without its check ...); the message names the file and line."""


@dataclass
class Fence:
    """Any fenced block: its info string, the lines of its opening and closing fences, its code."""

    info: str
    fence_line: int  # 1-based line of the opening fence
    end_line: int  # 1-based line of the closing fence (or the last line when it is never closed)
    source: str  # the code lines, the fence's indent removed, ending with a newline

    @property
    def words(self) -> list[str]:
        return self.info.split()


@dataclass
class Block:
    """One python block: its source, the Markdown line its code starts on, its markers, its output block."""

    number: int  # 1-based, counting only python blocks
    first_line: int  # line of the first code line in the .md file (1-based)
    source: str
    markers: tuple[str, ...]
    fence_line: int = 0
    end_line: int = 0
    output: Fence | None = None  # the ```output block right after it, if any

    @property
    def title(self) -> str:
        first = next((line.strip() for line in self.source.splitlines() if line.strip()), "")
        return f"block {self.number} (line {self.first_line}: `{first}`)"

    @property
    def kind(self) -> str:
        """``"code"`` (runs), ``"no-run"``, or one of ``"exercise"``, ``"check"``, ``"solution"``."""
        for marker in self.markers:
            key = marker.split("=", 1)[0]
            if key in EXERCISE_KINDS and "=" in marker:
                return key
        return "no-run" if "no-run" in self.markers else "code"

    @property
    def exercise_name(self) -> str | None:
        for marker in self.markers:
            key, _, value = marker.partition("=")
            if key in EXERCISE_KINDS and value:
                return value.strip("\"'")
        return None


@dataclass
class Span:
    """``<span data-value="EXPR" data-format="SPEC">TEXT</span>`` (or ``data-measured``) in the prose."""

    line: int
    expression: str
    text: str
    format: str | None = None
    measured: bool = False
    source: str = ""  # the span as written

    @property
    def title(self) -> str:
        return f"span at line {self.line}: {self.source}"


@dataclass
class Exercise:
    """A skeleton (shown, not run), its check and its solution, all named NAME in one chapter."""

    name: str
    skeleton: Block
    check: Block
    solution: Block
    statement: str = ""  # the prose just before the skeleton: what the exercise asks


@dataclass
class Chapter:
    path: Path
    text: str
    fences: list[Fence] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    exercises: list[Exercise] = field(default_factory=list)

    @property
    def number(self) -> str:
        """The chapter's two-digit prefix: ``"05"`` for ``05_linear_softmax_training.md``."""
        return self.path.name[:2]


def parse_fences(text: str) -> list[Fence]:
    """Every fenced block of a Markdown text (any language), in order; a fence inside a longer fence is code."""
    fences: list[Fence] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = len(opening["indent"]), opening["fence"], opening["info"].strip()
        # The block ends at a fence of the same character, at least as long (CommonMark's rule).
        end = i + 1
        while end < len(lines) and not re.match(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]):
            end += 1
        # A fence indented (in a list, say) by n spaces: its code lines lose up to n leading spaces.
        code = [line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in lines[i + 1 : end]]
        fences.append(Fence(info, i + 1, min(end + 1, len(lines)), "\n".join(code) + "\n"))
        i = end + 1
    return fences


def parse_blocks(text: str, name: str = "<chapter>") -> list[Block]:
    """Every python block of a Markdown text, in order, each with the output block that follows it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    previous: Fence | None = None
    for fence in parse_fences(text):
        words = fence.words
        language = words[0].lower() if words else ""
        if language in PYTHON_LANGUAGES:
            blocks.append(Block(len(blocks) + 1, fence.fence_line + 1, fence.source, tuple(words[1:]),
                                fence.fence_line, fence.end_line))
        elif language == "output":
            between = lines[previous.end_line : fence.fence_line - 1] if previous else ["(start)"]
            follows = previous is not None and blocks and blocks[-1].end_line == previous.end_line
            if not follows or any(line.strip() for line in between):
                raise ChapterSyntaxError(
                    f"{name}: the output block at line {fence.fence_line} does not follow a python block directly "
                    "(put it right after the ```python block whose printing it shows, with only blank lines between)")
            if blocks[-1].kind in ("no-run", "exercise"):
                raise ChapterSyntaxError(
                    f"{name}: the output block at line {fence.fence_line} follows a block that never runs "
                    f"({blocks[-1].title}, {blocks[-1].kind}): nothing would be compared")
            blocks[-1].output = fence
        previous = fence
    return blocks


def parse_spans(text: str, fences: list[Fence], name: str = "<chapter>") -> list[Span]:
    """The value spans of the prose (spans inside fenced blocks are code, not prose)."""
    in_fence = [False] * (len(text.splitlines()) + 2)
    for fence in fences:
        for line in range(fence.fence_line, fence.end_line + 1):
            in_fence[line] = True
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_of(offset: int) -> int:
        low, high = 0, len(line_starts) - 1
        while low < high:  # the last line start <= offset
            middle = (low + high + 1) // 2
            low, high = (middle, high) if line_starts[middle] <= offset else (low, middle - 1)
        return low + 1

    spans: list[Span] = []
    found = set()
    for match in SPAN.finditer(text):
        line = line_of(match.start())
        found.add(match.start())
        if in_fence[line]:
            continue
        attributes = {a["name"]: html.unescape(a["double"] if a["double"] is not None else a["single"])
                      for a in ATTRIBUTE.finditer(match["attributes"])}
        measured = "data-measured" in attributes
        if not measured and "data-value" not in attributes:
            raise ChapterSyntaxError(f"{name}: a malformed value span at line {line}: {match[0]} (write "
                                     '<span data-value="EXPR">TEXT</span>, the attribute in quotes)')
        if measured and "data-value" in attributes:
            raise ChapterSyntaxError(f"{name}: the span at line {line} needs exactly one of data-value and "
                                     f"data-measured: {match[0]}")
        expression = attributes["data-measured" if measured else "data-value"].strip()
        if not expression:
            raise ChapterSyntaxError(f"{name}: the span at line {line} has an empty expression: {match[0]}")
        spans.append(Span(line, expression, html.unescape(match["text"]), attributes.get("data-format"), measured,
                          match[0]))
    # A data-value that the pattern above did not take is a malformed span (unclosed, attribute not quoted ...).
    for stray in re.finditer(r"<span\b[^>]*\bdata-(?:value|measured)\b", text):
        if stray.start() not in found and not in_fence[line_of(stray.start())]:
            raise ChapterSyntaxError(f"{name}: a malformed value span at line {line_of(stray.start())} (write "
                                     '<span data-value="EXPR">TEXT</span>, the attribute in quotes, closed by </span>)')
    lines = text.splitlines()
    for span in spans:
        if span.measured and MEASURED_WORDS not in _paragraph_around(lines, span.line).lower():
            raise ChapterSyntaxError(f"{name}: the measured span at line {span.line} ({span.source}) needs the words "
                                     f"'{MEASURED_WORDS}' in its paragraph or the one before: it is this machine's "
                                     "number, not the reader's")
    return spans


def _paragraph_around(lines: list[str], line: int) -> str:
    """The paragraph (run of non-blank lines) holding ``line`` (1-based), and the paragraph before it."""
    start = end = line - 1
    while start > 0 and lines[start - 1].strip():
        start -= 1
    while end + 1 < len(lines) and lines[end + 1].strip():
        end += 1
    before_end = start - 1
    while before_end > 0 and not lines[before_end].strip():
        before_end -= 1
    before_start = before_end
    while before_start > 0 and lines[before_start - 1].strip():
        before_start -= 1
    return "\n".join(lines[max(before_start, 0) : end + 1])


def _statement(lines: list[str], block: Block) -> str:
    """The prose right before a skeleton, back to the previous heading or fenced block: the exercise's task."""
    start = block.fence_line - 1  # 0-based index of the fence line
    while start > 0 and not lines[start - 1].startswith("#") and not FENCE.match(lines[start - 1]):
        start -= 1
    return "\n".join(lines[start : block.fence_line - 1]).strip()


def parse_exercises(text: str, blocks: list[Block], name: str = "<chapter>") -> list[Exercise]:
    """The exercises of a chapter, in the order of their skeletons; each needs all three parts, once."""
    parts: dict[str, dict[str, Block]] = {}
    for block in blocks:
        if block.kind not in EXERCISE_KINDS:
            continue
        exercise = block.exercise_name
        if not exercise or not re.fullmatch(r"[A-Za-z_][\w-]*", exercise):
            raise ChapterSyntaxError(f"{name}: {block.title}: {block.kind}= needs a NAME made of letters, digits, "
                                     f"_ and - (got {exercise!r})")
        seen = parts.setdefault(exercise, {})
        if block.kind in seen:
            raise ChapterSyntaxError(f"{name}: {block.title}: a second {block.kind}={exercise} (the first is "
                                     f"{seen[block.kind].title}); exercise names are unique in a chapter")
        seen[block.kind] = block
    lines = text.splitlines()
    exercises = []
    for exercise, found in parts.items():
        missing = [kind for kind in EXERCISE_KINDS if kind not in found]
        if missing:
            where = next(iter(found.values())).title
            raise ChapterSyntaxError(f"{name}: exercise {exercise!r} ({where}) has no " +
                                     " and no ".join(f"```python {kind}={exercise} block" for kind in missing))
        exercises.append(Exercise(exercise, found["exercise"], found["check"], found["solution"],
                                  _statement(lines, found["exercise"])))
    return sorted(exercises, key=lambda e: e.skeleton.first_line)


def parse_chapter(path: Path | str, text: str | None = None) -> Chapter:
    """Read a chapter file: fences, python blocks with their output blocks, spans and exercises."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if text is None else text
    fences = parse_fences(text)
    blocks = parse_blocks(text, path.name)
    return Chapter(path, text, fences, blocks, parse_spans(text, fences, path.name),
                   parse_exercises(text, blocks, path.name))


def output_matches(expected: str, actual: str) -> bool:
    """Whether printed text ``actual`` matches an output block's ``expected`` text.

    Trailing whitespace of each line and blank lines at the end are ignored. A line that is exactly ``...``
    matches any number of lines (zero too); ``...`` inside a line matches any text on that line.
    """
    return re.fullmatch(_output_pattern(expected), _normalise(actual)) is not None


def _normalise(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def _output_pattern(expected: str) -> str:
    pattern = []
    for line in _normalise(expected).splitlines():
        if line == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            parts = line.split("...")
            if len(parts) > 1 and not parts[-1]:  # "x = ..." matches a printed "x =" (trailing space stripped)
                parts[-2] = parts[-2].rstrip()
            pattern.append(r"[^\n]*?".join(re.escape(part) for part in parts) + r"\n")
    return "".join(pattern)
