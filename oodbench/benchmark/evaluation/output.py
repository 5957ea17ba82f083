"""Writing a run's results folder: merged with what the folder already holds (other detectors, other
runs), under an exclusive lock so concurrent runs into one folder serialise instead of overwriting."""
from __future__ import annotations

from pathlib import Path

from oodbench.benchmark.evaluation import results
from oodbench.benchmark.io import read_json


class locked:
    """An exclusive advisory lock on a file (fcntl), held for the ``with`` block."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "a")
        try:
            import fcntl

            fcntl.flock(self.f, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        return self

    def __exit__(self, *exc):
        self.f.close()


def merge_and_write(out_dir: Path, df, record: dict, curves: dict):
    """Merge ``df`` into ``out_dir/results.csv`` (rows of the same suite, model, seed and detector are
    replaced), update ``run.json`` (this run's detector records over the earlier ones, and the history
    of runs with their environments) and ``curves.json``, rewrite ``leaderboard.md``. Returns the
    merged table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    det_records = record["detectors"]
    with locked(out_dir / ".lock"):
        merged = results.merge(results.read(out_dir / "results.csv"), df)
        prev = read_json(out_dir / "run.json", {})
        keep = set(merged["detector"])
        record["detectors"] = {**{k: v for k, v in prev.get("detectors", {}).items() if k in keep}, **det_records}
        # every run that contributed rows to this folder, with its environment (e.g. OpenOOD's numpy 1.26)
        record["runs"] = prev.get("runs", []) + [
            {k: record[k] for k in ("timestamp", "command", "versions", "git_commit", "device", "threads",
                                    "wall_seconds")} | {"detectors": sorted(det_records)}]
        prev_curves = read_json(out_dir / "curves.json", {})
        for sd, dets_c in curves.items():
            prev_curves.setdefault(sd, {}).update(dets_c)
        for sd in list(prev_curves):
            prev_curves[sd] = {k: v for k, v in prev_curves[sd].items() if k in keep}
        results.write_all(out_dir, merged, record, prev_curves)
    return merged
