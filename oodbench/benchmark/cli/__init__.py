"""The ``oodbench`` command: one module per subcommand, each with ``add_parser(sub)`` and ``run(args)``.

    oodbench run mnist                       # train LeNet (cached), evaluate every detector
    oodbench run mnist --detectors 'pytorch_ood.*' stattest --seeds 0 1 2
    oodbench list                            # suites, datasets, detectors with their metadata
    oodbench report                          # reports from results files
    oodbench check my_module:MyDetector      # the detector contract test
    oodbench ease                            # ease-of-use and code-quality measurements
    oodbench download mnist --data-dir DIR   # needs the network
    oodbench setup openood --source URL      # OpenOOD's own environment (its detectors then run in it)
    oodbench analyse stattest --suite mnist  # the lab detector's calibration, layers, power, cost
    oodbench novelty mnist-open              # has a new class appeared among the rejected inputs?

A bad argument or a failure is one line on stderr (``oodbench run: error: ...``; exit status 2 for bad
arguments, 1 for other errors, 130 after Ctrl-C), never a traceback; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from oodbench.benchmark.cli import analyse, check, download, ease, listing, novelty, report, run, setup

COMMANDS = (run, listing, download, report, check, ease, setup, analyse, novelty)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="oodbench", description="OOD detection benchmark harness")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for sp in sub.choices.values():
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    return p


def _usage_errors() -> tuple[type, ...]:
    """Errors whose message is the whole story (a bad argument, a missing or damaged file)."""
    from oodbench.benchmark.data.errors import DatasetError
    from oodbench.benchmark.evaluation.arguments import ArgumentError
    from oodbench.benchmark.evaluation.fileset import FolderMismatch
    from oodbench.benchmark.data.user_images import UserInputError
    from oodbench.benchmark.evaluation.output import OutputError

    return ArgumentError, DatasetError, FolderMismatch, OutputError, UserInputError


def one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    lines = str(msg).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    a = build_parser().parse_args(argv)
    prog = f"oodbench {a.cmd}"
    try:
        return a.fn(a)
    except KeyboardInterrupt as e:
        if a.debug:
            raise
        print(f"{prog}: {one_line(e) if str(e) else 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:
        if a.debug:
            raise
        usage = isinstance(e, _usage_errors())
        text = one_line(e) if usage else f"{type(e).__name__}: {one_line(e)} (--debug shows the traceback)"
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 2 if usage else 1


if __name__ == "__main__":
    sys.exit(main())
