"""The evaluation loop: suite → classifier → representations → detectors → scores → metrics → files.

``evaluate(suite, detectors, seeds)`` trains (or loads) the suite's classifier for each seed,
extracts every representation the detectors declare once per dataset (cached on disk), fits each
detector on the ID ``fit`` split (and ``cal`` where it calibrates), scores the ID test set and every
OOD set, and computes our metrics. Scores are cached too (keyed by detector, hyperparameters,
library version, model and data), so an interrupted or repeated run resumes where it stopped.

A detector that raises, or returns NaN, the wrong shape or the wrong dtype, is recorded as failed
with its error and the run goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from oodbench.adapters import registry
from oodbench.adapters.base import check_scores
from oodbench.benchmark import config
from oodbench.benchmark.evaluation import metrics
from oodbench.benchmark import models
from oodbench.benchmark.evaluation import results
from oodbench.benchmark.data import suites
from oodbench.benchmark.evaluation.features import CORE, TAPS, RepresentationStore
from oodbench.benchmark.io import CorruptCacheError, load_arrays, save_arrays, write_json

ALPHAS = (0.01, 0.05, 0.10)


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("oodbench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas", "pytorch-ood",
                "openood"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parents[3]
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "") if r.returncode == 0 else ""
    except Exception:
        return ""


def default_detectors(device: str = "cpu") -> list[str]:
    """Every registered detector whose library is installed and that can run on ``device``; expensive
    ones are included (they score a seeded subsample on CPU where they say so)."""
    out = []
    for n in registry.names():
        info = registry.get(n).info
        if info.extra.get("available") is False:
            continue
        if str(device).startswith("cuda") or info.cpu_ok:
            out.append(n)
    return out


def _needs(dets) -> set[str]:
    kinds = set()
    for d in dets:
        c = set(d.consumes)
        if c & {"logits", "features"}:
            kinds.add(CORE)
        if "taps" in c:
            kinds.add(TAPS)
    return kinds


def _code_hash(cls) -> str:
    """Hash of the source file defining a detector class, so edited detector code invalidates cached scores."""
    try:
        import inspect

        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()[:16]
    except (TypeError, OSError):
        return ""


def _score_key(name, det, model_key, mat, device="cpu") -> str:
    blob = json.dumps({"name": name, "params": det.get_params(), "lib": det.info.library_version,
                       "device": "cuda" if str(device).startswith("cuda") else "cpu",
                       "code": _code_hash(type(det)), "model": model_key, "fit": mat.fit.checksum,
                       "cal": mat.cal.checksum}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _subsample(images, n_max: int | None, seed: int):
    """A seeded subsample (without replacement, in original order) of at most ``n_max`` images."""
    if not n_max or len(images) <= n_max:
        return images
    idx = np.sort(np.random.default_rng([seed, len(images), n_max]).choice(len(images), n_max, replace=False))
    return images.subset(idx, images.name)


def _run_detector(name, store, mat, cache_path: Path | None, progress_write, device="cpu", seed=0, params=None):
    """Fit and score one detector; returns (scores dict, p-values or None, timing dict).

    A detector too expensive to score every sample may define ``subsample_size(device) -> int | None``:
    the ID test set and each OOD set are then scored on a seeded subsample of that size (recorded in
    the run record and visible as ``n_id``/``n_ood`` in the results)."""
    det = registry.create(name, **(params or {}))
    if cache_path is not None and cache_path.exists():
        try:
            arr = load_arrays(cache_path)
            meta = json.loads(str(arr.pop("__meta__")))
            pv = {k[2:]: v for k, v in arr.items() if k.startswith("p:")}
            sc = {k: v for k, v in arr.items() if not k.startswith("p:")}
            return det, sc, (pv or None), {**meta, "cached": True}
        except (CorruptCacheError, KeyError, ValueError) as e:
            progress_write(f"warning: score cache {cache_path} unusable ({e}); recomputing")
    fit = store.representation(mat.fit, "fit")
    cal = store.representation(mat.cal, "cal")
    tracemalloc.start()
    t0 = time.perf_counter()
    det.fit(fit, cal)
    t_fit = time.perf_counter() - t0
    scores, pvals, n_scored = {}, {}, 0
    t0 = time.perf_counter()
    n_max = det.subsample_size(device) if hasattr(det, "subsample_size") else None
    sets = [("id", _subsample(mat.id_test, n_max, seed))] + [(t.name, _subsample(t.images, n_max, seed))
                                                             for t in mat.tests]
    for key, images in sets:
        rep = store.representation(images, key)
        scores[key] = check_scores(det.score(rep), len(images), name)
        n_scored += len(images)
    t_score = time.perf_counter() - t0
    if hasattr(det, "p_value"):
        id_set = sets[0][1]
        pvals["id"] = check_scores(det.p_value(store.representation(id_set, "id")), len(id_set), name + " p_value")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    meta = {"fit_seconds": t_fit, "score_seconds": t_score, "samples_scored": n_scored, "subsample": n_max,
            "throughput_per_s": n_scored / t_score if t_score > 0 else None, "peak_python_mb": peak / 2 ** 20,
            "params": {k: repr(v) for k, v in det.get_params().items()}}
    if cache_path is not None:
        save_arrays(cache_path, {**scores, **{"p:" + k: v for k, v in pvals.items()},
                                 "__meta__": np.array(json.dumps(meta))})
    return det, scores, (pvals or None), {**meta, "cached": False}


def evaluate(suite: str | dict, detectors=None, seeds=(0,), device: str = "cpu", data_dir=None, cache_dir=None,
             out=None, threads: int | None = None, n_boot: int = 100, progress: bool = True, write: bool = True,
             use_score_cache: bool = True, batch_size: int = 512, tuning: str = "default") -> pd.DataFrame:
    """Run ``detectors`` (names or patterns; default: all available) on ``suite`` for each seed.

    Returns the tidy results table; with ``write`` also writes ``results.csv``, ``run.json`` and
    ``leaderboard.md`` to ``out`` (default ``results/<suite>/``), merged with earlier results of
    other detectors in that folder.

    ``tuning="default"``: every detector uses its library's fixed defaults and sees no OOD data.
    ``tuning="tuned"``: hyperparameters are chosen on an OOD validation set disjoint from every test
    set (:mod:`oodbench.benchmark.evaluation.tuning`, OpenOOD's protocol); results go to ``results/<suite>-tuned``
    by default and every row says which mode produced it (column ``tuning``).
    """
    if tuning not in ("default", "tuned"):
        raise ValueError(f"tuning must be 'default' or 'tuned', got {tuning!r}")
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    threads = config.set_threads(threads)
    suite_d = suites.get(suite) if isinstance(suite, str) else suite
    sname = suite_d["name"]
    cache = config.cache_dir(cache_dir)
    names = registry.resolve(detectors) if detectors else default_detectors(device)
    say = tqdm.write if progress else (lambda *a, **k: None)

    t0 = time.perf_counter()
    mat = suites.materialise(suite_d, data_dir, cache)
    t_data = time.perf_counter() - t0
    for n, why in mat.skipped:
        say(f"skipped test set {n}: {why}")
    ood_val, tuning_records = None, {}
    if tuning == "tuned":
        from oodbench.benchmark.evaluation import tuning as tuningmod

        ood_val = tuningmod.ood_val_set(suite_d, data_dir, cache)
        tuningmod.assert_disjoint(ood_val, [mat.id_test] + [t.images for t in mat.tests])

    rows, det_records, model_records, failures = [], {}, {}, []
    versions = _versions()
    curves: dict = {}  # seed -> detector -> {"roc": {test_set: {fpr, tpr}}, "hist": {...}}
    arch = suites.model_name(suite_d, device)
    recipe = models.recipe_for(arch, suite_d.get("recipe_override"))
    extraction = {}
    for seed in seeds:
        base = {"suite": sname, "model": arch, "seed": int(seed), "tuning": tuning}
        model, meta = models.load_or_train(arch, recipe, mat.train, int(seed), cache, device, progress)
        model_records[int(seed)] = meta
        store = RepresentationStore(model, meta["key"], cache, device, batch_size=batch_size, progress=progress)
        store.context = {"train": mat.train, "cache": cache, "seed": int(seed), "device": str(device),
                         "suite": sname, "progress": progress}
        dets = [registry.get(n) for n in names]
        kinds = _needs(dets) | {CORE}
        all_sets = [mat.fit, mat.cal, mat.id_test] + [t.images for t in mat.tests]
        for images in tqdm(all_sets, desc=f"representations (seed {seed})", disable=not progress, leave=False):
            store.ensure(images, kinds)
        extraction[int(seed)] = dict(store.stats)
        # classifier accuracy on the ID test set and every covariate-shifted set
        acc_sets = [("id", "id", mat.id_test)] + [(t.name, t.group, t.images) for t in mat.tests
                                                  if t.group == "covariate"]
        for tname, grp, images in acc_sets:
            preds = store.representation(images, tname).preds
            rows.append({**base, "library": "", "detector": "classifier", "test_set": tname, "group": grp,
                         "metric": "accuracy", "value": float((preds == images.y).mean()), "n_id": len(images),
                         "status": "ok"})
        bar = tqdm(names, desc=f"detectors (seed {seed})", disable=not progress, leave=False)
        for name in bar:
            bar.set_postfix_str(name)
            cls = registry.get(name)
            lib = cls.info.library
            cpath = None
            if use_score_cache:
                cpath = cache / "scores" / meta["key"] / f"{name}-{_score_key(name, cls(), meta['key'], mat, device)}.npz"
            try:
                params = None
                if ood_val is not None:
                    res = tuningmod.tune(name, store.representation(mat.fit, "fit"), store.representation(mat.cal, "cal"),
                                         store.representation(mat.cal, "cal"), store.representation(ood_val, "ood_val"))
                    params = res.params
                    tuning_records.setdefault(name, {})[str(seed)] = res.as_dict()
                    if cpath is not None:
                        cpath = cache / "scores" / meta["key"] / (
                            f"{name}-{_score_key(name, cls(**params), meta['key'], mat, device)}.npz")
                det, scores, pvals, rec = _run_detector(name, store, mat, cpath, say, device, int(seed), params)
            except Exception as e:  # a failing detector is recorded and the run goes on
                msg = f"{type(e).__name__}: {e}"
                say(f"detector {name} failed: {msg}")
                failures.append({"detector": name, "seed": int(seed), "error": msg,
                                 "traceback": traceback.format_exc(limit=6)})
                rows.append({**base, "library": lib, "detector": name, "test_set": "", "group": "",
                             "metric": "error", "status": "failed", "error": msg})
                det_records.setdefault(name, {})[str(seed)] = {"status": "failed", "error": msg}
                continue
            det_records.setdefault(name, {})[str(seed)] = {**rec, "info": cls.info.as_dict(), "versions": versions}
            sid = scores["id"]
            curves.setdefault(str(seed), {})[name] = {
                "roc": {t.name: metrics.roc_points(sid, scores[t.name]) for t in mat.tests},
                "hist": metrics.histograms({"id": sid, **{t.name: scores[t.name] for t in mat.tests}}),
            }
            per_group = {}
            for t in mat.tests:
                m = metrics.evaluate(sid, scores[t.name])
                ci = metrics.bootstrap(sid, scores[t.name], n_boot=n_boot, seed=int(seed)) if n_boot else {}
                for k, v in m.items():
                    lo, hi = ci.get(k, (np.nan, np.nan))
                    rows.append({**base, "library": lib, "detector": name, "test_set": t.name, "group": t.group,
                                 "metric": k, "value": v, "ci_low": lo, "ci_high": hi, "n_id": len(sid),
                                 "n_ood": len(scores[t.name]), "status": "ok"})
                    per_group.setdefault((t.group, k), []).append(v)
            for (grp, k), vals in per_group.items():
                rows.append({**base, "library": lib, "detector": name, "test_set": f"{grp}-mean", "group": grp,
                             "metric": k, "value": metrics.aggregate(vals), "status": "ok"})
            if pvals is not None:
                for a in ALPHAS:
                    rows.append({**base, "library": lib, "detector": name, "test_set": "id", "group": "id",
                                 "metric": f"false_alarm@{a:.2f}", "value": float((pvals["id"] <= a).mean()),
                                 "n_id": len(pvals["id"]), "status": "ok"})
        bar.close()

    df = results.to_frame(rows)
    record = {
        "suite": sname,
        "suite_declaration": {k: v for k, v in suite_d.items() if k != "tests"},
        "test_sets": [{"name": t.name, "group": t.group, "n": len(t.images)} for t in mat.tests],
        "skipped_test_sets": [{"name": n, "reason": r} for n, r in mat.skipped],
        "split_sizes": {"train": len(mat.train), "fit": len(mat.fit), "cal": len(mat.cal), "id_test": len(mat.id_test)},
        "model": arch,
        "models": model_records,
        "seeds": [int(s) for s in seeds],
        "device": str(device),
        "device_name": _device_name(device),
        "threads": threads,
        "versions": versions,
        "git_commit": _git_commit(),
        "data_checksums": mat.checksums,
        "data_seconds": t_data,
        "extraction": extraction,
        "detectors": det_records,
        "failures": failures,
        "bootstrap": {"n_boot": n_boot, "ci": 0.95, "method": "stratified percentile"},
        "tuning": {"mode": tuning, "ood_val": getattr(ood_val, "name", None), "detectors": tuning_records},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_seconds": time.perf_counter() - t_start,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }
    if write:
        out_dir = Path(out) if out else Path("results") / (sname + ("-tuned" if tuning == "tuned" else ""))
        out_dir.mkdir(parents=True, exist_ok=True)
        with _locked(out_dir / ".lock"):  # concurrent runs into one folder merge, never overwrite
            df = _merge_and_write(out_dir, df, record, curves, det_records)
    # (curves stay out of attrs: pandas deep-copies attrs on every operation, and they are large)
    df.attrs["record"] = record
    return df


class _locked:
    """An exclusive advisory lock on a file (fcntl), so two runs writing one results folder serialise."""

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


def _read_json(path: Path) -> dict:
    """A JSON file's content, or {} when it is missing or unreadable (it is then rewritten)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _merge_and_write(out_dir: Path, df, record: dict, curves: dict, det_records: dict):
    old = results.read(out_dir / "results.csv")
    merged = results.merge(old, df)
    prev = _read_json(out_dir / "run.json")
    keep = set(merged["detector"])
    record["detectors"] = {**{k: v for k, v in prev.get("detectors", {}).items() if k in keep},
                           **det_records}
    # every run that contributed rows to this folder, with its environment (e.g. OpenOOD's numpy 1.26)
    record["runs"] = prev.get("runs", []) + [{k: record[k] for k in ("timestamp", "command", "versions", "git_commit",
                                                                     "device", "threads", "wall_seconds")}
                                            | {"detectors": sorted(det_records)}]
    prev_curves = _read_json(out_dir / "curves.json")
    for sd, dets_c in curves.items():
        prev_curves.setdefault(sd, {}).update(dets_c)
    for sd in list(prev_curves):
        prev_curves[sd] = {k: v for k, v in prev_curves[sd].items() if k in keep}
    results.write_all(out_dir, merged, record, prev_curves)
    df = merged
    return df


def _device_name(device) -> str:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()
