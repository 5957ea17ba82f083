"""The leaderboard: one row per detector, built once from the results table and shown in two places.

:func:`leaderboard` turns the long-form ``results.csv`` table (and, when given, the run record of
``run.json``) into a wide table with one row per (library, detector), from its summary over seeds
(:mod:`oodbench.benchmark.evaluation.summary`, ``summary.csv``). For each OOD group
(near / far / covariate) and each metric (AUROC, FPR@95, AUPR-IN, AUPR-OUT) it holds

* ``<group>:<metric>``: the mean over seeds of the group mean (the unweighted mean over the
  group's test sets, the ``<group>-mean`` rows of ``results.csv``);
* ``<group>:<metric>:std``: the standard deviation over seeds (ddof = 1; NaN with a single seed,
  and then no ``±`` is shown);
* ``<group>:<metric>:lo`` / ``:hi``: the summary's 95 % two-level bootstrap interval;
* ``<group>:rank``: the AUROC rank range of the group ("1–7": tied with the best by Holm-corrected
  tests), empty for a flagged (detector, group);

``flag`` (the flags of any group, e.g. ``inverted``) and ``flag_reason`` (``<group>: <reason>``);
and, where the detector gives p-values, ``false_alarm@<alpha>`` (with ``:std``): the fraction of
ID test samples flagged at level alpha. From ``run.json`` come the median over seeds of fit and
score seconds, throughput and peak Python memory; ``n_seeds`` counts the seeds. Unflagged rows come
first, sorted by near-OOD AUROC (descending), then far-OOD AUROC, then name (so the order does not
depend on the order of the rows in ``df``); flagged detectors follow in the same order, shown apart
and never ranked among the others; detectors that failed on every seed come last, with
``status = "failed"`` and the first line of their ``error``.

Two renderings use this one table: :func:`leaderboard_markdown` is ``leaderboard.md``, written and
printed by ``oodbench run``; the suite report (:mod:`.suite_report`) shows the same rows with CIs,
costs and a sortable HTML table, and the library comparison (:mod:`.comparison`) summarises them
per library.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation import summary
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


def leaderboard(df: pd.DataFrame, record: dict | None = None, summ: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (library, detector) of the results table ``df``; see the module docstring for the
    columns and the order. ``record`` (run.json) adds the cost columns (NaN without it); ``summ`` is
    ``summary.summarise(df)``, computed when not given."""
    summ = summary.summarise(df) if summ is None else summ
    means = summ[summ["test_set"].str.endswith("-mean")]
    cells = {(r.library, r.detector, r.group, r.metric): r for r in means.itertuples(index=False)}
    alarms = summ[summ["metric"].str.startswith("false_alarm@")]
    alarm_cells = {(r.library, r.detector, r.metric): r for r in alarms.itertuples(index=False)}
    alarm_names = sorted(set(alarms["metric"]))
    costs = detector_costs(record or {})
    nan = float("nan")
    rows = []
    for (lib, det), g in summ[summ["detector"] != "classifier"].groupby(["library", "detector"], sort=True):
        r = {"library": lib, "detector": det, "status": "ok", "error": ""}
        flags, reasons = [], []
        for grp in GROUPS:
            for m, _, _ in METRICS:
                c = cells.get((lib, det, grp, m))
                r[f"{grp}:{m}"], r[f"{grp}:{m}:std"] = (c.mean, c.std) if c else (nan, nan)
                r[f"{grp}:{m}:lo"], r[f"{grp}:{m}:hi"] = (c.ci_low, c.ci_high) if c else (nan, nan)
            c = cells.get((lib, det, grp, "auroc"))
            r[f"{grp}:rank"] = c.rank_range if c else ""
            if c and c.flag:
                flags += [f for f in c.flag.split(",") if f not in flags]
                reasons.append((grp, c.flag_reason))
        r["flag"], r["flag_reason"] = ",".join(flags), _reasons(reasons)
        for name in alarm_names:
            c = alarm_cells.get((lib, det, name))
            r[name], r[f"{name}:std"] = (c.mean, c.std) if c else (nan, nan)
        c = costs.get(det, {})
        for k in COSTS:
            r[k] = c.get(k, nan)
        r["n_seeds"] = int(g["n_seeds"].max())
        rows.append(r)
    done = {r["detector"] for r in rows}
    failed = df[df["status"] == "failed"]
    for (lib, det), g in failed.groupby(["library", "detector"], sort=True):
        if det not in done:
            error = (str(g["error"].iloc[0]).splitlines() or [""])[0]
            na = g["not_applicable_reason"].fillna("").astype(str) if "not_applicable_reason" in g else []
            if len(na) and na.iloc[0].strip():
                error = f"not applicable: {na.iloc[0].strip()}"
            rows.append({"library": lib, "detector": det, "status": "failed", "error": error, "flag": ""})
    lb = pd.DataFrame(rows)
    if lb.empty:
        return lb
    if "near:auroc" not in lb:
        lb["near:auroc"] = np.nan
    lb["_s"] = np.where(lb["status"] != "ok", 2, np.where(lb["flag"].fillna("") != "", 1, 0))
    lb["_k"] = lb["near:auroc"].fillna(-1.0)
    lb["_f"] = lb["far:auroc"].fillna(-1.0) if "far:auroc" in lb else -1.0
    lb = lb.sort_values(["_s", "_k", "_f", "detector"], ascending=[True, False, False, True], kind="mergesort")
    return lb.drop(columns=["_s", "_k", "_f"]).reset_index(drop=True)


NOTE = ("Values in %, OOD positive; FPR@95 = ID flagged at 95 % OOD detected (OpenOOD v1.5 / pytorch-ood "
        "0.4.0). Group values are unweighted means over the group's test sets, averaged over seeds; ± is the "
        "standard deviation over seeds (ddof = 1), not shown with a single seed. `rank`: AUROC rank range in the "
        "group — the detectors not significantly worse than the best (one-sided tests on the two-level "
        "bootstrap of the difference, Holm-corrected at 0.05) share a range, then the same on the rest. "
        "Flagged detectors (inverted, degenerate, not applicable) are listed apart and not ranked; "
        "95 % intervals of every number are in `summary.csv`.")


def _reasons(reasons: list[tuple[str, str]]) -> str:
    """Per-group flag reasons as one text; a reason shared by several groups is said once."""
    by_reason: dict[str, list[str]] = {}
    for grp, why in reasons:
        by_reason.setdefault(why, []).append(grp)
    return " | ".join(f"{', '.join(grps)}: {why}" for why, grps in by_reason.items())


def weak_seed_warning(df: pd.DataFrame) -> str:
    """A warning when a classifier seed's ID accuracy is under half the best seed's (a training run that
    diverged, e.g. stuck at chance): its detector rows then measure nothing and pull the means down."""
    acc = df[(df["detector"] == "classifier") & (df["metric"] == "accuracy") & (df["test_set"] == "id")
             & (df["status"] == "ok")]
    if acc["seed"].nunique() < 2:
        return ""
    per = acc.groupby("seed")["value"].mean()
    weak = per[per < 0.5 * per.max()]
    if weak.empty:
        return ""
    return ("**Weak classifier seed:** " + ", ".join(f"seed {int(k)} reaches {100 * v:.2f} % ID accuracy"
                                                      for k, v in weak.items())
            + f" against {100 * per.max():.2f} % for the best seed; its training probably diverged, and its rows "
            "measure nothing. Rerun with other `--seeds` (see `run.json` → `models` for the final loss).")


def provenance_warning(df: pd.DataFrame, record: dict) -> str:
    """A warning when the rows come from runs of more than one commit or environment (``run.json``'s
    ``runs``; rows without a ``run_id`` are from before run ids), else ""."""
    runs = {r.get("run_id"): r for r in record.get("runs", [])}
    ids = set(df["run_id"].fillna("").astype(str)) if "run_id" in df else {""}
    commits = {runs.get(i, {}).get("git_commit") or "unknown" for i in ids}
    envs = {json.dumps(runs.get(i, {}).get("versions"), sort_keys=True) for i in ids}
    if len(commits) <= 1 and len(envs) <= 1:
        return ""
    return (f"**Mixed provenance:** these rows come from {len(ids)} runs of {len(commits)} commit(s) "
            f"({', '.join(sorted(c[:10] for c in commits))}) and {len(envs)} environment(s); numbers of "
            "different runs may not be comparable. Regenerate with one `oodbench run` for a clean table.")


def leaderboard_markdown(df: pd.DataFrame, record: dict | None = None, summ: pd.DataFrame | None = None) -> str:
    """``leaderboard.md``: the classifier's accuracy, the leaderboard's group rank range, AUROC and FPR@95
    (mean ± std over seeds; and false-alarm rates), flagged detectors below a separator with their
    reasons, and the AUROC of every detector on every test set, as GitHub tables."""
    from tabulate import tabulate

    lb = leaderboard(df, record, summ)
    suite = df["suite"].iloc[0] if len(df) else "?"
    lines = [f"# Leaderboard: {suite}", ""]
    seeds = sorted({int(s) for s in df["seed"].unique()})
    if record:
        lines += [f"Model `{record.get('model', '?')}`, seeds {seeds}, device `{record.get('device', '?')}`. "
                  + NOTE + " Produced by `oodbench run`; do not edit.", ""]
        mixed = provenance_warning(df, record)
        if mixed:
            lines += [mixed, ""]
    weak = weak_seed_warning(df)
    if weak:
        lines += [weak, ""]
    acc = df[(df["metric"] == "accuracy") & (df["status"] == "ok")]
    if len(acc):
        a = acc.groupby("test_set")["value"].agg(["mean", lambda v: v.std(ddof=1)])
        lines += ["Classifier accuracy: " + ", ".join(
            f"{t} {pct(m, s if len(acc['seed'].unique()) > 1 else None)}" for t, (m, s) in a.iterrows()) + "", ""]
    if not lb.empty:
        cols = [(f"{g}:{m}", f"{g} {label}") for g in GROUPS for m, label in (("auroc", "AUROC"), ("fpr95", "FPR@95"))]
        cols += [(c, c) for c in lb.columns if c.startswith("false_alarm@") and not c.endswith(":std")]
        ranks = [f"{g}:rank" for g in GROUPS if f"{g}:rank" in lb]
        headers = ["library", "detector", *[c.replace(":", " ") for c in ranks], *[h for _, h in cols]]
        table, sep = [], False
        for _, r in lb.iterrows():
            if r["status"] == "ok" and r["flag"] and not sep:
                table.append(["**flagged: not ranked**"] + [""] * (len(headers) - 1))
                sep = True
            if r["status"] == "ok":
                table.append([r["library"], r["detector"], *[r[c] or ("flag" if r["flag"] else "–") for c in ranks],
                              *[pct(r[c], r[f"{c}:std"]) for c, _ in cols]])
            else:
                table.append([r["library"], r["detector"], "failed: " + r["error"][:120]] + [""] * (len(headers) - 3))
        lines.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
        lines.append("")
        flagged = lb[(lb["status"] == "ok") & (lb["flag"] != "")]
        if len(flagged):
            lines += ["Flagged detectors:", ""] + [f"* `{r['detector']}` ({r['flag']}): {r['flag_reason']}"
                                                   for _, r in flagged.iterrows()] + [""]
    # per-set AUROC
    per = df[(df["metric"] == "auroc") & (df["status"] == "ok") & ~df["test_set"].str.endswith("-mean")]
    if len(per):
        order = list(dict.fromkeys(per["test_set"]))
        piv = per.groupby(["detector", "test_set"])["value"].mean().unstack()[order]
        if not lb.empty:
            piv = piv.reindex([d for d in lb["detector"] if d in piv.index])
        lines += ["## AUROC per test set (%, mean over seeds)", "",
                  tabulate([[d, *[pct(v) for v in r]] for d, r in piv.iterrows()],
                           headers=["detector", *order], tablefmt="github"), ""]
    return "\n".join(lines)
