"""`oodbench ease`: measure ease-of-use facts and code quality of the installed libraries."""
from __future__ import annotations

from oodbench.benchmark.cli.types import positive_int


def add_parser(sub) -> None:
    e = sub.add_parser("ease", help="measure ease-of-use facts and code quality of the installed libraries")
    e.add_argument("--out", default="results/ease", help="output folder (default results/ease)")
    e.add_argument("--results", default="results", help="results folder to read run.json costs from")
    e.add_argument("--import-runs", type=positive_int, default=5, help="fresh-interpreter imports per library (median)")
    e.add_argument("--openood-python", default=None,
                   help="python of the environment that has OpenOOD (default: as `oodbench run` finds it: "
                        "$OODBENCH_OPENOOD_PYTHON, the environment `oodbench setup openood` builds, or "
                        "../openood-venv)")
    e.add_argument("--skip-probes", action="store_true", help="no robustness probes")
    e.add_argument("--probe-expensive", action="store_true",
                   help="also probe detectors with expensive=True (they train a VAE / GAN on the toy problem: minutes)")
    e.add_argument("--detectors", nargs="+", default=None, help="only these detectors (names/patterns)")
    e.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark.tools import ease

    return ease.main(a)
