"""Regression checks for detectors, in the spirit of scikit-learn's ``check_estimator``.

From Python (e.g. in your own pytest file)::

    from oodbench.benchmark.tools.check import check_detector, parametrize_with_checks
    check_detector(MyDetector)                          # contract only; raises AssertionError saying why
    check_detector(MyDetector, suite="mnist-smoke")     # + metrics against results/baselines/mnist-smoke.csv

    @parametrize_with_checks([MyDetector])              # one pytest test per (detector, check)
    def test_contract(detector, check):
        check(detector)

From the command line::

    oodbench check my_module:MyDetector --suite mnist-smoke [--update-baseline]
    oodbench check --all --suite mnist-smoke            # every registered detector

The parts:

* :mod:`.contract` — one ``check_*`` function per property of the contract (metadata, constructor,
  clone, fit/score on CPU, output, no NaN, sign, determinism, p_value), on the trivially separable
  problem of :mod:`oodbench.benchmark.tools.separable`; :func:`~.contract.detector_checks` yields them;
* :mod:`.trial` — the detector constructed, fitted and scored once, shared by its checks;
* :mod:`.parametrize` — :func:`parametrize_with_checks`, the checks as pytest tests;
* :mod:`.baseline` — the suite run compared with ``results/baselines/<suite>.csv``;
* :mod:`.result` — :class:`CheckResult`, what ``oodbench check`` prints;
* :mod:`.run` — :func:`check_detector`, :func:`check_detectors` and the command (:func:`main`).

Detectors whose ``info.extra["available"]`` is False (an optional library not installed here), that declare
``cpu_ok=False`` without a GPU present, or (with ``skip_expensive``) ``expensive=True`` get only the metadata,
constructor and clone checks; the rest is reported as ``skip``.
"""
from oodbench.benchmark.tools.check.contract import check_contract, detector_checks
from oodbench.benchmark.tools.check.parametrize import parametrize_with_checks
from oodbench.benchmark.tools.check.result import CheckResult, Finding
from oodbench.benchmark.tools.check.run import check_detector, check_detectors, main, resolve

__all__ = ["CheckResult", "Finding", "check_contract", "check_detector", "check_detectors", "detector_checks",
           "main", "parametrize_with_checks", "resolve"]
