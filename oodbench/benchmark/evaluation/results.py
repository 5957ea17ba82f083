"""The tidy results table and its files.

``results.csv`` is long-form: one row per (suite, model, seed, library, detector, test_set, group,
metric) with ``value``, a bootstrap interval (``ci_low``, ``ci_high``), the sample counts and a
``status`` (``ok`` or ``failed``, with ``error``). Aggregates over a group's test sets have
``test_set = "<group>-mean"``. ``summary.csv`` summarises it over seeds (:mod:`.summary`). ``run.json`` is the run record; ``leaderboard.md`` the markdown table
(built by :mod:`oodbench.benchmark.reporting.leaderboard`);
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


def write_all(out_dir, df: pd.DataFrame, record: dict, curves: dict | None = None) -> None:
    """Write ``results.csv``, ``summary.csv`` (:mod:`.summary`: mean ± std over seeds, intervals, rank
    ranges, flags), ``curves.json`` (when given), ``run.json`` and ``leaderboard.md`` to ``out_dir``."""
    from oodbench.benchmark.evaluation import summary
    from oodbench.benchmark.reporting.leaderboard import leaderboard_markdown  # reporting reads this module

    out = Path(out_dir)
    write_csv(out / "results.csv", df)
    summ = summary.summarise(df, paired=summary.paired_from_curves(curves))
    summary.write(out / "summary.csv", summ)
    if curves is not None:  # compact: ROC points and histograms of every detector x test set
        atomic_write(out / "curves.json", json.dumps(curves, sort_keys=True, separators=(",", ":")) + "\n")
    write_json(out / "run.json", record)
    atomic_write(out / "leaderboard.md", leaderboard_markdown(df, record, summ))
