"""The statistical-test detector's sweeps: reference size (power, false alarms, cost) and shift severity.

* :func:`reference_sweep`: the detector refitted on ``n`` reference (``fit``) samples per class, for
  each requested ``n``, with seeded repeats (a per-class subsample of the suite's ``fit`` split; the
  ``cal`` split stays whole, so the false-alarm guarantee and its resolution do not change). A size
  the split cannot hold for some class is capped at what that class has; a size at or above every
  class's count is the whole split (deterministic: its repeats differ only in the time measurements).
  Per run: AUROC on every near/far OOD set, false-alarm rate at alpha on the ID test subsample, fit
  time, scoring time per 1,000 inputs, the fitted reference's size (``det.core_.nbytes``) and the
  peak memory traced during the fit (``tracemalloc``, which sees numpy's allocations).
* :func:`severity_sweep`: the detector fitted on the whole split, scored on the ID test subsample
  corrupted by every shift of :mod:`oodbench.benchmark.data.shifts` at each severity (the suite's
  split seed, as the suite's own covariate sets): rejection rate at alpha (overall and split by
  right / wrong predictions), AUROC against the uncorrupted images, classifier accuracy, and the
  accuracy of the accepted predictions.
"""
from __future__ import annotations

import time
import tracemalloc

import numpy as np

MIB = float(1 << 20)


def timed_fit(make, memory: bool = True) -> dict:
    """Run ``make()`` (returns a fitted detector) and measure its wall time and traced peak memory."""
    if memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        det = make()
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if memory else None
    finally:
        if memory:
            tracemalloc.stop()
    return {"det": det, "fit_s": dt, "peak_fit_mib": None if peak is None else peak / MIB,
            "model_mib": det.core_.nbytes / MIB}


def _score(det, rep):
    t0 = time.perf_counter()
    p = np.asarray(det.p_value(rep), np.float64)
    sc = np.asarray(det.score(rep), np.float64)
    return p, sc, time.perf_counter() - t0


def _evaluate(det, id_rep, reps: dict, alpha: float) -> dict:
    from oodbench.benchmark.evaluation import metrics

    p_id, s_id, t = _score(det, id_rep)
    n = len(p_id)
    aur = {}
    for name, rep in reps.items():
        _, sc, dt = _score(det, rep)
        aur[name] = float(metrics.auroc(s_id, sc))
        t, n = t + dt, n + len(sc)
    return {"false_alarm": float(np.mean(p_id <= alpha)), "auroc": aur,
            "auroc_mean": float(np.mean(list(aur.values()))) if aur else None,
            "score_ms_per_1000": 1e6 * t / max(n, 1)}


def _summary(runs: list) -> dict:
    out = {}
    for key in ("false_alarm", "auroc_mean", "fit_s", "score_ms_per_1000", "model_mib", "peak_fit_mib"):
        v = np.array([r[key] for r in runs if r.get(key) is not None], np.float64)
        if v.size:
            out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}
    names = runs[0]["auroc"].keys() if runs else ()
    out["auroc"] = {k: {"mean": float(np.mean([r["auroc"][k] for r in runs])),
                        "sd": float(np.std([r["auroc"][k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0}
                    for k in names}
    return out


def reference_subset(fit, n: int, rng) -> np.ndarray:
    """Indices of ``min(n, count)`` random ``fit`` samples of every class, sorted."""
    idx = []
    for c in np.unique(fit.y):
        members = np.flatnonzero(fit.y == c)
        idx.append(members if n >= len(members) else rng.choice(members, n, replace=False))
    return np.sort(np.concatenate(idx))


def reference_sweep(cfg, s, full: dict, id_eval, sets: list) -> dict:
    """See the module docstring; ``full`` is :func:`timed_fit`'s result for the whole ``fit`` split,
    ``sets`` the ``(name, group, images)`` OOD subsamples to compute AUROC on."""
    from oodbench.benchmark.analysis.stattest_analysis import fitted_detector

    fit = s.data.fit
    counts = np.bincount(fit.y)
    cal_rep = s.representation(s.data.cal, "cal")
    id_rep = s.representation(id_eval, "id")
    reps = {name: s.representation(im, name) for name, _, im in sets}
    rows, whole = [], None
    for n in sorted(set(int(v) for v in cfg.ref_sizes)):
        if n >= counts.max():  # the whole split: one deterministic run, shared by every such size
            if whole is None:
                runs = [{"repeat": 0, **{k: v for k, v in full.items() if k != "det"},
                         **_evaluate(full["det"], id_rep, reps, cfg.alpha)}]
                fit_rep = s.representation(fit, "fit")
                for r in range(1, int(cfg.repeats)):  # identical results; repeated for the time measurements
                    res = timed_fit(lambda: fitted_detector(cfg, fit_rep, cal_rep), memory=True)
                    runs.append({"repeat": r, **{k: v for k, v in res.items() if k != "det"},
                                 **_evaluate(res["det"], id_rep, reps, cfg.alpha)})
                whole = {"requested": [n], "whole_split": True, "capped": True,
                         "effective_per_class": counts.tolist(), "effective_mean": float(counts.mean()),
                         "runs": runs, "summary": _summary(runs)}
                rows.append(whole)
            else:
                whole["requested"].append(n)
            continue
        eff = np.minimum(counts, n)
        runs = []
        for r in range(int(cfg.repeats)):
            rng = np.random.default_rng([cfg.sample_seed, n, r])
            idx = reference_subset(fit, n, rng)
            rep = s.representation(fit.subset(idx, f"{fit.name}[ref{n}r{r}]"), "fit")
            rep.taps(), rep.preds  # extraction is not part of the detector's fit time
            res = timed_fit(lambda: fitted_detector(cfg, rep, cal_rep), memory=True)
            det = res.pop("det")
            runs.append({"repeat": r, **res, **_evaluate(det, id_rep, reps, cfg.alpha)})
            del det
        rows.append({"requested": [n], "whole_split": False, "capped": bool((counts < n).any()),
                     "effective_per_class": eff.tolist(), "effective_mean": float(eff.mean()),
                     "runs": runs, "summary": _summary(runs)})
    return {"fit_per_class": counts.tolist(), "alpha": cfg.alpha, "sets": list(reps), "rows": rows}


def severity_sweep(cfg, s, det, id_eval) -> dict:
    """See the module docstring."""
    from oodbench.benchmark.data import ImageSet
    from oodbench.benchmark.data import shifts as shiftmod
    from oodbench.benchmark.evaluation import metrics

    y = np.asarray(id_eval.y, np.int64)
    id_rep = s.representation(id_eval, "id")
    p0, s0, _ = _score(det, id_rep)
    right0 = id_rep.preds == y
    base = {"rejection": float(np.mean(p0 <= cfg.alpha)), "accuracy": float(right0.mean())}
    out = {"alpha": cfg.alpha, "n": int(len(y)), "severity_0": base, "shifts": {}}
    seed = int(s.suite["splits"]["seed"])
    for shift in (cfg.shifts or shiftmod.SHIFTS):
        rows = []
        for sev in cfg.severities:
            x = shiftmod.apply(id_eval.x, shift, int(sev), seed=seed)
            im = ImageSet(f"{id_eval.name}-{shift}-{sev}", x, id_eval.y, f"{id_eval.checksum}:{shift}{sev}",
                          id_eval.classes)
            rep = s.representation(im, f"{s.data.id_test.name}-{shift}-{sev}")
            p, sc, _ = _score(det, rep)
            rej = p <= cfg.alpha
            right = rep.preds == y
            rows.append({
                "severity": int(sev), "rejection": float(rej.mean()),
                "rejection_right": float(rej[right].mean()) if right.any() else None,
                "rejection_wrong": float(rej[~right].mean()) if (~right).any() else None,
                "auroc": float(metrics.auroc(s0, sc)), "accuracy": float(right.mean()),
                "accepted_accuracy": float(right[~rej].mean()) if (~rej).any() else None,
            })
        out["shifts"][shift] = rows
    return out
