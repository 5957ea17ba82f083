"""The tidy results table and its files.

``results.csv`` is long-form: one row per (suite, model, seed, library, detector, test_set, group,
metric) with ``value``, a bootstrap interval (``ci_low``, ``ci_high``), the sample counts and a
``status`` (``ok`` or ``failed``, with ``error``). Aggregates over a group's test sets have
``test_set = "<group>-mean"``. ``run.json`` is the run record; ``leaderboard.md`` the markdown table;
``curves.json`` holds, per seed and detector, each test set's ROC curve on a fixed 101-point FPR
grid (``{"roc": {test_set: {"fpr": [...], "tpr": [...]}}}``) and score histograms on shared edges
(``{"hist": {"edges": [...], "id": [...], test_set: [...]}}``), so reports need no raw scores.
All writes are atomic.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from oodbench.benchmark.io import atomic_write, write_json

COLUMNS = ["suite", "model", "seed", "tuning", "library", "detector", "test_set", "group", "metric", "value",
           "ci_low", "ci_high", "n_id", "n_ood", "status", "error"]
GROUPS = ("near", "far", "covariate")


def to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan if c in ("value", "ci_low", "ci_high", "n_id", "n_ood") else ""
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Replace in ``old`` the rows that ``new`` recomputes (same suite, model, seed, detector)."""
    if old is None or old.empty:
        return new
    key = ["suite", "model", "seed", "detector"]
    redone = new[key].drop_duplicates()
    redone["seed"] = redone["seed"].astype(int)
    old = old.copy()
    old["seed"] = old["seed"].astype(int)
    m = old.merge(redone, on=key, how="left", indicator=True)["_merge"].to_numpy() == "both"
    return pd.concat([old[~m], new], ignore_index=True)


def read(path) -> pd.DataFrame | None:
    p = Path(path)
    if not p.exists():
        return None
    text = ("status", "error", "library", "group", "test_set", "detector", "metric", "suite", "model", "tuning")
    df = pd.read_csv(p, dtype={c: str for c in text}, keep_default_na=True)
    for c in text:
        if c in df.columns:
            df[c] = df[c].fillna("")
    return df


def write_csv(path, df: pd.DataFrame) -> None:
    df = df.sort_values(["suite", "model", "seed", "library", "detector", "group", "test_set", "metric"],
                        kind="mergesort")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write(path, buf.getvalue())


def _fmt(mean, std=None, pct=True):
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    s = f"{100 * mean:.2f}" if pct else f"{mean:.4f}"
    if std is not None and not np.isnan(std) and std > 0:
        s += f" ± {100 * std:.2f}" if pct else f" ± {std:.4f}"
    return s


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (library, detector): near / far / covariate means of AUROC and FPR@95 (mean ± std
    over seeds), sorted by near-OOD AUROC; false-alarm rates where a detector gives p-values."""
    ok = df[df["status"] == "ok"]
    agg = ok[ok["test_set"].str.endswith("-mean")]
    rows = []
    for (lib, det), g in agg.groupby(["library", "detector"], sort=False):
        r = {"library": lib, "detector": det}
        for grp in GROUPS:
            for metric, label in (("auroc", "AUROC"), ("fpr95", "FPR@95")):
                v = g[(g["group"] == grp) & (g["metric"] == metric)]["value"]
                r[f"{grp} {label}"] = (v.mean(), v.std(ddof=0)) if len(v) else (np.nan, np.nan)
        fa = ok[(ok["detector"] == det) & (ok["metric"].str.startswith("false_alarm@"))]
        for metric, v in fa.groupby("metric")["value"]:
            r[metric] = (v.mean(), v.std(ddof=0))
        rows.append(r)
    failed = df[df["status"] == "failed"]
    for (lib, det), g in failed.groupby(["library", "detector"], sort=False):
        if not any(r["detector"] == det for r in rows):
            rows.append({"library": lib, "detector": det, "status": "failed: " + str(g["error"].iloc[0])[:120]})
    lb = pd.DataFrame(rows)
    if lb.empty:
        return lb
    key = lb["near AUROC"].map(lambda t: t[0] if isinstance(t, tuple) else -1.0)
    return lb.assign(_k=key).sort_values("_k", ascending=False, kind="mergesort").drop(columns="_k")


def leaderboard_markdown(df: pd.DataFrame, record: dict | None = None) -> str:
    from tabulate import tabulate

    lb = leaderboard(df)
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
            f"{t} {_fmt(m, s if len(acc['seed'].unique()) > 1 else None)}" for t, (m, s) in a.iterrows()) + "", ""]
    if not lb.empty:
        table = []
        cols = [c for c in lb.columns if c not in ("library", "detector", "status")]
        for _, r in lb.iterrows():
            row = [r["library"], r["detector"]]
            for c in cols:
                v = r.get(c)
                row.append(_fmt(*v) if isinstance(v, tuple) else "–")
            if isinstance(r.get("status"), str):
                row = [r["library"], r["detector"], r["status"]] + [""] * (len(cols) - 1)
            table.append(row)
        lines.append(tabulate(table, headers=["library", "detector", *cols], tablefmt="github"))
        lines.append("")
    # per-set AUROC
    per = df[(df["metric"] == "auroc") & (df["status"] == "ok") & ~df["test_set"].str.endswith("-mean")]
    if len(per):
        order = list(dict.fromkeys(per["test_set"]))
        piv = per.groupby(["detector", "test_set"])["value"].mean().unstack()[order]
        if not lb.empty:
            piv = piv.reindex([d for d in lb["detector"] if d in piv.index])
        lines += ["## AUROC per test set (%)", "",
                  tabulate([[d, *[_fmt(v) for v in r]] for d, r in piv.iterrows()],
                           headers=["detector", *order], tablefmt="github"), ""]
    return "\n".join(lines)


def write_all(out_dir, df: pd.DataFrame, record: dict, curves: dict | None = None) -> None:
    out = Path(out_dir)
    write_csv(out / "results.csv", df)
    if curves is not None:  # compact: ROC points and histograms of every detector x test set
        atomic_write(out / "curves.json", json.dumps(curves, sort_keys=True, separators=(",", ":")) + "\n")
    write_json(out / "run.json", record)
    atomic_write(out / "leaderboard.md", leaderboard_markdown(df, record))
