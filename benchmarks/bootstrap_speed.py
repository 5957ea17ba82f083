"""Speed of the bootstrap: a per-resample loop (resample, then :func:`metrics.evaluate`) versus the
vectorised path (:func:`metrics.replicates`: multinomial weights on one sorted order, all resamples at
once), for AUROC + FPR@95 (the O(B·n) path) and for all five metrics, and the summary's two-level
bootstrap over a results table. Prints milliseconds per resample and the ratios.

Usage: python benchmarks/bootstrap_speed.py [--n-id 10000] [--n-ood 10000] [--boot 1000] [--loop 30]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from oodbench.benchmark.evaluation import metrics


def _loop(a, b, reps):
    """Per resample: draw indices, resample, :func:`metrics.evaluate` (all five metrics at once)."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(reps):
        metrics.evaluate(a[rng.integers(0, a.size, a.size)], b[rng.integers(0, b.size, b.size)])
    return (time.perf_counter() - t0) / reps


def _vec(a, b, reps, which, seed):
    """Vectorised; a new ``seed`` draws fresh weights (cold), a repeated one reuses them (warm: every
    further detector and test set of a run)."""
    t0 = time.perf_counter()
    metrics.replicates(a, b, n_boot=reps, seed=seed, metrics=which)
    return (time.perf_counter() - t0) / reps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-id", type=int, default=10000)
    p.add_argument("--n-ood", type=int, default=10000)
    p.add_argument("--boot", type=int, default=1000, help="resamples of the vectorised path")
    p.add_argument("--loop", type=int, default=30, help="resamples timed in the per-resample loop")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    ids = np.round(rng.normal(0, 1, a.n_id), 3)  # rounded: ties, as real scores have
    oods = np.round(rng.normal(1.5, 1, a.n_ood), 3)
    print(f"one test set: {a.n_id} ID, {a.n_ood} OOD scores; vectorised {a.boot} resamples, loop {a.loop}")
    t_loop = _loop(ids, oods, a.loop)
    print(f"  per-resample loop (all 5 metrics): {1e3 * t_loop:.2f} ms/resample")
    for i, (label, which) in enumerate((("AUROC + FPR@95", ("auroc", "fpr95")), ("all 5 metrics", metrics.METRICS))):
        cold = _vec(ids, oods, a.boot, which, seed=100 + i)
        warm = _vec(ids, oods, a.boot, which, seed=100 + i)
        print(f"  vectorised {label:15s}: cold {1e3 * cold:6.3f} ms/resample (ratio {t_loop / cold:5.1f}x), "
              f"warm {1e3 * warm:6.3f} ms/resample (ratio {t_loop / warm:5.1f}x); {a.boot} resamples in "
              f"{a.boot * warm:.2f} s warm")
    d = 4
    t0 = time.perf_counter()
    metrics.paired_bootstrap([ids + 0.1 * k for k in range(d)], [oods] * d, n_boot=a.boot, seed=200)
    t_p = (time.perf_counter() - t0) / (a.boot * d)
    print(f"  paired_bootstrap, {d} detectors, AUROC: {1e3 * t_p:.3f} ms per resample and detector "
          f"(ratio {t_loop / t_p:5.1f}x)")
    # the summary's two-level bootstrap over a table the size of the mnist suite x 3 seeds
    from oodbench.benchmark.evaluation import results, summary

    rows = []
    for s in range(3):
        for d in range(60):
            for t in range(11):
                for m in metrics.METRICS:
                    v = float(rng.uniform(0.5, 1))
                    rows.append({"suite": "x", "model": "m", "seed": s, "library": "l", "detector": f"d{d}",
                                 "test_set": f"t{t}", "group": ("near", "far", "covariate")[t % 3], "metric": m,
                                 "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "n_id": a.n_id, "status": "ok"})
    df = results.to_frame(rows)
    t0 = time.perf_counter()
    out = summary.summarise(df, n_resamples=1000)
    dt = time.perf_counter() - t0
    print(f"summary: {len(df)} result rows (60 detectors x 11 sets x 5 metrics x 3 seeds) -> {len(out)} summary "
          f"rows with 1000 two-level resamples and rank ranges in {dt:.2f} s")


if __name__ == "__main__":
    main()
