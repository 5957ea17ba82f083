"""The contract as pytest tests: one test per (detector, check), like scikit-learn's
``parametrize_with_checks``.

In a plug-in's test file::

    from oodbench.benchmark.tools.check import parametrize_with_checks

    @parametrize_with_checks([Margin])
    def test_contract(detector, check):
        check(detector)

Each test is named ``<detector>-<check function>`` (``my.margin-check_sign``); a failed check fails its
test with the reason, a check that cannot run here (an optional library missing, a GPU needed, an
expensive detector with ``skip_expensive=True``, an earlier check failed) is skipped with the reason,
and a warning of the contract (:class:`~.contract.ContractWarning`) shows in pytest's warnings summary.
The checks of one detector share one fitted instance (:mod:`.trial`), so each detector is fitted once
per test session.
"""
from __future__ import annotations

from oodbench.benchmark.tools.check.contract import KnownFailure, detector_checks


def _label(detector) -> tuple[str, type]:
    """(name for test ids, class) of a registered name or a class."""
    if isinstance(detector, str):
        from oodbench.adapters import registry

        return detector, registry.get(detector)
    return vars(detector).get("name") or detector.__name__, detector  # its own name, not a parent's


def expected_failure(check):
    """Run ``check(detector)`` turning a documented failure into pytest's ``xfail``."""
    def run(detector):
        import pytest

        try:
            return check(detector)
        except KnownFailure as e:
            pytest.xfail(str(e))
    return run


def parametrize_with_checks(detectors, *, problem=None, skip_expensive: bool = False):
    """A ``pytest.mark.parametrize("detector, check", ...)`` decorator with one case per check of each
    detector (classes or registered names) from :func:`~.contract.detector_checks`."""
    import pytest

    cases = []
    for d in detectors:
        name, cls = _label(d)
        for _, check in detector_checks(cls, problem, skip_expensive):
            cases.append(pytest.param(cls, expected_failure(check), id=f"{name}-{check.func.__name__}"))
    return pytest.mark.parametrize("detector, check", cases)
