"""`oodbench run SUITE`: evaluate detectors on a suite and write results/<suite>/.

Every argument is checked before any compute (:mod:`oodbench.benchmark.evaluation.arguments`); the
output folder is updated after every finished job, so Ctrl-C keeps what finished and the same command
resumes (finished detectors come from the score cache)."""
from __future__ import annotations

from oodbench.benchmark.cli.types import count, positive_int, seconds, seed


def add_parser(sub) -> None:
    from oodbench.benchmark.config import DEFAULT_TIMEOUT

    r = sub.add_parser("run", help="evaluate detectors on a suite")
    r.add_argument("suite", nargs="?", default="mnist",
                   help="suite name (see `oodbench list`) or a suite file (my-suite.toml, see README); default mnist")
    r.add_argument("--detectors", nargs="+", default=None,
                   help="detector names or patterns, e.g. 'pytorch_ood.*' stattest (default: all)")
    r.add_argument("--seeds", nargs="+", type=seed, default=[0, 1, 2],
                   help="classifier seeds (default 0 1 2: leaderboards show mean ± std over seeds)")
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    r.add_argument("--data-dir", default=None, help="dataset folder (default $OODBENCH_DATA or ../shared/data)")
    r.add_argument("--cache-dir", default=None, help="cache folder (default $OODBENCH_CACHE or ~/.cache/oodbench)")
    r.add_argument("--out", default=None, help="output folder (default results/<suite>)")
    r.add_argument("--threads", type=positive_int, default=None, help="torch threads per job (default 1, whatever --jobs: linear-algebra-heavy detectors round differently "
                        "with another thread count, so the default keeps scores equal across --jobs)")
    r.add_argument("--bootstrap", type=count, default=100, help="bootstrap resamples for CIs (0 = none)")
    r.add_argument("--batch-size", type=positive_int, default=512)
    r.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT,
                   help=f"seconds one detector (fit + scoring, one seed) may take before it is recorded as "
                        f"failed and the run goes on; training a model of its own (VAE, WGAN-GP), cached like a "
                        f"classifier, is not counted (default {DEFAULT_TIMEOUT:g}; 0 = no limit)")
    r.add_argument("--no-score-cache", action="store_true", help="recompute detector scores")
    r.add_argument("--tuning", choices=["default", "tuned"], default="default",
                   help="default: library defaults, no OOD data; tuned: hyperparameters chosen on a disjoint OOD "
                        "validation set (results go to results/<suite>-tuned)")
    r.add_argument("--fit-split", choices=["train", "fit"], default="train",
                   help="what third-party baselines (pytorch-ood, OpenOOD) are fitted on: train = the classifier's "
                        "training split (default; OpenOOD v1.5's protocol, comparable with published numbers), fit = "
                        "the held-out 5,000-image fit split (results go to results/<suite>-fitsplit-fit). The lab's "
                        "conformal methods always fit on fit and calibrate on cal")
    r.add_argument("--jobs", type=positive_int, default=None,
                   help="worker processes on this machine (default: the number of cores, fewer if memory is short)")
    r.add_argument("--executor", choices=["auto", "serial", "local", "ray"], default="auto",
                   help="auto: serial for --jobs 1, else local worker processes; ray: Ray tasks (pip install "
                        "'oodbench[ray]'; --address for an existing cluster)")
    r.add_argument("--address", default=None, help="Ray cluster address (with --executor ray), e.g. auto or HEAD:6379")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark.evaluation import runner

    o = runner.RunOptions(device=a.device, data_dir=a.data_dir, cache_dir=a.cache_dir, out=a.out, threads=a.threads,
                          n_boot=a.bootstrap, progress=not a.quiet, use_score_cache=not a.no_score_cache,
                          batch_size=a.batch_size, tuning=a.tuning, fit_split=a.fit_split, timeout=a.timeout or None, jobs=a.jobs,
                          executor=a.executor, address=a.address)
    res = runner.evaluate(a.suite, detectors=a.detectors, seeds=a.seeds, options=o)
    df, rec = res.table, res.record
    from oodbench.benchmark.reporting.leaderboard import leaderboard_markdown

    print(leaderboard_markdown(df, rec))
    print(f"\nwrote {runner.out_dir(o, {'name': rec['suite']})}/results.csv.gz, summary.csv, run.json, "
          f"leaderboard.md in {rec['wall_seconds']:.1f} s ({sum(v['forward_passes'] for v in rec['extraction'].values())} forward passes)")
    if rec["failures"]:
        print(f"{len(rec['failures'])} detector(s) failed: " + ", ".join(f["detector"] for f in rec["failures"]))
    return 0
