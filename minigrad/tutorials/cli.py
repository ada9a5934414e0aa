"""``minigrad exercises DIR``, ``minigrad check DIR [CHAPTER]`` and ``minigrad tutorials --notebooks DIR``.

The chapters are the repository's ``tutorials/`` (next to the package: an editable install or a checkout), or
the folder given with ``--tutorials DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _tutorials(args: argparse.Namespace) -> Path | None:
    from minigrad.tutorials.runner import find_tutorials

    try:
        return find_tutorials(args.tutorials)
    except FileNotFoundError as error:
        print(f"minigrad {args.command}: {error}", file=sys.stderr)
        return None


def exercises_command(args: argparse.Namespace) -> int:
    """Write every chapter's exercise skeletons into DIR, keeping the files already there."""
    from minigrad.tutorials.exercises import write_exercises

    tutorials = _tutorials(args)
    if tutorials is None:
        return 2
    folder = Path(args.dir)
    try:
        written, kept = write_exercises(tutorials, folder)
    except ValueError as error:  # a chapter that breaks the syntax (ChapterSyntaxError)
        print(f"minigrad exercises: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    for path in kept:
        print(f"kept  {path} (already there: your work is not overwritten; delete it for a fresh skeleton)")
    print(f"{len(written)} skeletons written, {len(kept)} kept, in {folder}. Fill one in, then: "
          f"minigrad check {folder} [CHAPTER]")
    return 0


def check_command(args: argparse.Namespace) -> int:
    """Run each exercise's check on the student's file; one PASS/FAIL line each; non-zero while any fails."""
    from minigrad.tutorials.exercises import check_exercises, print_outcomes

    tutorials = _tutorials(args)
    if tutorials is None:
        return 2
    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"minigrad check: no folder {folder}; write the skeletons first: minigrad exercises {folder}",
              file=sys.stderr)
        return 2
    try:
        outcomes = check_exercises(tutorials, folder, args.chapter)
    except ValueError as error:
        print(f"minigrad check: {error}", file=sys.stderr)
        return 2
    if not outcomes:
        print(f"minigrad check: chapter {args.chapter} has no exercises", file=sys.stderr)
        return 2
    return print_outcomes(outcomes)


def tutorials_command(args: argparse.Namespace) -> int:
    """Write every chapter (or the chosen ones) as a Jupyter notebook."""
    from minigrad.tutorials.exercises import select_chapters
    from minigrad.tutorials.notebooks import write_notebooks

    tutorials = _tutorials(args)
    if tutorials is None:
        return 2
    if args.notebooks is None:
        print(f"the chapters are in {tutorials}; minigrad tutorials --notebooks DIR writes them as notebooks")
        return 0
    try:
        chapters = [path for chapter in (args.chapters or [None]) for path in select_chapters(tutorials, chapter)]
    except ValueError as error:
        print(f"minigrad tutorials: {error}", file=sys.stderr)
        return 2
    for path in write_notebooks(tutorials, Path(args.notebooks), chapters):
        print(f"wrote {path}")
    print(f"open them with: jupyter notebook {args.notebooks} (figures go to {Path(args.notebooks) / 'figures'})")
    return 0


def register_command(commands: Any) -> None:
    """Add ``minigrad exercises``, ``minigrad check`` and ``minigrad tutorials`` to the CLI's subcommands."""
    location = dict(help="the folder of the NN_name.md chapters (default: the repository's tutorials/)")

    parser = commands.add_parser("exercises", help="write every tutorial exercise's skeleton into DIR")
    parser.add_argument("dir", metavar="DIR", help="where to write DIR/NN_chapter/NAME.py (existing files are kept)")
    parser.add_argument("--tutorials", metavar="DIR", **location)
    parser.set_defaults(handler=exercises_command)

    parser = commands.add_parser("check", help="check your tutorial exercises in DIR: PASS or what is wrong")
    parser.add_argument("dir", metavar="DIR", help="the folder minigrad exercises wrote")
    parser.add_argument("chapter", nargs="?", metavar="CHAPTER", help="only this chapter: 05 or 05_linear...")
    parser.add_argument("--tutorials", metavar="DIR", **location)
    parser.set_defaults(handler=check_command)

    parser = commands.add_parser("tutorials", help="the tutorial chapters as Jupyter notebooks (--notebooks DIR)")
    parser.add_argument("chapters", nargs="*", metavar="CHAPTER", help="only these chapters (default: all)")
    parser.add_argument("--notebooks", metavar="DIR", help="write each chapter as DIR/NN_chapter.ipynb")
    parser.add_argument("--tutorials", metavar="DIR", **location)
    parser.set_defaults(handler=tutorials_command)
