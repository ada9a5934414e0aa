"""The tutorials' machinery: read a chapter (:mod:`.parse`), run it and check what it prints and states
(:mod:`.runner`), its exercises for students (:mod:`.exercises`), chapters as Jupyter notebooks
(:mod:`.notebooks`), and the ``minigrad exercises`` / ``check`` / ``tutorials`` commands (:mod:`.cli`).

The chapters themselves are ``tutorials/NN_name.md`` in the repository; ``tutorials/README.md`` explains the
syntax the runner understands.
"""

from minigrad.tutorials.parse import Block, Chapter, ChapterSyntaxError, Exercise, Span, parse_chapter
from minigrad.tutorials.runner import ChapterError, chapters_in, find_tutorials, run_chapter

__all__ = ["Block", "Chapter", "ChapterError", "ChapterSyntaxError", "Exercise", "Span", "chapters_in",
           "find_tutorials", "parse_chapter", "run_chapter"]
