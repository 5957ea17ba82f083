"""Results rows from scores: the classifier's accuracy, every metric of every (detector, test set)
with its bootstrap interval, the group means (near / far / covariate) and the false-alarm rates of
detectors that give p-values. Also the compact curves (ROC on a fixed grid, score histograms) the
reports draw."""
from __future__ import annotations

import numpy as np

from oodbench.benchmark.evaluation import metrics

ALPHAS = (0.01, 0.05, 0.10)


def accuracy_rows(session, base: dict) -> list[dict]:
    """Accuracy of the classifier on the ID test set and on every covariate-shifted set."""
    d = session.data
    sets = [("id", "id", d.id_test)] + [(t.name, t.group, t.images) for t in d.tests if t.group == "covariate"]
    sets = [s for s in sets if (s[2].y >= 0).any()]  # a user's set without labels has no accuracy
    rows = []
    for tname, grp, images in sets:
        preds = session.representation(images, tname).preds
        rows.append({**base, "library": "", "detector": "classifier", "test_set": tname, "group": grp,
                     "metric": "accuracy", "value": float((preds == images.y).mean()), "n_id": len(images),
                     "status": "ok"})
    return rows


def detector_rows(base: dict, lib: str, name: str, tests, scores: dict, pvalues: dict | None, n_boot: int,
                  seed: int) -> list[dict]:
    """Per-test-set metrics (with bootstrap intervals), group means and false-alarm rates of one detector."""
    rows, per_group = [], {}
    sid = scores["id"]
    for t in tests:
        m = metrics.evaluate(sid, scores[t.name])
        ci = metrics.bootstrap(sid, scores[t.name], n_boot=n_boot, seed=seed) if n_boot else {}
        for k, v in m.items():
            lo, hi = ci.get(k, (np.nan, np.nan))
            rows.append({**base, "library": lib, "detector": name, "test_set": t.name, "group": t.group,
                         "metric": k, "value": v, "ci_low": lo, "ci_high": hi, "n_id": len(sid),
                         "n_ood": len(scores[t.name]), "status": "ok"})
            per_group.setdefault((t.group, k), []).append(v)
    for (grp, k), vals in per_group.items():
        rows.append({**base, "library": lib, "detector": name, "test_set": f"{grp}-mean", "group": grp,
                     "metric": k, "value": metrics.aggregate(vals), "status": "ok"})
    if pvalues is not None:
        for a in ALPHAS:
            rows.append({**base, "library": lib, "detector": name, "test_set": "id", "group": "id",
                         "metric": f"false_alarm@{a:.2f}", "value": float((pvalues["id"] <= a).mean()),
                         "n_id": len(pvalues["id"]), "status": "ok"})
    return rows


def failure_row(base: dict, lib: str, name: str, message: str) -> dict:
    return {**base, "library": lib, "detector": name, "test_set": "", "group": "", "metric": "error",
            "status": "failed", "error": message}


def curves(tests, scores: dict) -> dict:
    """ROC points per test set and score histograms, small enough to commit (``curves.json``)."""
    sid = scores["id"]
    return {"roc": {t.name: metrics.roc_points(sid, scores[t.name]) for t in tests},
            "hist": metrics.histograms({"id": sid, **{t.name: scores[t.name] for t in tests}})}
