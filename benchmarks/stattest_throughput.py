"""Scoring throughput and memory of the statistical-test detector (MaSF, ``stattest``).

Reads the suite's layer taps from the representation cache (one forward pass per dataset the first
time; the classifier is loaded from the checkpoint cache, or trained), then measures, for the
array-level core only (*after features*: no forward pass is timed):

* fit time (per-class channel references on ``fit`` + empirical calibration on ``cal``);
* scoring throughput, samples/s, on the ID test set, all classes (``class_agg="max"``), wall clock
  and process CPU time (the machine may be shared: CPU time is the steadier number);
* peak memory while scoring (tracemalloc: numpy's allocations) and the size of the fitted tables;
* memory versus reference size: the fitted tables for growing subsets of ``fit`` (linear expected).

Usage: python benchmarks/stattest_throughput.py [--suite mnist] [--threads 1] [--repeat 3] [--jobs 2]
       python benchmarks/stattest_throughput.py --synthetic   # no data needed: Gaussian "taps"
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def load_taps(suite: str, threads: int):
    from oodbench.benchmark import config
    from oodbench.benchmark.evaluation.features import TAPS
    from oodbench.benchmark.evaluation.session import Session

    config.set_threads(threads)
    session = Session(suite, 0, "cpu")
    mat, store, arch = session.data, session.store, session.arch
    out = {}
    for k, im in (("fit", mat.fit), ("cal", mat.cal), ("id", mat.id_test)):
        store.ensure(im, {TAPS})
        out[k] = (store.representation(im, k).taps(), np.asarray(im.y))
    return out, f"{suite} / {arch}, taps {list(store.taps)}"


def synthetic_taps(seed=0):
    rng = np.random.default_rng(seed)
    widths = {"conv1": 40, "conv2": 100, "fc1": 500, "fc": 10}  # LeNet's tap widths

    def make(n):
        y = rng.integers(0, 10, n)
        return {k: (rng.normal(size=(n, w)) + y[:, None] * 0.1).astype(np.float32) for k, w in widths.items()}, y

    return {"fit": make(5000), "cal": make(5000), "id": make(10000)}, "synthetic Gaussian taps (LeNet widths)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="also time scoring with this many threads over sample chunks")
    a = ap.parse_args(argv)

    from oodbench.detectors.stattest import MaxSimesFisher

    data, what = synthetic_taps() if a.synthetic else load_taps(a.suite, a.threads)
    (ft, fy), (ct, cy), (it, _) = data["fit"], data["cal"], data["id"]
    d = sum(v.shape[1] for v in ft.values())
    n_id = len(next(iter(it.values())))
    C = int(max(fy.max(), cy.max()) + 1)
    print(f"data: {what}")
    print(f"channels d = {d}, classes C = {C}, fit n = {len(fy)}, cal n = {len(cy)}, scored n = {n_id}")

    t0, c0 = time.perf_counter(), time.process_time()
    core = MaxSimesFisher().fit(ft, fy, ct, cy, C)
    print(f"fit: {time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU; "
          f"fitted tables {core.nbytes / 2 ** 20:.1f} MiB")

    walls, cpus = [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        core.evaluate(it)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    w, c = min(walls), min(cpus)
    print(f"scoring (after features, all {C} classes, best of {a.repeat}): {n_id / w:,.0f} samples/s wall "
          f"({w:.2f} s), {n_id / c:,.0f} samples/s per CPU-second ({c:.2f} s CPU)")

    if a.jobs > 1:
        core.n_jobs = a.jobs
        walls = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            core.evaluate(it)
            walls.append(time.perf_counter() - t0)
        core.n_jobs = 1
        print(f"scoring with {a.jobs} threads: {n_id / min(walls):,.0f} samples/s wall ({min(walls):.2f} s)")

    tracemalloc.start()
    core.evaluate(it)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory while scoring {n_id} samples (tracemalloc, beyond the fitted tables): {peak / 2 ** 20:.1f} MiB")

    print("memory vs reference size (fitted tables; linear expected):")
    rng = np.random.default_rng(0)
    rows = []
    for frac in (0.2, 0.4, 0.6, 0.8, 1.0):
        n = int(len(fy) * frac)
        idx = np.sort(rng.choice(len(fy), n, replace=False))
        tracemalloc.start()
        m = MaxSimesFisher().fit({k: v[idx] for k, v in ft.items()}, fy[idx], ct, cy, C)
        _, pk = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append((n, m.ref.nbytes, pk))
        print(f"  n_ref = {n:6d}: tables {m.ref.nbytes / 2 ** 20:7.1f} MiB ({m.ref.nbytes / n / 1024:.1f} KiB per "
              f"reference sample), fit peak {pk / 2 ** 20:7.1f} MiB")
    ns, bs = np.array([r[0] for r in rows], float), np.array([r[1] for r in rows], float)
    slope, icpt = np.polyfit(ns, bs, 1)
    resid = np.abs(bs - (slope * ns + icpt)).max() / bs.max()
    print(f"  linear fit: {slope / 1024:.1f} KiB per reference sample + {icpt / 2 ** 20:.1f} MiB, "
          f"max deviation {100 * resid:.1f} % of the largest")


if __name__ == "__main__":
    main()
