"""`oodbench run SUITE`: evaluate detectors on a suite and write results/<suite>/."""
from __future__ import annotations

import os


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="evaluate detectors on a suite")
    r.add_argument("suite", nargs="?", default="mnist", help="suite name (see `oodbench list`); default mnist")
    r.add_argument("--detectors", nargs="+", default=None,
                   help="detector names or patterns, e.g. 'pytorch_ood.*' stattest (default: all)")
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    r.add_argument("--data-dir", default=None, help="dataset folder (default $OODBENCH_DATA or ../shared/data)")
    r.add_argument("--cache-dir", default=None, help="cache folder (default $OODBENCH_CACHE or ~/.cache/oodbench)")
    r.add_argument("--out", default=None, help="output folder (default results/<suite>)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: half the cores)")
    r.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for CIs (0 = none)")
    r.add_argument("--batch-size", type=int, default=512)
    r.add_argument("--no-score-cache", action="store_true", help="recompute detector scores")
    r.add_argument("--tuning", choices=["default", "tuned"], default="default",
                   help="default: library defaults, no OOD data; tuned: hyperparameters chosen on a disjoint OOD "
                        "validation set (results go to results/<suite>-tuned)")
    r.add_argument("--jobs", type=int, default=None,
                   help="worker processes on this machine (default: the number of cores, fewer if memory is short)")
    r.add_argument("--executor", choices=["auto", "serial", "local", "ray"], default="auto",
                   help="auto: serial for --jobs 1, else local worker processes; ray: Ray tasks (pip install "
                        "'oodbench[ray]'; --address for an existing cluster)")
    r.add_argument("--address", default=None, help="Ray cluster address (with --executor ray), e.g. auto or HEAD:6379")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark.evaluation import runner

    res = runner.evaluate(a.suite, detectors=a.detectors, seeds=a.seeds, device=a.device, data_dir=a.data_dir,
                          cache_dir=a.cache_dir, out=a.out, threads=a.threads, n_boot=a.bootstrap,
                          progress=not a.quiet, use_score_cache=not a.no_score_cache, batch_size=a.batch_size,
                          tuning=a.tuning, jobs=a.jobs, executor=a.executor, address=a.address)
    df, rec = res.table, res.record
    out = a.out or os.path.join("results", rec["suite"] + ("-tuned" if a.tuning == "tuned" else ""))
    from oodbench.benchmark.reporting.leaderboard import leaderboard_markdown

    print(leaderboard_markdown(df, rec))
    print(f"\nwrote {out}/results.csv, run.json, leaderboard.md in {rec['wall_seconds']:.1f} s "
          f"({sum(v['forward_passes'] for v in rec['extraction'].values())} forward passes)")
    if rec["failures"]:
        print(f"{len(rec['failures'])} detector(s) failed: " + ", ".join(f["detector"] for f in rec["failures"]))
    return 0
