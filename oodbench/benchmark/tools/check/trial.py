"""One detector class run once on the separable problem, shared by all the contract checks.

The contract (:mod:`.contract`) has one check per property; most of them need the same fitted detector
and the same scores. A :class:`Trial` constructs, fits and scores a detector class once per problem and
keeps each outcome (or the exception it raised), so a pytest run over every registered detector fits
each one once (twice: the determinism check refits a clone), whatever the number of checks. A check
that needs an outcome an earlier step failed to produce raises :class:`Blocked` (a skip; the check that
judges that step reports the failure).
"""
from __future__ import annotations

import functools
from unittest import SkipTest

import numpy as np

from oodbench.adapters.base import DetectorError, check_scores
from oodbench.benchmark.tools.guards import cpu_only, no_network

#: the separable problem's test splits and how messages name them
ROLES = {"id_test": "ID", "ood": "OOD"}


class Blocked(SkipTest):
    """The check needs something an earlier check found broken (that check reports the reason)."""


def as_array(raw) -> np.ndarray:
    """A detector's raw output as a numpy array (a torch tensor is moved to the CPU)."""
    import torch

    return raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)


def numeric_scores(raw, n: int, who: str) -> np.ndarray:
    """:func:`~oodbench.adapters.base.check_scores` without its NaN test: raises ``DetectorError`` for a
    non-numeric dtype or a shape other than ``(n,)``; returns float64 scores with any NaN kept, for the
    callers that judge NaN scores themselves (the ``no NaN`` check, the ease probes)."""
    a = as_array(raw)
    nan = np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    out = check_scores(np.where(nan, 0, a), n, who)
    out[nan] = np.nan
    return out


@functools.lru_cache(maxsize=None)
def default_problem():
    """The separable problem the checks use unless given one (built once per process)."""
    from oodbench.benchmark.tools import separable

    return separable.problem()


class Trial:
    """A detector class run once on a problem; the checks read the outcomes from here. Each step (build,
    fit, each scoring) runs at most once; an exception it raised is raised again to every caller."""

    def __init__(self, cls, problem):
        self.cls, self.problem = cls, problem
        self.connections: list = []  # network connections attempted by the constructor
        self._memo: dict = {}

    def _once(self, key, fn):
        if key not in self._memo:
            try:
                self._memo[key] = (True, fn())
            except Exception as e:  # noqa: BLE001 - kept for the check that judges it
                self._memo[key] = (False, e)
        ok, value = self._memo[key]
        if not ok:
            raise value
        return value

    def n(self, role: str) -> int:
        return len(getattr(self.problem, role))

    def construct(self):
        """The detector with its default arguments, built with network access refused."""
        def build():
            with no_network(self.connections):
                return self.cls()
        return self._once("construct", build)

    def detector(self):
        """:meth:`construct`, or :class:`Blocked` when the constructor failed."""
        try:
            return self.construct()
        except Exception:
            raise Blocked("the detector could not be constructed (see 'constructor')") from None

    def fit(self):
        """``(detector, what fit returned)``, fitted on the problem's ``fit`` / ``cal`` splits, on CPU."""
        det = self.detector()

        def run():
            with cpu_only():
                return det, det.fit(self.problem.reps("fit"), self.problem.reps("cal"))
        return self._once("fit", run)

    def fitted(self):
        """The fitted detector, or :class:`Blocked` when fitting failed."""
        try:
            return self.fit()[0]
        except Blocked:
            raise
        except Exception:
            raise Blocked("fit failed (see 'fit/score on CPU')") from None

    def raw(self, role: str, call: int = 1):
        """What ``score`` returned for ``role`` (its ``call``-th time), on CPU."""
        det = self.fitted()

        def run():
            with cpu_only():
                return det.score(self.problem.reps(role))
        return self._once(("score", role, call), run)

    def numeric(self, role: str) -> np.ndarray:
        """Float64 scores of ``role``, NaN kept (:func:`numeric_scores`), or :class:`Blocked`."""
        try:
            return numeric_scores(self.raw(role), self.n(role), f"score({ROLES[role]})")
        except Blocked:
            raise
        except Exception:
            raise Blocked(f"score({ROLES[role]}) gave no numeric scores of the right shape (see 'output')") from None

    def scores(self, role: str) -> np.ndarray:
        """Valid float64 scores of ``role`` (:func:`check_scores`), or :class:`Blocked`."""
        try:
            return check_scores(self.numeric(role), self.n(role), f"score({ROLES[role]})")
        except DetectorError:
            raise Blocked(f"score({ROLES[role]}) gave NaN scores (see 'no NaN')") from None

    def refitted_clone(self):
        """What a clone of the fitted detector, fitted again, returns for the ID test split, on CPU."""
        det = self.fitted()

        def run():
            twin = det.clone()
            with cpu_only():
                twin.fit(self.problem.reps("fit"), self.problem.reps("cal"))
                return twin.score(self.problem.reps("id_test"))
        return self._once("refitted clone", run)


def trial(cls, problem=None) -> Trial:
    """The shared :class:`Trial` of ``cls`` on ``problem`` (default: :func:`default_problem`); it lives as
    long as the problem does, so each detector class is fitted once per problem."""
    problem = default_problem() if problem is None else problem
    trials = vars(problem).setdefault("_contract_trials", {})
    if cls not in trials:
        trials[cls] = Trial(cls, problem)
    return trials[cls]
