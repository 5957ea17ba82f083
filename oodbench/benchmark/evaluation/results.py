"""The tidy results table and its files.

``results.csv.gz`` is long-form: one row per (suite, model, seed, library, detector, test_set, group,
metric) with ``value``, a 95 % interval (``ci_low``, ``ci_high``), the sample counts and a
``status`` (``ok`` or ``failed``, with ``error``) and the ``run_id`` of the run that produced it.
Aggregates over a group's test sets have ``test_set = "<group>-mean"``. ``summary.csv`` summarises it
over seeds (:mod:`.summary`). ``run.json`` is the run record; ``leaderboard.md`` the markdown table
(built by :mod:`oodbench.benchmark.reporting.leaderboard`);
``curves.json.gz`` holds, per seed and detector, each test set's ROC curve on a fixed 101-point FPR
grid (``{"roc": {test_set: {"fpr": [...], "tpr": [...]}}}``) and score histograms on shared edges
(``{"hist": {"edges": [...], "id": [...], test_set: [...]}}``), so reports need no raw scores.
The two large files are gzipped (deterministically: the same content gives the same bytes) — pandas
reads ``pd.read_csv("results/mnist/results.csv.gz")`` directly; :func:`read_table` and
:func:`read_curves` also read the plain ``results.csv`` / ``curves.json`` of folders written before.
The files are written as one unit (:mod:`.fileset`: a staging folder and a manifest of content
hashes), so a run killed while writing leaves either the old or the new set, never a mixture.
"""
from __future__ import annotations

import gzip
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation import fileset

COLUMNS = ["suite", "model", "seed", "tuning", "fit_split", "library", "detector", "test_set", "group", "metric", "value",
           "ci_low", "ci_high", "n_id", "n_ood", "status", "error", "run_id"]
GROUPS = ("near", "far", "covariate")


def to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan if c in ("value", "ci_low", "ci_high", "n_id", "n_ood") else ""
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


KEY = ["suite", "model", "seed", "detector"]


def _in(df: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """Which rows of ``df`` have a (suite, model, seed, detector) listed in ``keys``."""
    if keys.empty:
        return np.zeros(len(df), bool)
    return df[KEY].merge(keys, on=KEY, how="left", indicator=True)["_merge"].to_numpy() == "both"


def merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` updated with ``new``, per (suite, model, seed, detector): where ``new`` has computed rows
    they replace every old row; where ``new`` only failed, the old failure rows are replaced but old
    ``ok`` rows are kept, the new failure row beside them (a failure never erases a result)."""
    if old is None or old.empty:
        return new
    old, new = old.copy(), new.copy()
    old["seed"], new["seed"] = old["seed"].astype(int), new["seed"].astype(int)
    ok_keys = new.loc[new["status"] != "failed", KEY].drop_duplicates()
    failed_keys = new[KEY].drop_duplicates()
    drop = _in(old, ok_keys) | (_in(old, failed_keys) & (old["status"] == "failed").to_numpy())
    return pd.concat([old[~drop], new], ignore_index=True)


TABLE, CURVES = "results.csv.gz", "curves.json.gz"
LEGACY = {TABLE: "results.csv", CURVES: "curves.json"}  # the plain names of folders written before


def path_of(folder, name: str = TABLE) -> Path:
    """The path of ``name`` (:data:`TABLE` or :data:`CURVES`) in a results folder: the gzipped file, or
    the plain one of a folder written before the files were gzipped."""
    f = Path(folder)
    return f / LEGACY[name] if not (f / name).exists() and (f / LEGACY[name]).exists() else f / name


def has_table(folder) -> bool:
    return path_of(folder, TABLE).exists()


def read_table(folder) -> pd.DataFrame | None:
    """The results table of a results folder (None when it has none)."""
    return read(path_of(folder, TABLE))


def read_curves(folder) -> dict:
    """``curves.json.gz`` (or a legacy ``curves.json``) of a results folder; ``{}`` when missing or unreadable."""
    p = path_of(folder, CURVES)
    try:
        raw = p.read_bytes()
        return json.loads(gzip.decompress(raw) if p.suffix == ".gz" else raw)
    except (OSError, ValueError, EOFError):
        return {}


def gzipped(text: str) -> bytes:
    """``text`` gzipped with a fixed header (no file name, time 0): equal text gives equal bytes."""
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def read(path) -> pd.DataFrame | None:
    p = Path(path)
    if not p.exists():
        return None
    text = ("status", "error", "library", "group", "test_set", "detector", "metric", "suite", "model", "tuning",
            "run_id", "fit_split", "not_applicable_reason")
    try:
        df = pd.read_csv(p, dtype={c: str for c in text}, keep_default_na=True)
    except (EOFError, OSError, zlib.error) as e:  # a gzipped table cut short or damaged
        raise fileset.FolderMismatch(f"{p}: the file is truncated or damaged ({e}) — restore it or remove it "
                                     "to start the folder afresh") from None
    for c in text:
        if c in df.columns:
            df[c] = df[c].fillna("")
    if "status" in df.columns:
        bad = np.flatnonzero(~df["status"].isin(["ok", "failed"]).to_numpy())
        if len(bad):  # a row cut short (a truncated file) has no status
            raise fileset.FolderMismatch(f"{p}: line {bad[0] + 2} is incomplete (status "
                                         f"{df['status'].iloc[bad[0]]!r}); the file is truncated or damaged — "
                                         "restore it or remove it to start the folder afresh")
    return df


def csv_text(df: pd.DataFrame) -> str:
    df = df.sort_values(["suite", "model", "seed", "library", "detector", "group", "test_set", "metric"],
                        kind="mergesort")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def write_all(out_dir, df: pd.DataFrame, record: dict, curves: dict | None = None) -> None:
    """Write ``results.csv.gz``, ``summary.csv`` (:mod:`.summary`: mean ± std over seeds, intervals, rank
    ranges, flags), ``curves.json.gz`` (when given), ``run.json`` and ``leaderboard.md`` to ``out_dir`` as one
    unit. Call under the folder's lock (:func:`.fileset.lock`) after :func:`.fileset.recover`."""
    from oodbench.benchmark.evaluation import summary
    from oodbench.benchmark.reporting.leaderboard import leaderboard_markdown  # reporting reads this module

    summ = summary.summarise(df, paired=summary.paired_from_curves(curves))
    files = {TABLE: gzipped(csv_text(df)), "summary.csv": summary.csv_text(summ)}
    if curves is not None:  # compact: ROC points and histograms of every detector x test set
        files[CURVES] = gzipped(json.dumps(curves, sort_keys=True, separators=(",", ":")) + "\n")
    files["run.json"] = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
    files["leaderboard.md"] = leaderboard_markdown(df, record, summ)
    fileset.write_set(out_dir, files, {"run_id": record.get("run_id", "")}, remove=tuple(LEGACY.values()))
