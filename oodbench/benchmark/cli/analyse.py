"""`oodbench analyse stattest --suite mnist`: the lab detector's behaviour (calibration, deciding layers,
power against reference size and shift severity, rejection against alpha, cost), written to
results/<suite>/analysis/stattest.{json,md} and PNG figures (:mod:`oodbench.benchmark.analysis`)."""
from __future__ import annotations

import os
import shlex
import time


def add_parser(sub) -> None:
    r = sub.add_parser("analyse", help="analyse the lab's statistical-test detector on a suite")
    r.add_argument("detector", help="a statistical-test detector of the registry: stattest or a variant "
                                    "(stattest.pred, stattest.hmp, ...)")
    r.add_argument("--suite", default="mnist", help="suite name (default mnist)")
    r.add_argument("--seed", type=int, default=0, help="classifier seed (default 0)")
    r.add_argument("--alpha", type=float, default=0.05, help="level of the decisions (default 0.05)")
    r.add_argument("--ref-sizes", nargs="+", type=int, default=[100, 300, 1000, 3000],
                   help="reference (fit) samples per class to sweep; capped at what the fit split holds")
    r.add_argument("--repeats", type=int, default=3, help="seeded repeats per reference size (default 3)")
    r.add_argument("--max-eval", type=int, default=2000,
                   help="images scored per set in the layer, alpha and sweep sections (0 = all; default 2000)")
    r.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    r.add_argument("--shifts", nargs="+", default=None, help="covariate shifts (default: all of data/shifts.py)")
    r.add_argument("--out", default=None, help="output folder (default results/<suite>/analysis)")
    r.add_argument("--data-dir", default=None, help="dataset folder (default $OODBENCH_DATA or ../shared/data)")
    r.add_argument("--cache-dir", default=None, help="cache folder (default $OODBENCH_CACHE or ~/.cache/oodbench)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: half the cores)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    r.set_defaults(fn=run)


def command_line(a) -> str:
    """The command with every option spelled out (what reproduces the run), prefixed with ``nice -n N``
    when the process ran at a lower priority."""
    parts = ["oodbench", "analyse", a.detector, "--suite", a.suite, "--seed", str(a.seed), "--alpha", str(a.alpha),
             "--ref-sizes", *map(str, a.ref_sizes), "--repeats", str(a.repeats), "--max-eval", str(a.max_eval),
             "--severities", *map(str, a.severities)]
    if a.shifts:
        parts += ["--shifts", *a.shifts]
    if a.threads:
        parts += ["--threads", str(a.threads)]
    niceness = os.nice(0) if hasattr(os, "nice") else 0
    return ("" if niceness <= 0 else f"nice -n {niceness} ") + shlex.join(parts)


def run(a):
    from oodbench.benchmark import config
    from oodbench.benchmark.analysis import document
    from oodbench.benchmark.analysis.stattest_analysis import Config, analyse

    config.set_threads(a.threads)
    cfg = Config(suite=a.suite, detector=a.detector, seed=a.seed, alpha=a.alpha, ref_sizes=tuple(a.ref_sizes),
                 repeats=a.repeats, max_eval=a.max_eval or None, severities=tuple(a.severities),
                 shifts=tuple(a.shifts) if a.shifts else None)
    t0 = time.perf_counter()

    def say(msg):
        if not a.quiet:
            print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)

    res = analyse(cfg, cache=a.cache_dir, data_dir=a.data_dir, progress=say)
    out = a.out or os.path.join("results", res["suite"], "analysis")
    paths = document.write(res, out, command_line(a), name=a.detector)
    for k, v in document.findings(res).items():
        say(f"{k}: {v}")
    print(f"wrote {', '.join(str(p) for p in paths)} in {res['wall_seconds']:.0f} s")
    return 0
