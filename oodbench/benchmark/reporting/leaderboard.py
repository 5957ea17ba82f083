"""The leaderboard: one row per detector, built once from the results table and shown in two places.

:func:`leaderboard` turns the long-form ``results.csv`` table (and, when given, the run record of
``run.json``) into a wide table with one row per (library, detector). For each OOD group
(near / far / covariate) and each metric (AUROC, FPR@95, AUPR-IN, AUPR-OUT) it holds

* ``<group>:<metric>``: the mean over seeds of the group mean (the unweighted mean over the
  group's test sets, the ``<group>-mean`` rows of ``results.csv``);
* ``<group>:<metric>:std``: the standard deviation over seeds (NaN with a single seed);
* ``<group>:<metric>:lo`` / ``:hi``: the group's bootstrap CI, the mean over its test sets of each
  set's 95 % interval (itself averaged over seeds): conservative, at least as wide as the interval
  of the mean when the test sets are independent;

and, where the detector gives p-values, ``false_alarm@<alpha>`` (with ``:std``): the fraction of
ID test samples flagged at level alpha. From ``run.json`` come the median over seeds of fit and
score seconds, throughput and peak Python memory; ``n_seeds`` counts the seeds. Rows are sorted by
near-OOD AUROC (descending), then far-OOD AUROC, then name, so the order does not depend on the
order of the rows in ``df``; detectors that failed on every seed come after all that have a near-OOD
AUROC, with ``status = "failed"`` and the first line of their ``error``.

Two renderings use this one table: :func:`leaderboard_markdown` is ``leaderboard.md``, written and
printed by ``oodbench run``; the suite report (:mod:`.suite_report`) shows the same rows with CIs,
costs and a sortable HTML table, and the library comparison (:mod:`.comparison`) summarises them
per library.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation.results import GROUPS
from oodbench.benchmark.reporting.formatting import pct

#: (column in results.csv, label in documents, higher is better)
METRICS = (("auroc", "AUROC", True), ("fpr95", "FPR@95", False), ("aupr_in", "AUPR-IN", True),
           ("aupr_out", "AUPR-OUT", True))
COSTS = ("fit_seconds", "score_seconds", "throughput_per_s", "peak_python_mb")


def detector_costs(record: dict) -> dict[str, dict]:
    """Per detector: median over seeds of fit seconds, score seconds, throughput and peak Python MB,
    and the library / metadata recorded in run.json."""
    out = {}
    for det, per_seed in sorted((record.get("detectors") or {}).items()):
        recs = [r for _, r in sorted(per_seed.items()) if isinstance(r, dict) and r.get("status") != "failed"]
        if not recs:
            continue

        def med(k):
            v = [r[k] for r in recs if isinstance(r.get(k), (int, float))]
            return float(np.median(v)) if v else float("nan")

        out[det] = {**{k: med(k) for k in COSTS}, "info": recs[0].get("info", {})}
    return out


def _mean_std(v: pd.Series) -> tuple[float, float]:
    """Mean and (population) standard deviation of a column; NaN where there is nothing to average."""
    v = v.astype(float)
    return (float(v.mean()) if len(v) else float("nan"),
            float(v.std(ddof=0)) if len(v) > 1 else float("nan"))


def _nanmean(x: np.ndarray) -> float:
    """The mean of the non-NaN values, computed as ``pandas.Series.mean`` does (bit for bit); NaN if none."""
    missing = np.isnan(x)
    n = float(x.size - missing.sum())
    return float(np.where(missing, 0.0, x).sum() / n) if n else float("nan")


def _group_cis(per: pd.DataFrame) -> dict[tuple, tuple[float, float]]:
    """Per (detector, group, metric): the mean over test sets of each set's bootstrap bounds (each set's
    bounds averaged over seeds first); NaN where the rows have no interval."""
    by_set = per.groupby(["detector", "group", "metric", "test_set"])[["ci_low", "ci_high"]].mean()
    if by_set.empty:
        return {}
    keys = list(by_set.index.droplevel("test_set"))  # sorted, so each key's test sets are contiguous
    lo, hi = by_set["ci_low"].to_numpy(float), by_set["ci_high"].to_numpy(float)
    starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]] + [len(keys)]
    out = {}
    for a, b in zip(starts[:-1], starts[1:]):
        has = not np.isnan(lo[a:b]).all()
        out[keys[a]] = (_nanmean(lo[a:b]), _nanmean(hi[a:b])) if has else (float("nan"), float("nan"))
    return out


def leaderboard(df: pd.DataFrame, record: dict | None = None) -> pd.DataFrame:
    """One row per (library, detector) of the results table ``df``; see the module docstring for the
    columns and the order. ``record`` (run.json) adds the cost columns (NaN without it)."""
    ok = df[(df["status"] == "ok") & (df["detector"] != "classifier")]
    is_mean = ok["test_set"].str.endswith("-mean")
    per, agg = ok[~is_mean], ok[is_mean]
    # each cell's values, in the table's row order: (library, detector, group, metric) -> seeds' values
    cells = dict(tuple(agg.groupby(["library", "detector", "group", "metric"], sort=False)["value"]))
    cis = _group_cis(per)
    alarms = ok[ok["metric"].str.startswith("false_alarm@")]
    alarm_cells = dict(tuple(alarms.groupby(["detector", "metric"], sort=False)["value"]))
    alarm_names = sorted(set(alarms["metric"]))
    costs = detector_costs(record or {})
    empty, no_ci = agg["value"].iloc[:0], (float("nan"), float("nan"))
    rows = []
    for (lib, det), g in agg.groupby(["library", "detector"], sort=True):
        r = {"library": lib, "detector": det, "status": "ok", "error": ""}
        for grp in GROUPS:
            for m, _, _ in METRICS:
                r[f"{grp}:{m}"], r[f"{grp}:{m}:std"] = _mean_std(cells.get((lib, det, grp, m), empty))
                r[f"{grp}:{m}:lo"], r[f"{grp}:{m}:hi"] = cis.get((det, grp, m), no_ci)
        for name in alarm_names:
            r[name], r[f"{name}:std"] = _mean_std(alarm_cells.get((det, name), empty))
        c = costs.get(det, {})
        for k in COSTS:
            r[k] = c.get(k, float("nan"))
        r["n_seeds"] = int(g["seed"].nunique())
        rows.append(r)
    done = {r["detector"] for r in rows}
    failed = df[df["status"] == "failed"]
    for (lib, det), g in failed.groupby(["library", "detector"], sort=True):
        if det not in done:
            error = (str(g["error"].iloc[0]).splitlines() or [""])[0]
            rows.append({"library": lib, "detector": det, "status": "failed", "error": error})
    lb = pd.DataFrame(rows)
    if lb.empty:
        return lb
    if "near:auroc" not in lb:
        lb["near:auroc"] = np.nan
    lb["_k"] = lb["near:auroc"].fillna(-1.0)
    lb["_f"] = lb["far:auroc"].fillna(-1.0) if "far:auroc" in lb else -1.0
    lb = lb.sort_values(["_k", "_f", "detector"], ascending=[False, False, True], kind="mergesort")
    return lb.drop(columns=["_k", "_f"]).reset_index(drop=True)


def leaderboard_markdown(df: pd.DataFrame, record: dict | None = None) -> str:
    """``leaderboard.md``: the classifier's accuracy, the leaderboard's group AUROC and FPR@95 (and
    false-alarm rates), and the AUROC of every detector on every test set, as GitHub tables."""
    from tabulate import tabulate

    lb = leaderboard(df, record)
    suite = df["suite"].iloc[0] if len(df) else "?"
    lines = [f"# Leaderboard: {suite}", ""]
    if record:
        seeds = sorted({int(s) for s in df["seed"].unique()})
        lines += [f"Model `{record.get('model', '?')}`, seeds {seeds}, device `{record.get('device', '?')}`. "
                  "Values in %, OOD positive; FPR@95 = ID flagged at 95 % OOD detected "
                  "(OpenOOD v1.5 / pytorch-ood 0.4.0). Group values are unweighted means over the group's "
                  "test sets; ± is the std over seeds. Produced by `oodbench run`; do not edit.", ""]
    acc = df[(df["metric"] == "accuracy") & (df["status"] == "ok")]
    if len(acc):
        a = acc.groupby("test_set")["value"].agg(["mean", lambda v: v.std(ddof=0)])
        lines += ["Classifier accuracy: " + ", ".join(
            f"{t} {pct(m, s if len(acc['seed'].unique()) > 1 else None)}" for t, (m, s) in a.iterrows()) + "", ""]
    if not lb.empty:
        cols = [(f"{g}:{m}", f"{g} {label}") for g in GROUPS for m, label in (("auroc", "AUROC"), ("fpr95", "FPR@95"))]
        cols += [(c, c) for c in lb.columns if c.startswith("false_alarm@") and not c.endswith(":std")]
        table = []
        for _, r in lb.iterrows():
            if r["status"] == "ok":
                table.append([r["library"], r["detector"], *[pct(r[c], r[f"{c}:std"]) for c, _ in cols]])
            else:
                table.append([r["library"], r["detector"], "failed: " + r["error"][:120]] + [""] * (len(cols) - 1))
        lines.append(tabulate(table, headers=["library", "detector", *[h for _, h in cols]], tablefmt="github"))
        lines.append("")
    # per-set AUROC
    per = df[(df["metric"] == "auroc") & (df["status"] == "ok") & ~df["test_set"].str.endswith("-mean")]
    if len(per):
        order = list(dict.fromkeys(per["test_set"]))
        piv = per.groupby(["detector", "test_set"])["value"].mean().unstack()[order]
        if not lb.empty:
            piv = piv.reindex([d for d in lb["detector"] if d in piv.index])
        lines += ["## AUROC per test set (%)", "",
                  tabulate([[d, *[pct(v) for v in r]] for d, r in piv.iterrows()],
                           headers=["detector", *order], tablefmt="github"), ""]
    return "\n".join(lines)
