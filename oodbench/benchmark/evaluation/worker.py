"""A worker process of the local executor: ``python -m oodbench.benchmark.evaluation.worker``.

The parent writes pickled messages to the worker's stdin and reads pickled replies from a private
copy of its stdout (the worker points file descriptor 1 at stderr, so a detector that prints cannot
corrupt the channel):

* first message: the run's *spec* (:func:`spec`): suite declaration, detector names, options, the
  parent's ``sys.path``, where to import detectors registered at run time, the torch thread count;
* then one :class:`~oodbench.benchmark.evaluation.jobs.Job` per message; the reply is
  ``("ok", JobResult, seconds, peak_rss_mb)`` or ``("error", message, exception or None)``. While a job
  runs, the worker also sends ``("clock", paused, excluded_s)`` whenever the job's clock stops or starts again
  (:mod:`oodbench.benchmark.jobclock`: training a model of the detector's own), so that the parent's
  backstop for the time limit counts what the job's own alarm counts.

Pickle is used only on this pipe between the parent and the child it started (never for files), as
:mod:`multiprocessing` does. The same protocol serves workers of another interpreter (OpenOOD's
environment): only the executable differs.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import threading
import time
import traceback


def user_paths() -> list[str]:
    """The repository root and this process's own import paths (tests, notebooks), without any
    interpreter's standard library or site-packages: a worker of another environment (OpenOOD's, with
    numpy < 2) must import its own packages, not ours."""
    import oodbench

    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    out = [os.path.dirname(os.path.dirname(os.path.abspath(oodbench.__file__)))]
    for p in sys.path:
        rp = os.path.realpath(p or os.getcwd())
        if "site-packages" in rp or "dist-packages" in rp or any(rp.startswith(x + os.sep) or rp == x
                                                                    for x in prefixes):
            continue
        if rp not in out and os.path.isdir(rp):
            out.append(rp)
    return out


def importable(name: str, cls, fresh=None) -> bool:
    """Whether a worker can rebuild detector ``name`` (class ``cls``): a built-in or plug-in detector (a
    fresh registry has ``name``, as the same class or one of the same module and qualified name: the
    pytorch-ood and OpenOOD wrappers are made with ``type()`` when their module is imported), or a class a
    worker can import by its module and qualified name. A class made inside a function or with ``type()``
    and registered at run time (a test, a notebook cell) is neither: such detectors run in the parent.
    ``fresh``: a ``Registry()`` to check against (pass one when checking many names; built when None)."""
    from oodbench.adapters import registry

    try:
        fresh = registry.Registry() if fresh is None else fresh
        if name in fresh:
            built = fresh.get(name)
            return built is cls or (built.__module__, built.__qualname__) == (cls.__module__, cls.__qualname__)
    except Exception:
        pass
    try:
        return registry.load_object(f"{cls.__module__}:{cls.__qualname__}") is cls
    except Exception:
        return False


def spec(ctx, threads: int) -> dict:
    """What a worker needs to rebuild the parent's :class:`RunContext`."""
    from oodbench.adapters import registry

    classes = {n: (registry.get(n).__module__, registry.get(n).__qualname__) for n in ctx.detectors}
    return {"suite": ctx.suite, "detectors": list(ctx.detectors),
            "options": {**dataclasses.asdict(ctx.options), "progress": False, "write": False},
            "sys_path": user_paths(), "classes": classes, "threads": int(threads), "run_id": ctx.run_id}


def context_from_spec(sp: dict):
    """The :class:`RunContext` of a worker (sessions are built lazily, as in the parent)."""
    for p in reversed(sp["sys_path"]):
        if p not in sys.path:
            sys.path.insert(0, p)
    from oodbench.adapters import registry
    from oodbench.benchmark import config
    from oodbench.benchmark.evaluation.jobs import RunContext
    from oodbench.benchmark.evaluation.runner import RunOptions

    known = set(registry.names())
    for name, (mod, qual) in sp["classes"].items():
        if name not in known:  # registered at run time in the parent (a test, a notebook)
            registry.register(name)(registry.load_object(f"{mod}:{qual}"))
    config.set_threads(sp["threads"])
    ctx = RunContext(sp["suite"], sp["detectors"], RunOptions(**sp["options"]), run_id=sp.get("run_id", ""),
                     say=_say)
    ctx.prepare_tuning()
    return ctx


def _say(*a, **k):
    print(*a, file=sys.stderr, flush=True)


def _picklable(e: BaseException):
    """The exception itself when it survives pickling (the parent re-raises it: a user error stays the
    same user error), else None."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return None


def exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Exit this process (at once, ``os._exit``) when its parent ``parent`` is gone: a worker whose run was
    killed must not go on computing its job alone. A daemon thread polls the parent pid every ``every``
    seconds (an orphan is re-parented, so ``os.getppid()`` changes). Cache entries stay whole: they are
    written to a temporary file and renamed, and their locks are released with the process."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main() -> int:
    exit_with_parent(os.getppid())
    chan = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of detectors go to stderr
    inp = sys.stdin.buffer
    try:
        ctx = context_from_spec(pickle.load(inp))
    except Exception as e:
        pickle.dump(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", _picklable(e)), chan)
        chan.flush()
        return 1
    from oodbench.benchmark import jobclock
    from oodbench.benchmark.evaluation.jobs import peak_rss_mb, run_job_limited

    lock = threading.Lock()

    def send(msg) -> None:
        with lock:
            pickle.dump(msg, chan)
            chan.flush()

    # the parent's backstop for a job's time limit stops with the job's own clock (model training)
    jobclock.listen(lambda paused, excluded_s: send(("clock", paused, excluded_s)))
    while True:
        try:
            job = pickle.load(inp)
        except EOFError:
            return 0
        t0 = time.perf_counter()
        try:
            reply = ("ok", run_job_limited(job, ctx), time.perf_counter() - t0, peak_rss_mb())
        except Exception as e:
            reply = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}", _picklable(e))
        send(reply)


if __name__ == "__main__":
    sys.exit(main())
