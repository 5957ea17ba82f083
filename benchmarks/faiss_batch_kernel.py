"""faiss's two exhaustive-search kernels on the shape of OpenOOD's KNN on mnist, and what
``oodbench.adapters.openood.adapter.faiss_blas`` changes.

OpenOOD's ``KNNPostprocessor`` searches a flat L2 index of the fit features (mnist: 50,000 x 500, LeNet's
penultimate layer, L2-normalised) in batches of 200 queries for K = 50 neighbours. faiss picks its kernel
by ``distance_compute_blas_threshold``: below it, a loop that streams the whole bank once per query;
at or above it, a blocked matrix product (BLAS). This script times one batch size's search with faiss's
own threshold and with the adapter's (20, faiss 1.7's default), on one thread, and prints the seconds per
1,000 queries of each, their ratio, the share of neighbour indices both return and the largest difference
between their distances. Run it in OpenOOD's environment (it needs faiss):

    <openood venv>/bin/python benchmarks/faiss_batch_kernel.py [--bank 50000] [--dim 500] [--queries 1000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def search(index, queries: np.ndarray, k: int, batch: int) -> tuple[np.ndarray, np.ndarray, float]:
    """OpenOOD's loop: one ``index.search`` per batch of ``batch`` queries; returns distances, indices, seconds."""
    dist, idx = [], []
    t0 = time.perf_counter()
    for i in range(0, len(queries), batch):
        d, j = index.search(queries[i:i + batch], k)
        dist.append(d)
        idx.append(j)
    return np.concatenate(dist), np.concatenate(idx), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", type=int, default=50_000, help="fit features in the index (mnist: 50,000)")
    ap.add_argument("--dim", type=int, default=500, help="feature dimension (LeNet: 500)")
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=200, help="queries per search call (OpenOOD's loaders: 200)")
    ap.add_argument("--k", type=int, default=50, help="neighbours (OpenOOD's default K)")
    a = ap.parse_args(argv)

    import faiss

    from oodbench.adapters.openood.adapter import faiss_blas

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)

    def normed(n):  # non-negative like ReLU features, then L2-normalised as OpenOOD's KNN does
        x = np.maximum(rng.standard_normal((n, a.dim)), 0).astype(np.float32)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-10)

    bank, queries = normed(a.bank), normed(a.queries)
    index = faiss.IndexFlatL2(a.dim)
    index.add(bank)
    own = faiss.cvar.distance_compute_blas_threshold
    d0, i0, t0 = search(index, queries, a.k, a.batch)
    with faiss_blas():
        adapter = faiss.cvar.distance_compute_blas_threshold
        d1, i1, t1 = search(index, queries, a.k, a.batch)
    assert faiss.cvar.distance_compute_blas_threshold == own, "faiss_blas did not restore faiss's setting"
    per = 1000 / a.queries
    same = float(np.mean(np.sort(i0, axis=1) == np.sort(i1, axis=1)))
    print(f"faiss {faiss.__version__}; bank {a.bank} x {a.dim}, {a.queries} queries in batches of {a.batch}, "
          f"K = {a.k}, 1 thread")
    print(f"threshold {own} (faiss's own): {t0 * per:.3f} s per 1,000 queries")
    print(f"threshold {adapter} (faiss_blas): {t1 * per:.3f} s per 1,000 queries")
    print(f"ratio: {t0 / t1:.2f}x; same neighbour indices: {same:.5f}; "
          f"largest distance difference: {float(np.abs(d0 - d1).max()):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
