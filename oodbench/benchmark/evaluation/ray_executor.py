"""The Ray executor (``oodbench run SUITE --executor ray [--address ADDR]``).

Runs the same jobs as :class:`~oodbench.benchmark.evaluation.executors.LocalExecutor`, as Ray tasks
(one CPU each; a fractional GPU for jobs of a CUDA run), on a local Ray (started here with the
machine's cores) or on an existing cluster (``ray start --head`` on one node, ``ray start
--address HEAD:6379`` on the others, then ``--address HEAD:6379`` or ``auto``). Workers share the
cache folder when the cluster has a shared file system (point ``--cache-dir`` / ``$OODBENCH_CACHE``
at it); results come back through Ray's object store either way. Ray is an optional extra
(``pip install 'oodbench[ray]'``) imported only here.
"""
from __future__ import annotations

import time

from oodbench.benchmark import config
from oodbench.benchmark.evaluation import worker as workermod
from oodbench.benchmark.evaluation.jobs import failed_result

#: a task still running this long after its time limit (stuck in one C call) is cancelled, unless it may be
#: training a model of its own (:func:`trains_own_model`)
GRACE_S = 60.0
_CONTEXTS: dict = {}  # per Ray worker process: spec id -> RunContext


def _run_remote(sp_id: str, sp: dict, job):
    """Body of a Ray task: rebuild the run context once per worker process, run the job."""
    from oodbench.benchmark.evaluation.jobs import peak_rss_mb, run_job_limited

    if sp_id not in _CONTEXTS:
        _CONTEXTS[sp_id] = workermod.context_from_spec(sp)
    t0 = time.perf_counter()
    res = run_job_limited(job, _CONTEXTS[sp_id])
    return res, time.perf_counter() - t0, peak_rss_mb()


def trains_own_model(name: str) -> bool:
    """Whether detector ``name`` reads the images and so may train a model of its own (VAE, WGAN-GP). Its
    job's clock stops while it trains (:mod:`oodbench.benchmark.jobclock`), which a Ray task cannot tell
    the driver: for such jobs the task's own alarm is the only limit, and the driver's backstop for a task
    stuck in one C call is not applied."""
    from oodbench.adapters import registry

    try:
        return "images" in registry.get(name).consumes
    except Exception:  # an unknown name fails in its own job
        return False


class RayExecutor:
    name = "ray"

    def __init__(self, address=None, timeout: float | None = None, num_cpus: int | None = None):
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise RuntimeError("the Ray executor needs Ray: pip install 'oodbench[ray]'") from e
        self.address, self.timeout, self.num_cpus = address, timeout, num_cpus
        self.workers = None

    def run(self, jobs, ctx, on_result, progress: bool = False) -> None:
        import ray
        from tqdm.auto import tqdm

        from oodbench.benchmark.evaluation.executors import Scheduler, Timings

        started_here = not ray.is_initialized()
        if started_here:
            kw = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
            ray.init(log_to_driver=False, include_dashboard=False, **kw)
        threads = config.job_threads(ctx.options.threads)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        gpu = 0.25 if str(ctx.options.device).startswith("cuda") else 0
        task = ray.remote(num_cpus=threads, num_gpus=gpu, max_retries=0)(_run_remote)
        sp = workermod.spec(ctx, threads=threads)
        sp_ref, sp_id = ray.put(sp), f"{id(ctx)}-{time.time()}"
        timings = Timings(config.cache_dir(ctx.options.cache_dir))
        sched, running, t_grid = Scheduler(jobs, timings), {}, time.perf_counter()
        bar = tqdm(total=len(jobs), desc=ctx.suite["name"], disable=not progress, leave=False, unit="job")
        try:
            while sched.pending or running:
                start, dead = sched.ready()
                for j in dead:
                    sched.finish(j, False)
                    on_result(failed_result(j, ctx, "a job it depends on failed"))
                    bar.update(1)
                for j in start[: max(0, self.workers - len(running))]:
                    sched.take(j)
                    running[task.remote(sp_id, sp_ref, j)] = (j, time.perf_counter())
                if not running:
                    continue
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                now = time.perf_counter()
                for ref, (j, t0) in list(running.items()):
                    if ref not in done and self.timeout and j.kind == "score" and now - t0 > self.timeout + GRACE_S \
                            and not trains_own_model(j.detector):
                        ray.cancel(ref, force=True)
                        del running[ref]
                        sched.finish(j, True)
                        on_result(failed_result(j, ctx, f"timeout after {self.timeout:g} s", seconds=now - t0))
                        bar.update(1)
                for ref in done:
                    j, t0 = running.pop(ref)
                    try:
                        res, secs, rss = ray.get(ref)
                    except Exception as e:
                        if j.kind != "score":
                            raise RuntimeError(f"job {j.key} failed on Ray: {e}") from e
                        sched.finish(j, True)
                        on_result(failed_result(j, ctx, f"{type(e).__name__}: {str(e).splitlines()[0]}"))
                        bar.update(1)
                        continue
                    res.record = {**res.record, "worker": "ray", "start_s": round(t0 - t_grid, 3),  # submitted
                                  "seconds": round(secs, 3), "peak_rss_mb": round(rss, 1)}
                    timings.record(j, secs, cached=bool(res.record.get("cached")))
                    sched.finish(j, True)
                    on_result(res)
                    bar.update(1)
        finally:
            bar.close()
            timings.save()
            if started_here:
                ray.shutdown()
