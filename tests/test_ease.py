"""Ease-of-use measurements and code-quality facts: each measuring function on known inputs."""
import json
import sys
import textwrap

import numpy as np
import pytest

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.benchmark.tools.ease import detectors, environments, install, lines, measure, probes
from oodbench.benchmark.tools import quality
from oodbench.benchmark.tools import separable


@pytest.fixture(scope="module")
def sep():
    return separable.problem(n_per_class=20)


def test_quality_counts_a_known_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Package doc."""\n__all__ = ["A"]\n')
    (pkg / "mod.py").write_text(textwrap.dedent('''
        import torch

        # a comment
        class A:
            """Documented."""

            def run(self, x: int) -> int:
                return x.cuda()

            def other(self, y):
                try:
                    pass
                except:
                    print("x")


        def f(a, b: int):
            """Doc."""
            return "cuda:0"


        def _private():
            pass
        '''))
    (pkg / "tests" / "test_mod.py").write_text("def test_x():\n    pass\n")
    q = quality.analyse(pkg, "pkg")
    assert q["modules"] == 3 and q["test_files_shipped"] == 1
    assert q["public_classes"] == 1 and q["public_functions"] == 2  # f + tests' test_x
    assert q["public_methods"] == 2
    assert q["hardcoded_cuda_calls"] == 1 and q["cuda_string_literals"] == 1
    assert q["bare_excepts"] == 1 and q["print_calls"] == 1 and q["modules_with_all"] == 1
    # docstrings: 3 modules (1 has one) + class A (yes) + run, other (no) + f (yes) + test_x (no)
    assert q["docstring_items"] == 8 and q["docstrings"] == 3
    # hints: run x+return (2/2), other y+return (0/2), f a,b+return (1/3), test_x return (0/1)
    assert q["hint_slots"] == 8 and q["hints"] == 3


def test_dist_facts_of_pytorch_ood():
    f = install.dist_facts("pytorch-ood", "pytorch_ood")
    assert f["installed"] and f["version"] == "0.4.0"
    assert {"torch", "torchvision", "scipy", "numpy"} <= set(f["declared_dependencies"])
    assert "scikit-learn" in f["extra_only_dependencies"]
    assert "sklearn" in f["extra_only_imports"]  # KNN / ViM need it; only the extra declares it
    assert "pytorch-ood" in f["added_packages_list"] and "torch" not in f["added_packages_list"]
    assert f["added_mb"] > 0


def test_dist_facts_of_oodbench_count_extras_and_backports_as_declared():
    """``ray`` is declared by the ``ray`` extra, ``tomli`` for Python < 3.11 only: neither is undeclared."""
    f = install.dist_facts("oodbench", "oodbench")
    assert f["installed"]
    assert not {"ray", "tomli", "tomli (not installed)"} & set(f["undeclared_imports"]), f["undeclared_imports"]
    assert "ray" in f["extra_only_dependencies"]


def test_dist_facts_runs_with_the_standard_library_only():
    """The script form is what runs inside OpenOOD's environment."""
    import subprocess

    r = subprocess.run([sys.executable, "-I", "-S", install.__file__, "--dist-facts", "nonexistent-dist", "x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["installed"] is False


def test_integration_lines():
    from oodbench.adapters import registry

    src = '"""Doc\n\nmore."""\n\n# comment\nx = 1\n\ndef f():\n    """Doc."""\n    return x\n'
    assert lines.code_lines(src) == 3
    msp = registry.get("pytorch_ood.msp")
    assert lines.detector_lines(msp, "msp") >= 1
    assert detectors.required_args(msp) == ["model"]


class _Base(Detector):
    consumes = frozenset({"logits"})
    info = DetectorInfo(library="tests")

    def score(self, rep):
        return -rep.logits.max(1).astype(np.float64)


class _Checks(_Base):
    def score(self, rep):
        if np.isnan(rep.logits).any():
            raise ValueError("input contains NaN")
        if rep.logits.dtype != np.float32:
            raise TypeError(f"expected float32 logits, got {rep.logits.dtype}")
        return super().score(rep)


class _Crashes(_Base):
    def score(self, rep):
        if len(rep) == 1 or np.isnan(rep.logits).any():
            raise IndexError("index 3 is out of bounds")
        return super().score(rep)


def test_probes_classify_outcomes(sep):
    good = probes.probe_detector(_Base, sep)
    assert good["nan_input"]["outcome"] == "silent garbage"
    assert {good[k]["outcome"] for k in ("constant_images", "batch_of_one", "wrong_dtype")} == {"ok"}
    assert good["network_attempts"] == []
    checks = probes.probe_detector(_Checks, sep)
    assert checks["nan_input"]["outcome"] == "clear error" and "NaN" in checks["nan_input"]["detail"]
    assert checks["wrong_dtype"]["outcome"] == "clear error"
    crash = probes.probe_detector(_Crashes, sep)
    assert crash["nan_input"]["outcome"] == "crash" and crash["batch_of_one"]["outcome"] == "crash"


def test_classify_shapes_and_values():
    assert probes.classify(lambda: np.zeros(3), 4, "batch_of_one")["outcome"] == "silent garbage"
    assert probes.classify(lambda: np.array([np.inf, 0.0]), 2, "constant_images")["outcome"] == "silent garbage"
    assert probes.classify(lambda: np.zeros(2), 2, "wrong_dtype")["outcome"] == "ok"


def test_import_time_in_a_fresh_interpreter():
    t = environments.import_times(sys.executable, "import json", runs=1)
    assert t["median_s"] is not None and t["median_s"] >= 0 and t["torch_median_s"] > 0 and not t["error"]


def test_facts_file_has_a_source_for_every_fact():
    facts = json.loads(measure.FACTS.read_text())
    assert set(facts) >= {"pytorch-ood", "openood", "oodbench-lab"}
    for lib, items in facts.items():
        for f in items:
            assert f["fact"] and f["source"], (lib, f)


def test_costs_from_results(tmp_path):
    rec = {"suite": "s", "detectors": {"d": {"0": {"fit_seconds": 1.0, "score_seconds": 2.0, "throughput_per_s": 10.0,
                                                   "peak_python_mb": 3.0, "info": {"library": "x"}},
                                             "1": {"fit_seconds": 3.0, "score_seconds": 2.0, "throughput_per_s": 30.0,
                                                   "peak_python_mb": 5.0, "info": {"library": "x"}}}}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "run.json").write_text(json.dumps(rec))
    c = measure.costs_from_results(tmp_path)
    assert c["d"]["s"]["fit_seconds"] == 2.0 and c["d"]["s"]["throughput_per_s"] == 20.0
