"""Wall time of a suite's score jobs with 1 and 2 local workers and with Ray (issue 13).

Representations are cached first (one warm-up run), the score cache is off, so every timed run does
the same detector work. Prints the wall times and their ratios, measured in this one process:

    python benchmarks/parallel_speedup.py [--suite mnist] [--detectors 'pytorch_ood.*'] [--workers 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="mnist")
    ap.add_argument("--detectors", nargs="+", default=None, help="default: every available detector")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args(argv)
    from oodbench.benchmark.evaluation import runner

    def run(**kw):
        t0 = time.perf_counter()
        kw.setdefault("detectors", a.detectors)
        with tempfile.TemporaryDirectory() as out:
            res = runner.evaluate(a.suite, seeds=a.seeds, out=out, n_boot=0, progress=False, use_score_cache=False,
                                  **kw)
        n_failed = len(res.record["failures"])
        return time.perf_counter() - t0, n_failed

    from oodbench.adapters import registry

    print(f"warm-up (train and extract once, cached) on {a.suite} ...", flush=True)
    run(executor="serial", threads=1, detectors=registry.resolve(a.detectors or registry.names())[:1])
    t1, f1 = run(executor="serial", threads=1)
    tn, fn = run(executor="local", jobs=a.workers)
    print(f"serial (1 worker, 1 thread): {t1:8.1f} s  ({f1} failed)")
    print(f"local  ({a.workers} workers)        : {tn:8.1f} s  ({fn} failed)  speed-up {t1 / tn:.2f}x")
    if not a.no_ray:
        try:
            tr, fr = run(executor="ray")
            print(f"ray    (local, {a.workers} CPUs)      : {tr:8.1f} s  ({fr} failed)  ray / local {tr / tn:.2f}")
        except RuntimeError as e:
            print(f"ray: not run ({e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
