"""The ``oodbench`` command.

    oodbench run mnist                       # train LeNet (cached), evaluate every detector
    oodbench run mnist --detectors 'pytorch_ood.*' stattest --seeds 0 1 2
    oodbench list                            # suites, datasets, detectors with their metadata
    oodbench download mnist --data-dir DIR   # via torchvision, needs the network
"""
from __future__ import annotations

import argparse
import os
import sys


def _run(a):
    from oodbench.benchmark import runner

    df = runner.evaluate(a.suite, detectors=a.detectors, seeds=a.seeds, device=a.device, data_dir=a.data_dir,
                         cache_dir=a.cache_dir, out=a.out, threads=a.threads, n_boot=a.bootstrap,
                         progress=not a.quiet, use_score_cache=not a.no_score_cache, batch_size=a.batch_size,
                         tuning=a.tuning)
    rec = df.attrs["record"]
    df = df.copy()
    df.attrs = {}  # pandas deep-copies attrs on every operation below
    out = a.out or os.path.join("results", rec["suite"] + ("-tuned" if a.tuning == "tuned" else ""))
    from oodbench.benchmark.results import leaderboard_markdown

    print(leaderboard_markdown(df[df["detector"].isin(set(df["detector"]))], rec))
    print(f"\nwrote {out}/results.csv, run.json, leaderboard.md in {rec['wall_seconds']:.1f} s "
          f"({sum(v['forward_passes'] for v in rec['extraction'].values())} forward passes)")
    if rec["failures"]:
        print(f"{len(rec['failures'])} detector(s) failed: " + ", ".join(f["detector"] for f in rec["failures"]))
    return 0


def _list(a):
    from tabulate import tabulate

    from oodbench.adapters import registry
    from oodbench.benchmark import data, suites

    print("Suites:")
    rows = []
    for n in suites.names():
        s = suites.get(n)
        groups = {}
        for t in s["tests"]:
            groups.setdefault(t["group"], []).append(t["name"])
        rows.append([n, s["id"], ", ".join(f"{k}={v}" for k, v in s["model"].items()),
                     "; ".join(f"{g}: {len(v)}" for g, v in groups.items())])
    print(tabulate(rows, headers=["suite", "ID", "model", "OOD sets"], tablefmt="simple"))
    print("\nDatasets:")
    print(tabulate([[n, ",".join(d["splits"]), d["shape"], d["source"]] for n, d in data.DATASETS.items()],
                   headers=["name", "splits", "shape", "source"], tablefmt="simple"))
    print("\nDetectors:")
    rows = []
    for n in registry.names():
        c = registry.get(n)
        i = c.info
        rows.append([n, f"{i.library} {i.library_version}".strip(), ",".join(sorted(c.consumes)),
                     "yes" if i.needs_fit else "", "yes" if i.needs_gradients else "",
                     "yes" if i.needs_ood_tuning else "", "" if i.cpu_ok else "GPU only", (i.paper or "")[:60]])
    print(tabulate(rows, headers=["name", "library", "consumes", "fit", "grad", "OOD tuning", "device", "paper"],
                   tablefmt="simple"))
    for mod, why in registry.unavailable().items():
        print(f"(not available: {mod}: {why})")
    return 0


def _download(a):
    from oodbench.benchmark import config, data

    root = config.data_dir(a.data_dir)
    for n in a.names:
        print(f"downloading {n} into {root} via torchvision ...")
        data.download(n, root)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodbench", description="OOD detection benchmark harness")
    sub = p.add_subparsers(dest="cmd", required=True)
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
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(fn=_run)
    ls = sub.add_parser("list", help="suites, datasets and detectors")
    ls.set_defaults(fn=_list)
    d = sub.add_parser("download", help="download MNIST / FashionMNIST / CIFAR-10 via torchvision (online)")
    d.add_argument("names", nargs="+", choices=["mnist", "fashionmnist", "cifar10"])
    d.add_argument("--data-dir", default=None)
    d.set_defaults(fn=_download)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = build_parser()
    for mod in ("oodbench.benchmark.cli_extra",):  # later subcommands (report, check) register here
        try:
            __import__(mod)
            sys.modules[mod].extend(p)
        except ModuleNotFoundError:
            pass
    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
