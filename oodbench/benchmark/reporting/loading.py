"""Reading a results folder: the only input of every report.

``oodbench run <suite>`` writes ``results/<suite>/`` with

* ``results.csv.gz``: the long-form table (gzipped CSV; older folders: ``results.csv``), one row per
  (seed, detector, test set, metric); see
  :mod:`oodbench.benchmark.evaluation.results` for its columns;
* ``run.json``: the run record (model, seeds, versions, split sizes, per-detector timings and
  metadata, failures);
* ``curves.json.gz``: per seed and detector, ROC points on a fixed FPR grid and score histograms.

``oodbench ease`` writes ``results/ease/ease.json`` (ease of use, robustness probes, code quality).
A missing or unreadable JSON file is read as empty, so a report still builds from a partial folder.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from oodbench.benchmark.evaluation import fileset, results
from oodbench.benchmark.evaluation.results import GROUPS
from oodbench.benchmark.io import read_json


class SuiteResults:
    """The results files of one suite: ``df`` (``results.csv.gz``), ``record`` (``run.json``) and
    ``curves`` (``curves.json.gz``), plus what the reports need from them again and again: the suite
    name, ``test_sets`` as ``(name, group)`` pairs in the run's order, and the sorted ``seeds``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        fileset.check(self.folder)  # finish an interrupted update; a damaged file is named
        df = results.read_table(self.folder)
        if df is None:
            raise FileNotFoundError(f"{results.path_of(self.folder)} not found (run `oodbench run <suite>` first)")
        self.df = df
        self.record = read_json(self.folder / "run.json", {})
        self.curves = results.read_curves(self.folder)
        self.suite = str(df["suite"].iloc[0]) if len(df) else self.folder.name
        test_sets = self.record.get("test_sets") or []
        if not test_sets:  # fall back on the CSV
            per = df[~df["test_set"].str.endswith("-mean") & df["group"].isin(GROUPS)]
            test_sets = [{"name": t, "group": g} for t, g in per[["test_set", "group"]].drop_duplicates().values]
        self.test_sets = [(t["name"], t["group"]) for t in test_sets]
        self.seeds = sorted({int(s) for s in df["seed"].dropna().unique()})

    @property
    def ok(self) -> pd.DataFrame:
        """The detector rows that were computed (status ``ok``; the classifier's accuracy rows left out)."""
        return self.df[(self.df["status"] == "ok") & (self.df["detector"] != "classifier")]


def find_suites(results_dir) -> list[Path]:
    """Folders under ``results_dir`` that hold a results table (sorted by name)."""
    root = Path(results_dir)
    return sorted(p for p in root.glob("*/") if results.has_table(p))


def load_ease(results_dir) -> dict:
    """``<results_dir>/ease/ease.json`` (written by ``oodbench ease``), or ``{}`` when absent."""
    return read_json(Path(results_dir) / "ease" / "ease.json", {})
