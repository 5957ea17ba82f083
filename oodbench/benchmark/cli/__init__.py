"""The ``oodbench`` command: one module per subcommand, each with ``add_parser(sub)`` and ``run(args)``.

    oodbench run mnist                       # train LeNet (cached), evaluate every detector
    oodbench run mnist --detectors 'pytorch_ood.*' stattest --seeds 0 1 2
    oodbench list                            # suites, datasets, detectors with their metadata
    oodbench report                          # reports from results files
    oodbench check my_module:MyDetector      # the detector contract test
    oodbench ease                            # ease-of-use and code-quality measurements
    oodbench download mnist --data-dir DIR   # needs the network
"""
from __future__ import annotations

import argparse
import os
import sys

from oodbench.benchmark.cli import check, download, ease, listing, novelty, report, run

COMMANDS = (run, listing, download, report, check, ease, novelty)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodbench", description="OOD detection benchmark harness")
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    a = build_parser().parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
