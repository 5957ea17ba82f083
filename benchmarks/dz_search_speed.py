"""Δz search speed: the faithful recursive search vs the fast batched searches, same inputs, same device.

Loads the suite's classifier and the WGAN-GP + inverter from the cache (training them if absent), picks a
seeded set of ``--n`` inputs (half ID test, half the first near-OOD test set, without replacement), runs
the faithful search (``wgan_dz``) and each fast method (``wgan_dz_fast``) on exactly those inputs, and
prints the time per input, the speed ratio, the Spearman correlation of the Δz values with the faithful
ones, the generator + classifier queries per input, and the AUROC of −Δz on these inputs.

    .venv/bin/python benchmarks/dz_search_speed.py --suite mnist --n 20 --threads 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="mnist")
    ap.add_argument("--n", type=int, default=20, help="inputs (half ID, half OOD)")
    ap.add_argument("--ood", default=None, help="OOD test set (default: the suite's first near-OOD set)")
    ap.add_argument("--nsamples", type=int, default=5000, help="faithful search: directions per round")
    ap.add_argument("--methods", nargs="+", default=["bisection", "gradient"])
    ap.add_argument("--n-directions", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args(argv)

    from scipy.stats import spearmanr

    from oodbench import metrics
    from oodbench.benchmark import config
    from oodbench.benchmark.evaluation.session import Session
    from oodbench.adapters.lab.wgan import DeltaZDetector, FastDeltaZDetector

    threads = config.set_threads(a.threads)
    session = Session(a.suite, a.seed, a.device, a.cache_dir, a.data_dir, progress=True)
    mat, store, model = session.data, session.store, session.model
    ood = next(t for t in mat.tests if (t.name == a.ood if a.ood else t.group == "near"))
    rng = np.random.default_rng(a.seed)
    k = a.n // 2
    sel_id = np.sort(rng.choice(len(mat.id_test), k, replace=False))
    sel_ood = np.sort(rng.choice(len(ood.images), a.n - k, replace=False))
    rid, rood = store.representation(mat.id_test, "id"), store.representation(ood.images, ood.name)
    x = np.concatenate([mat.id_test.x[sel_id], ood.images.x[sel_ood]])
    preds = np.concatenate([rid.preds[sel_id], rood.preds[sel_ood]])
    is_ood = np.r_[np.zeros(k, bool), np.ones(a.n - k, bool)]

    fit = store.representation(mat.fit, "fit")
    faithful = DeltaZDetector(nsamples=a.nsamples).fit(fit)
    faithful.progress_, faithful.model_for_search_ = True, model
    print(f"{a.suite}: {k} ID ({mat.id_test.name}) + {a.n - k} OOD ({ood.name}) inputs, device {a.device}, "
          f"{threads} thread(s); GAN {faithful.train_log_.get('config', {})}; "
          f"inverter check on ID fit: {faithful.inversion_}")

    def run(det):
        det.queries_ = 0
        t0 = time.perf_counter()
        dz = det.delta_z(x, preds)  # directions seeded per input (seed, image bytes)
        return dz, time.perf_counter() - t0, det.queries_

    dz_f, t_f, q_f = run(faithful)
    rows = [("faithful (recursive, %d/round)" % a.nsamples, dz_f, t_f, q_f)]
    for m in a.methods:
        fast = FastDeltaZDetector(method=m, n_directions=a.n_directions)
        fast.__dict__.update({k2: v for k2, v in faithful.__dict__.items() if k2.endswith("_")})
        fast.queries_ = 0
        rows.append((f"fast {m}" + (f" ({a.n_directions} dirs)" if m == "bisection" else ""), *run(fast)))

    print(f"\n{'search':36s} {'s/input':>9s} {'queries/input':>14s} {'speed-up':>9s} {'Spearman':>9s} "
          f"{'AUROC':>7s} {'median dz ID':>13s} {'median dz OOD':>14s}")
    for name, dz, t, q in rows:
        rho = spearmanr(dz, dz_f).correlation if name != rows[0][0] else 1.0
        au = metrics.auroc(-dz[~is_ood], -dz[is_ood])
        print(f"{name:36s} {t / a.n:9.4f} {q / a.n:14.0f} {t_f / t:8.1f}x {rho:9.3f} {au:7.3f} "
              f"{np.median(dz[~is_ood]):13.4f} {np.median(dz[is_ood]):14.4f}")
    print(f"faithful rounds per input: mean {np.mean(faithful.rounds_):.1f}, max {np.max(faithful.rounds_)}; "
          f"Δz = 0 (reconstruction already relabelled): ID {np.mean(dz_f[~is_ood] < 1e-6):.2f}, "
          f"OOD {np.mean(dz_f[is_ood] < 1e-6):.2f}")


if __name__ == "__main__":
    main()
