"""Failure detection, full-spectrum metrics and the guard (oodbench.benchmark.evaluation.failure):
known answers, then one mnist-smoke run showing the rows in results.csv.gz and the report section."""
import math

import numpy as np
import pytest

from oodbench.benchmark.evaluation import failure, metrics


@pytest.fixture
def outcome():
    rng = np.random.default_rng(0)
    wrong = rng.permutation(np.arange(2000) < 150)  # 7.5 % wrong
    return rng, wrong


def test_perfect_scores(outcome):
    rng, wrong = outcome
    s = wrong + 0.01 * rng.random(wrong.size)  # every wrong prediction above every right one
    m = failure.failure_metrics(s, wrong)
    assert m["fd_auroc"] == 1.0
    assert m["aurc"] == pytest.approx(failure.oracle_aurc(wrong))
    assert m["eaurc"] == pytest.approx(0.0, abs=1e-12)
    n_right = int((~wrong).sum())
    assert n_right > 0.9 * wrong.size and m["risk@90"] == 0.0  # 90 % coverage: only right predictions
    assert m["risk@95"] == pytest.approx(50 / 1900)


def test_inverted_scores(outcome):
    rng, wrong = outcome
    m = failure.failure_metrics(-(wrong + 0.01 * rng.random(wrong.size)), wrong)
    assert m["fd_auroc"] == 0.0
    assert m["risk@80"] == pytest.approx(wrong.sum() / math.ceil(0.8 * wrong.size))
    n, e = wrong.size, int(wrong.sum())  # wrong first: risk min(k, e) / k
    worst = (e + e * sum(1 / k for k in range(e + 1, n + 1))) / n
    assert m["aurc"] == pytest.approx(worst) and m["eaurc"] == pytest.approx(worst - failure.oracle_aurc(wrong))


def test_random_and_constant_scores(outcome):
    rng, wrong = outcome
    r = wrong.mean()
    m = failure.failure_metrics(rng.random(wrong.size), wrong)
    assert abs(m["fd_auroc"] - 0.5) < 0.05 and abs(m["aurc"] - r) < 0.03
    c = failure.failure_metrics(np.zeros(wrong.size), wrong)  # all tied: the error rate everywhere
    assert c["fd_auroc"] == 0.5
    assert c["aurc"] == pytest.approx(r) and c["risk@90"] == pytest.approx(r)
    np.testing.assert_allclose(failure.selective_risks(np.zeros(wrong.size), wrong), r)


def test_oracle_aurc_known_values():
    assert failure.oracle_aurc([0, 0, 0, 1]) == pytest.approx((0 + 0 + 0 + 1 / 4) / 4)
    assert failure.oracle_aurc([0, 0, 0, 0]) == 0.0
    assert failure.oracle_aurc([1, 1]) == 1.0
    w = np.zeros(100000, bool)
    w[:10000] = True
    r = 0.1  # r + (1 - r) ln(1 - r) for large n
    assert failure.oracle_aurc(w) == pytest.approx(r + (1 - r) * math.log(1 - r), abs=1e-4)


def test_risks_by_hand_with_ties():
    s = np.array([0.1, 0.2, 0.2, 0.9])
    w = np.array([False, True, False, True])
    # k=1: 0; k=2,3: one error in the tie run of two -> 0.5/2, 1/3; k=4: 2/4
    np.testing.assert_allclose(failure.selective_risks(s, w), [0, 0.25, 1 / 3, 0.5])
    assert failure.aurc(s, w) == pytest.approx((0 + 0.25 + 1 / 3 + 0.5) / 4)
    assert failure.selective_risk(s, w, 0.5) == pytest.approx(0.25)
    assert failure.fd_auroc(s, w) == pytest.approx(metrics.auroc([0.1, 0.2], [0.2, 0.9]))
    assert failure.fd_auroc(s, np.zeros(4, bool)) != failure.fd_auroc(s, np.zeros(4, bool))  # NaN
    pts = failure.risk_coverage_points(s, w, grid=4)
    assert pts == {"coverage": [0.25, 0.5, 0.75, 1.0], "risk": [0.0, 0.25, 0.33333, 0.5]}
    with pytest.raises(ValueError, match="differ in length"):
        failure.aurc(s, w[:3])
    with pytest.raises(ValueError, match="NaN"):
        failure.aurc([np.nan, 1.0], [True, False])
    with pytest.raises(ValueError, match="coverage"):
        failure.selective_risk(s, w, 0)


def test_wrong_predictions():
    np.testing.assert_array_equal(failure.wrong_predictions([1, 2, 3], [1, 0, 3]), [False, True, False])
    with pytest.raises(ValueError, match="unlabelled"):
        failure.wrong_predictions([1, 2], [1, -1])


def test_wilson_interval():
    lo, hi = failure.wilson(81, 263)  # Wilson (1927) / Newcombe (1998) example: 0.2553 - 0.3662
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    assert failure.wilson(0, 10)[0] == 0.0 and failure.wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert failure.wilson(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in failure.wilson(0, 0))


def test_full_spectrum():
    ident, cov, ood = np.array([0.0, 1.0]), [np.array([2.0, 3.0])], np.array([2.5, 4.0])
    fs = failure.full_spectrum(ident, cov, ood)
    assert fs["fs_auroc"] == pytest.approx(metrics.auroc([0, 1, 2, 3], ood))  # = 7/8
    assert fs["fs_auroc"] == pytest.approx(7 / 8)
    assert fs["fs_fpr95"] == pytest.approx(0.25)  # 95 % of OOD detected needs threshold 2.5: flags ID 3.0
    assert failure.full_spectrum(ident, [], ood)["fs_auroc"] == metrics.auroc(ident, ood) == 1.0


def test_guard():
    p = np.array([0.001, 0.02, 0.2, 0.5, 0.04, 0.9])
    wrong = np.array([True, True, False, False, False, True])
    g = failure.guard(p, 0.05, wrong)
    assert g["refusal"][0] == pytest.approx(3 / 6)
    assert g["refusal_wrong"][0] == pytest.approx(2 / 3) and g["refusal_right"][0] == pytest.approx(1 / 3)
    assert g["accepted_accuracy"][0] == pytest.approx(2 / 3) and g["accepted_accuracy"][3] == 3
    assert g["unguarded_accuracy"][0] == pytest.approx(0.5)
    assert g["accuracy_gain"][0] == pytest.approx(2 / 3 - 0.5)
    assert g["refusal"][1:3] == pytest.approx(failure.wilson(3, 6))
    assert set(failure.guard(p, 0.01)) == {"refusal"}
    assert math.isnan(failure.guard(p, 1.0, wrong)["accepted_accuracy"][0])  # everything refused


def _sorted_runs(s, w):
    order = np.argsort(s, kind="mergesort")
    start = np.ones(s.size, bool)
    start[1:] = s[order][1:] != s[order][:-1]
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, s.size + 1))])
    return order, w[order].astype(np.int64), np.flatnonzero(start), harmonic


@pytest.mark.parametrize("decimals", [1, 6])  # many ties, few ties
def test_weighted_risk_metrics_equal_an_explicit_resample(decimals):
    """The O(B·n) resample path gives exactly what :func:`failure.failure_metrics` gives on the
    resampled data (all ones: the data itself), ties included."""
    rng = np.random.default_rng(decimals)
    s = np.round(rng.normal(size=800), decimals)
    w = rng.random(800) < 0.1 + 0.3 * (s > 0.5)
    order, ww, first, harmonic = _sorted_runs(s, w)
    counts = np.stack([np.ones(800, np.int64)] + [np.bincount(rng.integers(0, 800, 800), minlength=800)
                                                  for _ in range(3)])
    got = failure._weighted_risk_metrics(ww, first, counts[:, order], harmonic)
    for b, c in enumerate(counts):
        idx = np.repeat(np.arange(800), c)
        ref = failure.failure_metrics(s[idx], w[idx])
        for k in failure.RISK_METRICS:
            assert got[k][b] == pytest.approx(ref[k], abs=1e-12), (k, b)


def test_risk_and_guard_replicates_are_seeded_and_bracket_the_value():
    rng = np.random.default_rng(0)
    s, w = rng.normal(size=2000), rng.random(2000) < 0.05
    a, b = failure.risk_replicates(s, w, 200, seed=3), failure.risk_replicates(s, w, 200, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a) and a["aurc"].shape == (200,)
    assert not np.array_equal(a["aurc"], failure.risk_replicates(s, w, 200, seed=4)["aurc"])
    ref = failure.failure_metrics(s, w)
    for k in failure.RISK_METRICS:
        lo, hi = np.percentile(a[k], [2.5, 97.5])
        assert lo <= ref[k] <= hi, k
    p = rng.random(2000)
    g = failure.guard_replicates(p, 0.05, w, 200, seed=3)
    assert set(g) == {"refusal", "refusal_right", "refusal_wrong", "accepted_accuracy", "unguarded_accuracy",
                      "accuracy_gain"}
    assert np.allclose(g["accuracy_gain"], g["accepted_accuracy"] - g["unguarded_accuracy"])
    assert abs(g["refusal"].mean() - 0.05) < 0.01 and failure.risk_replicates(s, w, 0)["aurc"].size == 0


def test_mnist_smoke_rows_curves_and_report(data_dir, cache_dir, tmp_path):
    """msp (no p-values) and stattest (p-values) on mnist-smoke: failure-detection and full-spectrum rows
    for both, guard rows for stattest only, risk–coverage curves, and the report's sections."""
    from oodbench.benchmark.evaluation import runner
    from oodbench.benchmark.reporting import write_reports

    out = tmp_path / "mnist-smoke"
    res = runner.evaluate("mnist-smoke", detectors=["pytorch_ood.msp", "stattest"], data_dir=data_dir,
                          cache_dir=cache_dir, out=out, threads=1, n_boot=20, progress=False)
    df = res.table
    ok = df[(df.status == "ok") & np.isfinite(df.value.astype(float))]
    no_ci = ok[~np.isfinite(ok.ci_low.astype(float)) | ~np.isfinite(ok.ci_high.astype(float))]
    assert no_ci.empty, no_ci[["detector", "test_set", "metric", "value"]].drop_duplicates("metric").to_string()
    assert (ok.ci_low.astype(float) <= ok.ci_high.astype(float)).all()
    groups = {t["name"]: t["group"] for t in res.record["test_sets"]}
    cov = [t for t, g in groups.items() if g == "covariate"]
    ood = [t for t, g in groups.items() if g in ("near", "far")]
    assert cov and ood
    for det in ("pytorch_ood.msp", "stattest"):
        d = df[(df.detector == det) & (df.status == "ok")]
        have = set(zip(d.test_set, d.metric))
        for ts in ["id"] + cov + ["covariate-mean"]:
            for m in ("fd_auroc", "aurc", "eaurc", "risk@80", "risk@90", "risk@95"):
                assert (ts, m) in have, (det, ts, m)
        for ts in ood + ["near-mean", "far-mean"]:
            assert {(ts, "fs_auroc"), (ts, "fs_fpr95")} <= have
        assert ((d.metric == "auroc") & (d.test_set.isin(cov))).any()  # the covariate "OOD positive" rows stay
        fd = d[(d.metric == "aurc")]
        assert fd.value.between(0, 1).all()
        eaurc = d[d.metric == "eaurc"].value
        assert (eaurc >= -1e-12).all()
    msp, st = df[df.detector == "pytorch_ood.msp"], df[df.detector == "stattest"]
    assert not msp.metric.str.startswith("refusal").any()
    for a in ("0.01", "0.05", "0.10"):
        g = st[st.metric == f"refusal@{a}"].set_index("test_set")["value"]
        assert set(["id"] + cov + ood) <= set(g.index)
        fa = st[(st.metric == f"false_alarm@{a}")].value.iloc[0]
        assert g["id"] == pytest.approx(fa)  # the ID refusal rate is the false-alarm rate
        for ts in ["id"] + cov:
            for m in ("refusal_right", "refusal_wrong", "accepted_accuracy", "accuracy_gain"):
                assert ((st.test_set == ts) & (st.metric == f"{m}@{a}")).any(), (ts, m, a)
        acc = st[(st.test_set == "id") & (st.metric == f"accepted_accuracy@{a}")].iloc[0]
        assert acc.ci_low <= acc.value <= acc.ci_high
    # the unguarded accuracy on ID is the classifier's accuracy row
    clf = df[(df.detector == "classifier") & (df.test_set == "id")].value.iloc[0]
    assert st[(st.test_set == "id") & (st.metric == "unguarded_accuracy")].value.iloc[0] == pytest.approx(clf)
    rc = res.curves["0"]["stattest"]["risk_coverage"]
    assert set(rc) == set(["id"] + cov) and len(rc["id"]["risk"]) == 100
    paths = write_reports(tmp_path, suites=["mnist-smoke"], comparison=False)
    md = (out / "report.md").read_text()
    assert "## Failure detection" in md and "## The guard" in md and "Full spectrum" in md
    assert {p.name for p in paths} >= {"risk_coverage.png", "guard.png"}


def _run_subsampled(data_dir, cache_dir, out, name, n_sets, n_id=None):
    """One mnist-smoke run of an expensive MSP detector with conformal p-values that scores a seeded subsample
    of ``n_sets`` inputs of each set and, when ``n_id`` is given, ``n_id`` of the ID test set (else the base
    class's default, as many); returns (results table, run record of seed 0, the ID predictions' correctness
    on the ID subsample)."""
    from oodbench.adapters.base import Detector, DetectorInfo
    from oodbench.adapters.registry import REGISTRY
    from oodbench.benchmark.evaluation import runner
    from oodbench.benchmark.evaluation.scoring import subsample_index
    from oodbench.benchmark.evaluation.session import Session

    class Sub(Detector):
        consumes = frozenset({"logits"})
        info = DetectorInfo(library="test", expensive=True)

        def subsample_size(self, device):
            return n_sets

        def fit(self, fit, cal=None):
            self.cal_ = np.sort(-cal.logits.max(1).astype(np.float64))
            return self

        def score(self, rep):
            return -rep.logits.max(1).astype(np.float64)

        def p_value(self, rep):
            s = self.score(rep)
            return (1 + len(self.cal_) - np.searchsorted(self.cal_, s, side="left")) / (len(self.cal_) + 1)

    if n_id is not None:
        Sub.id_subsample_size = lambda self, device: n_id
    with REGISTRY.scoped():
        REGISTRY.register(name)(Sub)
        res = runner.evaluate("mnist-smoke", detectors=[name], data_dir=data_dir, cache_dir=cache_dir,
                              out=out, threads=1, n_boot=0, progress=False, use_score_cache=False)
    s = Session("mnist-smoke", 0, "cpu", cache_dir, data_dir)
    d, n_id = s.data.id_test, n_sets if n_id is None else n_id
    assert len(d) > n_id
    idx = subsample_index(len(d), n_id, 0)
    right = s.representation(d, "id").preds[idx] == d.y[idx]
    return res.table, res.record["detectors"][name]["0"], right


def test_subsampled_detector_rows_use_the_scored_samples(data_dir, cache_dir, tmp_path):
    """A detector scoring a seeded subsample: its failure and guard rows count those samples, and the
    wrong-prediction mask follows the same subsample (accuracy recomputed here from the full set)."""
    df, _, right = _run_subsampled(data_dir, cache_dir, tmp_path, "test.subsampled_p", 40)
    row = df[(df.test_set == "id") & (df.metric == "unguarded_accuracy")].iloc[0]
    assert row.n_id == 40 and row.value == pytest.approx(float(right.mean()))
    assert (df[(df.metric == "aurc") & ~df.test_set.str.endswith("-mean")].n_id == 40).all()
    assert (df[(df.metric == "refusal@0.05") & ~df.test_set.str.endswith("-mean")].n_id == 40).all()


def test_id_subsample_sized_apart_from_the_ood_sets(data_dir, cache_dir, tmp_path):
    """``id_subsample_size`` sizes the ID test set's subsample apart (``wgan_dz_fast`` scores the whole ID test
    set, its false-alarm sample): the ID rows count those samples and follow the same subsample, the OOD rows
    the other size, and the run record names both."""
    df, rec, right = _run_subsampled(data_dir, cache_dir, tmp_path, "test.id_apart", 40, 70)
    assert rec["subsample"] == 40 and rec["id_subsample"] == 70
    row = df[(df.test_set == "id") & (df.metric == "unguarded_accuracy")].iloc[0]
    assert row.n_id == 70 and row.value == pytest.approx(float(right.mean()))
    fa = df[(df.test_set == "id") & (df.metric == "false_alarm@0.05")].iloc[0]
    assert fa.n_id == 70
    auroc = df[(df.metric == "auroc") & ~df.test_set.str.endswith("-mean")]
    assert len(auroc) and (auroc.n_id == 70).all() and (auroc.n_ood == 40).all()
    covariate = df[(df.metric == "aurc") & (df.test_set != "id") & ~df.test_set.str.endswith("-mean")]
    assert len(covariate) and (covariate.n_id == 40).all()


def test_wgan_dz_fast_scores_the_whole_id_test_set():
    from oodbench.adapters import registry

    fast, faithful = registry.create("wgan_dz_fast"), registry.create("wgan_dz")
    assert fast.subsample_size("cpu") == 2000 and fast.id_subsample_size("cpu") is None
    assert faithful.subsample_size("cpu") == 500 and faithful.id_subsample_size("cpu") == 500
