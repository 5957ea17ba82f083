import numpy as np
import pytest
import torch
from pytorch_ood.metrics import functional as pf
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score

from oodbench import metrics


def _pood(id_s, ood_s):
    s = torch.tensor(np.r_[id_s, ood_s], dtype=torch.float64)
    lab = torch.tensor(np.r_[np.zeros(len(id_s)), -np.ones(len(ood_s))])
    return s, lab


@pytest.mark.parametrize("seed", range(8))
def test_matches_sklearn_and_pytorch_ood_on_tied_inputs(seed):
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(50, 3000, 2)
    a = np.round(rng.normal(0, 1, n_id), int(rng.integers(0, 2)))  # heavy ties
    b = np.round(rng.normal(0.7, 1.3, n_ood), int(rng.integers(0, 2)))
    m = metrics.evaluate(a, b)
    y = np.r_[np.zeros(n_id), np.ones(n_ood)]
    s = np.r_[a, b]
    assert abs(m["auroc"] - roc_auc_score(y, s)) < 1e-9
    ps, pl = _pood(a, b)
    assert m["fpr95"] == float(pf.fpr_at_tpr(ps, pl, 0.95))  # exactly
    assert abs(m["aupr_out"] - float(pf.aupr(ps, pl, "ood"))) < 1e-12
    assert abs(m["aupr_in"] - float(pf.aupr(ps, pl, "id"))) < 1e-12
    p, r, _ = precision_recall_curve(y, s)
    assert abs(m["aupr_out"] - auc(r, p)) < 1e-9
    p, r, _ = precision_recall_curve(1 - y, -s)
    assert abs(m["aupr_in"] - auc(r, p)) < 1e-9


def test_anchor_cases_from_the_spec():
    # anchors.md §7, case D: FPR95 differs enormously between the two conventions
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(1, 2.5, 2000)
    m = metrics.evaluate(a, b)
    assert m["fpr95"] > 0.95 and m["fpr95_id"] < 0.7


def test_fpr95_id_is_ood_accepted_at_95_percent_id_accepted():
    a = np.arange(100, dtype=float)  # ID scores 0..99
    b = np.arange(50, 150, dtype=float)  # OOD 50..149
    m = metrics.evaluate(a, b)
    # accept the lowest 95 ID scores (<= 94): OOD scores 50..94 accepted = 45 of 100
    assert m["fpr95_id"] == pytest.approx(0.45)
    # flag the top 95 OOD (>= 55): ID 55..99 flagged = 45 of 100
    assert m["fpr95"] == pytest.approx(0.45)


def test_separable_and_reversed():
    a, b = np.zeros(10), np.ones(10)
    m = metrics.evaluate(a, b)
    assert m["auroc"] == 1.0 and m["fpr95"] == 0.0 and m["fpr95_id"] == 0.0
    assert m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
    assert metrics.evaluate(b, a)["auroc"] == 0.0


def test_constant_scores():
    m = metrics.evaluate(np.ones(30), np.ones(70))
    assert m["auroc"] == 0.5
    assert m["fpr95"] == 1.0 and m["fpr95_id"] == 1.0
    assert m["aupr_out"] == pytest.approx((0.7 + 1) / 2)  # one point (1, 0.7) joined to (0, 1)


def test_class_imbalance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 10000), rng.normal(1.5, 1, 500)
    m = metrics.evaluate(a, b)
    y = np.r_[np.zeros(10000), np.ones(500)]
    assert abs(m["auroc"] - roc_auc_score(y, np.r_[a, b])) < 1e-9
    assert m["aupr_in"] > 0.98 and m["aupr_out"] < 0.5


def test_infinities_are_scores():
    a = np.array([0.0, 1.0, -np.inf, 2.0])
    b = np.array([np.inf, np.inf, 3.0, 1.0])
    m = metrics.evaluate(a, b)
    y = np.r_[np.zeros(4), np.ones(4)]
    s = np.r_[a, b]
    assert abs(m["auroc"] - roc_auc_score(y, np.nan_to_num(s, posinf=1e9, neginf=-1e9))) < 1e-12
    ps, pl = _pood(a, b)
    assert m["fpr95"] == float(pf.fpr_at_tpr(ps, pl, 0.95))


def test_nan_raises_clearly():
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate([0.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="ID and OOD"):
        metrics.evaluate([], [1.0])


def test_bootstrap_interval_contains_estimate_and_shrinks():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 400), rng.normal(1, 1, 400)
    m = metrics.evaluate(a, b)
    ci = metrics.bootstrap(a, b, n_boot=300, seed=0, metrics=metrics.METRICS)
    for k in metrics.METRICS:
        lo, hi = ci[k]
        assert lo <= m[k] + 1e-9 and m[k] <= hi + 1e-9, k
    a2, b2 = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    ci2 = metrics.bootstrap(a2, b2, n_boot=300, seed=0)
    assert ci2["auroc"][1] - ci2["auroc"][0] < ci["auroc"][1] - ci["auroc"][0]
    assert metrics.bootstrap(a, b, n_boot=50, seed=3) == metrics.bootstrap(a, b, n_boot=50, seed=3)


def test_aggregate_is_unweighted_mean():
    assert metrics.aggregate([0.5, 1.0]) == 0.75


def test_fast_bootstrap_path_equals_the_metrics_on_explicit_resamples():
    from oodbench.benchmark.evaluation import metrics as M

    rng = np.random.default_rng(5)
    a, b = np.round(rng.normal(0, 1, 500), 1), np.round(rng.normal(1, 1, 300), 1)
    oi, oo = np.argsort(a, kind="mergesort"), np.argsort(-b, kind="mergesort")
    ids, od = a[oi], b[oo]
    lo, hi = np.searchsorted(ids, od, "left"), np.searchsorted(ids, od, "right")
    for _ in range(10):
        ia, ib = rng.integers(0, 500, 500), rng.integers(0, 300, 300)
        wa = np.bincount(ia, minlength=500)[oi][None]
        wb = np.bincount(ib, minlength=300)[oo][None]
        au, fp = M._weighted_auroc_fpr95(ids, od, lo, hi, wa, wb)
        ref = metrics.evaluate(a[ia], b[ib])
        assert abs(au[0] - ref["auroc"]) < 1e-12 and fp[0] == ref["fpr95"]
