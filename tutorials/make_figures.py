"""Regenerate every tutorial figure by running every chapter's code, and time each chapter.

    python tutorials/make_figures.py            # all chapters
    python tutorials/make_figures.py 02 05      # only chapters 2 and 5

Each chapter runs exactly as the tests run it (the runner, ``minigrad.tutorials.run_chapter``: one shared
namespace, fixed seeds, the Agg backend, working directory ``tutorials/``, output blocks and value spans
checked), except that ``FIGURES`` is ``tutorials/figures/`` instead of a temporary folder: this script is the
only thing that rewrites the tracked figures. Prints the run time of each chapter and the figures it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parent
sys.path.insert(0, str(TUTORIALS.parent))  # this checkout's minigrad, also when it is not installed

from minigrad.tutorials.parse import ChapterSyntaxError  # noqa: E402
from minigrad.tutorials.runner import ChapterError, chapters_in, run_chapter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or file-name prefixes (default: all)")
    parser.add_argument("--verbose", action="store_true", help="show what the chapters print")
    args = parser.parse_args(argv)

    chapters = chapters_in(TUTORIALS)
    if args.chapters:
        chapters = [path for path in chapters if any(path.name.startswith(prefix) for prefix in args.chapters)]
    if not chapters:
        print(f"no chapter matches {args.chapters}", file=sys.stderr)
        return 2

    figures = TUTORIALS / "figures"
    failed = 0
    for path in chapters:
        before = {figure: figure.stat().st_mtime for figure in figures.glob("*")} if figures.exists() else {}
        start = time.perf_counter()
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(sys.stdout if args.verbose else output):
                run_chapter(path, figures=figures)
            status = "ok"
        except (ChapterError, ChapterSyntaxError) as error:
            status, failed = f"FAILED\n{error}", failed + 1
        seconds = time.perf_counter() - start
        written = sorted(f.name for f in figures.glob("*") if before.get(f) != f.stat().st_mtime)
        print(f"{path.name:40s} {seconds:6.1f} s  {status}  figures: {', '.join(written) or '-'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
