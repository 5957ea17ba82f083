"""`oodbench setup openood`: build OpenOOD's own environment from pinned versions (docs/openood.md).

After it, `oodbench run SUITE` runs the `openood.*` detectors in worker processes of that environment,
in the same run and results table as every other detector."""
from __future__ import annotations


def add_parser(sub) -> None:
    from oodbench.benchmark.tools import openood_env

    s = sub.add_parser("setup", help="set up an optional library's environment (openood)")
    what = s.add_subparsers(dest="what", required=True)
    openood_env.add_arguments(what.add_parser("openood", help=openood_env.__doc__.splitlines()[0]))
    s.set_defaults(fn=run)


def run(a) -> int:
    from oodbench.benchmark.tools import openood_env

    return openood_env.run(a)
