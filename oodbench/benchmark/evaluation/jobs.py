"""A run as a grid of jobs with stable keys.

For every classifier seed of a suite:

* ``train/<suite>/seed<k>`` — train (or load) the classifier;
* ``extract/<suite>/seed<k>`` — extract every representation the detectors declare, once per dataset,
  and the classifier's accuracy rows (after ``train``);
* ``score/<suite>/seed<k>/<detector>`` — fit one detector, score every test set, compute its metric
  rows (after ``extract``).

:func:`run_job` runs one job against a :class:`RunContext` (which holds the options and one
:class:`~oodbench.benchmark.evaluation.session.Session` per seed) and returns a :class:`JobResult`:
rows, curves and records, never shared state — so any executor (serial today; worker processes or a
cluster later) can run it and the main process only merges results.

A score job that runs longer than the run's ``timeout`` (seconds) is stopped and recorded as failed
("timeout after N s"); the run goes on. The time a job spends training, or waiting for, a generative model
of its own is not counted (:mod:`oodbench.benchmark.jobclock`). The limit uses SIGALRM (POSIX, main thread): it stops
Python code, and C code (a long torch or numpy call) as soon as that call returns. Ctrl-C
(KeyboardInterrupt) propagates out of the executor; the runner writes what finished.
"""
from __future__ import annotations

import traceback
import tracemalloc
from dataclasses import dataclass, field

from oodbench.adapters import registry
from oodbench.benchmark import config
from oodbench.benchmark.evaluation import rows as rowsmod
from oodbench.benchmark.evaluation.features import CORE, TAPS
from oodbench.benchmark.evaluation.scoring import fit_representation, fit_split_of, score_cached
from oodbench.benchmark.evaluation.session import Session
from oodbench.benchmark.jobclock import JobTimeout, call_with_timeout


@dataclass(frozen=True)
class Job:
    kind: str  # "train" | "extract" | "score"
    suite: str
    seed: int
    detector: str = ""

    @property
    def key(self) -> str:
        k = f"{self.kind}/{self.suite}/seed{self.seed}"
        return f"{k}/{self.detector}" if self.detector else k

    @property
    def label(self) -> str:
        """How the progress bar names the job while it runs (the suite is the bar's title): ``train seed0``,
        ``extract seed0``, ``seed0/pytorch_ood.msp``."""
        return f"seed{self.seed}/{self.detector}" if self.kind == "score" else f"{self.kind} seed{self.seed}"

    @property
    def after(self) -> tuple[str, ...]:
        """Keys of the jobs that must finish first."""
        if self.kind == "extract":
            return (Job("train", self.suite, self.seed).key,)
        if self.kind == "score":
            return (Job("extract", self.suite, self.seed).key,)
        return ()


def plan(suite: str, detectors, seeds) -> list[Job]:
    """The job grid of a run, in an order that respects dependencies."""
    jobs = []
    for s in seeds:
        jobs += [Job("train", suite, int(s)), Job("extract", suite, int(s))]
        jobs += [Job("score", suite, int(s), d) for d in detectors]
    return jobs


@dataclass
class JobResult:
    job: Job
    rows: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)  # detector -> {"roc": ..., "hist": ...}
    record: dict = field(default_factory=dict)  # the job's entry in the run record
    failure: dict | None = None


@dataclass
class RunContext:
    """What a job needs: the suite declaration, the run's options and the tuning set-up. Sessions are
    created on first use, one per seed, and reused by every job of this process."""

    suite: dict
    detectors: list
    options: object  # runner.RunOptions
    ood_val: object = None  # the OOD validation ImageSet in tuned mode
    run_id: str = ""
    sessions: dict = field(default_factory=dict)
    say: object = print

    def session(self, seed: int) -> Session:
        if seed not in self.sessions:
            o = self.options
            shared = next(iter(self.sessions.values())).data if self.sessions else None
            self.sessions[seed] = Session(self.suite, seed, o.device, o.cache_dir, o.data_dir, o.batch_size,
                                          o.progress, data=shared)
        return self.sessions[seed]

    def prepare_tuning(self) -> None:
        """In tuned mode, build the OOD validation set (disjoint from every test set) once."""
        if self.options.tuning != "tuned" or self.ood_val is not None:
            return
        from oodbench.benchmark.evaluation import tuning

        data = self.session(0).data
        self.ood_val = tuning.ood_val_set(self.suite, self.options.data_dir, config.cache_dir(self.options.cache_dir))
        tuning.assert_disjoint(self.ood_val, [data.id_test] + [t.images for t in data.tests])

    def base(self, seed: int, detector: str = "") -> dict:
        """The columns every row of ``detector`` (or of the classifier) on ``seed`` shares."""
        return {"suite": self.suite["name"], "model": self.session(seed).arch, "seed": int(seed),
                "tuning": self.options.tuning, "run_id": self.run_id,
                "fit_split": fit_split_of(detector, self.options.fit_split) if detector else ""}


def _kinds(names) -> set[str]:
    kinds = {CORE}
    for n in names:
        if "taps" in registry.get(n).consumes:
            kinds.add(TAPS)
    return kinds


def start_job(job: Job) -> int:
    """Seed Python's, numpy's and torch's generators from the job's key and turn torch's gradients back on,
    so that a job's numbers and its fate do not depend on which jobs ran before it in the same process
    (serial, local workers and Ray agree). The grad mode is process state: a detector that failed while a
    ``torch.no_grad()`` block of a half-consumed generator was open left it off, and the next job of that
    worker that trains (a VAE) failed with "element 0 of tensors does not require grad" (cifar10 grid)."""
    import hashlib
    import random

    import numpy as np
    import torch

    s = int(hashlib.sha256(job.key.encode()).hexdigest()[:8], 16)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    torch.set_grad_enabled(True)
    return s


def failed_result(job: Job, ctx: RunContext, msg: str, tb: str = "", seconds=None) -> JobResult:
    """The result of a job that did not finish: a failure row (score jobs) and its record."""
    res = JobResult(job)
    res.failure = {"detector": job.detector or job.kind, "seed": job.seed, "error": msg, "traceback": tb}
    res.record = {"status": "failed", "error": msg}
    if seconds is not None:
        res.record["seconds"] = round(float(seconds), 3)
    if job.kind == "score":
        lib = registry.get(job.detector).info.library
        res.rows = [rowsmod.failure_row(ctx.base(job.seed, job.detector), lib, job.detector, msg)]
    return res


def run_job(job: Job, ctx: RunContext) -> JobResult:
    """Run one job; a failing score job is returned as a failure row, never raised."""
    start_job(job)
    s = ctx.session(job.seed)
    res = JobResult(job)
    if job.kind == "train":
        res.record = s.model_meta
    elif job.kind == "extract":
        for images in s.all_sets():
            s.store.ensure(images, _kinds(ctx.detectors))
        if any(fit_split_of(d, ctx.options.fit_split) == "train" for d in ctx.detectors):
            s.store.ensure(s.data.train, {CORE})  # what baselines fitted on the training split read
        res.rows = rowsmod.accuracy_rows(s, ctx.base(job.seed))
        res.record = dict(s.store.stats)
    else:
        with config.blas_threads(config.job_threads(ctx.options.threads)):
            _score_job(job, ctx, s, res)
    return res


def _score_job(job: Job, ctx: RunContext, s: Session, res: JobResult) -> None:
    name, seed, o = job.detector, job.seed, ctx.options
    cls = registry.get(name)
    lib = cls.info.library
    try:
        params, tuned = None, None
        if ctx.ood_val is not None:
            from oodbench.benchmark.evaluation import tuning

            fit, cal = fit_representation(s, name, o.fit_split), s.representation(s.data.cal, "cal")
            tuned = tuning.tune(name, fit, cal, cal, s.representation(ctx.ood_val, "ood_val"))
            params = tuned.params
        out = score_cached(s, name, params, o.use_score_cache, ctx.say, fit_split=o.fit_split)
    except Exception as e:  # a failing detector is recorded and the run goes on
        msg = f"{type(e).__name__}: {e}"
        ctx.say(f"detector {name} failed: {msg}")
        failed = failed_result(job, ctx, msg, traceback.format_exc(limit=6))
        res.failure, res.rows, res.record, res.curves = failed.failure, failed.rows, failed.record, {}
        return
    from oodbench.benchmark.evaluation.record import versions

    res.record = {**out.meta, "info": cls.info.as_dict(), "versions": versions()}
    if tuned is not None:
        res.record["tuning"] = tuned.as_dict()
    res.curves = {name: {**rowsmod.curves(s.data.tests, out.scores),
                         "paired": rowsmod.paired_replicates(s.data.tests, out.scores, seed)}}
    res.rows = rowsmod.detector_rows(ctx.base(seed, name), lib, name, s.data.tests, out.scores, out.pvalues, o.n_boot,
                                     seed)
    dep_rows, dep_curves = rowsmod.deployment_rows(ctx.base(seed, name), lib, name, s, out, o.n_boot, seed)
    res.rows, res.curves[name] = res.rows + dep_rows, {**res.curves[name], **dep_curves}
    if out.meta.get("not_applicable_reason"):  # scored all the same; the leaderboard shows it apart
        for r in res.rows:
            r["not_applicable_reason"] = out.meta["not_applicable_reason"]


def run_job_limited(job: Job, ctx: RunContext) -> JobResult:
    """:func:`run_job` with the run's time limit on score jobs: one that runs out is a failure row."""
    limit = getattr(ctx.options, "timeout", None) if job.kind == "score" else None
    try:
        return call_with_timeout(lambda: run_job(job, ctx), limit)
    except JobTimeout:
        if tracemalloc.is_tracing():  # the scoring step was cut off while measuring
            tracemalloc.stop()
        ctx.say(f"detector {job.detector} failed: timeout after {limit:g} s")
        return failed_result(job, ctx, f"timeout after {limit:g} s")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SerialExecutor:
    """Runs the jobs one after the other in this process, in plan order (which respects dependencies).
    ``on_result`` sees each job's result as soon as it is done (the runner writes it out then), with the
    fields the worker executors record: ``worker`` ("main"), ``python``, ``start_s``, ``seconds`` and
    ``peak_rss_mb`` (this process's peak so far). Durations go to ``<cache>/timings.json`` too, so a later
    parallel run orders its jobs by them."""

    name = "serial"

    def run(self, jobs, ctx: RunContext, on_result, progress: bool = False) -> None:
        import sys
        import time

        from tqdm.auto import tqdm

        from oodbench.benchmark.evaluation.executors import Timings  # here: executors imports this module

        timings = Timings(config.cache_dir(ctx.options.cache_dir))
        bar = tqdm(jobs, desc=f"{ctx.suite['name']}", disable=not progress, leave=False, unit="job")
        t_grid = time.perf_counter()
        try:
            for job in bar:
                bar.set_postfix_str(job.label)
                t0 = time.perf_counter()
                res = run_job_limited(job, ctx)
                res.record.update(worker="main", python=sys.executable, start_s=round(t0 - t_grid, 3),
                                  seconds=round(time.perf_counter() - t0, 3),
                                  peak_rss_mb=round(peak_rss_mb(), 1))
                timings.record(job, res.record["seconds"], cached=bool(res.record.get("cached")))
                on_result(res)
        finally:
            bar.close()
