"""`oodbench novelty SUITE`: the novelty protocol (a new class appearing among OOD-flagged inputs) on an
open-set suite; writes results/<suite>/novelty.{json,md,png}."""
from __future__ import annotations

import shlex
import sys


def add_parser(sub) -> None:
    r = sub.add_parser("novelty", help="new-class discovery protocol on an open-set suite (e.g. mnist-open)")
    r.add_argument("suite", nargs="?", default="mnist-open", help="an open-set suite with 'novel' test sets")
    r.add_argument("--window", type=int, default=500, help="inputs per window (default 500)")
    r.add_argument("--q", type=float, default=0.1, help="Benjamini-Hochberg level for flagging (default 0.1)")
    r.add_argument("--alpha", type=float, default=0.001, help="per-window level of a false declaration")
    r.add_argument("--min-size", type=int, default=20, help="smallest declared class (default 20)")
    r.add_argument("--cluster", choices=["hdbscan", "gmm"], default="gmm")
    r.add_argument("--memory", type=int, default=5,
                   help="recent windows of flagged inputs clustered together (default 5)")
    r.add_argument("--null1", choices=["history", "cohesion"], default="history",
                   help="chance-grouping null: 'history' (clusters must hold more recent flagged inputs than a "
                        "reference period's; default) or 'cohesion' (max-T axis-permutation cohesion, no reference)")
    r.add_argument("--history", type=int, default=40,
                   help="windows whose flagged inputs form the reference (null1 history; default 40)")
    r.add_argument("--stream-seeds", type=int, default=5, help="number of stream seeds (default 5)")
    r.add_argument("--before", type=int, default=240,
                   help="junk-only windows before the arrival, the reference period included (default 240: "
                        "5 stream seeds x 200 = 1,000 junk-only windows tested)")
    r.add_argument("--after", type=int, default=15, help="windows after the arrival (default 15)")
    r.add_argument("--junk-frac", type=float, default=0.15)
    r.add_argument("--novel-frac", type=float, default=0.1)
    r.add_argument("--detectors", nargs="+", default=None,
                   help="p-value sources (default: stattest stattest+energy+maha pytorch_ood.energy pytorch_ood.knn)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: half the cores)")
    r.add_argument("--data-dir", default=None)
    r.add_argument("--cache-dir", default=None)
    r.add_argument("--out", default=None, help="output folder (default results/<suite>)")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark import config
    from oodbench.benchmark.evaluation.novelty_protocol import ProtocolOptions, evaluate
    from oodbench.benchmark.reporting.novelty import write

    o = ProtocolOptions(window=a.window, q=a.q, alpha=a.alpha, min_size=a.min_size, cluster=a.cluster,
                        memory=a.memory, null1=a.null1, history=a.history, stream_seeds=a.stream_seeds,
                        n_before=a.before, n_after=a.after, junk_frac=a.junk_frac, novel_frac=a.novel_frac)
    threads = config.set_threads(a.threads)
    if a.detectors:
        o.detectors = tuple(a.detectors)
    # numpy's BLAS too: the stream's thousands of small GMM fits slow down several-fold when BLAS threads
    # compete with each other or with another job for the cores
    with config.blas_threads(threads):
        r = evaluate(a.suite, o, cache=a.cache_dir, data_dir=a.data_dir, device=a.device, progress=not a.quiet)
    out = a.out or f"results/{r['suite']}"  # the suite's name (also for a suite file)
    for p in write(r, out, "oodbench novelty " + " ".join(shlex.quote(x) for x in sys.argv[1:][1:])
                   if sys.argv[1:2] == ["novelty"] else ""):
        print(f"wrote {p}")
    for m, v in r["methods"].items():
        mean = v["mean"]
        print(f"{m:32s} detection {mean.get('detection_rate')}  false/1000 {mean.get('false_per_1000_junk_windows')}"
              f"  purity {mean.get('purity')}  ARI {mean.get('ari')}")
    return 0
