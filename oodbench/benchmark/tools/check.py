"""Regression checks for detectors, in the spirit of scikit-learn's ``check_estimator``.

From Python (e.g. in your own pytest file)::

    from oodbench.benchmark.tools.check import check_detector
    check_detector(MyDetector)                          # contract only; raises AssertionError saying why
    check_detector(MyDetector, suite="mnist-smoke")     # + metrics against results/baselines/mnist-smoke.csv

From the command line::

    oodbench check my_module:MyDetector --suite mnist-smoke [--update-baseline]
    oodbench check --all --suite mnist-smoke            # every registered detector

**Contract** (on the trivially separable problem of :mod:`oodbench.benchmark.tools.separable`, on CPU):

* ``metadata`` — ``info`` is a :class:`DetectorInfo` naming a library; ``consumes`` is a non-empty subset
  of ``logits, features, taps, model, images``;
* ``constructor`` — builds with its defaults, without opening a network connection; ``get_params`` /
  ``clone`` give an equal, distinct detector;
* ``fit on CPU`` — ``fit`` returns ``self`` and never calls ``.cuda()`` (as ``score``);
* ``output`` — ``score`` returns an array of shape ``(n,)``, numeric, without NaN (float64 and finite
  are expected; anything else is a warning);
* ``sign`` — AUROC > 0.95 with OOD as positive (higher = more OOD); AUROC < 0.05 means inverted scores
  (a reason documented in ``info.extra["separable_toy"]`` turns a failure into a warning, like ``xfail``);
* ``determinism`` — scoring twice, and fitting a clone and scoring, give the same scores
  (``rtol=1e-6, atol=1e-9``);
* ``p_value`` — when the detector has one: shape ``(n,)``, values in ``[0, 1]``.

Detectors whose ``info.extra["available"]`` is False (an optional library not installed here), that declare
``cpu_ok=False`` without a GPU present, or (with ``skip_expensive``) ``expensive=True`` get only the metadata and
constructor checks; the rest is reported as ``skip``.

**Baseline** (with ``suite``): the detector runs on the suite (no score cache, no bootstrap) and its
near / far / covariate means are compared with ``results/baselines/<suite>.csv``: a drop of AUROC,
AUPR-IN or AUPR-OUT larger than ``tolerance`` (default 0.02, absolute) or a rise of FPR@95 larger than
``fpr_tolerance`` (default 0.05) fails. ``update_baseline=True`` writes the measured values instead.
A detector without a baseline row passes with a note and its rank among the stored detectors.
"""
from __future__ import annotations

import contextlib
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TOLERANCE = 0.02
FPR_TOLERANCE = 0.05
HIGHER_BETTER = {"auroc": True, "aupr_in": True, "aupr_out": True, "fpr95": False}
BASELINE_COLUMNS = ["suite", "model", "detector", "library", "group", "metric", "value", "n_seeds",
                    "library_version"]
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Finding:
    check: str
    status: str  # pass | warn | fail | skip
    message: str = ""


@dataclass
class CheckResult:
    detector: str
    findings: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # (group, metric) -> value, from the suite run
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(f.status == "fail" for f in self.findings)

    @property
    def failures(self) -> list:
        return [f for f in self.findings if f.status == "fail"]

    def add(self, check, status, message=""):
        self.findings.append(Finding(check, status, message))

    def summary(self) -> str:
        head = f"{self.detector}: {'PASSED' if self.passed else 'FAILED'} ({self.seconds:.1f} s)"
        lines = [head] + [f"  [{f.status:4}] {f.check}" + (f": {f.message}" if f.message else "") for f in self.findings]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# guards
# ----------------------------------------------------------------------------------------------
class _NoCuda(RuntimeError):
    pass


@contextlib.contextmanager
def cpu_only():
    """``.cuda()`` on a tensor or module raises :class:`_NoCuda` inside this block."""
    import torch

    def refuse(self, *a, **k):
        raise _NoCuda("called .cuda(); fit and score must work on CPU (use the representation's device)")

    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda, torch.nn.Module.cuda = refuse, refuse
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved


@contextlib.contextmanager
def no_network(log: list):
    """Record (and refuse) every socket connection attempted inside this block."""
    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection

    def refuse(self_or_addr, *a, **k):
        log.append(repr(a[0] if a else self_or_addr))
        raise OSError("network access refused by oodbench check")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = lambda addr, *a, **k: refuse(addr)
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection = saved


# ----------------------------------------------------------------------------------------------
# resolving what to check
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# the contract
# ----------------------------------------------------------------------------------------------
def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def _scores(det, rep, res: CheckResult, who: str):
    """score() under the CPU guard, validated; returns float64 or None (findings recorded)."""
    try:
        with cpu_only():
            out = det.score(rep)
    except _NoCuda as e:
        res.add("fit/score on CPU", "fail", f"score({who}) {e}")
        return None
    except Exception as e:
        res.add("output", "fail", f"score({who}) raised {_err(e)}")
        return None
    if hasattr(out, "detach"):
        res.add("output", "warn", f"score({who}) returned a torch tensor; the contract is a numpy array")
        out = out.detach().cpu().numpy()
    arr = np.asarray(out)
    n = len(rep)
    if arr.dtype.kind not in "fiu":
        res.add("output", "fail", f"score({who}) returned dtype {arr.dtype}; expected float64")
        return None
    if arr.shape != (n,):
        res.add("output", "fail", f"score({who}) returned shape {arr.shape}; expected ({n},)")
        return None
    if arr.dtype != np.float64:
        res.add("output", "warn", f"score({who}) returned {arr.dtype}; the contract is float64 (the runner converts)")
    arr = arr.astype(np.float64)
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        res.add("no NaN", "fail", f"score({who}) returned {n_nan} NaN scores out of {n}")
        return None
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        res.add("output", "warn", f"score({who}) returned {n_inf} infinite scores out of {n}")
    return arr


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def check_contract(cls, name: str, problem=None, res: CheckResult | None = None,
                   skip_expensive: bool = False) -> CheckResult:
    from oodbench import metrics
    from oodbench.adapters.base import CONSUMABLE, DetectorInfo
    from oodbench.benchmark.tools import separable

    res = res or CheckResult(name)
    # metadata
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
    res.add("metadata", "fail" if probs else "pass", "; ".join(probs))
    if probs:
        return res
    # constructor
    conns: list = []
    try:
        with no_network(conns):
            det = cls()
        params = det.get_params() if hasattr(det, "get_params") else {}
        twin = det.clone() if hasattr(det, "clone") else None
    except Exception as e:
        res.add("constructor", "fail", f"{cls.__name__}() with default arguments raised {_err(e)}")
        return res
    cprobs = []
    if conns:
        cprobs.append(f"the constructor tried to open a network connection ({conns[0]})")
    if twin is None or twin is det or (twin.get_params().keys() != params.keys()):
        cprobs.append("clone() did not give a distinct detector with the same parameters")
    res.add("constructor", "fail" if cprobs else "pass", "; ".join(cprobs))
    extra = info.extra if isinstance(info.extra, dict) else {}
    if extra.get("available") is False:
        res.add("fit/score on CPU", "skip", f"{extra.get('optional_dependency', 'its optional library')} is not "
                                            "installed in this environment")
        return res
    if not info.cpu_ok and not _cuda_available():
        res.add("fit/score on CPU", "skip", "declares cpu_ok=False and no CUDA device is present: the run-based "
                                            "checks (output, sign, determinism) need a GPU")
        return res
    if skip_expensive and info.expensive:
        res.add("fit/score on CPU", "skip", "declares expensive=True and --skip-expensive was given")
        return res
    # fit on CPU
    p = problem or separable.problem()
    fit, cal = p.reps("fit"), p.reps("cal")
    try:
        with cpu_only():
            ret = det.fit(fit, cal)
    except _NoCuda as e:
        res.add("fit/score on CPU", "fail", f"fit {e}")
        return res
    except Exception as e:
        res.add("fit/score on CPU", "fail", f"fit raised {_err(e)}")
        return res
    if ret is not det:
        res.add("fit/score on CPU", "warn", "fit() should return self")
    r_id, r_ood = p.reps("id_test"), p.reps("ood")
    s_id = _scores(det, r_id, res, "ID")
    s_ood = _scores(det, r_ood, res, "OOD")
    if s_id is None or s_ood is None:
        return res
    res.add("fit/score on CPU", "pass")
    res.add("output", "pass", f"shape ({len(r_id)},), float64")
    res.add("no NaN", "pass")
    # sign
    a = metrics.auroc(s_id, s_ood)
    if extra.get("separable_toy") and a <= 0.95:  # documented, like pytest's xfail
        res.add("sign", "warn", f"AUROC {a:.3f} on the separable case; documented in info.extra['separable_toy']: "
                                f"{extra['separable_toy']}")
    elif a > 0.95:
        res.add("sign", "pass", f"AUROC {a:.3f} on the separable case")
    elif a < 0.05:
        res.add("sign", "fail", f"AUROC {a:.3f} on a trivially separable case: the scores are inverted; the "
                                "contract is higher = more OOD (negate a confidence)")
    else:
        res.add("sign", "fail", f"AUROC {a:.3f} on a trivially separable case (expected > 0.95): the detector "
                                "does not separate dim noise from confident ID images")
    # determinism
    dprobs = []
    again = _scores(det, r_id, res, "ID, second call")
    if again is not None and not np.allclose(again, s_id, rtol=1e-6, atol=1e-9):
        dprobs.append(f"scoring the same data twice differs (max |Δ| {np.max(np.abs(again - s_id)):.3g})")
    try:
        det2 = det.clone()
        with cpu_only():
            det2.fit(fit, cal)
        s2 = _scores(det2, r_id, res, "ID, refitted clone")
        if s2 is not None and not np.allclose(s2, s_id, rtol=1e-6, atol=1e-9):
            dprobs.append(f"a refitted clone scores differently (max |Δ| {np.max(np.abs(s2 - s_id)):.3g}); "
                          "seed every random choice from a hyperparameter")
    except Exception as e:
        dprobs.append(f"refitting a clone raised {_err(e)}")
    res.add("determinism", "fail" if dprobs else "pass", "; ".join(dprobs) or "same scores twice and after refit")
    # p-values
    if hasattr(det, "p_value"):
        try:
            pv = np.asarray(det.p_value(r_id), dtype=float)
            ok = pv.shape == (len(r_id),) and np.all((pv >= 0) & (pv <= 1))
            res.add("p_value", "pass" if ok else "fail",
                    "" if ok else f"p_value returned shape {pv.shape}, range [{np.nanmin(pv):.3g}, {np.nanmax(pv):.3g}]")
        except Exception as e:
            res.add("p_value", "fail", f"p_value raised {_err(e)}")
    return res


# ----------------------------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------------------------
def baseline_path(suite: str, path=None) -> Path:
    if path:
        return Path(path)
    local = Path("results") / "baselines" / f"{suite}.csv"
    if local.exists() or not (REPO / "results" / "baselines" / f"{suite}.csv").exists():
        return local
    return REPO / "results" / "baselines" / f"{suite}.csv"


def read_baseline(path):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    df = pd.read_csv(p, dtype={"library_version": str, "library": str})
    df[["library", "library_version"]] = df[["library", "library_version"]].fillna("")
    return df


def write_baseline(path, df) -> None:
    import io

    from oodbench.benchmark.io import atomic_write

    df = df[BASELINE_COLUMNS].sort_values(["suite", "model", "detector", "group", "metric"], kind="mergesort")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write(path, buf.getvalue())


def suite_metrics(names: list[str], suite: str, seeds=(0,), data_dir=None, cache_dir=None, threads=1):
    """Run ``names`` on ``suite`` (no score cache, no bootstrap, nothing written); returns the
    :class:`~oodbench.benchmark.evaluation.runner.RunResult` and {detector: {(group, metric): mean over seeds}}."""
    from oodbench.benchmark.evaluation import runner

    res = runner.evaluate(suite, detectors=names, seeds=seeds, data_dir=data_dir, cache_dir=cache_dir,
                          threads=threads, n_boot=0, progress=False, write=False, use_score_cache=False)
    df = res.table
    ok = df[(df["status"] == "ok") & df["test_set"].str.endswith("-mean")]
    out = {}
    for (det, grp, m), g in ok.groupby(["detector", "group", "metric"]):
        if m in HIGHER_BETTER:
            out.setdefault(det, {})[(grp, m)] = float(g["value"].mean())
    return res, out


def compare(res: CheckResult, measured: dict, base, suite: str, model: str, tolerance: float,
            fpr_tolerance: float) -> None:
    rows = base[(base["suite"] == suite) & (base["model"] == model) & (base["detector"] == res.detector)]
    if rows.empty:
        others = base[(base["suite"] == suite) & (base["group"] == "near") & (base["metric"] == "auroc")]
        mine = measured.get(("near", "auroc"))
        rank = ""
        if len(others) and mine is not None:
            better = int((others["value"] > mine).sum())
            rank = f"; its near AUROC {100 * mine:.2f} % would rank {better + 1} of {len(others) + 1} stored detectors"
        res.add("baseline", "pass", f"no baseline row for {res.detector} in {suite} (store one with "
                                    f"--update-baseline){rank}")
        return
    drops = []
    lines = []
    order = {g: i for i, g in enumerate(("near", "far", "covariate"))}
    morder = {m: i for i, m in enumerate(("auroc", "fpr95", "aupr_in", "aupr_out"))}
    rows = rows.assign(_g=rows["group"].map(lambda g: order.get(g, 9)), _m=rows["metric"].map(lambda m: morder.get(m, 9)))
    for _, r in rows.sort_values(["_g", "_m", "group", "metric"]).iterrows():
        key = (r["group"], r["metric"])
        if key not in measured:
            drops.append(f"{r['group']} {r['metric']} missing (baseline {r['value']:.4f})")
            continue
        new, old = measured[key], float(r["value"])
        hb = HIGHER_BETTER.get(r["metric"], True)
        tol = tolerance if hb else fpr_tolerance
        worse = (old - new) if hb else (new - old)
        lines.append(f"{r['group']} {r['metric']} {new:.4f} vs {old:.4f}")
        if worse > tol:
            drops.append(f"{r['group']} {r['metric']} {'dropped' if hb else 'rose'} from {old:.4f} to {new:.4f} "
                         f"(tolerance {tol:.3f})")
    if drops:
        res.add("baseline", "fail", "; ".join(drops))
    else:
        res.add("baseline", "pass", f"within tolerance (AUROC/AUPR drop ≤ {tolerance}, FPR@95 rise ≤ "
                                    f"{fpr_tolerance}): " + ", ".join(lines[:6]) + (" …" if len(lines) > 6 else ""))


def update_baseline(path, suite: str, model: str, results: dict, libs: dict, n_seeds: int) -> None:
    import pandas as pd

    base = read_baseline(path)
    keep = base[~((base["suite"] == suite) & (base["model"] == model) & base["detector"].isin(list(results)))]
    new = [{"suite": suite, "model": model, "detector": d, "library": libs.get(d, ("", ""))[0], "group": g,
            "metric": m, "value": v, "n_seeds": n_seeds, "library_version": libs.get(d, ("", ""))[1]}
           for d, mv in sorted(results.items()) for (g, m), v in sorted(mv.items())]
    write_baseline(path, pd.concat([keep, pd.DataFrame(new, columns=BASELINE_COLUMNS)], ignore_index=True))


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------
def check_detectors(detectors, suite=None, baseline=None, tolerance=TOLERANCE, fpr_tolerance=FPR_TOLERANCE,
                    update=False, seeds=(0,), data_dir=None, cache_dir=None, threads=1, name=None,
                    problem=None, say=None, skip_expensive=False) -> list[CheckResult]:
    from oodbench.benchmark.tools import separable
    from oodbench.benchmark.data import suites as suites_mod

    p = problem or separable.problem()
    results = []
    for d in detectors:
        t0 = time.perf_counter()
        try:
            n, cls = resolve(d, name)
        except Exception as e:
            r = CheckResult(str(d))
            r.add("import", "fail", _err(e))
            results.append(r)
            continue
        r = check_contract(cls, n, p, skip_expensive=skip_expensive)
        r.seconds = time.perf_counter() - t0
        results.append(r)
        if say:
            say(f"contract {n}: {'passed' if r.passed else 'FAILED'} ({r.seconds:.1f} s)")
    if suite:
        runnable = [r for r in results if r.passed and not any(f.status == "skip" for f in r.findings)]
        if runnable and say:
            say(f"running {len(runnable)} detector(s) on {suite} ...")
        if runnable:
            t0 = time.perf_counter()
            run, measured = suite_metrics([r.detector for r in runnable], suite, seeds, data_dir, cache_dir, threads)
            rec = run.record
            model = rec.get("model", "")
            failed = {f["detector"]: f["error"] for f in rec.get("failures", [])}
            path = baseline_path(suites_mod.get(suite)["name"], baseline)
            base = read_baseline(path)
            dt = (time.perf_counter() - t0) / len(runnable)
            for r in runnable:
                r.seconds += dt
                if r.detector in failed:
                    r.add("suite run", "fail", f"{suite}: {failed[r.detector]}")
                    continue
                r.metrics = measured.get(r.detector, {})
                if not update:
                    compare(r, r.metrics, base, suite, model, tolerance, fpr_tolerance)
            if update:
                from oodbench.adapters import registry

                ok = {r.detector: r.metrics for r in runnable if r.passed and r.metrics}
                libs = {d: (registry.get(d).info.library, registry.get(d).info.library_version) for d in ok}
                update_baseline(path, suite, model, ok, libs, len(seeds))
                for r in runnable:
                    if r.detector in ok:
                        r.add("baseline", "pass", f"stored in {path}")
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
