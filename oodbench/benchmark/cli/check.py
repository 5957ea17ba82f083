"""`oodbench check`: the detector contract test, and metrics against a stored baseline."""
from __future__ import annotations

from oodbench.benchmark.cli.types import fraction, positive_int, seed


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="contract test + baseline comparison for a detector (module:Class or name)")
    c.add_argument("detector", nargs="*", help="module:Class, or registered names/patterns")
    c.add_argument("--all", action="store_true", help="check every registered detector")
    c.add_argument("--suite", default=None, help="also run this suite and compare with its baseline (e.g. mnist-smoke)")
    c.add_argument("--baseline", default=None, help="baseline CSV (default results/baselines/<suite>.csv)")
    c.add_argument("--update-baseline", action="store_true", help="write the measured metrics into the baseline")
    c.add_argument("--tolerance", type=fraction, default=None,
                   help="allowed drop of AUROC / AUPR group means (absolute fraction, default 0.02)")
    c.add_argument("--fpr-tolerance", type=fraction, default=None,
                   help="allowed rise of FPR@95 group means (absolute fraction, default 0.05)")
    c.add_argument("--seeds", nargs="+", type=seed, default=[0])
    c.add_argument("--data-dir", default=None)
    c.add_argument("--cache-dir", default=None)
    c.add_argument("--threads", type=positive_int, default=1)
    c.add_argument("--skip-expensive", action="store_true",
                   help="only metadata/constructor checks for detectors whose info says expensive=True (GAN, VAE)")
    c.add_argument("--name", default=None, help="name to register a module:Class under (default: its `name`)")
    c.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark.evaluation import arguments
    from oodbench.benchmark.tools import check

    if a.suite is not None:  # checked before any detector is run
        arguments.suite(a.suite)
        arguments.seeds(a.seeds)
        arguments.data_dir(a.data_dir)
    registered = [d for d in a.detector if ":" not in d]  # module:Class is imported by the check itself
    if registered and not a.all:
        arguments.detectors(registered)
    return check.main(a)
