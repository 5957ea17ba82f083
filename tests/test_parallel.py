"""Parallel executors (issue 13): worker processes and Ray give the serial run's results table; a
timed-out or killed worker leaves no corrupt cache entry and the rerun completes."""
import os
import time

import numpy as np
import pandas as pd
import pytest

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.adapters.registry import REGISTRY
from oodbench.benchmark.evaluation import executors, runner

DETS = ["pytorch_ood.msp", "pytorch_ood.energy", "pytorch_ood.mahalanobis", "pytorch_ood.knn"]
COLS = ["seed", "detector", "test_set", "group", "metric", "value", "ci_low", "ci_high"]


class Sleeper(Detector):
    """Sleeps far longer than the test's timeout (module level: workers import it by name)."""

    consumes = frozenset({"logits"})
    info = DetectorInfo(library="test")

    def score(self, rep):
        time.sleep(600)
        return np.zeros(len(rep))


class Crasher(Detector):
    """Kills its own worker process in the middle of scoring (SIGKILL: no cleanup, no reply)."""

    consumes = frozenset({"logits"})
    info = DetectorInfo(library="test")

    def score(self, rep):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class PoolProbe(Detector):
    """Writes the size of this process's BLAS thread pool, as its score job sees it, to a file in
    ``$OODBENCH_TEST_PROBE`` (one per scored set)."""

    consumes = frozenset({"logits"})
    info = DetectorInfo(library="test")

    def score(self, rep):
        from pathlib import Path

        from threadpoolctl import threadpool_info

        n = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        Path(os.environ["OODBENCH_TEST_PROBE"], f"{os.getpid()}-{time.perf_counter_ns()}").write_text(str(n))
        return np.arange(len(rep), dtype=float)


class ModelTrainer(Detector):
    """Trains a model of its own through the harness's checkpoint store, for longer than the test's time limit
    (as the WGAN-GP does on cifar10), then scores at once. ``$OODBENCH_TEST_NONCE`` keys the model, so that
    every test trains it anew."""

    consumes = frozenset({"logits"})
    info = DetectorInfo(library="test")
    train_s = 5.0

    def fit(self, fit, cal=None):
        import torch

        def train(module):
            time.sleep(self.train_s)
            return {}

        fit.context.load_or_train("test_slow_model", {"nonce": os.environ["OODBENCH_TEST_NONCE"]}, "none", 0,
                                  build=lambda: torch.nn.Linear(1, 1), train=train)
        return self

    def score(self, rep):
        return np.asarray(rep.logits, dtype=float).max(1)


@pytest.fixture
def trainer(monkeypatch):
    import uuid

    monkeypatch.setenv("OODBENCH_TEST_NONCE", uuid.uuid4().hex)
    with REGISTRY.scoped():
        REGISTRY.register("test.trainer")(ModelTrainer)
        yield "test.trainer"


@pytest.fixture
def crasher():
    with REGISTRY.scoped():
        REGISTRY.register("test.crasher")(Crasher)
        yield "test.crasher"


@pytest.fixture
def sleeper():
    with REGISTRY.scoped():
        REGISTRY.register("test.sleeper")(Sleeper)
        yield "test.sleeper"


def _table(res):
    df = res.table
    cols = [c for c in COLS if c in df.columns]
    return df[df["status"] == "ok"][cols].sort_values(cols[:5]).reset_index(drop=True)


def _most_at_once(log) -> int:
    """The most jobs of a run record's log running at one time ([start_s, start_s + seconds] each)."""
    events = sorted([(j["start_s"], 1) for j in log] + [(j["start_s"] + j["seconds"], -1) for j in log])
    most = now = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start (+1)
        now += step
        most = max(most, now)
    return most


def _run(data_dir, cache_dir, tmp_path, name, **kw):
    kw = {"detectors": DETS, "use_score_cache": False, "seeds": [0, 1], "threads": 1, **kw}
    return runner.evaluate("mnist-smoke", data_dir=data_dir, cache_dir=cache_dir, out=tmp_path / name,
                           n_boot=20, progress=False, **kw)


def test_jobs_n_runs_built_in_detectors_in_workers_and_run_time_classes_here():
    """``--jobs 2`` (executor auto) used to run the built-in pytorch-ood and OpenOOD wrappers and the stattest
    variants serially, without a word: they are made with ``type()``, so the import check failed for them."""
    from oodbench.adapters.registry import Registry
    from oodbench.benchmark.evaluation.worker import importable

    every = [n for n in Registry().names() if not n.startswith("openood.")]  # OpenOOD's go to workers anyway
    assert [n for n in every if not importable(n, REGISTRY.get(n))] == []
    ex = runner._executor(runner.RunOptions(jobs=2), every)
    assert isinstance(ex, executors.LocalExecutor) and ex.workers == 2, ex
    assert isinstance(runner._executor(runner.RunOptions(jobs=1), ["pytorch_ood.msp"]), executors.SerialExecutor)
    with REGISTRY.scoped():  # defined at run time: a worker could not import it, so it runs in the parent
        REGISTRY.register("test.made_here")(type("MadeHere", (Sleeper,), {}))
        ex = runner._executor(runner.RunOptions(jobs=2), ["pytorch_ood.msp", "test.made_here"])
        assert isinstance(ex, executors.SerialExecutor)


def test_the_progress_bar_names_running_jobs_by_kind_and_seed():
    from oodbench.benchmark.evaluation.jobs import Job

    assert Job("train", "mnist", 0).label == "train seed0"
    assert Job("extract", "mnist-smoke", 2).label == "extract seed2"
    assert Job("score", "mnist", 1, "pytorch_ood.msp").label == "seed1/pytorch_ood.msp"


@pytest.mark.slow
def test_local_and_ray_executors_give_the_serial_table(data_dir, cache_dir, tmp_path):
    (cache_dir / executors.TIMINGS).unlink(missing_ok=True)
    serial = _run(data_dir, cache_dir, tmp_path, "serial", executor="serial")
    # the serial run records what the workers record, and its durations for later parallel runs' order
    assert {f"score/mnist-smoke/{d}" for d in DETS} <= set(executors.Timings(cache_dir).data)
    slog = serial.record["jobs"]["log"]
    starts = [j["start_s"] for j in slog]
    assert {j.get("worker") for j in slog} == {"main"} and starts == sorted(starts)
    assert all(j["seconds"] >= 0 and j["peak_rss_mb"] > 0 and j["python"] for j in slog)
    local = _run(data_dir, cache_dir, tmp_path, "local", executor="local", jobs=2)
    assert local.record["executor"] == {"name": "local", "workers": 2, "threads": 1}
    assert {j.get("worker") for j in local.record["jobs"]["log"]} <= {"w1", "w2"}
    log = local.record["jobs"]["log"]
    assert all(j["start_s"] >= 0 for j in log) and _most_at_once(log) <= 2
    one = _run(data_dir, cache_dir, tmp_path, "one", executor="local", jobs=1, seeds=[0],
               detectors=["pytorch_ood.msp", "pytorch_ood.energy"], threads=None)
    assert len(one.record["jobs"]["log"]) >= 3 and _most_at_once(one.record["jobs"]["log"]) == 1
    # one torch thread per job whatever --jobs (not cores // N): the scores do not depend on N
    assert one.record["executor"] == {"name": "local", "workers": 1, "threads": 1} and one.record["threads"] == 1
    pd.testing.assert_frame_equal(_table(serial), _table(local))
    for res in (serial, local):  # every row names its run, whichever process computed it
        assert set(res.table["run_id"]) == {res.record["run_id"]} and res.record["run_id"]
    pytest.importorskip("ray")
    ray = _run(data_dir, cache_dir, tmp_path, "ray", executor="ray")
    pd.testing.assert_frame_equal(_table(serial), _table(ray))
    assert set(ray.table["run_id"]) == {ray.record["run_id"]}


@pytest.mark.slow
def test_a_hanging_job_is_killed_and_the_rest_is_written(data_dir, cache_dir, tmp_path, sleeper):
    res = _run(data_dir, cache_dir, tmp_path, "timeout", executor="local", jobs=2, timeout=8, seeds=[0],
               detectors=["pytorch_ood.msp", sleeper], use_score_cache=True)
    df = res.table
    failed = df[df["status"] == "failed"]
    assert set(failed["detector"]) == {sleeper} and failed["error"].str.contains("timeout after 8 s").all()
    assert (df["detector"] == "pytorch_ood.msp").any()
    # the killed worker left the cache usable: a rerun (score cache on) completes and agrees
    again = _run(data_dir, cache_dir, tmp_path, "again", executor="local", jobs=2, seeds=[0],
                 detectors=["pytorch_ood.msp"], use_score_cache=True)
    msp = lambda d: d[d["detector"] == "pytorch_ood.msp"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(msp(_table(again)), msp(_table(res)))


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_training_a_model_of_its_own_does_not_count_towards_the_time_limit(data_dir, cache_dir, tmp_path, trainer,
                                                                          executor, monkeypatch):
    """A detector that first trains its own model (on cifar10 the WGAN-GP trains for 2,877 s per seed on
    the CPU) is not stopped by ``--timeout`` while it trains: the job's clock, and the parent's backstop,
    stand still meanwhile. Here the model trains for 5 s under a 2 s limit, with no grace for the backstop."""
    monkeypatch.setattr(executors, "GRACE_S", 0.0)
    res = _run(data_dir, cache_dir, tmp_path, executor, executor=executor, jobs=2, timeout=2, seeds=[0],
               detectors=[trainer])
    rows = res.table[res.table["detector"] == trainer]
    assert len(rows) and (rows["status"] == "ok").all(), rows[["status", "error"]].drop_duplicates()
    log = [j for j in res.record["jobs"]["log"] if j["key"].endswith(trainer)]
    assert len(log) == 1 and log[0]["seconds"] > ModelTrainer.train_s  # it did train, past the limit


@pytest.mark.slow
def test_a_killed_worker_is_a_failure_row_and_the_cache_stays_usable(data_dir, cache_dir, tmp_path, crasher):
    res = _run(data_dir, cache_dir, tmp_path, "killed", executor="local", jobs=2, seeds=[0],
               detectors=["pytorch_ood.energy", crasher], use_score_cache=True)
    df = res.table
    failed = df[df["status"] == "failed"]
    assert set(failed["detector"]) == {crasher} and failed["error"].str.contains("worker exited").all()
    # the other worker's rows are there, and a rerun on the same cache completes and agrees
    again = _run(data_dir, cache_dir, tmp_path, "again-killed", executor="local", jobs=2, seeds=[0],
                 detectors=["pytorch_ood.energy"], use_score_cache=True)
    energy = lambda d: d[d["detector"] == "pytorch_ood.energy"].reset_index(drop=True)  # noqa: E731
    assert len(energy(_table(res)))
    pd.testing.assert_frame_equal(energy(_table(again)), energy(_table(res)))


def test_scheduler_orders_ready_jobs_longest_first_and_drops_dependents_of_failures(tmp_path):
    from oodbench.benchmark.evaluation.jobs import plan

    t = executors.Timings(tmp_path)
    t.data = {"score/s/a": 1.0, "score/s/b": 50.0, "score/s/c": 5.0}
    sched = executors.Scheduler(plan("s", ["a", "b", "c"], [0, 1]), t)
    start, dead = sched.ready()
    assert [j.key for j in start] == ["train/s/seed0", "train/s/seed1"] and not dead
    for j in start:
        sched.take(j)
        sched.finish(j, True)
    start, _ = sched.ready()
    sched.take(start[0]), sched.finish(start[0], True)  # extract seed0
    sched.take(start[1]), sched.finish(start[1], False)  # extract seed1 failed
    start, dead = sched.ready()
    assert [j.detector for j in start] == ["b", "c", "a"]
    assert sorted(j.key for j in dead) == [f"score/s/seed1/{d}" for d in "abc"]


def test_without_timings_detectors_that_train_or_are_expensive_start_first(tmp_path):
    """A cold cache has no durations: the prior starts the VAE / WGAN and expensive detectors before the cheap
    ones, so that they do not start last and leave the other workers idle at the end of the grid."""
    from oodbench.benchmark.evaluation.jobs import plan

    names = ["pytorch_ood.msp", "vae", "pytorch_ood.energy", "pytorch_ood.gradnorm", "wgan_recon"]
    sched = executors.Scheduler(plan("s", names, [0]), executors.Timings(tmp_path))
    for _ in range(2):  # train, then extract
        (job,), _ = sched.ready()
        sched.take(job), sched.finish(job, True)
    start, _ = sched.ready()
    assert set(j.detector for j in start[:3]) == {"vae", "pytorch_ood.gradnorm", "wgan_recon"}
    assert set(j.detector for j in start[3:]) == {"pytorch_ood.msp", "pytorch_ood.energy"}


def test_equally_long_jobs_go_detector_by_detector_over_the_seeds(tmp_path):
    """Among equally long jobs, one detector's jobs over the seeds come before the next detector's: the
    detectors of one seed that share a model (the VAE of ``vae`` and ``vae_typicality``) then train it for
    two seeds at once, instead of the second worker waiting on the first one's checkpoint lock."""
    from oodbench.benchmark.evaluation.jobs import plan

    sched = executors.Scheduler(plan("s", ["vae", "vae_typicality", "pytorch_ood.msp"], [0, 1]),
                                executors.Timings(tmp_path))
    for _ in range(2):  # train and extract of both seeds
        for job in sched.ready()[0]:
            sched.take(job), sched.finish(job, True)
    start, _ = sched.ready()
    assert [(j.detector, j.seed) for j in start] == [("vae", 0), ("vae", 1), ("vae_typicality", 0),
                                                       ("vae_typicality", 1), ("pytorch_ood.msp", 0),
                                                       ("pytorch_ood.msp", 1)]


def test_timings_are_written_per_job_and_a_cache_hit_records_nothing(tmp_path):
    """A run killed mid-grid keeps the durations it measured (written at each job), and a job answered from
    the score cache (seconds of row building) records nothing: neither over what computing it cost nor over
    the prior (a cache hit of seed 0 must not make seeds 1 and 2 of a long detector start last)."""
    from oodbench.benchmark.evaluation.jobs import plan

    job = [j for j in plan("s", ["a"], [0]) if j.kind == "score"][0]
    t = executors.Timings(tmp_path)
    t.record(job, 300.0)
    assert executors.Timings(tmp_path).expected(job) == 300.0  # on disk already, no save() needed
    t.record(job, 2.0, cached=True)
    assert executors.Timings(tmp_path).expected(job) == 300.0
    t.record(job, 120.0)  # a computed duration replaces the old one
    assert executors.Timings(tmp_path).expected(job) == 120.0
    (tmp_path / "new").mkdir()
    fresh = executors.Timings(tmp_path / "new")
    prior = fresh.expected(job)
    fresh.record(job, 0.4, cached=True)  # nothing known: the prior stays, not the cache hit's 0.4 s
    assert executors.Timings(tmp_path / "new").expected(job) == prior == executors.PRIOR_SCORE_S


def test_a_worker_exits_when_its_run_is_killed(tmp_path):
    """A worker whose parent (the run) dies exits too instead of finishing its job alone: a parent starts a
    child that watches it (``exit_with_parent``) and then sleeps; the parent is SIGKILLed; the child is gone
    within a few seconds."""
    import os
    import signal
    import subprocess
    import sys

    child = ("import os, time; from oodbench.benchmark.evaluation.worker import exit_with_parent; "
             "exit_with_parent(os.getppid(), 0.05); print('ready', flush=True); time.sleep(120)")
    parent = ("import subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE, text=True); "
              "p.stdout.readline(); print(p.pid, flush=True); time.sleep(120)")
    par = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    pid = int(par.stdout.readline())
    os.kill(par.pid, signal.SIGKILL)
    par.wait()

    def running(p):
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().split(")")[-1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False

    deadline = time.time() + 10
    while running(pid) and time.time() < deadline:
        time.sleep(0.05)
    alive = running(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the orphaned worker kept running"


def test_a_seeds_train_and_extract_jobs_go_before_score_jobs_whatever_their_recorded_time(tmp_path):
    """A cached training or extraction takes seconds and records that: ordered by it, seed 2's extraction
    (ready once its training finished) waited behind every score job of seeds 0 and 1 (seen in the cifar10
    grid). They gate every score job of their seed, so they go first."""
    from oodbench.benchmark.evaluation.jobs import plan

    t = executors.Timings(tmp_path)
    t.data = {"train/s/": 0.05, "extract/s/": 3.0, "score/s/a": 100.0, "score/s/b": 60.0}
    sched = executors.Scheduler(plan("s", ["a", "b"], [0, 1]), t)
    train = [j for j in sched.ready()[0] if j.seed == 0]
    sched.take(train[0]), sched.finish(train[0], True)  # seed 0 trained; seed 1's training still pending
    extract0 = [j for j in sched.ready()[0] if j.kind == "extract"][0]
    sched.take(extract0), sched.finish(extract0, True)
    start, _ = sched.ready()  # seed 0's score jobs are ready, and seed 1's training
    assert [(j.kind, j.seed) for j in start] == [("train", 1), ("score", 0), ("score", 0)]
    sched.take(start[0]), sched.finish(start[0], True)
    start, _ = sched.ready()
    assert [(j.kind, j.seed, j.detector) for j in start] == [("extract", 1, ""), ("score", 0, "a"), ("score", 0, "b")]


def test_every_job_starts_with_gradients_on_whatever_the_job_before_left():
    import torch

    from oodbench.benchmark.evaluation.jobs import Job, start_job

    torch.set_grad_enabled(False)  # what a failed job may leave behind in a worker
    try:
        start_job(Job("score", "s", 0, "vae"))
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


def test_a_training_takes_its_recipes_threads_in_worker_slots():
    """The airbench recipes train with 2 threads: two such trainings side by side on 2 cores took 3,979 and
    3,365 s against 1,210 s for one alone. A training takes as many of the --jobs slots as its threads;
    while it waits for them, 1-slot jobs keep the free slot busy."""
    from types import SimpleNamespace

    from oodbench.benchmark.data import suites
    from oodbench.benchmark.evaluation.jobs import Job, RunContext

    ctx = RunContext(suites.get("cifar10"), [], SimpleNamespace(device="cpu"))
    train, score = Job("train", "cifar10", 1), Job("score", "cifar10", 0, "pytorch_ood.msp")
    assert executors.LocalExecutor(2).slots(train, ctx) == 2
    assert executors.LocalExecutor(1).slots(train, ctx) == 1  # never more than there are
    assert executors.LocalExecutor(2).slots(score, ctx) == 1
    slots = {train: 2, score: 1}.get
    other = Job("score", "cifar10", 0, "pytorch_ood.energy")
    assert executors.fitting([train, score], 0, 2, slots) == [train]
    assert executors.fitting([train, score, other], 1, 2, lambda j: slots(j, 1)) == [score]
    assert executors.fitting([score, other], 0, 2, lambda j: 1) == [score, other]


@pytest.mark.slow
def test_a_score_job_runs_numpys_blas_with_the_jobs_threads(data_dir, cache_dir, tmp_path, monkeypatch):
    """In this process (serial) and in workers, a score job's BLAS has --threads threads (default 1), not
    one per core: its linear algebra rounds the same on every machine and in every executor."""
    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("OODBENCH_TEST_PROBE", str(probe))
    with REGISTRY.scoped():
        REGISTRY.register("test.pool_probe")(PoolProbe)
        for executor, jobs in (("serial", None), ("local", 2)):
            _run(data_dir, cache_dir, tmp_path, executor, executor=executor, jobs=jobs, seeds=[0],
                 detectors=["test.pool_probe"], threads=None)
    seen = [int(f.read_text()) for f in probe.iterdir()]
    assert len(seen) >= 4 and set(seen) == {1}, seen


def test_worker_processes_size_numpys_blas_pool_to_the_jobs_threads(monkeypatch):
    """Each worker's BLAS pool has the job's threads, not one per core: N workers of a BLAS-heavy detector
    must not start N x cores threads. A variable the user set is kept."""
    import subprocess
    import sys

    from oodbench.benchmark.evaluation.executors import POOL_VARS, worker_env

    for var in POOL_VARS:
        monkeypatch.delenv(var, raising=False)
    probe = ("import numpy, threadpoolctl; "
             "print(max(p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'))")

    def blas_threads(env):
        return int(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                  check=True).stdout)

    sp = {"sys_path": [], "threads": 1}
    assert blas_threads(worker_env(sp)) == 1
    if (os.cpu_count() or 1) > 1:  # the default it replaces: one per core
        assert blas_threads({k: v for k, v in os.environ.items() if k not in POOL_VARS}) > 1
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert worker_env(sp)["OPENBLAS_NUM_THREADS"] == "2" and worker_env(sp)["MKL_NUM_THREADS"] == "1"
