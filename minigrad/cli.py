"""The ``minigrad`` command line: ``minigrad gradcheck``, ``minigrad train``, ``minigrad summary`` ...

``gradcheck`` lives here; ``train``, ``summary``, ``convert-weights``, ``predict`` and the tutorials' ``exercises``,
``check`` and ``tutorials`` are registered by the modules that do the work (``register_command`` in
minigrad/train_cli.py, summary.py, models/weights.py, predict.py and tutorials/cli.py), so each command's options
sit next to its code. Also reachable as ``python -m minigrad ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` for options that take a value, never for on/off flags: ``--no-augment
    (default: True)`` would read as if augmentation were off. A flag's own help says what the default
    behaviour is instead."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.nargs == 0 or action.default is None:
            return action.help or ""
        return super()._get_help_string(action) or ""


def gradcheck_command(args: argparse.Namespace) -> int:
    """Run the finite-difference check for every registered op and print one row per op."""
    import numpy

    from minigrad.gradcheck import gradcheck
    from minigrad.testing import all_ops

    ops = [op for op in all_ops() if not args.op or op.name in args.op]
    if not ops:
        print(f"no registered op matches {args.op}", file=sys.stderr)
        return 2
    header = f"{'op':<24}{'cases':>6}{'max abs err':>14}{'max rel err':>14}  result"
    print(header)
    print("-" * len(header))
    failures = 0
    for op in ops:
        samples = op.sample_list()
        abs_error = rel_error = 0.0
        failed: list[str] = []
        for sample in samples:
            tensors = sample.tensors(numpy.float64)
            try:
                report = gradcheck(
                    lambda *ts, op=op, sample=sample: op.op(*ts, **sample.kwargs),
                    tensors,
                    raise_on_failure=False,
                    **op.gradcheck_tol,
                )
            except Exception as error:  # an op that crashes is a failure, reported, not a traceback
                failed.append(f"{sample.describe()}: {type(error).__name__}: {error}")
                continue
            abs_error = max(abs_error, max((r.max_abs_error for r in report.rows), default=0.0))
            rel_error = max(rel_error, report.max_rel_error)
            if not report.passed:
                failed.append(f"{sample.describe()}\n{report}")
        failures += bool(failed)
        print(f"{op.name:<24}{len(samples):>6}{abs_error:>14.2e}{rel_error:>14.2e}  {'FAIL' if failed else 'pass'}")
        if failed and args.verbose:
            for line in failed:
                print("    " + line.replace("\n", "\n    "))
    print("-" * len(header))
    print(f"{len(ops) - failures} of {len(ops)} ops pass" + ("" if not failures else " (rerun with -v for details)"))
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minigrad", description="minigrad: deep learning from scratch on NumPy.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("gradcheck", help="check every op's gradient against finite differences")
    check.add_argument("op", nargs="*", help="only these ops (default: all)")
    check.add_argument("-v", "--verbose", action="store_true", help="print the table of every failing case")
    check.set_defaults(handler=gradcheck_command)

    # Each module below adds its own subcommand and options.
    from minigrad import predict, train_cli
    from minigrad.models import weights
    from minigrad.summary import register_command as register_summary
    from minigrad.tutorials import cli as tutorials_cli

    train_cli.register_command(commands)
    register_summary(commands)
    weights.register_command(commands)
    predict.register_command(commands)
    tutorials_cli.register_command(commands)
    return parser


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str], names: set[str]) -> set[str]:
    """Which of ``names`` (option destinations) ``argv`` sets on the command line, rather than by default.

    argparse fills in a default only for a name the namespace does not have yet, so parsing into a namespace
    that already holds a marker for every name leaves the marker wherever the command line said nothing.
    """
    unset = object()
    parsed = parser.parse_args(list(argv), argparse.Namespace(**dict.fromkeys(names, unset)))
    return {name for name in names if getattr(parsed, name, unset) is not unset}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed: `train` asks which options were given (given_options)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
