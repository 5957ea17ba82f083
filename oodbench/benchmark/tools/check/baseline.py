"""Metrics of detectors on a suite, compared with a stored baseline (``oodbench check --suite``).

A baseline is a CSV (``results/baselines/<suite>.csv``, columns :data:`BASELINE_COLUMNS`) holding, per
suite, model and detector, the near / far / covariate means of each metric. :func:`suite_metrics` runs
detectors on a suite (no score cache, no bootstrap, nothing written); :func:`compare` adds a ``baseline``
finding to a detector's :class:`~oodbench.benchmark.tools.check.result.CheckResult`: it fails on a drop of
AUROC, AUPR-IN or AUPR-OUT larger than ``tolerance`` (default 0.02, absolute) or a rise of FPR@95 larger
than ``fpr_tolerance`` (default 0.05). A detector without a baseline row passes with a note and its rank
among the stored detectors. :func:`update_baseline` writes measured values in place of a detector's rows.
"""
from __future__ import annotations

import time
from pathlib import Path

from oodbench.benchmark.tools.check.result import CheckResult

TOLERANCE = 0.02
FPR_TOLERANCE = 0.05
HIGHER_BETTER = {"auroc": True, "aupr_in": True, "aupr_out": True, "fpr95": False}
BASELINE_COLUMNS = ["suite", "model", "detector", "library", "group", "metric", "value", "n_seeds",
                    "library_version"]
REPO = Path(__file__).resolve().parents[4]


def baseline_path(suite: str, path=None) -> Path:
    if path:
        return Path(path)
    local = Path("results") / "baselines" / f"{suite}.csv"
    if local.exists() or not (REPO / "results" / "baselines" / f"{suite}.csv").exists():
        return local
    return REPO / "results" / "baselines" / f"{suite}.csv"


def read_baseline(path):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    df = pd.read_csv(p, dtype={"library_version": str, "library": str})
    df[["library", "library_version"]] = df[["library", "library_version"]].fillna("")
    return df


def write_baseline(path, df) -> None:
    import io

    from oodbench.benchmark.io import atomic_write

    df = df[BASELINE_COLUMNS].sort_values(["suite", "model", "detector", "group", "metric"], kind="mergesort")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write(path, buf.getvalue())


def suite_metrics(names: list[str], suite: str, seeds=(0,), data_dir=None, cache_dir=None, threads=1):
    """Run ``names`` on ``suite`` (no score cache, no bootstrap, nothing written); returns the results
    frame and {detector: {(group, metric): mean over seeds}}."""
    from oodbench.benchmark.evaluation import runner

    run = runner.evaluate(suite, detectors=names, seeds=seeds, data_dir=data_dir, cache_dir=cache_dir,
                          threads=threads, n_boot=0, progress=False, write=False, use_score_cache=False)
    df = run.table
    ok = df[(df["status"] == "ok") & df["test_set"].str.endswith("-mean")]
    out = {}
    for (det, grp, m), g in ok.groupby(["detector", "group", "metric"]):
        if m in HIGHER_BETTER:
            out.setdefault(det, {})[(grp, m)] = float(g["value"].mean())
    return run, out


def compare(res: CheckResult, measured: dict, base, suite: str, model: str, tolerance: float,
            fpr_tolerance: float) -> None:
    rows = base[(base["suite"] == suite) & (base["model"] == model) & (base["detector"] == res.detector)]
    if rows.empty:
        others = base[(base["suite"] == suite) & (base["group"] == "near") & (base["metric"] == "auroc")]
        mine = measured.get(("near", "auroc"))
        rank = ""
        if len(others) and mine is not None:
            better = int((others["value"] > mine).sum())
            rank = f"; its near AUROC {100 * mine:.2f} % would rank {better + 1} of {len(others) + 1} stored detectors"
        res.add("baseline", "pass", f"no baseline row for {res.detector} in {suite} (store one with "
                                    f"--update-baseline){rank}")
        return
    drops = []
    lines = []
    order = {g: i for i, g in enumerate(("near", "far", "covariate"))}
    morder = {m: i for i, m in enumerate(("auroc", "fpr95", "aupr_in", "aupr_out"))}
    rows = rows.assign(_g=rows["group"].map(lambda g: order.get(g, 9)), _m=rows["metric"].map(lambda m: morder.get(m, 9)))
    for _, r in rows.sort_values(["_g", "_m", "group", "metric"]).iterrows():
        key = (r["group"], r["metric"])
        if key not in measured:
            drops.append(f"{r['group']} {r['metric']} missing (baseline {r['value']:.4f})")
            continue
        new, old = measured[key], float(r["value"])
        hb = HIGHER_BETTER.get(r["metric"], True)
        tol = tolerance if hb else fpr_tolerance
        worse = (old - new) if hb else (new - old)
        lines.append(f"{r['group']} {r['metric']} {new:.4f} vs {old:.4f}")
        if worse > tol:
            drops.append(f"{r['group']} {r['metric']} {'dropped' if hb else 'rose'} from {old:.4f} to {new:.4f} "
                         f"(tolerance {tol:.3f})")
    if drops:
        res.add("baseline", "fail", "; ".join(drops))
    else:
        res.add("baseline", "pass", f"within tolerance (AUROC/AUPR drop ≤ {tolerance}, FPR@95 rise ≤ "
                                    f"{fpr_tolerance}): " + ", ".join(lines[:6]) + (" …" if len(lines) > 6 else ""))


def update_baseline(path, suite: str, model: str, results: dict, libs: dict, n_seeds: int) -> None:
    import pandas as pd

    base = read_baseline(path)
    keep = base[~((base["suite"] == suite) & (base["model"] == model) & base["detector"].isin(list(results)))]
    new = [{"suite": suite, "model": model, "detector": d, "library": libs.get(d, ("", ""))[0], "group": g,
            "metric": m, "value": v, "n_seeds": n_seeds, "library_version": libs.get(d, ("", ""))[1]}
           for d, mv in sorted(results.items()) for (g, m), v in sorted(mv.items())]
    write_baseline(path, pd.concat([keep, pd.DataFrame(new, columns=BASELINE_COLUMNS)], ignore_index=True))


def check_on_suite(results: list, suite: str, baseline=None, tolerance: float = TOLERANCE,
                   fpr_tolerance: float = FPR_TOLERANCE, update: bool = False, seeds=(0,), data_dir=None,
                   cache_dir=None, threads=1, say=None) -> None:
    """Run the detectors of ``results`` that passed their contract checks without a skip on ``suite`` and
    add a ``suite run`` / ``baseline`` finding to each (``update``: store the measured values instead)."""
    from oodbench.benchmark.data import suites as suites_mod

    runnable = [r for r in results if r.passed and not any(f.status == "skip" for f in r.findings)]
    if not runnable:
        return
    if say:
        say(f"running {len(runnable)} detector(s) on {suite} ...")
    t0 = time.perf_counter()
    run, measured = suite_metrics([r.detector for r in runnable], suite, seeds, data_dir, cache_dir, threads)
    rec = run.record
    model = rec.get("model", "")
    failed = {f["detector"]: f["error"] for f in rec.get("failures", [])}
    path = baseline_path(suites_mod.get(suite)["name"], baseline)
    base = read_baseline(path)
    dt = (time.perf_counter() - t0) / len(runnable)
    for r in runnable:
        r.seconds += dt
        if r.detector in failed:
            r.add("suite run", "fail", f"{suite}: {failed[r.detector]}")
            continue
        r.metrics = measured.get(r.detector, {})
        if not update:
            compare(r, r.metrics, base, suite, model, tolerance, fpr_tolerance)
    if update:
        from oodbench.adapters import registry

        ok = {r.detector: r.metrics for r in runnable if r.passed and r.metrics}
        libs = {d: (registry.get(d).info.library, registry.get(d).info.library_version) for d in ok}
        update_baseline(path, suite, model, ok, libs, len(seeds))
        for r in runnable:
            if r.detector in ok:
                r.add("baseline", "pass", f"stored in {path}")
