"""`oodbench check`: the contract passes for built-in detectors and fails, saying why, for broken ones;
every registered detector meets it (one test per detector and check); the baseline comparison stores,
passes and fails on a drop beyond the tolerance."""
from unittest import SkipTest

import numpy as np
import pandas as pd
import pytest

from oodbench.adapters import registry
from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.benchmark.tools import check
from oodbench.benchmark.tools import separable
from oodbench.benchmark.tools.check import baseline, check_detector, detector_checks, parametrize_with_checks


@pytest.fixture(autouse=True)
def _registrations_stay_here():
    """``check_detector`` registers the classes it checks; each test's registrations end with it."""
    with registry.REGISTRY.scoped():
        yield


@pytest.fixture(scope="module")
def sep():
    return separable.problem()


class _MSP(Detector):
    """Max-softmax on cached logits, higher = more OOD."""

    consumes = frozenset({"logits"})
    info = DetectorInfo(library="tests")

    def fit(self, fit, cal=None):
        return self

    def score(self, rep):
        z = rep.logits.astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        return -(p / p.sum(1, keepdims=True)).max(1)


class WrongSign(_MSP):
    def score(self, rep):
        return -super().score(rep)


class ReturnsNaN(_MSP):
    def score(self, rep):
        s = super().score(rep)
        s[::7] = np.nan
        return s


class Nondeterministic(_MSP):
    def score(self, rep):
        return super().score(rep) + np.random.default_rng().normal(0, 1e-3, len(rep))


class NoMetadata(_MSP):
    consumes = frozenset()


@pytest.mark.parametrize("name", ["pytorch_ood.msp", "pytorch_ood.energy", "pytorch_ood.mahalanobis"])
def test_builtin_detectors_pass(name, sep):
    res = check_detector(name, problem=sep)
    assert res.passed
    assert {f.check for f in res.findings} >= {"metadata", "constructor", "fit/score on CPU", "output", "no NaN",
                                               "sign", "determinism"}


def test_good_third_party_class_passes(sep):
    assert check_detector(_MSP, problem=sep, name="tests.msp").passed


@pytest.mark.parametrize("cls, check_name, why", [
    (WrongSign, "sign", "inverted"),
    (ReturnsNaN, "no NaN", "NaN scores"),
    (Nondeterministic, "determinism", "differs"),
    (NoMetadata, "metadata", "consumes"),
])
def test_broken_detectors_fail_saying_why(cls, check_name, why, sep):
    with pytest.raises(AssertionError, match=why) as e:
        check_detector(cls, problem=sep, name=f"tests.{cls.__name__}")
    assert check_name in str(e.value)
    res = check_detector(cls, problem=sep, name=f"tests.{cls.__name__}", raise_on_fail=False)
    assert not res.passed and {f.check for f in res.failures} == {check_name}


@parametrize_with_checks(registry.names(), skip_expensive=True)
def test_registered_detectors_meet_the_contract(detector, check):
    """Every registered detector, one test per check (expensive ones and those whose library is not
    installed are skipped with the reason; `oodbench check NAME` runs them)."""
    check(detector)


def test_parametrize_with_checks_one_case_per_check(sep):
    class Plain(_MSP):
        pass

    class NaNs(ReturnsNaN):
        pass

    cases = parametrize_with_checks([Plain, NaNs], problem=sep).args[1]
    ids = [c.id for c in cases]
    assert "Plain-check_sign" in ids and "NaNs-check_no_nan" in ids and "Plain-check_p_value" not in ids
    run = {c.id: c.values[1] for c in cases}
    run["Plain-check_sign"](Plain)  # passes
    with pytest.raises(AssertionError, match="NaN scores"):
        run["NaNs-check_no_nan"](NaNs)
    with pytest.raises(SkipTest, match="see 'no NaN'"):  # an earlier check failed: skipped, saying which
        run["NaNs-check_sign"](NaNs)


def test_checks_skip_what_cannot_run_here():
    unavailable = [n for n in registry.names() if registry.get(n).info.extra.get("available") is False]
    expensive = [n for n in registry.names() if registry.get(n).info.expensive and registry.get(n).info.cpu_ok
                 and n not in unavailable]
    for names, why in ((unavailable, "not installed"), (expensive, "expensive=True")):
        for n in names[:1]:
            checks = dict(detector_checks(registry.get(n), skip_expensive=True))
            assert set(checks) == {"metadata", "constructor", "clone", "fit/score on CPU"}
            with pytest.raises(SkipTest, match=why):
                checks["fit/score on CPU"](registry.get(n))


def test_checks_of_one_detector_share_one_fit(sep):
    class Counted(_MSP):
        fits = 0

        def fit(self, fit, cal=None):
            type(self).fits += 1
            return self

    for _, run in detector_checks(Counted, sep):
        run(Counted)
    assert Counted.fits == 2  # once for all the checks, once more for the determinism check's refitted clone


def test_float32_scores_are_a_warning(sep):
    class Float32(_MSP):
        def score(self, rep):
            return super().score(rep).astype(np.float32)

    res = check_detector(Float32, problem=sep, name="tests.float32")
    assert res.passed and [f.check for f in res.findings if f.status == "warn"] == ["output", "output"]
    assert "returned float32; the contract is float64" in res.findings[4].message


def test_cuda_calls_are_caught(sep):
    import torch

    class UsesCuda(_MSP):
        def score(self, rep):
            return super().score(rep) + torch.zeros(1).cuda().item()

    res = check_detector(UsesCuda, problem=sep, name="tests.cuda", raise_on_fail=False)
    assert "fit/score on CPU" in [f.check for f in res.failures]
    assert ".cuda()" in res.failures[0].message


def test_compare_with_baseline(tmp_path):
    base = tmp_path / "b.csv"
    measured = {("near", "auroc"): 0.90, ("near", "fpr95"): 0.30, ("far", "auroc"): 0.95}
    baseline.update_baseline(base, "s", "m", {"det": measured, "other": {("near", "auroc"): 0.99}},
                          {"det": ("lib", "1")}, 1)
    df = baseline.read_baseline(base)
    assert len(df) == 4 and list(df.columns) == baseline.BASELINE_COLUMNS
    res = check.CheckResult("det")
    baseline.compare(res, measured, df, "s", "m", 0.02, 0.05)
    assert res.passed, res.summary()
    res = check.CheckResult("det")
    baseline.compare(res, {**measured, ("near", "auroc"): 0.85, ("near", "fpr95"): 0.40}, df, "s", "m", 0.02, 0.05)
    assert not res.passed
    msg = res.failures[0].message
    assert "near auroc dropped from 0.9000 to 0.8500 (tolerance 0.020)" in msg and "fpr95 rose" in msg
    res = check.CheckResult("new")
    baseline.compare(res, {("near", "auroc"): 0.95}, df, "s", "m", 0.02, 0.05)
    assert res.passed and "rank 2 of 3" in res.findings[0].message
    # updating one detector keeps the others
    baseline.update_baseline(base, "s", "m", {"det": {("near", "auroc"): 0.5}}, {}, 1)
    df = baseline.read_baseline(base)
    assert set(df["detector"]) == {"det", "other"} and len(df) == 2


def test_check_on_suite_with_baseline(data_dir, cache_dir, mnist_smoke, tmp_path):
    base = tmp_path / "mnist-smoke.csv"
    kw = dict(suite="mnist-smoke", baseline=base, data_dir=data_dir, cache_dir=cache_dir)
    res = check_detector("pytorch_ood.energy", update_baseline=True, **kw)
    df = pd.read_csv(base)
    assert set(df["group"]) >= {"near", "far"} and set(df["metric"]) >= {"auroc", "fpr95"}
    res = check_detector("pytorch_ood.energy", **kw)
    assert "within tolerance" in [f for f in res.findings if f.check == "baseline"][0].message
    # a stored baseline that the detector cannot reach: exit non-zero with the reason
    df.loc[df["metric"] == "auroc", "value"] = 0.999
    df.to_csv(base, index=False)
    with pytest.raises(AssertionError, match="auroc dropped"):
        check_detector("pytorch_ood.energy", **kw)


def test_cli_check_exit_codes(tmp_path, monkeypatch, capsys):
    from oodbench.benchmark import cli

    mod = tmp_path / "broken_det_mod.py"
    mod.write_text(
        "import numpy as np\n"
        "from oodbench.adapters import Detector, DetectorInfo\n"
        "class Det(Detector):\n"
        "    consumes = frozenset({'logits'})\n"
        "    info = DetectorInfo(library='mine')\n"
        "    def score(self, rep):\n"
        "        return rep.logits.max(1).astype(np.float64)  # a confidence: wrong sign\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["check", "broken_det_mod:Det", "--name", "tests.cli_wrong"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "inverted" in out
    assert cli.main(["check", "pytorch_ood.maxlogit"]) == 0


README_DETECTOR = '''
import numpy as np
from oodbench.adapters import Detector, DetectorInfo


class Margin(Detector):
    consumes = frozenset({"logits"})
    info = DetectorInfo(library="mine", paper="", needs_fit=False)

    def __init__(self, k: int = 2):
        self.k = k

    def fit(self, fit, cal=None):
        return self

    def score(self, rep):
        top = np.sort(rep.logits, axis=1)[:, -self.k:]
        return -(top[:, -1] - top[:, 0]).astype(np.float64)
'''


def test_entry_point_plugin_is_listed_and_checked(tmp_path):
    """A third-party package registers through the `oodbench.detectors` entry point, then appears in
    `oodbench list` and passes `oodbench check` by name (the README's path)."""
    import os
    import subprocess
    import sys

    (tmp_path / "my_package").mkdir()
    (tmp_path / "my_package" / "__init__.py").write_text("")
    (tmp_path / "my_package" / "margin.py").write_text(README_DETECTOR)
    info = tmp_path / "my_package-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text('[oodbench.detectors]\nmy.maxlogit_margin = my_package.margin:Margin\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(baseline.REPO)])}
    code = ("import sys; from oodbench.benchmark import cli; cli.main(['list']); "
            "sys.exit(cli.main(['check', 'my.maxlogit_margin']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "my.maxlogit_margin" in r.stdout and "mine" in r.stdout
    assert "my.maxlogit_margin: PASSED" in r.stdout
