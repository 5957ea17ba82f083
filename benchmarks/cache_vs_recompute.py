"""Cached representations versus every detector running the classifier itself.

Evaluates the same detectors on the same suite three ways in one process and prints the times:

* ``recompute``: every detector runs the classifier itself (a live store: each access to logits or
  features is a forward pass, as when each library detector calls the network on raw inputs);
* ``cache cold``: one forward pass per dataset into a fresh representation cache, shared by all
  detectors (what a first ``oodbench run`` does);
* ``cache warm``: the representations read back from that disk cache (a repeated run).

Usage: python benchmarks/cache_vs_recompute.py [--suite mnist] [--detectors ...] [--threads 1]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from oodbench.adapters import registry
from oodbench.benchmark import config
from oodbench.benchmark.evaluation.features import CORE, TAPS, RepresentationStore
from oodbench.benchmark.evaluation.session import Session

SIX = ["pytorch_ood.msp", "pytorch_ood.energy", "pytorch_ood.maxlogit", "pytorch_ood.mahalanobis",
       "pytorch_ood.knn", "pytorch_ood.odin"]


def run_all(names, store, mat) -> float:
    t0 = time.perf_counter()
    sets = [mat.id_test] + [t.images for t in mat.tests]
    kinds = set()
    for n in names:
        c = registry.get(n).consumes
        if c & {"logits", "features"}:
            kinds.add(CORE)
        if "taps" in c:
            kinds.add(TAPS)
    if not store.live:  # the harness's path: one pass per dataset, then every detector reads the cache
        for s in [mat.fit, mat.cal] + sets:
            store.ensure(s, kinds)
    for n in names:
        det = registry.create(n)
        det.fit(store.representation(mat.fit, "fit"), store.representation(mat.cal, "cal"))
        for s in sets:
            det.score(store.representation(s, s.name))
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="mnist")
    ap.add_argument("--detectors", nargs="+", default=SIX)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    threads = config.set_threads(a.threads)
    names = registry.resolve(a.detectors)
    session = Session(a.suite, 0, a.device, a.cache_dir, a.data_dir)
    mat, model, meta, arch = session.data, session.model, session.model_meta, session.arch
    n_img = len(mat.fit) + len(mat.cal) + len(mat.id_test) + sum(len(t.images) for t in mat.tests)
    print(f"suite {a.suite}: {len(names)} detectors, {len(mat.tests)} OOD sets, {n_img} images, "
          f"model {arch}, device {a.device}, {threads} thread(s)")
    live = RepresentationStore(model, meta["sha256"], None, a.device, live=True)
    t_live = run_all(names, live, mat)
    print(f"recompute  (each detector runs the classifier): {t_live:8.1f} s  "
          f"{live.stats['forward_passes']} dataset passes")
    with tempfile.TemporaryDirectory() as tmp:
        cold = RepresentationStore(model, meta["sha256"], tmp, a.device)
        t_cold = run_all(names, cold, mat)
        print(f"cache cold (one pass per dataset, shared):      {t_cold:8.1f} s  "
              f"{cold.stats['forward_passes']} dataset passes")
        warm = RepresentationStore(model, meta["sha256"], tmp, a.device)
        t_warm = run_all(names, warm, mat)
        print(f"cache warm (representations read from disk):    {t_warm:8.1f} s  "
              f"{warm.stats['forward_passes']} dataset passes")
    print(f"ratio recompute / cache cold: {t_live / t_cold:.2f}x")
    print(f"ratio recompute / cache warm: {t_live / t_warm:.2f}x")


if __name__ == "__main__":
    main()
