"""summary.csv: intervals on every number, rank ranges with ties, flags on broken detectors, the paired
bootstrap and the Friedman / Nemenyi statistics, on synthetic multi-seed tables with known answers; and
a report rendered from a synthetic 3-seed results folder."""
import json

import numpy as np
import pandas as pd
import pytest

from oodbench.benchmark.evaluation import metrics, results, summary
from oodbench.benchmark.evaluation.ranking import friedman_nemenyi, holm_reject, rank_tiers

SETS = (("setA", "near"), ("setB", "near"), ("setC", "far"))


def _table(dets: dict, seeds=(0, 1, 2), se=0.002, rng=None, sets=SETS, extra=None) -> pd.DataFrame:
    """``dets``: {name: {metric: value or {set: value}}}; per-seed values = value + N(0, seed_sd) when
    ``rng`` is given; every per-set row gets a 95 % interval value ± 1.96 se; group means as the runner."""
    rows = []
    for s in seeds:
        for det, spec in dets.items():
            per_group: dict = {}
            for t, g in sets:
                for m, v in spec.items():
                    x = v.get(t, v.get("*")) if isinstance(v, dict) else v
                    x = float(x + (rng.normal(0, spec.get("_seed_sd", 0.0)) if rng is not None else 0.0)) \
                        if m != "_seed_sd" else None
                    if x is None:
                        continue
                    rows.append({"suite": "syn", "model": "m", "seed": s, "tuning": "default", "library": "lib",
                                 "detector": det, "test_set": t, "group": g, "metric": m, "value": x,
                                 "ci_low": x - 1.96 * se, "ci_high": x + 1.96 * se, "n_id": 1000, "n_ood": 1000,
                                 "status": "ok", "error": "", **(extra or {}).get(det, {})})
                    per_group.setdefault((g, m), []).append(x)
            for (g, m), vals in per_group.items():
                rows.append({"suite": "syn", "model": "m", "seed": s, "tuning": "default", "library": "lib",
                             "detector": det, "test_set": f"{g}-mean", "group": g, "metric": m,
                             "value": float(np.mean(vals)), "status": "ok", **(extra or {}).get(det, {})})
    return results.to_frame(rows)


def _row(summ, det, test_set="near-mean", metric="auroc"):
    r = summ[(summ["detector"] == det) & (summ["test_set"] == test_set) & (summ["metric"] == metric)]
    assert len(r) == 1
    return r.iloc[0]


def test_mean_std_and_an_interval_on_every_row():
    rng = np.random.default_rng(0)
    df = _table({"a": {"auroc": 0.9, "fpr95": 0.3, "_seed_sd": 0.01}}, rng=rng)
    s = summary.summarise(df)
    assert set(s["metric"]) == {"auroc", "fpr95"} and len(s) == 2 * (3 + 2)
    assert s[["ci_low", "ci_high"]].notna().all().all() and (s["ci_method"] == "seeds+ci").all()
    r = _row(s, "a", "setA")
    v = df[(df["test_set"] == "setA") & (df["metric"] == "auroc")]["value"]
    assert r["mean"] == pytest.approx(v.mean()) and r["std"] == pytest.approx(v.std(ddof=1))
    assert r["n_seeds"] == 3 and r["ci_low"] <= r["mean"] <= r["ci_high"]
    # a group mean without its own interval gets one from its sets' errors
    g = _row(s, "a", "near-mean")
    assert g["ci_low"] < g["mean"] < g["ci_high"]


def test_single_seed_interval_is_the_within_seed_interval():
    df = _table({"a": {"auroc": 0.8}}, seeds=(0,), se=0.01)
    s = summary.summarise(df, n_resamples=4000)
    r = _row(s, "a", "setA")
    assert np.isnan(r["std"]) and r["ci_method"] == "ci"
    assert r["ci_low"] == pytest.approx(0.8 - 1.96 * 0.01, abs=0.002)
    assert r["ci_high"] == pytest.approx(0.8 + 1.96 * 0.01, abs=0.002)


def test_intervals_cover_the_true_value():
    """Seeds scatter around a true AUROC (sd 0.01), within-seed error 0.005: the 95 % interval of the mean
    over 5 seeds covers the truth in most simulated tables (percentile bootstrap over few seeds is a
    little narrow, so >= 80 %)."""
    rng = np.random.default_rng(1)
    hits = 0
    n = 60
    for i in range(n):
        df = _table({"a": {"auroc": 0.9, "_seed_sd": 0.01}}, seeds=range(5), se=0.005, rng=rng,
                    sets=(("setA", "near"),))
        r = _row(summary.summarise(df, n_resamples=500, seed=i), "a", "setA")
        hits += r["ci_low"] <= 0.9 <= r["ci_high"]
    assert hits / n >= 0.8


def test_rank_ranges_with_an_obvious_tie_and_an_obvious_loser():
    df = _table({"best": {"auroc": 0.950}, "tied": {"auroc": 0.9495}, "loser": {"auroc": 0.80},
                 "third": {"auroc": 0.85}}, se=0.003)
    s = summary.summarise(df)
    ranks = {d: _row(s, d)["rank_range"] for d in ("best", "tied", "third", "loser")}
    assert ranks == {"best": "1–2", "tied": "1–2", "third": "3", "loser": "4"}
    # lower is better for FPR
    df = _table({"a": {"fpr95": 0.05}, "b": {"fpr95": 0.40}}, se=0.003)
    s = summary.summarise(df)
    assert _row(s, "a", metric="fpr95")["rank_range"] == "1" and _row(s, "b", metric="fpr95")["rank_range"] == "2"


def test_paired_replicates_separate_what_unpaired_intervals_cannot():
    """Two detectors whose AUROCs move together (shared test samples): their intervals overlap, so the
    unpaired test ties them, while the paired differences show one is always better."""
    rng = np.random.default_rng(3)
    common = rng.normal(0, 0.01, 300)
    paired = {}
    for s in (0, 1, 2):
        paired[("a", s, "near")] = 0.900 + common
        paired[("b", s, "near")] = 0.898 + common + rng.normal(0, 0.0002, 300)
    df = _table({"a": {"auroc": 0.900}, "b": {"auroc": 0.898}}, se=0.01, sets=(("setA", "near"),))
    unp = summary.summarise(df)
    assert _row(unp, "b")["rank_range"] == "1–2" and "unpaired" in _row(unp, "b")["rank_test"]
    par = summary.summarise(df, paired=paired)
    assert _row(par, "a")["rank_range"] == "1" and _row(par, "b")["rank_range"] == "2"
    assert _row(par, "b")["rank_test"].startswith("paired")


def test_each_flag_and_flagged_rows_are_not_ranked():
    dets = {"good": {"auroc": 0.95, "fpr95": 0.2}, "ok2": {"auroc": 0.90, "fpr95": 0.3},
            "inv": {"auroc": {"setA": 0.30, "setB": 0.35, "setC": 0.9}, "fpr95": 0.9},
            "const": {"auroc": 0.5, "fpr95": 1.0},
            "na": {"auroc": 0.97, "fpr95": 0.1}}
    df = _table(dets, se=0.005, extra={"na": {"not_applicable_reason": "LeNet has no spatial feature maps"}})
    df["not_applicable_reason"] = df["not_applicable_reason"].fillna("")
    alarms = [{"suite": "syn", "model": "m", "seed": s, "tuning": "default", "library": "lib", "detector": "pv",
               "test_set": "id", "group": "id", "metric": "false_alarm@0.10", "value": 0.0, "n_id": 1000,
               "status": "ok"} for s in (0, 1, 2)]
    df = pd.concat([df, _table({"pv": {"auroc": 0.96, "fpr95": 0.1}}, se=0.005), results.to_frame(alarms)],
                   ignore_index=True)
    s = summary.summarise(df)
    assert _row(s, "inv")["flag"] == "inverted" and "below 50" in _row(s, "inv")["flag_reason"]
    assert _row(s, "inv", "far-mean")["flag"] == ""  # flags are per (detector, group)
    assert _row(s, "const")["flag"] == "degenerate" and "constant" in _row(s, "const")["flag_reason"]
    assert _row(s, "pv")["flag"] == "degenerate" and "false alarm" in _row(s, "pv")["flag_reason"]
    assert _row(s, "na")["flag"] == "not_applicable" and "spatial" in _row(s, "na")["flag_reason"]
    for d in ("inv", "const", "pv", "na"):
        assert _row(s, d)["rank_range"] == ""
    # the best unflagged detector is ranked 1 even though flagged ones score higher
    assert _row(s, "good")["rank_range"] == "1" and _row(s, "ok2")["rank_range"] == "2"
    assert _row(s, "inv", "far-mean")["rank_range"] != ""


def test_holm_and_friedman_nemenyi_known_answers():
    assert list(holm_reject([0.01, 0.04, 0.03])) == [True, False, False]
    assert list(holm_reject([0.001, 0.01, 0.04])) == [True, True, True]
    vals = pd.DataFrame({"a": np.full(10, 0.9), "b": np.full(10, 0.8), "c": np.full(10, 0.7)})
    st = friedman_nemenyi(vals)
    assert list(st["avg_rank"]) == [1.0, 2.0, 3.0] and st["chi2"] == pytest.approx(20.0)
    assert st["cd"] == pytest.approx(2.343 * np.sqrt(3 * 4 / 60), abs=2e-3)  # Demšar 2006, Table 5
    r = rank_tiers(["x", "y"], np.array([0.9, 0.9]), np.zeros((2, 1)), True)
    assert r == {"x": "1–2", "y": "1–2"}  # equal values with no spread tie


def test_paired_bootstrap_shares_the_resampled_samples():
    rng = np.random.default_rng(4)
    ids, oods = rng.normal(0, 1, 200), rng.normal(1, 1, 150)
    other_id, other_ood = ids + rng.normal(0, 1, 200), oods + rng.normal(0, 1, 150)
    reps = metrics.paired_bootstrap([ids, other_id], [oods, other_ood], n_boot=3, seed=7, metrics=("auroc", "aupr_in"))
    assert reps["auroc"].shape == (2, 3)
    wi = metrics._resample_weights(np.random.default_rng([7, 0]), 200, 3)
    wo = metrics._resample_weights(np.random.default_rng([7, 1]), 150, 3)
    for b in range(3):
        ia, ib = np.repeat(np.arange(200), wi[b]), np.repeat(np.arange(150), wo[b])
        for d, (x, y) in enumerate(((ids, oods), (other_id, other_ood))):
            ref = metrics.evaluate(x[ia], y[ib])
            assert reps["auroc"][d, b] == pytest.approx(ref["auroc"], abs=1e-12)
            assert reps["aupr_in"][d, b] == pytest.approx(ref["aupr_in"], abs=1e-12)
    with pytest.raises(ValueError, match="same samples"):
        metrics.paired_bootstrap([ids, ids[:10]], [oods, oods], n_boot=2)


def test_report_from_a_three_seed_results_folder(tmp_path):
    from oodbench.benchmark.reporting import write_reports

    rng = np.random.default_rng(5)
    dets = {f"d{i}": {"auroc": 0.99 - 0.02 * i, "fpr95": 0.05 + 0.05 * i, "aupr_in": 0.9, "aupr_out": 0.9,
                      "_seed_sd": 0.003} for i in range(4)}
    dets["broken"] = {"auroc": 0.3, "fpr95": 0.99, "aupr_in": 0.3, "aupr_out": 0.3}
    df = _table(dets, rng=rng)
    folder = tmp_path / "syn"
    folder.mkdir()
    record = {"model": "m", "device": "cpu", "seeds": [0, 1, 2],
              "test_sets": [{"name": t, "group": g} for t, g in SETS]}
    results.write_all(folder, df, record)
    summ = pd.read_csv(folder / "summary.csv")
    assert summ[["ci_low", "ci_high"]].notna().all().all()
    lb = (folder / "leaderboard.md").read_text()
    assert "near rank" in lb and " ± " in lb and "**flagged: not ranked**" in lb
    assert lb.index("| d3 ") < lb.index("**flagged") < lb.index("| broken ")
    write_reports(tmp_path, tmp_path / "out", comparison=False)
    md = (tmp_path / "out" / "syn" / "report.md").read_text()
    assert "## Flagged detectors" in md and "broken" in md and "cd_diagram.png" in md and "near rank" in md
    assert "Friedman test over N = 9 blocks" in md  # 3 test sets x 3 seeds, 4 unflagged detectors
    assert json.loads(json.dumps(record))  # the record went through unchanged


def test_paired_replicates_travel_through_curves_json():
    """rows.paired_replicates (kept in curves.json) -> summary.paired_from_curves -> a paired rank test:
    B is A plus a little noise (so slightly worse on the same samples); their intervals overlap, yet
    the paired test ranks A alone first. A (much worse) detector scored on a subsample is left unpaired."""
    from collections import namedtuple

    from oodbench.benchmark.evaluation import rows as rowsmod

    T = namedtuple("T", "name group")
    tests = [T("o1", "near"), T("o2", "near")]
    rng = np.random.default_rng(6)
    base = {"id": rng.normal(0, 1, 3000), "o1": rng.normal(0.8, 1, 2000), "o2": rng.normal(1.0, 1, 2000)}
    dets = {"A": base, "B": {k: v + rng.normal(0, 0.3, v.size) for k, v in base.items()},
            "S": {k: v[:1500] + rng.normal(0, 1.5, 1500) for k, v in base.items()}}
    all_rows, curves = [], {}
    for s in (0, 1):
        for d, sc in dets.items():
            b = {"suite": "syn", "model": "m", "seed": s, "tuning": "default"}
            all_rows += rowsmod.detector_rows(b, "lib", d, tests, sc, None, 100, s)
            curves.setdefault(str(s), {})[d] = {"paired": rowsmod.paired_replicates(tests, sc, s)}
    df = results.to_frame(all_rows)
    paired = summary.paired_from_curves(json.loads(json.dumps(curves)))
    assert ("A", 0, "near") in paired and ("S", 0, "near") not in paired
    assert len(paired[("A", 1, "near")]) == rowsmod.PAIRED_BOOT
    unp, par = summary.summarise(df), summary.summarise(df, paired=paired)
    a_u, b_u = _row(unp, "A"), _row(unp, "B")
    assert a_u["mean"] > b_u["mean"] and b_u["ci_high"] > a_u["ci_low"]  # the intervals overlap
    assert _row(unp, "B")["rank_range"].startswith("1")  # unpaired: tied with the best
    assert [_row(par, d)["rank_range"] for d in "ABS"] == ["1", "2", "3"]
    assert "2 of 3 detectors paired" in _row(par, "A")["rank_test"]


def test_leaderboard_says_when_rows_come_from_several_commits():
    from oodbench.benchmark.reporting.leaderboard import provenance_warning

    df = pd.DataFrame({"run_id": ["a", "a", "b"], "detector": ["x", "x", "y"]})
    same = {"runs": [{"run_id": "a", "git_commit": "c1", "versions": {"numpy": "2"}},
                     {"run_id": "b", "git_commit": "c1", "versions": {"numpy": "2"}}]}
    assert provenance_warning(df, same) == ""
    other = {"runs": [same["runs"][0], {"run_id": "b", "git_commit": "c2", "versions": {"numpy": "2"}}]}
    assert "2 commit(s)" in provenance_warning(df, other)
    env = {"runs": [same["runs"][0], {"run_id": "b", "git_commit": "c1", "versions": {"numpy": "1.26"}}]}
    assert "2 environment(s)" in provenance_warning(df, env)


def test_failure_guard_and_accuracy_rows_are_summarised():
    """fd_auroc / aurc / accuracy_gain rows and the classifier's accuracy get mean, std and an interval over
    seeds; accuracy_gain may be negative (its interval is not clipped at 0); undefined values are left out."""
    rng = np.random.default_rng(3)
    df = _table({"a": {"auroc": 0.9, "fd_auroc": 0.8, "aurc": 0.05, "accuracy_gain@0.05": -0.02,
                       "_seed_sd": 0.005}}, rng=rng)
    acc = [{"suite": "syn", "model": "m", "seed": s, "tuning": "default", "library": "", "detector": "classifier",
            "test_set": "id", "group": "id", "metric": "accuracy", "value": 0.95 + 0.001 * s, "ci_low": 0.94,
            "ci_high": 0.96, "n_id": 1000, "status": "ok", "error": ""} for s in (0, 1, 2)]
    undefined = {**acc[0], "detector": "a", "library": "lib", "test_set": "setA", "group": "near",
                 "metric": "accuracy_gain@0.10", "value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    df = pd.concat([df, results.to_frame(acc + [undefined])], ignore_index=True)
    s = summary.summarise(df)
    for m in ("fd_auroc", "aurc", "accuracy_gain@0.05"):
        r = _row(s, "a", "near-mean", m)
        v = df[(df["test_set"] == "near-mean") & (df["metric"] == m)]["value"]
        assert r["mean"] == pytest.approx(v.mean()) and r["n_seeds"] == 3 and r["ci_method"] == "seeds+ci"
        assert r["ci_low"] < r["mean"] < r["ci_high"]
    assert _row(s, "a", "near-mean", "accuracy_gain@0.05")["ci_high"] < 0
    r = _row(s, "classifier", "id", "accuracy")
    assert r["mean"] == pytest.approx(0.951) and r["n_seeds"] == 3 and r["ci_low"] < 0.951 < r["ci_high"]
    assert not ((s["metric"] == "accuracy_gain@0.10")).any()
    # the leaderboard has no row for the classifier
    from oodbench.benchmark.reporting.leaderboard import leaderboard
    assert "classifier" not in set(leaderboard(df, summ=s)["detector"])


def test_the_reports_per_set_interval_is_the_summarys_and_holds_the_seed_spread():
    """The report's per-set AUROC table showed the mean of the per-seed intervals, which leaves the spread
    between seeds out (on cifar10, pytorch-ood's GradNorm on uniform noise: 66.53 ± 55.16 [66.2, 66.9]);
    it shows summary.csv's interval of the mean over seeds, as every other table does."""
    from types import SimpleNamespace

    from oodbench.benchmark.reporting.tables import per_set

    df = _table({"a": {"auroc": 0.5}})
    df.loc[(df["test_set"] == "setC") & (df["metric"] == "auroc"), "value"] = df["seed"].map({0: 0.97, 1: 0.03, 2: 1.0})
    res = SimpleNamespace(ok=df[df["status"] == "ok"])
    summ = summary.summarise(df)
    tab = per_set(res, "auroc", summ)
    lo, hi = tab.loc[("a", "setC"), ["lo", "hi"]]
    r = _row(summ, "a", "setC")
    assert (lo, hi) == (r["ci_low"], r["ci_high"]) and hi - lo > 0.5
    assert per_set(res, "auroc")[["lo", "hi"]].isna().all().all()  # no summary, no interval
