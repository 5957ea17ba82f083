"""The evaluation loop: suite → classifier → representations → detectors → scores → metrics → files.

``evaluate(suite, detectors, seeds)`` plans the run as a grid of jobs (:mod:`.jobs`: train the
classifier of each seed, extract every representation once, score each detector), runs them with an
executor, and returns a :class:`RunResult` — the tidy results table and the run record. With
``write`` it also writes ``results.csv``, ``run.json``, ``curves.json`` and ``leaderboard.md`` to
``out`` (default ``results/<suite>/``), merged with earlier results of other detectors there.

Scores are cached (keyed by detector, hyperparameters, library version, code, model and data), so an
interrupted or repeated run resumes where it stopped. A detector that raises, or returns NaN, the
wrong shape or the wrong dtype, is recorded as failed with its error and the run goes on.
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from oodbench.adapters import registry
from oodbench.benchmark import config
from oodbench.benchmark.data import suites
from oodbench.benchmark.evaluation import output, record as recordmod, results
from oodbench.benchmark.evaluation import executors
from oodbench.benchmark.evaluation.jobs import JobResult, RunContext, plan


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
    jobs: int | None = 1  # worker processes; None: the number of cores (``--jobs``)
    executor: str = "auto"  # auto (serial for 1 job, else local) | serial | local | ray
    address: str | None = None  # Ray cluster address (``--address``)
    timeout: float | None = None  # seconds per score job (local and Ray executors)


@dataclass
class RunResult:
    """The results table (one row per suite, model, seed, library, detector, test set, group, metric)
    and the run record (``run.json``)."""

    table: pd.DataFrame
    record: dict
    curves: dict = field(default_factory=dict)


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
    if o.tuning not in ("default", "tuned"):
        raise ValueError(f"tuning must be 'default' or 'tuned', got {o.tuning!r}")
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    threads = config.set_threads(o.threads)
    suite_d = suites.get(suite) if isinstance(suite, str) else suite
    names = registry.resolve(detectors) if detectors else default_detectors(o.device)
    skipped = {n: skip_reason(n, o.device) for n in registry.names() if not detectors and skip_reason(n, o.device)}
    ctx = RunContext(suite_d, names, o, say=tqdm.write if o.progress else (lambda *a, **k: None))
    t0 = time.perf_counter()
    data = ctx.session(int(seeds[0])).data
    t_data = time.perf_counter() - t0
    for n, why in data.skipped:
        ctx.say(f"skipped test set {n}: {why}")
    ctx.prepare_tuning()

    collected: list[JobResult] = []
    for n, why in skipped.items():
        ctx.say(f"skipped detector {n}: {why}")
    in_env = [n for n in names if n.startswith("openood.") and registry.get(n).info.extra.get("available") is False]
    executor = executors.make("local" if in_env and o.executor in ("auto", "serial") else o.executor,
                              max(1, o.jobs or 1) if in_env and o.executor == "serial" else o.jobs, o.timeout,
                              o.address)
    executor.run(plan(suite_d["name"], names, seeds), ctx, collected.append, o.progress)
    rec = _record(ctx, collected, seeds, threads, t_data)
    rec["skipped_detectors"] = [{"detector": n, "reason": r} for n, r in skipped.items()]
    rec["executor"] = {"name": executor.name, "workers": getattr(executor, "workers", 1)}
    rec["jobs"] = [{"key": jr.job.key, **{k: jr.record[k] for k in ("worker", "python", "seconds", "peak_rss_mb")
                                           if k in jr.record}} for jr in collected]
    rec["wall_seconds"] = time.perf_counter() - t_start
    result = RunResult(results.to_frame([r for jr in collected for r in jr.rows]), rec, _curves(collected))
    if o.write:
        out_dir = Path(o.out) if o.out else Path("results") / (suite_d["name"] + ("-tuned" if o.tuning == "tuned"
                                                                                    else ""))
        result.table = output.merge_and_write(out_dir, result.table, rec, result.curves)
    return result


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
        "threads": threads,
        "versions": recordmod.versions(),
        "git_commit": recordmod.git_commit(),
        "data_checksums": data.checksums,
        "data_seconds": t_data,
        "extraction": extraction,
        "detectors": dets,
        "failures": [jr.failure for jr in collected if jr.failure],
        "bootstrap": {"n_boot": o.n_boot, "ci": 0.95, "method": "stratified percentile"},
        "tuning": {"mode": o.tuning, "ood_val": getattr(ctx.ood_val, "name", None), "detectors": tuning},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }
