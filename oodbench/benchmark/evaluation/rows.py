"""Results rows from scores: the classifier's accuracy, every metric of every (detector, test set)
with its bootstrap interval, the group means (near / far / covariate) and the false-alarm rates of
detectors that give p-values. Also the compact curves (ROC on a fixed grid, score histograms) the
reports draw. :func:`deployment_rows` adds failure detection, the full-spectrum metrics and the guard
(:mod:`.failure`) and the risk–coverage curves."""
from __future__ import annotations

import numpy as np

from oodbench.benchmark.evaluation import failure, metrics
from oodbench.benchmark.evaluation.scoring import subsample_index

ALPHAS = (0.01, 0.05, 0.10)


def _wilson(mask) -> dict:
    """``ci_low`` / ``ci_high``: the Wilson score interval of a proportion."""
    _, lo, hi, _ = failure.proportion(mask)
    return {"ci_low": lo, "ci_high": hi}


def accuracy_rows(session, base: dict) -> list[dict]:
    """Accuracy of the classifier on the ID test set and on every covariate-shifted set (Wilson
    interval)."""
    d = session.data
    sets = [("id", "id", d.id_test)] + [(t.name, t.group, t.images) for t in d.tests if t.group == "covariate"]
    sets = [s for s in sets if (s[2].y >= 0).any()]  # a user's set without labels has no accuracy
    rows = []
    for tname, grp, images in sets:
        preds = session.representation(images, tname).preds
        rows.append({**base, "library": "", "detector": "classifier", "test_set": tname, "group": grp,
                     "metric": "accuracy", "value": float((preds == images.y).mean()), **_wilson(preds == images.y),
                     "n_id": len(images), "status": "ok"})
    return rows


def detector_rows(base: dict, lib: str, name: str, tests, scores: dict, pvalues: dict | None, n_boot: int,
                  seed: int) -> list[dict]:
    """Per-test-set metrics and group means, each with a 95 % bootstrap interval, and false-alarm rates (Wilson
    intervals) of one detector. A group mean's interval comes from the group mean of its sets' replicates (each
    set's replicate ``b`` resamples the shared ID test samples with the same weights, as they are shared)."""
    rows, per_group, reps_group = [], {}, {}
    sid = scores["id"]
    for t in tests:
        m = metrics.evaluate(sid, scores[t.name])
        reps = metrics.replicates(sid, scores[t.name], n_boot=n_boot, seed=seed, metrics=metrics.METRICS)
        for k, v in m.items():
            lo, hi = metrics.percentile_ci(reps[k])
            rows.append({**base, "library": lib, "detector": name, "test_set": t.name, "group": t.group,
                         "metric": k, "value": v, "ci_low": lo, "ci_high": hi, "n_id": len(sid),
                         "n_ood": len(scores[t.name]), "status": "ok"})
            per_group.setdefault((t.group, k), []).append(v)
            reps_group.setdefault((t.group, k), []).append(reps[k])
    for (grp, k), vals in per_group.items():
        lo, hi = metrics.percentile_ci(np.mean(reps_group[(grp, k)], axis=0)) if n_boot else (np.nan, np.nan)
        rows.append({**base, "library": lib, "detector": name, "test_set": f"{grp}-mean", "group": grp,
                     "metric": k, "value": metrics.aggregate(vals), "ci_low": lo, "ci_high": hi, "status": "ok"})
    if pvalues is not None:
        for a in ALPHAS:
            rows.append({**base, "library": lib, "detector": name, "test_set": "id", "group": "id",
                         "metric": f"false_alarm@{a:.2f}", "value": float((pvalues["id"] <= a).mean()),
                         **_wilson(pvalues["id"] <= a), "n_id": len(pvalues["id"]), "status": "ok"})
    return rows


PAIRED_BOOT = 200  # replicates kept per (detector, seed, group) for the paired rank test


def paired_replicates(tests, scores: dict, seed: int, n_boot: int = PAIRED_BOOT) -> dict:
    """Per group: ``n_boot`` bootstrap replicates of the group-mean AUROC, on resample weights shared by
    every detector scored on the same samples (so the replicates of two detectors are paired), encoded
    compactly (:func:`encode_unit`) for ``curves.json``; :func:`.summary.paired_from_curves` reads them
    back for the paired rank test."""
    per: dict = {}
    for t in tests:
        per.setdefault(t.group, []).append(metrics.replicates(scores["id"], scores[t.name], n_boot, seed,
                                                              ("auroc",))["auroc"])
    return {"n": {"id": len(scores["id"]), **{t.name: len(scores[t.name]) for t in tests}},
            "auroc": {g: encode_unit(np.mean(v, axis=0)) for g, v in per.items()}}


def encode_unit(x) -> str:
    """Values in [0, 1] as base64 of little-endian uint16 (resolution 1.5e-5)."""
    import base64

    q = np.round(np.clip(np.asarray(x, dtype=np.float64), 0, 1) * 65535).astype("<u2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def decode_unit(s: str) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(s), dtype="<u2").astype(np.float64) / 65535


def failure_row(base: dict, lib: str, name: str, message: str) -> dict:
    return {**base, "library": lib, "detector": name, "test_set": "", "group": "", "metric": "error",
            "status": "failed", "error": message}


def curves(tests, scores: dict) -> dict:
    """ROC points per test set and score histograms, small enough to commit (``curves.json``)."""
    sid = scores["id"]
    return {"roc": {t.name: metrics.roc_points(sid, scores[t.name]) for t in tests},
            "hist": metrics.histograms({"id": sid, **{t.name: scores[t.name] for t in tests}})}


def _outcomes(session, scored) -> dict:
    """``{set key: wrong-prediction mask}`` on the samples the detector scored (its seeded subsample
    when it has one), for the ID test set and every labelled covariate set."""
    d, n_max = session.data, scored.meta.get("subsample")
    sets = [("id", d.id_test)] + [(t.name, t.images) for t in d.tests if t.group == "covariate"]
    out = {}
    for key, images in sets:
        if key not in scored.scores or (np.asarray(images.y) < 0).any():
            continue
        wrong = failure.wrong_predictions(session.representation(images, key).preds, images.y)
        n = scored.meta.get("id_subsample", n_max) if key == "id" else n_max  # older entries: one size
        idx = subsample_index(len(images), n, session.seed)
        wrong = wrong if idx is None else wrong[idx]
        if len(wrong) != len(scored.scores[key]):
            raise ValueError(f"{key}: {len(scored.scores[key])} scores for {len(wrong)} predictions")
        out[key] = wrong
    return out


def _row(base, lib, name, test_set, group, metric, value, lo=np.nan, hi=np.nan, n_id=None, n_ood=None) -> dict:
    return {**base, "library": lib, "detector": name, "test_set": test_set, "group": group, "metric": metric,
            "value": float(value), "ci_low": lo, "ci_high": hi, "n_id": n_id, "n_ood": n_ood, "status": "ok"}


def _finite_ci(reps) -> tuple[float, float]:
    """The percentile interval of the finite replicates, when at least half are finite (a replicate is
    undefined when its resample has no sample of a kind, e.g. no accepted prediction at all: the interval
    is then conditional on the quantity being defined); else (NaN, NaN)."""
    r = np.asarray(reps if reps is not None else [], dtype=np.float64)
    ok = r[np.isfinite(r)]
    return metrics.percentile_ci(ok) if len(ok) and 2 * len(ok) >= len(r) else (np.nan, np.nan)


def deployment_rows(base: dict, lib: str, name: str, session, scored, n_boot: int, seed: int):
    """Rows of failure detection (``fd_auroc``, ``aurc``, ``eaurc``, ``risk@80/90/95``) on the ID test set
    and every labelled covariate set, full-spectrum ``fs_auroc`` / ``fs_fpr95`` on every near / far set,
    and, with p-values, the guard (``refusal@a`` everywhere; ``refusal_right@a``, ``refusal_wrong@a``,
    ``accepted_accuracy@a``, ``accuracy_gain@a`` and ``unguarded_accuracy`` on labelled sets), with
    group means; and ``{"risk_coverage": {set: curve}}`` for ``curves.json``.

    Intervals (95 %): ``fd_auroc`` a bootstrap stratified by right / wrong prediction; the risk metrics
    and ``accuracy_gain`` a bootstrap of the whole set (:func:`.failure.risk_replicates`,
    :func:`.failure.guard_replicates`); ``fs_*`` the stratified bootstrap of :mod:`.metrics`; the guard's
    proportions Wilson score intervals. A group mean's interval is the percentile interval of the group
    mean of its sets' replicates. Replicates that are undefined (:func:`_finite_ci`) are left out."""
    tests, scores, pv = session.data.tests, scored.scores, scored.pvalues
    group = {"id": "id", **{t.name: t.group for t in tests}}
    wrong = _outcomes(session, scored)
    rows, per_group, reps_group = [], {}, {}

    def add(key, metric, value, lo=np.nan, hi=np.nan, n_id=None, n_ood=None, reps=None):
        if reps is not None and np.isnan(lo) and np.isfinite(value):
            lo, hi = _finite_ci(reps)
        rows.append(_row(base, lib, name, key, group[key], metric, value, lo, hi, n_id, n_ood))
        if group[key] != "id":
            per_group.setdefault((group[key], metric), []).append(value)
            reps_group.setdefault((group[key], metric), []).append(reps)

    for key, w in wrong.items():
        s = scores[key]
        reps = failure.risk_replicates(s, w, n_boot, seed)
        if n_boot and w.any() and not w.all():
            reps["fd_auroc"] = metrics.replicates(s[~w], s[w], n_boot=n_boot, seed=seed, metrics=("auroc",))["auroc"]
        for m, v in failure.failure_metrics(s, w).items():
            add(key, m, v, n_id=len(w), n_ood=int(w.sum()), reps=reps.get(m))
    cov = [scores[t.name] for t in tests if t.group == "covariate"]
    ident = np.concatenate([scores["id"]] + cov)
    for t in tests:
        if t.group == "covariate":
            continue
        reps = metrics.replicates(ident, scores[t.name], n_boot, seed, ("auroc", "fpr95"))
        for m, v in failure.full_spectrum(scores["id"], cov, scores[t.name]).items():
            add(t.name, m, v, n_id=len(ident), n_ood=len(scores[t.name]), reps=reps[m[3:]])
    if pv is not None:
        for key in ["id"] + [t.name for t in tests]:
            if key not in pv:
                continue
            for a in ALPHAS:
                greps = failure.guard_replicates(pv[key], a, wrong.get(key), n_boot, seed)
                for m, (v, lo, hi, n) in failure.guard(pv[key], a, wrong.get(key)).items():
                    if m != "unguarded_accuracy":
                        add(key, f"{m}@{a:.2f}", v, lo, hi, n, reps=greps[m])
                    elif a == ALPHAS[0]:  # the same at every alpha
                        add(key, m, v, lo, hi, n, reps=greps[m])
    for (grp, m), vals in per_group.items():
        reps = reps_group[(grp, m)]
        lo, hi = np.nan, np.nan
        if all(r is not None and len(r) for r in reps) and len({len(r) for r in reps}) == 1:
            lo, hi = _finite_ci(np.mean(reps, axis=0))
        rows.append({**base, "library": lib, "detector": name, "test_set": f"{grp}-mean", "group": grp,
                     "metric": m, "value": metrics.aggregate(vals), "ci_low": lo, "ci_high": hi, "status": "ok"})
    rc = {key: failure.risk_coverage_points(scores[key], w) for key, w in wrong.items()}
    return rows, {"risk_coverage": rc}
