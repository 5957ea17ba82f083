"""Writing a run's results folder: merged with what the folder already holds (other detectors, other
runs, this run's own earlier partial writes), under an exclusive lock so concurrent runs into one folder
serialise instead of overwriting, and as one unit (:mod:`.fileset`).

The runner calls :func:`merge_and_write` after every finished job, so an interrupted run keeps every
finished row. Each call re-reads the folder and replaces this run's earlier rows (same suite, model,
seed, detector), so the folder always holds each detector's latest result; a detector that failed in
this run keeps its earlier ``ok`` rows and record (:func:`.results.merge`), the failure recorded beside
them (its row, ``failures`` and the run's entry in ``runs``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from oodbench.benchmark.evaluation import fileset, results
from oodbench.benchmark.io import read_json

#: the fields of a run's entry in ``run.json["runs"]`` (every run that contributed to the folder)
RUN_FIELDS = ("run_id", "status", "timestamp", "command", "versions", "git_commit", "device", "threads",
              "timeout_s", "wall_seconds")


class OutputError(OSError):
    """The output folder cannot be used (a file, not writable); the message names it."""


def prepare(out_dir) -> Path:
    """Check before any compute that ``out_dir`` can hold results: it is (or can be made) a writable
    folder, and what it holds is one consistent set (an interrupted update is finished or undone)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; give a folder (it is created when missing)")
    missing = []  # folders this check creates and removes again, so a run that fails early leaves none
    p = out
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise OutputError(f"--out {out} is not writable: {p} is a file; give a folder you can write to")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"--out {out} is not writable ({e.strerror or e}); give a folder you can write to") from e
    finally:
        for d in missing:
            if d.is_dir():
                d.rmdir()
    fileset.check(out)
    return out


def _merge_detectors(prev: dict, new: dict, run_id: str) -> dict:
    """Per detector and seed, the new record, except that a failure does not replace an earlier ok
    record: that one is kept, with the failure noted in it as ``later_failure``."""
    out = {k: dict(v) for k, v in prev.items()}
    for det, seeds in new.items():
        cur = out.setdefault(det, {})
        for seed, r in seeds.items():
            old = cur.get(seed)
            if r.get("status") == "failed" and isinstance(old, dict) and old.get("status") != "failed":
                cur[seed] = {**old, "later_failure": {"run_id": run_id, "error": r.get("error", "")}}
            else:
                cur[seed] = r
    return out


def merge_and_write(out_dir: Path, df, record: dict, curves: dict):
    """Merge ``df`` into ``out_dir/results.csv.gz`` (see :func:`.results.merge`), update ``run.json`` (this
    run's detector records over the earlier ones, and the history of runs with their environments) and
    ``curves.json.gz``, rewrite ``leaderboard.md``; all as one unit. Returns the merged table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = dict(record)
    run_id = record.get("run_id", "")
    with fileset.lock(out_dir):
        fileset.recover(out_dir)
        merged = results.merge(results.read_table(out_dir), df)
        prev = read_json(out_dir / "run.json", {})
        keep = set(merged["detector"])
        dets = _merge_detectors(prev.get("detectors", {}), record["detectors"], run_id)
        record["detectors"] = {k: v for k, v in dets.items() if k in keep}
        # every run that contributed rows to this folder, with its environment (e.g. OpenOOD's numpy 1.26)
        entry = {k: record.get(k) for k in RUN_FIELDS} | {
            "detectors": sorted(set(df["detector"]) - {"classifier"}),
            "failures": [{"detector": f["detector"], "seed": f["seed"], "error": f["error"]}
                         for f in record.get("failures", [])]}
        runs = [r for r in prev.get("runs", []) if not run_id or r.get("run_id") != run_id]
        record["runs"] = runs + [entry]
        prev_curves = results.read_curves(out_dir)
        for sd, dets_c in curves.items():
            prev_curves.setdefault(sd, {}).update(dets_c)
        for sd in list(prev_curves):
            prev_curves[sd] = {k: v for k, v in prev_curves[sd].items() if k in keep}
        results.write_all(out_dir, merged, record, prev_curves)
    return merged
