"""Subcommands added to ``oodbench`` (see :func:`oodbench.benchmark.cli.main`):

    oodbench report [--results results] [--out DIR] [--suites mnist ...]   # markdown + HTML reports
    oodbench check my_module:MyDetector --suite mnist-smoke [--update-baseline]
    oodbench check --all --suite mnist-smoke                               # every registered detector
    oodbench ease [--out results/ease]                                     # ease-of-use + code quality
"""
from __future__ import annotations


def _report(a):
    from oodbench.benchmark import report

    paths = report.write_reports(a.results, a.out, a.suites or None, comparison=not a.no_comparison)
    if not paths:
        print(f"no results found under {a.results}/ (expected <suite>/results.csv)")
        return 1
    for p in paths:
        if p.suffix in (".md", ".html"):
            print(f"wrote {p}")
    return 0


def _check(a):
    from oodbench.benchmark import check

    return check.main(a)


def _ease(a):
    from oodbench.benchmark import ease

    return ease.main(a)


def extend(parser) -> None:
    sub = next(x for x in parser._subparsers._group_actions if hasattr(x, "choices"))  # the subparsers action
    r = sub.add_parser("report", help="markdown + HTML reports from results files (per suite + library comparison)")
    r.add_argument("--results", default="results", help="folder holding <suite>/results.csv (default results)")
    r.add_argument("--out", default=None, help="where to write the reports (default: the --results folder)")
    r.add_argument("--suites", nargs="+", default=None, help="only these suite folders")
    r.add_argument("--no-comparison", action="store_true", help="skip the library comparison report")
    r.set_defaults(fn=_report)

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
    c.set_defaults(fn=_check)

    e = sub.add_parser("ease", help="measure ease-of-use facts and code quality of the installed libraries")
    e.add_argument("--out", default="results/ease", help="output folder (default results/ease)")
    e.add_argument("--results", default="results", help="results folder to read run.json costs from")
    e.add_argument("--import-runs", type=int, default=5, help="fresh-interpreter imports per library (median)")
    e.add_argument("--openood-python", default=None,
                   help="python of the environment that has OpenOOD (default $OODBENCH_OPENOOD_PYTHON or "
                        "../openood-venv/bin/python when present)")
    e.add_argument("--skip-probes", action="store_true", help="no robustness probes")
    e.add_argument("--probe-expensive", action="store_true",
                   help="also probe detectors with expensive=True (they train a VAE / GAN on the toy problem: minutes)")
    e.add_argument("--detectors", nargs="+", default=None, help="only these detectors (names/patterns)")
    e.set_defaults(fn=_ease)
