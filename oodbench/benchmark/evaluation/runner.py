"""The evaluation loop: suite → classifier → representations → detectors → scores → metrics → files.

``evaluate(suite, detectors, seeds)`` plans the run as a grid of jobs (:mod:`.jobs`: train the
classifier of each seed, extract every representation once, score each detector), runs them with an
executor, and returns a :class:`RunResult` — the tidy results table and the run record. With
``write`` it also writes ``results.csv.gz``, ``run.json``, ``curves.json.gz`` and ``leaderboard.md`` to
``out`` (default ``results/<suite>/``), merged with earlier results of other detectors there.

The arguments are checked before any compute (:mod:`.arguments`). The output folder is updated
after every finished job (as one unit, :mod:`.output`), so an interrupted run keeps every finished
row; Ctrl-C writes what finished and raises :class:`RunInterrupted`. Scores are cached (keyed by
detector, hyperparameters, library version, code, model and data), so a rerun resumes where it
stopped. A detector that raises, returns NaN, the wrong shape or the wrong dtype, or runs past
``timeout`` seconds, is recorded as failed with its error and the run goes on.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oodbench.adapters import registry
from oodbench.benchmark import config, machine
from oodbench.benchmark.evaluation import arguments, executors, output, results
from oodbench.benchmark.evaluation import record as recordmod
from oodbench.benchmark.evaluation.jobs import JobResult, RunContext, peak_rss_mb, plan


@dataclass
class RunOptions:
    """Options of a run (the ``oodbench run`` flags). ``tuning="default"``: every detector uses its
    library's fixed defaults and sees no OOD data; ``"tuned"``: hyperparameters are chosen on an OOD
    validation set disjoint from every test set (:mod:`.tuning`, OpenOOD's protocol), results go to
    ``results/<suite>-tuned`` and every row says which mode produced it (column ``tuning``)."""

    device: str = "cpu"
    data_dir: object = None
    cache_dir: object = None
    out: object = None
    threads: int | None = None
    n_boot: int = 100
    progress: bool = True
    write: bool = True
    use_score_cache: bool = True
    batch_size: int = 512
    tuning: str = "default"
    fit_split: str = "train"  # what third-party baselines are fitted on: train (OpenOOD's protocol) | fit
    timeout: float | None = config.DEFAULT_TIMEOUT  # seconds per score job; None or 0: no limit
    jobs: int | None = 1  # worker processes; None: the number of cores (``--jobs``)
    executor: str = "auto"  # auto (serial for 1 job, else local) | serial | local | ray
    address: str | None = None  # Ray cluster address (``--address``)
    flush_seconds: float = 30.0  # write the output folder after a finished job at most this often


@dataclass
class RunResult:
    """The results table (one row per suite, model, seed, library, detector, test set, group, metric)
    and the run record (``run.json``)."""

    table: pd.DataFrame
    record: dict
    curves: dict = field(default_factory=dict)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; ``result`` holds what finished (already written to the output folder)."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


def new_run_id() -> str:
    """A run's identity: UTC time and 6 random hex digits, e.g. ``20261130T225631Z-3fa2c1``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()


def out_dir(o: RunOptions, suite_d: dict) -> Path:
    """``results/<suite>`` (``-tuned`` in tuned mode, ``-fitsplit-fit`` when baselines are fitted on the
    ``fit`` split: rows of the two protocols never share a folder) unless ``o.out`` is given."""
    suffix = ("-tuned" if o.tuning == "tuned" else "") + ("-fitsplit-fit" if o.fit_split == "fit" else "")
    return Path(o.out) if o.out else Path("results") / (suite_d["name"] + suffix)


def default_detectors(device: str = "cpu") -> list[str]:
    """Every registered detector whose library is installed (here, or OpenOOD's in its own environment,
    see ``oodbench setup openood``) and that can run on ``device``; expensive ones are included (they
    score a seeded subsample on CPU where they say so)."""
    return [n for n in registry.names() if not skip_reason(n, device)]


def skip_reason(name: str, device: str = "cpu") -> str:
    """Why ``name`` is left out of a default run ("" when it runs)."""
    info = registry.get(name).info
    if info.extra.get("available") is False and not (name.startswith("openood.") and _openood_python()):
        if name.startswith("openood."):
            from oodbench.benchmark.tools import openood_env

            return f"OpenOOD is not installed here nor set up in its own environment: {openood_env.setup_command()}"
        return "its library is not installed"
    if not (str(device).startswith("cuda") or info.cpu_ok):
        return "needs a GPU"
    return ""


def _openood_python():
    from oodbench.benchmark.tools import openood_env

    return openood_env.find_python()


def evaluate(suite: str | dict, detectors=None, seeds=(0,), options: RunOptions | None = None, **kw) -> RunResult:
    """Run ``detectors`` (names or patterns; default: all available) on ``suite`` for each seed.
    Options are a :class:`RunOptions` or its fields as keywords (``device="cuda"``, ``n_boot=1000``...)."""
    o = options or RunOptions(**kw)
    suite_d, names, seeds = arguments.check_run(suite, detectors, seeds, o, default_detectors)
    folder = output.prepare(out_dir(o, suite_d)) if o.write else None
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    threads = config.set_threads(config.job_threads(o.threads))  # the same per job whatever the executor
    skipped = {} if detectors else {n: r for n in registry.names() if (r := skip_reason(n, o.device))}
    ctx = RunContext(suite_d, names, o, run_id=new_run_id(), say=tqdm.write if o.progress else (lambda *a, **k: None))
    t0 = time.perf_counter()
    data = ctx.session(int(seeds[0])).data
    t_data = time.perf_counter() - t0
    for n, why in data.skipped:
        ctx.say(f"skipped test set {n}: {why}")
    ctx.prepare_tuning()

    jobs = plan(suite_d["name"], names, seeds)
    collected: list[JobResult] = []
    for n, why in skipped.items():
        ctx.say(f"skipped detector {n}: {why}")
    executor = _executor(o, names, ctx.say)
    env = {"versions": recordmod.versions(), "git_commit": recordmod.git_commit()}

    def finish(status: str) -> RunResult:
        rec = _record(ctx, collected, seeds, threads, t_data) | env
        rec.update(status=status, wall_seconds=time.perf_counter() - t_start,
                   skipped_detectors=[{"detector": n, "reason": r} for n, r in skipped.items()],
                   executor={"name": executor.name, "workers": getattr(executor, "workers", 1), "threads": threads},
                   jobs={"planned": len(jobs), "done": len(collected), "log": _job_log(collected)})
        result = RunResult(results.to_frame([r for jr in collected for r in jr.rows]), rec, _curves(collected))
        if folder is not None and (status == "complete" or len(result.table)):
            result.table = output.merge_and_write(folder, result.table, rec, result.curves)
        return result

    last_write = [0.0]

    def on_result(jr: JobResult) -> None:
        collected.append(jr)
        # the folder keeps finished rows (at most every ``flush_seconds``; the score cache keeps them all)
        if folder is not None and jr.job.kind != "train" and time.perf_counter() - last_write[0] >= o.flush_seconds:
            finish("running")
            last_write[0] = time.perf_counter()

    try:
        executor.run(jobs, ctx, on_result, o.progress)
    except KeyboardInterrupt:
        result = finish("interrupted")
        where = f"; what finished is in {folder}" if folder is not None and len(result.table) else ""
        how = "finished detectors come from the score cache" if o.use_score_cache else "without --no-score-cache " \
            "finished detectors come from the score cache"
        raise RunInterrupted(f"interrupted after {len(collected)} of {len(jobs)} jobs{where}; run the same "
                             f"command again to resume ({how})", result) from None
    return finish("complete")


def _executor(o: RunOptions, names, say=lambda *a: None):
    """The executor the options ask for; ``openood.*`` detectors whose library is only installed in
    OpenOOD's own environment need worker processes, so a serial run of them uses one local worker;
    with ``auto``, detectors that a worker cannot import (defined at run time) run serially here."""
    from oodbench.benchmark.evaluation.worker import importable

    in_env = any(n.startswith("openood.") and registry.get(n).info.extra.get("available") is False for n in names)
    if in_env and o.executor in ("auto", "serial"):
        return executors.make("local", o.jobs or 1, o.timeout, o.address)
    fresh = registry.Registry() if o.executor == "auto" else None  # what a worker's registry holds
    here = [n for n in names if not importable(n, registry.get(n), fresh)] if fresh is not None else []
    if here:  # a detector defined at run time (a test, a notebook cell)
        if (executors.default_jobs() if o.jobs is None else o.jobs) > 1:
            say(f"running serially: a worker process cannot import {', '.join(here)} (defined at run time); "
                "define it at module level to use --jobs")
        return executors.make("serial")
    return executors.make(o.executor, o.jobs, o.timeout, o.address)


def _job_log(collected) -> list:
    """Per job: its key, and where it ran, when it started (``start_s``, seconds after the grid began) and
    how long (worker executors); ``peak_rss_mb`` is the peak resident memory of the worker *process* up to
    the end of the job (a worker runs many jobs)."""
    keys = ("worker", "python", "start_s", "seconds", "peak_rss_mb")
    return [{"key": jr.job.key, **{k: jr.record[k] for k in keys if k in jr.record}} for jr in collected]


def _curves(collected) -> dict:
    out: dict = {}
    for jr in collected:
        for det, c in jr.curves.items():
            out.setdefault(str(jr.job.seed), {})[det] = c
    return out


def _record(ctx: RunContext, collected, seeds, threads: int, t_data: float) -> dict:
    """The run record (``run.json``): what ran, where, with which data, and what each job recorded."""
    first = ctx.session(int(seeds[0]))
    data, o = first.data, ctx.options
    models, extraction, dets, tuning = {}, {}, {}, {}
    for jr in collected:
        seed = jr.job.seed
        if jr.job.kind == "train":
            models[seed] = jr.record
        elif jr.job.kind == "extract":
            extraction[seed] = jr.record
        else:
            r = dict(jr.record)
            if "tuning" in r:
                tuning.setdefault(jr.job.detector, {})[str(seed)] = r.pop("tuning")
            dets.setdefault(jr.job.detector, {})[str(seed)] = r
    return {
        "suite": ctx.suite["name"],
        "suite_declaration": {k: v for k, v in ctx.suite.items() if k != "tests"},
        "test_sets": [{"name": t.name, "group": t.group, "n": len(t.images)} for t in data.tests],
        "skipped_test_sets": [{"name": n, "reason": r} for n, r in data.skipped],
        "split_sizes": {"train": len(data.train), "fit": len(data.fit), "cal": len(data.cal),
                        "id_test": len(data.id_test)},
        "model": first.arch,
        "models": models,
        "seeds": [int(s) for s in seeds],
        "device": str(o.device),
        "device_name": recordmod.device_name(o.device),
        "cpu": machine.cpu(),  # checkpoints and scores are bitwise reproducible on one CPU kind
        "threads": threads,
        "timeout_s": o.timeout or None,
        "run_id": ctx.run_id,
        "data_checksums": data.checksums,
        # the sha256 of every scored set's pixels, generated ones (noise, shifts) included
        "data_content_sha256": {name: hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
                                for name, x in [("id_test", data.id_test.x)] + [(t.name, t.images.x)
                                                                                 for t in data.tests]},
        "data_seconds": t_data,
        "extraction": extraction,
        "detectors": dets,
        "failures": [jr.failure for jr in collected if jr.failure],
        "bootstrap": {"n_boot": o.n_boot, "ci": 0.95, "method": "stratified percentile"},
        "fit_split": {"baselines": o.fit_split, "lab": "fit",
                      "note": "third-party baselines are fitted on this ID split (train: the classifier's "
                              "training split, OpenOOD's protocol); the lab's methods on fit, calibrated on cal"},
        "tuning": {"mode": o.tuning, "ood_val": getattr(ctx.ood_val, "name", None), "detectors": tuning},
        "peak_rss_mb": peak_rss_mb(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }
