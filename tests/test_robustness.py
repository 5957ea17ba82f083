"""Run robustness (issue 12, the run half): hanging detectors are timed out, results are written after
every job and survive Ctrl-C, the output folder is one consistent unit even when killed mid-write,
merging never lets a failure erase good rows, and bad arguments are one-line errors before any compute.

Uses tiny detectors registered for the test on the ``mnist-smoke`` suite (the classifier is the
session's cached one)."""
import gzip
import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.adapters.registry import REGISTRY
from oodbench.benchmark.cli import main
from oodbench.benchmark.evaluation import output, results, runner


class _Fast(Detector):
    consumes = frozenset({"logits"})
    info = DetectorInfo(library="test")

    def score(self, rep):
        return -rep.logits.max(1).astype(np.float64)


class _Sleep(_Fast):
    def fit(self, fit, cal=None):
        time.sleep(120)
        return self


class _Interrupt(_Fast):
    armed = True

    def score(self, rep):
        if type(self).armed:
            raise KeyboardInterrupt
        return super().score(rep)


class _Flaky(_Fast):
    broken = False

    def score(self, rep):
        if type(self).broken:
            raise RuntimeError("flaky today")
        return super().score(rep)


@pytest.fixture
def fakes():
    classes = {"test.fast": _Fast, "test.fast2": type("Fast2", (_Fast,), {}), "test.sleep": _Sleep,
               "test.interrupt": type("Interrupt", (_Interrupt,), {"armed": True}),
               "test.flaky": type("Flaky", (_Flaky,), {"broken": False})}
    with REGISTRY.scoped():
        for n, c in classes.items():
            REGISTRY.register(n)(c)
        yield {n: REGISTRY.get(n) for n in classes}


def _kw(data_dir, cache_dir, out, **more):
    return dict(seeds=[0], data_dir=data_dir, cache_dir=cache_dir, out=out, threads=1, n_boot=0, progress=False,
                **more)


def _rows(out, det):
    df = pd.read_csv(out / "results.csv.gz", dtype={"error": str, "run_id": str}, keep_default_na=False)
    return df[df.detector == det]


# 1. a hanging detector ------------------------------------------------------------------------------------

def test_sleeping_detector_is_timed_out_and_the_other_rows_are_written(data_dir, cache_dir, tmp_path, fakes):
    t0 = time.perf_counter()
    res = runner.evaluate("mnist-smoke", detectors=["test.fast", "test.sleep", "test.fast2"],
                          **_kw(data_dir, cache_dir, tmp_path, timeout=2, use_score_cache=False))
    assert time.perf_counter() - t0 < 60  # not the 120 s the detector sleeps
    slept = _rows(tmp_path, "test.sleep")
    assert list(slept.status) == ["failed"] and slept.error.iloc[0] == "timeout after 2 s"
    for d in ("test.fast", "test.fast2"):
        assert (_rows(tmp_path, d).status == "ok").sum() > 0, d
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["timeout_s"] == 2 and rec["status"] == "complete"
    assert [f["detector"] for f in rec["failures"]] == ["test.sleep"]
    assert res.record["failures"][0]["error"] == "timeout after 2 s"


# 2. incremental results, Ctrl-C, resume ------------------------------------------------------------------

def test_ctrl_c_keeps_finished_rows_and_a_rerun_resumes(data_dir, cache_dir, tmp_path, fakes, capsys):
    argv = ["run", "mnist-smoke", "--detectors", "test.fast", "test.interrupt", "test.fast2", "--data-dir",
            str(data_dir), "--cache-dir", str(cache_dir), "--out", str(tmp_path), "--threads", "1", "-q",
            "--bootstrap", "0"]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted after" in err[0] and "resume" in err[0], err
    # the folder holds what finished before Ctrl-C (the classifier's rows and test.fast), and is consistent
    output.prepare(tmp_path)
    assert (_rows(tmp_path, "test.fast").status == "ok").sum() > 0
    assert len(_rows(tmp_path, "classifier")) and not len(_rows(tmp_path, "test.fast2"))
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["status"] == "interrupted" and rec["jobs"]["done"] < rec["jobs"]["planned"]
    # the rerun resumes: test.fast comes from the score cache, the rest is computed
    fakes["test.interrupt"].armed = False
    res = runner.evaluate("mnist-smoke", detectors=["test.fast", "test.interrupt", "test.fast2"],
                          **_kw(data_dir, cache_dir, tmp_path))
    assert res.record["detectors"]["test.fast"]["0"]["cached"] is True
    assert res.record["extraction"][0]["forward_passes"] == 0
    for d in ("test.fast", "test.interrupt", "test.fast2"):
        assert (_rows(tmp_path, d).status == "ok").sum() > 0, d


def test_results_are_written_after_every_job(data_dir, cache_dir, tmp_path, fakes, monkeypatch):
    seen = []
    real = output.merge_and_write

    def spy(out_dir, df, record, curves):
        seen.append(sorted(set(df.detector)))
        return real(out_dir, df, record, curves)

    monkeypatch.setattr(output, "merge_and_write", spy)
    runner.evaluate("mnist-smoke", detectors=["test.fast", "test.fast2"], **_kw(data_dir, cache_dir, tmp_path),
                    flush_seconds=0)
    assert seen[0] == ["classifier"] and seen[1] == ["classifier", "test.fast"]
    assert seen[-1] == ["classifier", "test.fast", "test.fast2"]


# 3. the output folder as one unit ------------------------------------------------------------------------

def _frame(tag: str, value: float) -> pd.DataFrame:
    return results.to_frame([{"suite": "s", "model": "m", "seed": 0, "tuning": "default", "library": "test",
                              "detector": "d", "test_set": t, "group": "near", "metric": "auroc", "value": value,
                              "status": "ok", "run_id": tag} for t in ("a", "near-mean")])


def _write(folder, tag: str, value: float):
    rec = {"run_id": tag, "status": "complete", "model": "m", "device": "cpu", "detectors": {"d": {"0": {}}},
           "failures": []}
    output.merge_and_write(folder, _frame(tag, value), rec, {"0": {"d": {"tag": tag}}})


def test_tables_are_gzipped_deterministically_and_a_plain_older_folder_is_read_and_converted(tmp_path):
    """A folder written before the tables were gzipped (plain results.csv / curves.json) is read, merged
    into and left with the gzipped files only; equal content gives equal bytes (reproducible commits)."""
    old = tmp_path / "old"
    _write(old, "A", 0.125)
    for name, plain in results.LEGACY.items():  # turn it into a folder of the earlier layout
        (old / plain).write_bytes(gzip.decompress((old / name).read_bytes()))
        (old / name).unlink()
    (old / "manifest.json").unlink()
    assert set(results.read_table(old).run_id) == {"A"} and results.read_curves(old)["0"]["d"]["tag"] == "A"
    frame = _frame("B", 0.875).assign(detector="e")
    output.merge_and_write(old, frame, {"run_id": "B", "status": "complete", "model": "m", "device": "cpu",
                                        "detectors": {"e": {"0": {}}}, "failures": []}, {"0": {"e": {"tag": "B"}}})
    names = {p.name for p in old.iterdir()}
    assert {"results.csv.gz", "curves.json.gz"} <= names and not names & set(results.LEGACY.values())
    assert set(json.loads((old / "manifest.json").read_text())["files"]) >= {"results.csv.gz", "curves.json.gz"}
    assert set(results.read_table(old).run_id) == {"A", "B"} and set(results.read_curves(old)["0"]) == {"d", "e"}
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "A", 0.125)
    time.sleep(1.1)  # a gzip header with the time in it would differ now
    _write(b, "A", 0.125)
    assert (a / "results.csv.gz").read_bytes() == (b / "results.csv.gz").read_bytes()
    assert (a / "curves.json.gz").read_bytes() == (b / "curves.json.gz").read_bytes()


def _which_set(folder) -> str:
    """The run that wrote the folder, after checking that all four files come from it."""
    output.prepare(folder)  # reopening finishes or undoes an interrupted update
    df = results.read_table(folder)
    tags = {set(df.run_id).pop(), json.loads((folder / "run.json").read_text())["run_id"],
            results.read_curves(folder)["0"]["d"]["tag"]}
    assert len(tags) == 1, f"mixed folder: {tags}"
    tag = tags.pop()
    assert ("87.5" if tag == "B" else "12.5") in (folder / "leaderboard.md").read_text()
    assert set(df.value) == {0.875 if tag == "B" else 0.125}
    return tag


def test_a_kill_between_output_writes_leaves_a_consistent_folder(tmp_path, monkeypatch):
    base = tmp_path / "A"
    _write(base, "A", 0.125)
    assert _which_set(base) == "A"
    # count the file-system steps of one update (every rename and fsync)
    steps = []
    for fn in ("replace", "fsync"):
        real = getattr(os, fn)
        monkeypatch.setattr(os, fn, lambda *a, _r=real, **k: (steps.append(1), _r(*a, **k))[1])
    shutil.copytree(base, tmp_path / "probe")
    _write(tmp_path / "probe", "B", 0.875)
    monkeypatch.undo()
    assert len(steps) >= 8
    outcomes = set()
    for n in range(1, len(steps) + 2):  # killed (SIGKILL-like: os._exit, no clean-up) before step n
        folder = tmp_path / f"kill{n}"
        shutil.copytree(base, folder)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            count = [0]

            def killer(real, n=n, count=count):
                def f(*a, **k):
                    count[0] += 1
                    if count[0] == n:
                        os._exit(9)
                    return real(*a, **k)
                return f

            os.replace, os.fsync = killer(os.replace), killer(os.fsync)
            try:
                _write(folder, "B", 0.875)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        outcomes.add(_which_set(folder))
        assert not (folder / ".staging").exists()
    assert outcomes == {"A", "B"}


def test_a_damaged_results_file_is_named(data_dir, cache_dir, tmp_path, capsys):
    folder = tmp_path / "s"
    _write(folder, "A", 0.125)
    p = folder / "results.csv.gz"
    p.write_bytes(p.read_bytes()[:-20])  # truncated
    with pytest.raises(Exception, match="results.csv.gz"):
        output.prepare(folder)
    for argv in (["run", "mnist-smoke", "--detectors", "pytorch_ood.msp", "--data-dir", str(data_dir),
                  "--cache-dir", str(cache_dir), "--out", str(folder), "-q"],
                 ["report", "--results", str(tmp_path), "--out", str(tmp_path / "reports")]):
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and str(p) in err[0] and "Traceback" not in err[0], (argv[0], err)
    # a folder without a manifest (an older one) with a truncated table is not merged silently either
    (folder / "manifest.json").unlink()
    with pytest.raises(Exception, match="results.csv.gz: the file is truncated or damaged"):
        results.read_table(folder)
    p.unlink()
    legacy = folder / "results.csv"  # nor one of the plain results.csv written before the tables were gzipped
    legacy.write_text(results.csv_text(_frame("A", 0.125))[:-20])
    with pytest.raises(Exception, match="results.csv: line 3 is incomplete"):
        results.read_table(folder)


# 4. merging ------------------------------------------------------------------------------------------

def test_merge_keeps_ok_rows_beside_a_later_failure():
    ok = _frame("A", 0.125)
    fail = results.to_frame([{**ok.iloc[0].to_dict(), "test_set": "", "metric": "error", "value": np.nan,
                              "status": "failed", "error": "boom", "run_id": "B"}])
    m = results.merge(ok, fail)
    assert sorted(m.status) == ["failed", "ok", "ok"] and set(m.run_id) == {"A", "B"}
    m2 = results.merge(m, fail.assign(run_id="C"))  # a second failure replaces the first, not the ok rows
    assert sorted(m2.status) == ["failed", "ok", "ok"] and set(m2.run_id) == {"A", "C"}
    m3 = results.merge(m2, _frame("D", 0.5))  # a new result replaces everything of the detector
    assert set(m3.status) == {"ok"} and set(m3.run_id) == {"D"}


def test_a_failing_rerun_does_not_erase_earlier_rows(data_dir, cache_dir, tmp_path, fakes):
    first = runner.evaluate("mnist-smoke", detectors=["test.flaky"], **_kw(data_dir, cache_dir, tmp_path))
    n_ok = (_rows(tmp_path, "test.flaky").status == "ok").sum()
    assert n_ok > 0
    fakes["test.flaky"].broken = True
    second = runner.evaluate("mnist-smoke", detectors=["test.flaky"],
                             **_kw(data_dir, cache_dir, tmp_path, use_score_cache=False))
    rows = _rows(tmp_path, "test.flaky")
    assert (rows.status == "ok").sum() == n_ok
    assert set(rows[rows.status == "ok"].run_id) == {first.record["run_id"]}
    failed = rows[rows.status == "failed"]
    assert len(failed) == 1 and "flaky today" in failed.error.iloc[0]
    assert failed.run_id.iloc[0] == second.record["run_id"] != first.record["run_id"]
    rec = json.loads((tmp_path / "run.json").read_text())
    assert [f["detector"] for f in rec["failures"]] == ["test.flaky"]
    kept = rec["detectors"]["test.flaky"]["0"]
    assert kept.get("status") != "failed" and "flaky today" in kept["later_failure"]["error"]
    assert [r["run_id"] for r in rec["runs"]] == [first.record["run_id"], second.record["run_id"]]
    assert rec["runs"][1]["failures"][0]["detector"] == "test.flaky"
    assert "test.flaky" in (tmp_path / "leaderboard.md").read_text()


# 5. bad arguments -------------------------------------------------------------------------------------

BAD = [
    (["run", "nosuch"], "unknown suite 'nosuch'"),
    (["run", "mnist-smoke", "--detectors", "nope.*"], "no detector matches 'nope.*'"),
    (["run", "mnist-smoke", "--detectors", "nope"], "unknown detector 'nope'"),
    (["run", "mnist-smoke", "--seeds", "-1"], "--seeds: -1 is not a seed"),
    (["run", "mnist-smoke", "--seeds", "x"], "--seeds: 'x' is not an integer"),
    (["run", "mnist-smoke", "--seeds", "0", "0"], "seed 0 is given twice"),
    (["run", "mnist-smoke", "--bootstrap", "-5"], "--bootstrap: -5 is not an integer >= 0"),
    (["run", "mnist-smoke", "--threads", "0"], "--threads: 0 is not a positive integer"),
    (["run", "mnist-smoke", "--batch-size", "0"], "--batch-size: 0 is not a positive integer"),
    (["run", "mnist-smoke", "--timeout", "-1"], "--timeout: -1 is not a number of seconds"),
    (["run", "mnist-smoke", "--device", "cuda"], "CUDA is not available"),
    (["run", "mnist-smoke", "--device", "gpu"], "'gpu' is not a device"),
    (["run", "mnist-smoke", "--data-dir", "{tmp}/missing"], "--data-dir {tmp}/missing does not exist"),
    (["run", "mnist-smoke", "--out", "{tmp}/afile"], "is a file, not a folder"),
    (["run", "mnist-smoke", "--out", "{tmp}/afile/sub"], "is not writable"),
    (["run", "mnist-smoke", "--cache-dir", "{tmp}/afile"], "--cache-dir"),
    (["check", "pytorch_ood.msp", "--suite", "nosuch"], "unknown suite 'nosuch'"),
    (["check", "nope.*"], "no detector matches 'nope.*'"),
    (["check", "pytorch_ood.msp", "--tolerance", "-1"], "--tolerance: -1 is not a fraction"),
    (["ease", "--import-runs", "0"], "--import-runs: 0 is not a positive integer"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[1:])[:40] for a, _ in BAD])
def test_bad_arguments_are_one_line_errors_before_any_compute(argv, message, data_dir, tmp_path, capsys,
                                                               monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "afile").write_text("x")
    cache = tmp_path / "cache"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "run":
        defaults = {"--data-dir": str(data_dir), "--cache-dir": str(cache), "--out": str(tmp_path / "out"),
                    "--detectors": "pytorch_ood.msp", "--bootstrap": "0"}
        argv += [x for k, v in defaults.items() if k not in argv for x in (k, v)] + ["-q"]
    t0 = time.perf_counter()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert message.replace("{tmp}", str(tmp_path)) in err[0] and "Traceback" not in err[0], err[0]
    assert elapsed < 20
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing trained, extracted or cached
    assert not (tmp_path / "out" / "results.csv.gz").exists()


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="unknown suite"):
        main(["--debug", "run", "nosuch"])
    with pytest.raises(ValueError, match="unknown suite"):
        main(["run", "nosuch", "--debug"])
