"""The detector contract as one check per property, in the manner of scikit-learn's
``sklearn.utils.estimator_checks``.

Every ``check_*(detector, problem=None)`` takes a detector *class*, runs it (where it needs to) on the
trivially separable problem of :mod:`oodbench.benchmark.tools.separable`, on CPU, and

* returns a short note when the property holds;
* raises ``AssertionError`` saying why when it does not;
* raises ``unittest.SkipTest`` when it cannot be checked here (pytest reports a skip with the reason);
  :class:`Blocked` when an earlier check already failed (a detector that cannot be fitted has no scores
  to judge), :class:`KnownFailure` when the detector documents why it fails (like pytest's ``xfail``);
* warns (:class:`ContractWarning`) about what is allowed but not recommended (float32 scores, say).

The properties, under the names ``oodbench check`` prints:

* ``metadata`` — ``info`` is a :class:`~oodbench.adapters.base.DetectorInfo` naming a library;
  ``consumes`` is a non-empty subset of ``logits, features, taps, model, images``; ``fit`` and ``score``
  exist. When this fails, no other check is run.
* ``constructor`` — builds with its default arguments, without opening a network connection.
* ``clone`` — ``get_params()`` / ``clone()`` give a distinct detector with the same parameters.
* ``fit/score on CPU`` — ``fit`` and ``score`` never call ``.cuda()``; ``fit`` returns ``self``.
* ``output`` — ``score`` returns a numeric array of shape ``(n,)`` (float64 and finite expected).
* ``no NaN`` — no NaN score.
* ``sign`` — AUROC > 0.95 with OOD as positive (higher = more OOD); < 0.05 means inverted scores.
  A reason documented in ``info.extra["separable_toy"]`` turns a failure into a :class:`KnownFailure`.
* ``determinism`` — scoring twice, and fitting a clone and scoring, give the same scores
  (``rtol=1e-6, atol=1e-9``).
* ``p_value`` — for detectors with one: shape ``(n,)``, values in ``[0, 1]``.

The checks of one detector share one :class:`Trial`: the detector is constructed, fitted and scored once
per class and problem, whatever the number of checks that read the outcome. :func:`detector_checks`
yields the checks that apply to a detector (the run-based ones are replaced by one skip where the
detector cannot run here); :func:`~oodbench.benchmark.tools.check.parametrize.parametrize_with_checks` turns them into pytest tests.
"""
from __future__ import annotations

import functools
import warnings
from unittest import SkipTest

import numpy as np

from oodbench.adapters.base import CONSUMABLE, Detector, DetectorError, DetectorInfo, check_scores
from oodbench.benchmark.tools.check.result import CheckResult, Finding, describe
from oodbench.benchmark.tools.check.trial import ROLES, Blocked, as_array, numeric_scores, trial
from oodbench.adapters.cuda import CudaCall


class ContractWarning(UserWarning):
    """Allowed by the contract but not recommended (``oodbench check`` lists it as ``warn``)."""


class KnownFailure(SkipTest):
    """A failure the detector documents (``info.extra["separable_toy"]``), reported as a warning."""


def _fail_if(problems: list) -> None:
    if problems:
        raise AssertionError("; ".join(problems))


def gives_p_values(cls) -> bool:
    """Whether the detector has a ``p_value(rep)`` method (:meth:`Detector.gives_p_values`; a class that
    does not derive from ``Detector`` is asked whether it has one)."""
    klass = cls if isinstance(cls, type) else type(cls)
    if issubclass(klass, Detector):
        return klass.gives_p_values()
    return callable(getattr(klass, "p_value", None))


def _extra(cls) -> dict:
    info = getattr(cls, "info", None)
    return info.extra if isinstance(getattr(info, "extra", None), dict) else {}


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------
def _named(finding: str):
    """Give a check the name ``oodbench check`` reports it under (``fn.finding``)."""
    def deco(fn):
        fn.finding = finding
        return fn
    return deco


def metadata_problems(cls) -> list[str]:
    """What is wrong with the class's declarations (empty when nothing)."""
    info = getattr(cls, "info", None)
    consumes = set(getattr(cls, "consumes", ()) or ())
    probs = []
    if not isinstance(info, DetectorInfo):
        probs.append(f"`info` is {type(info).__name__}, expected oodbench.adapters.DetectorInfo")
    elif not info.library:
        probs.append("`info.library` is empty")
    if not consumes:
        probs.append("`consumes` is empty; declare what the detector needs, e.g. frozenset({'logits'})")
    elif not consumes <= CONSUMABLE:
        probs.append(f"`consumes` has {sorted(consumes - CONSUMABLE)}; allowed: {sorted(CONSUMABLE)}")
    for m in ("fit", "score"):
        if not callable(getattr(cls, m, None)):
            probs.append(f"no `{m}` method")
    return probs


@_named("metadata")
def check_metadata(detector, problem=None):
    """``info`` is a DetectorInfo naming a library, ``consumes`` a non-empty subset of the kinds of
    representation, and there are ``fit`` and ``score`` methods."""
    _fail_if(metadata_problems(detector))


@_named("constructor")
def check_constructor(detector, problem=None):
    """The detector builds with its default arguments, without opening a network connection."""
    t = trial(detector, problem)
    try:
        t.construct()
    except Exception as e:
        raise AssertionError(f"{detector.__name__}() with default arguments raised {describe(e)}") from None
    if t.connections:
        raise AssertionError(f"the constructor tried to open a network connection ({t.connections[0]})")


@_named("clone")
def check_clone(detector, problem=None):
    """``get_params()`` and ``clone()`` give a distinct detector with the same parameters."""
    det = trial(detector, problem).detector()
    try:
        params = det.get_params()
        twin = det.clone()
        same = twin is not det and twin.get_params().keys() == params.keys()
    except Exception as e:
        raise AssertionError(f"get_params() / clone() raised {describe(e)}") from None
    if not same:
        raise AssertionError("clone() did not give a distinct detector with the same parameters")


@_named("fit/score on CPU")
def check_fit_score_on_cpu(detector, problem=None):
    """``fit`` and ``score`` work on CPU: a ``.cuda()`` call fails the check; ``fit`` returns ``self``
    (a warning otherwise)."""
    t = trial(detector, problem)
    try:
        det, returned = t.fit()
    except Blocked:
        raise
    except CudaCall as e:
        raise AssertionError(f"fit {e}") from None
    except Exception as e:
        raise AssertionError(f"fit raised {describe(e)}") from None
    if returned is not det:
        warnings.warn("fit() should return self", ContractWarning, stacklevel=2)
    problems = []
    for role, who in ROLES.items():
        try:
            t.raw(role)
        except CudaCall as e:
            problems.append(f"score({who}) {e}")
        except Exception:  # noqa: BLE001 - any other error is the 'output' check's to report
            pass
    _fail_if(problems)


@_named("output")
def check_output(detector, problem=None):
    """``score`` returns a numeric array of shape ``(n,)``; a torch tensor, a dtype other than float64
    or infinite scores are warnings (the runner converts)."""
    import torch

    t = trial(detector, problem)
    problems = []
    for role, who in ROLES.items():
        try:
            raw = t.raw(role)
        except CudaCall:
            raise Blocked("score called .cuda() (see 'fit/score on CPU')") from None
        except Blocked:
            raise
        except Exception as e:
            problems.append(f"score({who}) raised {describe(e)}")
            continue
        try:
            arr = numeric_scores(raw, t.n(role), f"score({who})")
        except DetectorError as e:
            problems.append(str(e))
            continue
        if isinstance(raw, torch.Tensor):
            warnings.warn(f"score({who}) returned a torch tensor; the contract is a numpy array", ContractWarning)
        dtype = as_array(raw).dtype
        if dtype != np.float64:
            warnings.warn(f"score({who}) returned {dtype}; the contract is float64 (the runner converts)",
                          ContractWarning)
        n_inf = int(np.isinf(arr).sum())
        if n_inf:
            warnings.warn(f"score({who}) returned {n_inf} infinite scores out of {len(arr)}", ContractWarning)
    _fail_if(problems)
    return f"shape ({t.n('id_test')},), float64"


@_named("no NaN")
def check_no_nan(detector, problem=None):
    """No score is NaN."""
    t = trial(detector, problem)
    problems = []
    for role, who in ROLES.items():
        try:
            check_scores(t.numeric(role), t.n(role), f"score({who})")
        except DetectorError as e:
            problems.append(str(e))
    _fail_if(problems)


@_named("sign")
def check_sign(detector, problem=None):
    """Higher = more OOD: AUROC > 0.95 on the separable problem (OOD positive); < 0.05 means inverted."""
    from oodbench.benchmark.evaluation.metrics import auroc

    t = trial(detector, problem)
    a = auroc(t.scores("id_test"), t.scores("ood"))
    documented = _extra(detector).get("separable_toy")
    if documented and a <= 0.95:
        raise KnownFailure(f"AUROC {a:.3f} on the separable case; documented in info.extra['separable_toy']: "
                           f"{documented}")
    if a > 0.95:
        return f"AUROC {a:.3f} on the separable case"
    if a < 0.05:
        raise AssertionError(f"AUROC {a:.3f} on a trivially separable case: the scores are inverted; the "
                             "contract is higher = more OOD (negate a confidence)")
    raise AssertionError(f"AUROC {a:.3f} on a trivially separable case (expected > 0.95): the detector does not "
                         "separate dim noise from confident ID images")


@_named("determinism")
def check_determinism(detector, problem=None):
    """Scoring the same data twice, and fitting a clone and scoring, give the same scores."""
    t = trial(detector, problem)
    first, n = t.scores("id_test"), t.n("id_test")
    problems = []
    try:
        again = check_scores(t.raw("id_test", call=2), n, "score(ID, second call)")
        if not np.allclose(again, first, rtol=1e-6, atol=1e-9):
            problems.append(f"scoring the same data twice differs (max |Δ| {np.max(np.abs(again - first)):.3g})")
    except Exception as e:
        problems.append(f"scoring the same data twice raised {describe(e)}")
    try:
        other = check_scores(t.refitted_clone(), n, "score(ID, refitted clone)")
        if not np.allclose(other, first, rtol=1e-6, atol=1e-9):
            problems.append(f"a refitted clone scores differently (max |Δ| {np.max(np.abs(other - first)):.3g}); "
                            "seed every random choice from a hyperparameter")
    except Exception as e:
        problems.append(f"refitting a clone raised {describe(e)}")
    _fail_if(problems)
    return "same scores twice and after refit"


@_named("p_value")
def check_p_value(detector, problem=None):
    """``p_value(rep)`` returns shape ``(n,)`` with values in ``[0, 1]``."""
    t = trial(detector, problem)
    det, rep = t.fitted(), t.problem.reps("id_test")
    try:
        pv = np.asarray(det.p_value(rep), dtype=float)
    except Exception as e:
        raise AssertionError(f"p_value raised {describe(e)}") from None
    if not (pv.shape == (len(rep),) and np.all((pv >= 0) & (pv <= 1))):
        raise AssertionError(f"p_value returned shape {pv.shape}, range [{np.nanmin(pv):.3g}, {np.nanmax(pv):.3g}]")


def skip_run_checks(detector, problem=None, *, reason: str):
    """Stands in for the run-based checks of a detector that cannot run here."""
    raise SkipTest(reason)


RUN_CHECKS = (check_fit_score_on_cpu, check_output, check_no_nan, check_sign, check_determinism)


def why_not_run(cls, skip_expensive: bool = False) -> str | None:
    """Why the run-based checks cannot run here (an optional library missing, a GPU needed, an expensive
    detector with ``skip_expensive``), or None."""
    info, extra = cls.info, _extra(cls)
    if extra.get("available") is False:
        return f"{extra.get('optional_dependency', 'its optional library')} is not installed in this environment"
    if not info.cpu_ok and not _cuda_available():
        return ("declares cpu_ok=False and no CUDA device is present: the run-based checks (output, sign, "
                "determinism) need a GPU")
    if skip_expensive and info.expensive:
        return "declares expensive=True and --skip-expensive was given"
    return None


def detector_checks(cls, problem=None, skip_expensive: bool = False):
    """Yield ``(name, check)`` for every check that applies to ``cls``: ``check(cls)`` runs it (on
    ``problem``, default :func:`default_problem`). Only ``metadata`` when the metadata is broken; one
    skip in place of the run-based checks when the detector cannot run here (:func:`why_not_run`)."""
    def entry(fn):
        return fn.finding, functools.partial(fn, problem=problem)

    yield entry(check_metadata)
    if metadata_problems(cls):
        return
    yield entry(check_constructor)
    yield entry(check_clone)
    reason = why_not_run(cls, skip_expensive)
    if reason:
        yield check_fit_score_on_cpu.finding, functools.partial(skip_run_checks, problem=problem, reason=reason)
        return
    for fn in RUN_CHECKS:
        yield entry(fn)
    if gives_p_values(cls):
        yield entry(check_p_value)


def run_check(name: str, check, detector) -> list[Finding]:
    """Run one check as ``oodbench check`` reports it: its warnings, then pass / fail / skip (nothing for a
    :class:`Blocked` check: the check that blocked it reports)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ContractWarning)
        try:
            outcome = [Finding(name, "pass", check(detector) or "")]
        except Blocked:
            outcome = []
        except KnownFailure as e:
            outcome = [Finding(name, "warn", str(e))]
        except SkipTest as e:
            outcome = [Finding(name, "skip", str(e))]
        except AssertionError as e:
            outcome = [Finding(name, "fail", str(e))]
        except Exception as e:  # a check broken by an odd detector still reports
            outcome = [Finding(name, "fail", f"the check raised {describe(e)}")]
    found = []
    for w in caught:
        if issubclass(w.category, ContractWarning):
            found.append(Finding(name, "warn", str(w.message)))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return found + outcome


def check_contract(cls, name: str, problem=None, res: CheckResult | None = None,
                   skip_expensive: bool = False) -> CheckResult:
    """Every check of :func:`detector_checks` on ``cls``, as findings of a :class:`CheckResult`."""
    res = res or CheckResult(name)
    for check_name, check in detector_checks(cls, problem, skip_expensive):
        res.findings += run_check(check_name, check, cls)
    return res
