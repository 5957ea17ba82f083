"""Checking detectors end to end: the contract on the separable problem, then (with a suite) their
metrics against the stored baseline. :func:`check_detector` is the Python entry point (it raises
``AssertionError`` listing every failed check, like scikit-learn's ``check_estimator``); :func:`main`
is ``oodbench check``."""
from __future__ import annotations

import sys
import time

from oodbench.benchmark.tools.check import baseline as baseline_mod
from oodbench.benchmark.tools.check.baseline import FPR_TOLERANCE, TOLERANCE
from oodbench.benchmark.tools.check.contract import check_contract
from oodbench.benchmark.tools.check.result import CheckResult, describe


def resolve(detector, name: str | None = None) -> tuple[str, type]:
    """(registered name, class) for a class, an instance, a registered name or ``module:Class``; a class
    that is not registered yet is registered (under ``name``, its ``name`` or the spec)."""
    from oodbench.adapters import registry

    spec = None
    if isinstance(detector, str):
        if ":" in detector:
            spec = detector
            detector = registry.load_object(detector)
        else:
            return detector, registry.get(detector)
    cls = detector if isinstance(detector, type) else type(detector)
    known = {n for n in registry.names() if registry.get(n) is cls}
    if name is None and known:
        return sorted(known)[0], cls
    n = name or getattr(cls, "name", "") or spec or f"{cls.__module__}:{cls.__qualname__}"
    if n not in known:
        registry.register(n)(cls)
    return n, cls


def check_detectors(detectors, suite=None, baseline=None, tolerance=TOLERANCE, fpr_tolerance=FPR_TOLERANCE,
                    update=False, seeds=(0,), data_dir=None, cache_dir=None, threads=1, name=None,
                    problem=None, say=None, skip_expensive=False) -> list[CheckResult]:
    """The contract of each detector (on ``problem``, default the separable problem), then, with
    ``suite``, the baseline comparison of those that passed (:func:`.baseline.check_on_suite`)."""
    results = []
    for d in detectors:
        t0 = time.perf_counter()
        try:
            n, cls = resolve(d, name)
        except Exception as e:
            r = CheckResult(str(d))
            r.add("import", "fail", describe(e))
            results.append(r)
            continue
        r = check_contract(cls, n, problem, skip_expensive=skip_expensive)
        r.seconds = time.perf_counter() - t0
        results.append(r)
        if say:
            say(f"contract {n}: {'passed' if r.passed else 'FAILED'} ({r.seconds:.1f} s)")
    if suite:
        baseline_mod.check_on_suite(results, suite, baseline, tolerance, fpr_tolerance, update, seeds, data_dir,
                                    cache_dir, threads, say)
    return results


def check_detector(detector, suite: str | None = None, *, baseline=None, tolerance: float = TOLERANCE,
                   fpr_tolerance: float = FPR_TOLERANCE, update_baseline: bool = False, seeds=(0,), data_dir=None,
                   cache_dir=None, threads: int | None = 1, name: str | None = None, raise_on_fail: bool = True,
                   problem=None) -> CheckResult:
    """Check one detector (class, instance, registered name or ``"module:Class"``).

    Raises ``AssertionError`` listing every failed check (with ``raise_on_fail``, the default), like
    scikit-learn's ``check_estimator``; returns the :class:`CheckResult` otherwise."""
    res = check_detectors([detector], suite, baseline, tolerance, fpr_tolerance, update_baseline, seeds, data_dir,
                          cache_dir, threads, name, problem)[0]
    if raise_on_fail and not res.passed:
        raise AssertionError(f"{res.detector} failed oodbench check:\n" +
                             "\n".join(f"- {f.check}: {f.message}" for f in res.failures))
    return res


def main(a) -> int:
    """``oodbench check`` (arguments from :mod:`oodbench.benchmark.cli.check`); 1 when any detector failed."""
    from oodbench.adapters import registry

    if a.all:
        targets = registry.names()
    elif a.detector:
        targets = []
        for d in a.detector:
            targets += [d] if ":" in d else registry.resolve([d])
    else:
        print("name a detector (module:Class or a registered name/pattern), or pass --all", file=sys.stderr)
        return 2
    for mod, why in sorted(registry.unavailable().items()):
        print(f"(not available: {mod}: {why})")
    tol = TOLERANCE if a.tolerance is None else a.tolerance
    fpr_tol = FPR_TOLERANCE if a.fpr_tolerance is None else a.fpr_tolerance
    results = check_detectors(targets, a.suite, a.baseline, tol, fpr_tol, a.update_baseline, a.seeds, a.data_dir,
                              a.cache_dir, a.threads, a.name, say=lambda m: print(m, flush=True),
                              skip_expensive=a.skip_expensive)
    print()
    for r in results:
        print(r.summary())
    bad = [r.detector for r in results if not r.passed]
    print(f"\n{len(results) - len(bad)} of {len(results)} passed" + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0
