"""`oodbench check`: the detector contract test, and metrics against a stored baseline."""
from __future__ import annotations


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="contract test + baseline comparison for a detector (module:Class or name)")
    c.add_argument("detector", nargs="*", help="module:Class, or registered names/patterns")
    c.add_argument("--all", action="store_true", help="check every registered detector")
    c.add_argument("--suite", default=None, help="also run this suite and compare with its baseline (e.g. mnist-smoke)")
    c.add_argument("--baseline", default=None, help="baseline CSV (default results/baselines/<suite>.csv)")
    c.add_argument("--update-baseline", action="store_true", help="write the measured metrics into the baseline")
    c.add_argument("--tolerance", type=float, default=None,
                   help="allowed drop of AUROC / AUPR group means (absolute fraction, default 0.02)")
    c.add_argument("--fpr-tolerance", type=float, default=None,
                   help="allowed rise of FPR@95 group means (absolute fraction, default 0.05)")
    c.add_argument("--seeds", nargs="+", type=int, default=[0])
    c.add_argument("--data-dir", default=None)
    c.add_argument("--cache-dir", default=None)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--skip-expensive", action="store_true",
                   help="only metadata/constructor checks for detectors whose info says expensive=True (GAN, VAE)")
    c.add_argument("--name", default=None, help="name to register a module:Class under (default: its `name`)")
    c.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark.tools import check

    return check.main(a)
