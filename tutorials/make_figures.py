"""Regenerate every tutorial figure by running every chapter's code, and time each chapter.

    python tutorials/make_figures.py            # all chapters
    python tutorials/make_figures.py 02 04      # only chapters 02 and 04

Each chapter runs exactly as the tests run it (the runner in ``tutorials/conftest.py``: one shared
namespace, fixed seeds, the Agg backend, working directory ``tutorials/``), so its figures land in
``tutorials/figures/``. Prints the run time of each chapter and the figures it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import time
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parent


def load_runner():
    """The runner module (``tutorials/conftest.py``), loaded by path: ``tutorials`` is not a package."""
    spec = importlib.util.spec_from_file_location("tutorial_runner", TUTORIALS / "conftest.py")
    runner = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runner  # registered before running it, as an import would (dataclasses need it)
    spec.loader.exec_module(runner)
    return runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or file-name prefixes (default: all)")
    parser.add_argument("--verbose", action="store_true", help="show what the chapters print")
    args = parser.parse_args(argv)

    runner = load_runner()
    chapters = sorted(path for path in TUTORIALS.glob("*.md") if runner.CHAPTER_NAME.match(path.name))
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
                runner.run_chapter(path)
            status = "ok"
        except runner.ChapterError as error:
            status, failed = f"FAILED\n{error}", failed + 1
        seconds = time.perf_counter() - start
        written = sorted(f.name for f in figures.glob("*") if before.get(f) != f.stat().st_mtime)
        print(f"{path.name:40s} {seconds:6.1f} s  {status}  figures: {', '.join(written) or '-'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
