"""`oodbench analyse stattest` on mnist-smoke: every section computed, written and explained.

One small end-to-end run (two reference sizes, two repeats, 100 images per scored set, two shifts at
two severities) is shared by the tests of this module."""
import json
import re

import numpy as np
import pytest

SIZES = (15, 1000)


@pytest.fixture(scope="module")
def analysed(data_dir, cache_dir, tmp_path_factory):
    from oodbench.benchmark.cli import main

    out = tmp_path_factory.mktemp("analysis")
    rc = main(["analyse", "stattest", "--suite", "mnist-smoke", "--ref-sizes", *map(str, SIZES), "--repeats", "2",
               "--max-eval", "100", "--severities", "1", "5", "--shifts", "rotate", "noise", "--threads", "1",
               "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--out", str(out), "-q"])
    assert rc == 0
    return out, json.loads((out / "stattest.json").read_text())


def test_outputs_and_findings(analysed):
    out, res = analysed
    md = (out / "stattest.md").read_text()
    # the recorded command names the priority it ran at (`nice -n N` when the process was niced)
    assert re.search(r"Command: `(nice -n \d+ )?oodbench analyse stattest --suite mnist-smoke", md), md[:300]
    for title in ("Calibration", "Which layers decide", "reference size", "shift severity", "against alpha", "Cost"):
        assert title in md
    assert md.count("**What it shows.**") == 6
    # the recorded command reruns the analysis: the CLI parses it
    import shlex

    from oodbench.benchmark.cli import build_parser

    argv = shlex.split(res["command"])
    argv = argv[argv.index("oodbench") + 1:]
    a = build_parser().parse_args(argv)
    assert (a.suite, a.ref_sizes, a.repeats, a.max_eval) == ("mnist-smoke", list(SIZES), 2, 100)
    for key in ("calibration", "layers", "reference_size", "severity", "alpha", "cost"):
        png = out / f"stattest_{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
        assert f"]({png.name})" in md
        assert res["findings"][key]


def test_calibration_per_class(analysed):
    _, res = analysed
    cal = res["calibration"]
    assert cal["core_matches_detector"]  # the per-class decomposition reproduces det.p_value
    assert len(cal["per_class"]) == 10
    for r in cal["per_class"]:
        for which in ("own", "final"):
            assert 0 <= r[which]["ks_p"] <= 1 and 0 <= r[which]["ks_D"] <= 1
            assert np.all(np.diff(r[which]["qq"]) >= 0)
        # P = max_c P_c >= P_y: the final p-value rejects no more than the own-class one
        assert r["final"]["false_alarm"] <= r["own"]["false_alarm"] + 1e-12
    assert cal["pooled"]["own"]["n"] == res["splits"]["id_test"]


def test_layer_shares(analysed):
    _, res = analysed
    L = res["layers_order"]
    assert len(L) >= 2
    for name, v in res["layers"].items():
        if v["dominant_share"] is not None:
            assert v["rejected"] > 0
            assert sum(v["dominant_share"]) == pytest.approx(1.0)
            assert sum(v["mean_term_share"]) == pytest.approx(1.0)
            assert len(v["dominant_share"]) == len(L)
            assert all(0 <= x <= 1 for x in v["lost_without"] + v["only_with"])
        # the test restricted to all layers, recalibrated, is the detector itself
        assert v["subset_test_matches_detector"], name
        assert len(v["alone_rate"]) == len(v["without_rate"]) == len(L)
    assert set(res["layers"]) == {"id", *res["groups"]}


def test_reference_sweep_caps_and_repeats(analysed):
    _, res = analysed
    ref = res["reference_size"]
    counts = ref["fit_per_class"]
    rows = {tuple(r["requested"]): r for r in ref["rows"]}
    small, whole = rows[(15,)], rows[(1000,)]
    assert len(small["runs"]) == 2 and not small["whole_split"]
    assert small["effective_per_class"] == [min(15, c) for c in counts]
    assert whole["whole_split"] and whole["capped"] and len(whole["runs"]) == 2
    assert whole["runs"][0]["auroc"] == whole["runs"][1]["auroc"]  # deterministic
    assert whole["effective_per_class"] == counts
    for r in ref["rows"]:
        for run in r["runs"]:
            assert set(run["auroc"]) == set(ref["sets"])
            assert 0 <= run["false_alarm"] <= 1
            assert run["fit_s"] > 0 and run["score_ms_per_1000"] > 0 and run["model_mib"] > 0
    # the fitted reference grows with the number of reference samples
    assert small["summary"]["model_mib"]["mean"] < whole["summary"]["model_mib"]["mean"]
    assert not any(g == "covariate" for n, g in res["groups"].items() if n in ref["sets"])


def test_severity_and_alpha(analysed):
    _, res = analysed
    sev = res["severity"]
    assert set(sev["shifts"]) == {"rotate", "noise"}
    for rows in sev["shifts"].values():
        assert [r["severity"] for r in rows] == [1, 5]
        for r in rows:
            assert 0 <= r["rejection"] <= 1 and 0 <= r["auroc"] <= 1 and 0 <= r["accuracy"] <= 1
    ac = res["alpha_curves"]
    for curve in ac["rates"].values():
        assert len(curve) == len(ac["alphas"]) and np.all(np.diff(curve) >= 0)


def test_subsample_pairs_and_reference_subset(mnist_smoke):
    from oodbench.benchmark.analysis.stattest_analysis import subsample
    from oodbench.benchmark.analysis.sweeps import reference_subset

    data, _ = mnist_smoke
    a, b = subsample(data.id_test, 50, 0), subsample(data.id_test, 50, 0)
    assert a.checksum == b.checksum and len(a) == 50
    assert subsample(data.id_test, 10 ** 6, 0) is data.id_test
    idx = reference_subset(data.fit, 30, np.random.default_rng(0))
    got = np.bincount(data.fit.y[idx], minlength=10)
    assert np.array_equal(got, np.minimum(np.bincount(data.fit.y, minlength=10), 30))
