"""Wall time of a cold ``oodbench run`` (empty cache, default options) with ``--jobs N`` and ``--jobs 1`` (issue 13).

Each run gets a fresh cache and output folder under ``--root`` and runs the CLI as a user would, so it
trains the classifiers and generative models, extracts the representations and scores every available
detector. OpenOOD rows need OpenOOD's environment: a fresh cache has none, so point
``$OODBENCH_OPENOOD_VENV`` at one (``oodbench setup openood``) or its rows are reported as skipped. Prints
both wall times, their ratio, the summed job time of each run (how much slower jobs ran side by side) and
the largest difference between the two results tables:

    python benchmarks/cold_run.py [--suite mnist] [--jobs 2] [--root DIR] [-- extra oodbench run arguments]

The two runs take hours on a 2-core machine for ``mnist`` (three seeds, every detector): run nothing else
beside them. ``--suite mnist-smoke`` checks the script in minutes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_cold(suite: str, jobs: int, root: Path, extra: list[str]) -> dict:
    """Run ``oodbench run SUITE --jobs JOBS`` on an empty cache under ``root``; its wall time and record."""
    cache, out = root / f"cache-jobs{jobs}", root / f"out-jobs{jobs}"
    for p in (cache, out):
        if p.exists() and any(p.iterdir()):
            raise SystemExit(f"{p} is not empty: a cold run needs an empty cache and output folder")
    cmd = [sys.executable, "-m", "oodbench.benchmark.cli", "run", suite, "--cache-dir", str(cache),
           "--out", str(out), "--jobs", str(jobs), *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"oodbench run --jobs {jobs} exited with {rc}")
    record = json.loads((out / "run.json").read_text())
    log = record.get("jobs", {}).get("log", [])
    return {"wall": wall, "out": out, "n_jobs": len(log), "job_seconds": sum(j["seconds"] for j in log),
            "failures": len(record.get("failures", []))}


def table_difference(a: Path, b: Path) -> tuple[int, float]:
    """(rows compared, largest absolute difference of ``value``) between two runs' results tables."""
    import pandas as pd

    keys = ["seed", "detector", "test_set", "metric"]
    ra = pd.read_csv(a / "results.csv.gz").set_index(keys)["value"]
    rb = pd.read_csv(b / "results.csv.gz").set_index(keys)["value"]
    both = ra.index.intersection(rb.index)
    if len(both) != len(ra) or len(both) != len(rb):
        print(f"warning: the tables have {len(ra)} and {len(rb)} rows, {len(both)} in common")
    diff = (ra.loc[both] - rb.loc[both]).abs()
    return len(both), float(diff.max()) if len(diff) else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="mnist")
    ap.add_argument("--jobs", type=int, default=2, help="workers of the parallel run (compared with --jobs 1)")
    ap.add_argument("--root", default=None, help="folder for the two caches and outputs (default: a temporary one)")
    ap.add_argument("extra", nargs="*", help="more `oodbench run` arguments, after --")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.root or tmp)
        root.mkdir(parents=True, exist_ok=True)
        par = run_cold(a.suite, a.jobs, root, a.extra)
        ser = run_cold(a.suite, 1, root, a.extra)
        n, dmax = table_difference(par["out"], ser["out"])
    for name, r in ((f"--jobs {a.jobs}", par), ("--jobs 1", ser)):
        print(f"{name:9s}: {r['wall']:8.1f} s wall, {r['n_jobs']} jobs summing {r['job_seconds']:8.1f} s, "
              f"{r['failures']} failed")
    print(f"speed-up --jobs {a.jobs} over --jobs 1: {ser['wall'] / par['wall']:.2f}x "
          f"(jobs ran {par['job_seconds'] / max(ser['job_seconds'], 1e-9):.2f}x as long side by side)")
    print(f"results tables: {n} rows compared, largest |difference| {dmax:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
