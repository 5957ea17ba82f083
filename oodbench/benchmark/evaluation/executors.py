"""Executors: who runs the job grid of :mod:`.jobs`.

* ``serial`` (:class:`~oodbench.benchmark.evaluation.jobs.SerialExecutor`) — one job after the other in
  this process.
* ``local`` (:class:`LocalExecutor`, ``--jobs N``) — N worker processes on this machine
  (:mod:`.worker`), each job with ``--threads`` torch threads (default ``config.JOB_THREADS`` = 1, so the
  scores do not depend on N), except trainings, which run with their recipe's threads (2 for the airbench
  recipes) and take that many of the N slots (two 2-thread trainings side by side on 2 cores took 3,979
  and 3,365 s against 1,210 s for one alone), sharing the on-disk cache (atomic writes
  and per-entry locks: two workers never compute or write the same entry twice). Among the jobs whose
  dependencies have finished, the longest expected one starts first (durations recorded by earlier
  runs in ``<cache>/timings.json``). numpy's BLAS and OpenMP pools in a worker get the same thread count
  (:func:`worker_env`). ``openood.*`` score jobs go to workers running in OpenOOD's own
  environment when it is set up (``oodbench setup openood``).
* ``ray`` (:mod:`.ray_executor`, ``--executor ray [--address ADDR]``) — the same jobs as Ray tasks.

Every job seeds its own random generators from its key, so the order in which jobs run, and the
process that runs them, do not change any number: the results table equals the serial run's.
"""
from __future__ import annotations

import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from oodbench.benchmark import config
from oodbench.benchmark.evaluation import worker as workermod
from oodbench.benchmark.evaluation.jobs import JobResult, SerialExecutor, failed_result

TIMINGS = "timings.json"
#: a worker still busy this long after its job's time limit (stuck in one C call) is killed
GRACE_S = 60.0
#: expected seconds of a score job without a recorded duration: a detector that trains on images or is
#: marked expensive, and any other
PRIOR_EXPENSIVE_S, PRIOR_SCORE_S = 600.0, 60.0


def _is_expensive(name: str) -> bool:
    from oodbench.adapters import registry

    try:
        cls = registry.get(name)
    except Exception:  # an unknown name fails in its own job, with its own message
        return False
    return bool(cls.info.expensive or "images" in cls.consumes)


def default_jobs() -> int:
    """The number of cores, lowered so that each worker has about 3 GiB of memory."""
    cores = os.cpu_count() or 1
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return cores
    return max(1, min(cores, int(mem_gib // 3)))


def make(name: str = "serial", jobs: int | None = None, timeout: float | None = None, address=None):
    """The executor a run asked for (``--executor`` / ``--jobs``)."""
    if name == "ray":
        from oodbench.benchmark.evaluation.ray_executor import RayExecutor

        return RayExecutor(address=address, timeout=timeout)
    n = default_jobs() if jobs is None else int(jobs)
    if name == "local" or (name == "auto" and n > 1):
        return LocalExecutor(max(1, n), timeout=timeout)
    return SerialExecutor()


class Timings:
    """Durations of earlier runs' jobs (``<cache>/timings.json``), keyed without the seed."""

    def __init__(self, cache: Path):
        self.path = Path(cache) / TIMINGS
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def key(job) -> str:
        return f"{job.kind}/{job.suite}/{job.detector}"

    def expected(self, job) -> float:
        """The recorded duration; without one (a cold cache) a prior: train and extract jobs first (every
        score job waits on them), then detectors that train a model of their own on the images (VAE, WGAN)
        or are marked expensive, then the rest: so that the longest jobs do not start last and leave the
        other workers idle at the end of the grid."""
        known = self.data.get(self.key(job))
        if known is not None:
            return float(known)
        if job.kind != "score":
            return 1e9
        return PRIOR_EXPENSIVE_S if _is_expensive(job.detector) else PRIOR_SCORE_S

    def record(self, job, seconds: float, cached: bool = False) -> None:
        """Remember a job's duration and write the file at once (a killed run keeps what it learnt). A
        job answered from the score cache says nothing about what computing it costs: nothing is
        recorded (what is known, or else the prior of :meth:`expected`, stays)."""
        if cached:
            return
        self.data[self.key(job)] = round(float(seconds), 3)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.data, indent=0, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:  # timings only order jobs; a read-only cache loses nothing
            pass


class Scheduler:
    """Hands out jobs whose dependencies have finished: train and extract jobs first (every score job of
    their seed waits on them), then score jobs longest expected first; among equally long ones,
    one detector's jobs over the seeds before the next detector's. Jobs of one seed that need the same model
    of their own (``vae``, ``vae_typicality`` and ``stattest+vae`` share a VAE; ``wgan_recon`` and
    ``wgan_dz_fast`` a WGAN) then train it for different seeds at once instead of one waiting on the
    other's lock."""

    def __init__(self, jobs, timings: Timings):
        self.pending = list(jobs)
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.timings = timings
        self.rank: dict[str, int] = {}
        for j in self.pending:
            self.rank.setdefault(j.detector, len(self.rank))

    def _order(self, job):
        # train and extract jobs gate every score job of their seed: they go first whatever their recorded
        # duration (a cached training takes seconds; ordered by that, seed 2's extraction waited behind every
        # score job of seeds 0 and 1, and seed 2 started only when those ran out)
        return job.kind == "score", -self.timings.expected(job), self.rank[job.detector], job.seed

    def ready(self):
        """Jobs that can start now, longest expected first (still pending until :meth:`take`), and
        jobs that can never run because a dependency failed (removed)."""
        start, dead = [], []
        for j in self.pending:
            if any(a in self.failed for a in j.after):
                dead.append(j)
            elif all(a in self.done for a in j.after):
                start.append(j)
        for j in dead:
            self.pending.remove(j)
        return sorted(start, key=self._order), dead

    def take(self, job) -> None:
        self.pending.remove(job)

    def finish(self, job, ok: bool) -> None:
        (self.done if ok else self.failed).add(job.key)


def fitting(ready, used: int, workers: int, slots) -> list:
    """The jobs of ``ready`` (longest first) to start now with ``used`` of ``workers`` slots taken, in order;
    ``slots(job)`` is what a job takes. One that does not fit leaves the free slots to the next ones, so
    a 2-thread training waits for both slots while 1-slot jobs keep the cores busy."""
    out = []
    for job in ready:
        need = slots(job)
        if used + need <= workers:
            out.append(job)
            used += need
    return out


#: the variables that size the thread pools of numpy's BLAS (OpenBLAS, MKL) and of OpenMP code (faiss,
#: scikit-learn): read once, when the library loads, so they are set before the worker starts
POOL_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env(sp: dict) -> dict:
    """The environment of a worker process: the parent's, the run's import paths, and the BLAS / OpenMP
    pools sized to the job's threads (``sp["threads"]``) unless the user set them. Without this each of N
    workers would start one BLAS thread per core: N x cores threads on the cores."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sp["sys_path"]))
    for var in POOL_VARS:
        env.setdefault(var, str(int(sp["threads"])))
    return env


class _Worker:
    """One worker process and the thread that waits for its replies."""

    def __init__(self, python: str, sp: dict, replies: queue.Queue, wid: str):
        env = worker_env(sp)
        self.proc = subprocess.Popen([python, "-m", "oodbench.benchmark.evaluation.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.wid, self.replies, self.job, self.started = wid, replies, None, 0.0
        self.excluded, self.base, self.paused = 0.0, 0.0, False  # this process's clock, from "clock" replies
        pickle.dump(sp, self.proc.stdin)
        self.proc.stdin.flush()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = pickle.load(self.proc.stdout)
            except Exception:  # EOF: the worker died or was killed
                self.replies.put((self, ("died", f"worker exited with code {self.proc.wait()}")))
                return
            self.replies.put((self, msg))

    def send(self, job) -> None:
        self.job, self.started = job, time.perf_counter()
        self.base, self.paused = self.excluded, False  # the job's clock (see :meth:`counted`)
        pickle.dump(job, self.proc.stdin)
        self.proc.stdin.flush()

    def clock(self, paused: bool, excluded_s: float) -> None:
        """A ``("clock", paused, excluded_s)`` reply: the job's clock stopped (it trains a model of its own)
        or started again; ``excluded_s``, the process's total time stood still."""
        self.paused, self.excluded = bool(paused), float(excluded_s)

    def counted(self, now: float) -> float | None:
        """Seconds of the running job that count towards its time limit (None while its clock stands)."""
        return None if self.paused else now - self.started - (self.excluded - self.base)

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


class LocalExecutor:
    """Runs the grid on ``workers`` processes of this machine (see the module docstring)."""

    name = "local"

    def __init__(self, workers: int = 2, timeout: float | None = None, openood_python=None):
        self.workers = max(1, int(workers))
        self.timeout = timeout
        self.openood_python = openood_python

    def _python_for(self, job) -> str:
        if job.detector.startswith("openood.") and self.openood_python:
            return str(self.openood_python)
        return sys.executable

    def slots(self, job, ctx) -> int:
        """Worker slots a job takes: a training as many as its recipe's threads (at most all of them), any
        other job one."""
        if job.kind != "train" or "user" in ctx.suite.get("model", {}):
            return 1
        from oodbench.benchmark import models
        from oodbench.benchmark.data import suites

        try:
            arch = suites.model_name(ctx.suite, ctx.options.device)
            threads = int(getattr(models.recipe_for(arch, ctx.suite.get("recipe_override")), "threads", 1))
        except Exception:  # no recipe known here: the job itself reports what is wrong
            threads = 1
        return max(1, min(self.workers, threads))

    def run(self, jobs, ctx, on_result, progress: bool = False) -> None:
        from tqdm.auto import tqdm

        if self.openood_python is None:
            from oodbench.benchmark.tools import openood_env

            self.openood_python = openood_env.find_python()
        threads = config.job_threads(ctx.options.threads)  # not cores // N: scores would depend on N
        sp = workermod.spec(ctx, threads)
        timings = Timings(config.cache_dir(ctx.options.cache_dir))
        sched, replies = Scheduler(jobs, timings), queue.Queue()
        idle: dict[str, list] = {}
        busy: list[_Worker] = []
        n_started, t_grid = 0, time.perf_counter()
        bar = tqdm(total=len(jobs), desc=ctx.suite["name"], disable=not progress, leave=False, unit="job")

        def show_running() -> None:
            bar.set_postfix_str(", ".join(w.job.label for w in busy if w.job)[:120])

        def deliver(res: JobResult, ok: bool) -> None:
            sched.finish(res.job, ok)
            on_result(res)
            bar.update(1)
            show_running()

        try:
            while sched.pending or busy:
                start, dead = sched.ready()
                for j in dead:
                    deliver(failed_result(j, ctx, "a job it depends on failed"), False)
                used = sum(self.slots(w.job, ctx) for w in busy)
                for job in fitting(start, used, self.workers, lambda j: self.slots(j, ctx)):
                    sched.take(job)
                    py = self._python_for(job)
                    pool = idle.setdefault(py, [])
                    if pool:
                        w = pool.pop()
                    else:
                        n_started += 1
                        w = _Worker(py, sp, replies, f"w{n_started}")
                    w.send(job)
                    busy.append(w)
                    show_running()  # the bar names every running job, the one just started included
                if not busy:
                    continue
                try:
                    w, msg = replies.get(timeout=1.0)
                except queue.Empty:
                    self._check_timeouts(busy, replies)
                    continue
                if msg[0] == "clock":
                    w.clock(*msg[1:])
                    continue
                if w not in busy:
                    continue
                busy.remove(w)
                job, secs = w.job, time.perf_counter() - w.started
                w.job = None
                if msg[0] == "ok":
                    res = msg[1]
                    res.record = {**res.record, "worker": w.wid, "python": self._python_for(job),
                                  "start_s": round(w.started - t_grid, 3), "seconds": round(msg[2], 3),
                                  "peak_rss_mb": round(msg[3], 1)}
                    timings.record(job, msg[2], cached=bool(res.record.get("cached")))
                    idle.setdefault(self._python_for(job), []).append(w)
                    deliver(res, res.failure is None or job.kind == "score")
                    continue
                if msg[0] == "died":
                    w.stop(kill=True)
                    why = getattr(w, "why", None) or msg[1]
                else:
                    idle.setdefault(self._python_for(job), []).append(w)
                    why = msg[1]
                if job.kind != "score":
                    if msg[0] == "error" and len(msg) > 2 and msg[2] is not None:
                        raise msg[2]  # the worker's own exception (a user error stays one)
                    raise RuntimeError(f"job {job.key} failed in worker {w.wid}: {why}")
                res = failed_result(job, ctx, why.splitlines()[0], seconds=secs)
                res.record.update(worker=w.wid, start_s=round(w.started - t_grid, 3))
                deliver(res, True)
        finally:
            bar.close()
            timings.save()
            for w in busy:
                w.stop(kill=True)
            for pool in idle.values():
                for w in pool:
                    w.stop()

    def _check_timeouts(self, busy, replies) -> None:
        if not self.timeout:
            return
        now = time.perf_counter()
        for w in busy:  # the worker's own alarm stops a job at the limit; this kills one stuck in a C call
            counted = w.counted(now)
            if w.job is not None and w.job.kind == "score" and counted is not None \
                    and counted > self.timeout + GRACE_S and not getattr(w, "why", None):
                w.why = f"timeout after {self.timeout:g} s"
                w.proc.kill()  # the reader thread reports it as died
