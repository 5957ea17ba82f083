"""Failure detection and the guard, from scores, predictions, labels and p-values (numpy only).

A detector's score (higher = more OOD) is read as "how likely the classifier's prediction is wrong".

* ``fd_auroc``: AUROC with the **wrong** predictions as the positive class (ties count half; the
  AUROC of :mod:`.metrics`); 1 = every wrong prediction scores above every right one, 0.5 = chance.
* risk–coverage: accept the ``k`` lowest-scoring samples (coverage ``k / n``); the selective risk is
  the error rate among them. Tied scores are accepted together: inside a run of ties the number of
  errors grows linearly, which is the expectation over random tie-breaking (constant scores give the
  error rate at every coverage).
* ``aurc``: the mean selective risk over ``k = 1 … n`` (Geifman et al. 2019); ``eaurc``: ``aurc``
  minus that of the oracle (every right prediction accepted before any wrong one), which is
  ``r + (1 - r) ln(1 - r)`` for error rate ``r`` as ``n`` grows.
* ``risk@80`` / ``risk@90`` / ``risk@95``: selective risk at 80 / 90 / 95 % coverage
  (``k = ceil(c n)``).
* full spectrum (OpenOOD v1.5's FSOOD): covariate-shifted ID counted as ID, so ``fs_auroc`` /
  ``fs_fpr95`` are AUROC / FPR@95 of an OOD set against the ID test set **plus** every covariate set.
* the guard: a prediction is refused when its p-value is ``<= alpha``; refusal rates (all, on right,
  on wrong predictions) and the accuracy of the accepted predictions, with Wilson score intervals.
"""
from __future__ import annotations

import math

import numpy as np

from oodbench.benchmark.evaluation import metrics

COVERAGES = (0.80, 0.90, 0.95)
Z95 = 1.959963984540054


def _as_arrays(scores, wrong) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.asarray(wrong, dtype=bool).ravel()
    if s.shape != w.shape:
        raise ValueError(f"scores ({s.size}) and outcomes ({w.size}) differ in length")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN values")
    return s, w


def wrong_predictions(preds, labels) -> np.ndarray:
    """True where the prediction differs from the label (labels must be known: >= 0)."""
    p, y = np.asarray(preds).ravel(), np.asarray(labels).ravel()
    if p.shape != y.shape:
        raise ValueError(f"predictions ({p.size}) and labels ({y.size}) differ in length")
    if (y < 0).any():
        raise ValueError("labels contain -1 (unlabelled samples); failure metrics need true labels")
    return p != y


def fd_auroc(scores, wrong) -> float:
    """Misclassification AUROC (wrong = positive); NaN when all predictions are right or all wrong."""
    s, w = _as_arrays(scores, wrong)
    if w.all() or not w.any():
        return float("nan")
    return metrics.auroc(s[~w], s[w])


def selective_risks(scores, wrong) -> np.ndarray:
    """Selective risk after accepting the ``k`` most confident (lowest-scoring) samples, for
    ``k = 1 … n``; runs of tied scores are accepted together (errors interpolated linearly inside)."""
    s, w = _as_arrays(scores, wrong)
    n = s.size
    if n == 0:
        return np.zeros(0)
    order = np.argsort(s, kind="mergesort")
    ss, ww = s[order], w[order].astype(np.float64)
    start = np.ones(n, dtype=bool)
    start[1:] = ss[1:] != ss[:-1]
    gid = np.cumsum(start) - 1  # tie-run of each sorted position
    first = np.flatnonzero(start)
    size = np.diff(np.append(first, n))
    cum = np.concatenate([[0.0], np.cumsum(ww)])
    err_before, err_in = cum[first], cum[first + size] - cum[first]
    k = np.arange(1, n + 1)
    errors = err_before[gid] + (k - first[gid]) * err_in[gid] / size[gid]
    return errors / k


def aurc(scores, wrong) -> float:
    """Area under the risk–coverage curve: the mean selective risk over ``k = 1 … n`` (NaN if empty)."""
    r = selective_risks(scores, wrong)
    return float(r.mean()) if r.size else float("nan")


def oracle_aurc(wrong) -> float:
    """AURC of the oracle that accepts every right prediction before any wrong one."""
    w = np.asarray(wrong, dtype=bool).ravel()
    return aurc(w.astype(np.float64), w)


def eaurc(scores, wrong) -> float:
    """Excess AURC: :func:`aurc` minus :func:`oracle_aurc` (0 = perfect ranking)."""
    return aurc(scores, wrong) - oracle_aurc(wrong)


def selective_risk(scores, wrong, coverage: float) -> float:
    """Error rate among the ``ceil(coverage * n)`` most confident samples (NaN if empty)."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    r = selective_risks(scores, wrong)
    if not r.size:
        return float("nan")
    k = max(1, int(math.ceil(coverage * r.size - 1e-9)))
    return float(r[k - 1])


RISK_METRICS = ("aurc", "eaurc") + tuple(f"risk@{round(100 * c)}" for c in COVERAGES)


def _weighted_risk_metrics(ww: np.ndarray, first: np.ndarray, counts: np.ndarray, harmonic: np.ndarray) -> dict:
    """``aurc``, ``eaurc`` and ``risk@*`` for a batch of resample counts, in O(B·n) without re-sorting.

    ``ww``: wrong-prediction mask in ascending score order; ``first``: where each run of tied scores
    starts in that order; ``counts``: (B, n) how often each sample is drawn (rows sum to ``N``);
    ``harmonic[m] = 1 + 1/2 + … + 1/m``. A resample keeps the sorted order and its tie runs, so run
    ``g`` covers positions ``F_g + 1 … F_g + W_g`` with ``E_g`` errors spread evenly (the tie rule of
    :func:`selective_risks`); the risk at position ``F + j`` is ``(Eb + j e) / (F + j)`` with
    ``e = E / W``, whose sum over ``j = 1 … W`` is ``E + (Eb − F e)(H(F + W) − H(F))``."""
    c = counts.astype(np.int64)
    N = int(c[0].sum())
    W = np.add.reduceat(c, first, axis=1)
    E = np.add.reduceat(c * ww, first, axis=1).astype(np.float64)
    F = np.cumsum(W, axis=1) - W
    Eb = np.cumsum(E, axis=1) - E
    e = E / np.maximum(W, 1)
    out = {"aurc": (E + (Eb - F * e) * (harmonic[F + W] - harmonic[F])).sum(1) / N}
    K = E.sum(1)  # the oracle accepts every right prediction first: N − K error-free, then K errors
    oracle = (K - (N - K) * (harmonic[N] - harmonic[(N - K).astype(np.int64)])) / N
    out["eaurc"] = out["aurc"] - oracle
    rows = np.arange(c.shape[0])
    for cov in COVERAGES:
        k = max(1, int(math.ceil(cov * N - 1e-9)))
        g = (F + W < k).sum(1)  # the tie run holding position k
        out[f"risk@{round(100 * cov)}"] = (Eb[rows, g] + (k - F[rows, g]) * e[rows, g]) / k
    return out


def risk_replicates(scores, wrong, n_boot: int, seed: int = 0, chunk: int = 100) -> dict[str, np.ndarray]:
    """Bootstrap replicates ``{metric: (n_boot,)}`` of :data:`RISK_METRICS` on one labelled set, the set
    resampled whole (so its error rate varies too) with the counts of stream 2 of
    :func:`.metrics.resample_counts` — the same for every detector scored on the same samples."""
    s, w = _as_arrays(scores, wrong)
    n = s.size
    if n_boot <= 0 or n == 0:
        return {k: np.zeros(0) for k in RISK_METRICS}
    order = np.argsort(s, kind="mergesort")
    ss, ww = s[order], w[order].astype(np.int64)
    start = np.ones(n, dtype=bool)
    start[1:] = ss[1:] != ss[:-1]
    first = np.flatnonzero(start)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])
    parts = [_weighted_risk_metrics(ww, first, cnt[:, order], harmonic)
             for cnt in metrics.resample_counts(seed, 2, n, n_boot, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in RISK_METRICS}


def guard_replicates(pvalues, alpha: float, wrong=None, n_boot: int = 100, seed: int = 0,
                     chunk: int = 100) -> dict[str, np.ndarray]:
    """Bootstrap replicates of :func:`guard`'s numbers (the set resampled whole, stream 2 as in
    :func:`risk_replicates`): ``refusal`` and, with ``wrong``, the others and ``accuracy_gain``."""
    p = np.asarray(pvalues, np.float64).ravel()
    refused = p <= alpha
    masks = {"refusal": (np.ones_like(refused), refused)}
    if wrong is not None:
        w = np.asarray(wrong, dtype=bool).ravel()
        masks.update({"refusal_right": (~w, refused & ~w), "refusal_wrong": (w, refused & w),
                      "accepted_accuracy": (~refused, ~refused & ~w), "unguarded_accuracy": (np.ones_like(w), ~w)})
    out = {k: [] for k in masks}
    for cnt in metrics.resample_counts(seed, 2, p.size, n_boot, chunk) if n_boot > 0 and p.size else ():
        c = cnt.astype(np.float64)
        for k, (den, num) in masks.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k].append(c @ num.astype(np.float64) / (c @ den.astype(np.float64)))
    out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    if wrong is not None:
        out["accuracy_gain"] = out["accepted_accuracy"] - out["unguarded_accuracy"]
    return out


def risk_coverage_points(scores, wrong, grid: int = 100) -> dict[str, list]:
    """The risk–coverage curve at coverage ``1/grid … 1`` (``k = ceil(c n)``), small enough to commit."""
    r = selective_risks(scores, wrong)
    cov = np.arange(1, grid + 1) / grid
    if not r.size:
        return {"coverage": [], "risk": []}
    k = np.maximum(1, np.ceil(cov * r.size - 1e-9).astype(int))
    return {"coverage": [round(float(c), 4) for c in cov], "risk": [round(float(x), 5) for x in r[k - 1]]}


def failure_metrics(scores, wrong) -> dict[str, float]:
    """``fd_auroc``, ``aurc``, ``eaurc`` and ``risk@80/90/95`` of one labelled set (``wrong``: the
    mask of wrong predictions, e.g. :func:`wrong_predictions`)."""
    s, w = _as_arrays(scores, wrong)
    r = selective_risks(s, w)
    out = {"fd_auroc": fd_auroc(s, w), "aurc": float(r.mean()) if r.size else float("nan")}
    out["eaurc"] = out["aurc"] - oracle_aurc(w)
    for c in COVERAGES:
        out[f"risk@{round(100 * c)}"] = selective_risk(s, w, c)
    return out


def full_spectrum(id_scores, covariate_scores, ood_scores) -> dict[str, float]:
    """``fs_auroc`` and ``fs_fpr95`` of one OOD set against ID test + every covariate-shifted set."""
    ident = np.concatenate([np.asarray(id_scores, np.float64).ravel()] +
                           [np.asarray(c, np.float64).ravel() for c in covariate_scores])
    m = metrics.evaluate(ident, ood_scores)
    return {"fs_auroc": m["auroc"], "fs_fpr95": m["fpr95"]}


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (NaN, NaN when ``n = 0``)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z / d * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(mask) -> tuple[float, float, float, int]:
    """``(fraction, wilson_low, wilson_high, n)`` of a boolean array (NaN fraction when empty)."""
    m = np.asarray(mask, dtype=bool).ravel()
    n, k = m.size, int(m.sum())
    lo, hi = wilson(k, n)
    return (k / n if n else float("nan")), lo, hi, n


def guard(pvalues, alpha: float, wrong=None) -> dict[str, tuple[float, float, float, int]]:
    """The guard at level ``alpha`` (refuse when ``p <= alpha``): ``refusal`` and, when ``wrong`` is
    given, ``refusal_right``, ``refusal_wrong``, ``accepted_accuracy``, ``unguarded_accuracy`` — each as
    :func:`proportion` — and ``accuracy_gain`` (accepted minus unguarded accuracy, no interval)."""
    p = np.asarray(pvalues, np.float64).ravel()
    refused = p <= alpha
    out = {"refusal": proportion(refused)}
    if wrong is None:
        return out
    w = np.asarray(wrong, dtype=bool).ravel()
    if w.shape != p.shape:
        raise ValueError(f"p-values ({p.size}) and outcomes ({w.size}) differ in length")
    out["refusal_right"] = proportion(refused[~w])
    out["refusal_wrong"] = proportion(refused[w])
    out["accepted_accuracy"] = proportion(~w[~refused])
    out["unguarded_accuracy"] = proportion(~w)
    gain = out["accepted_accuracy"][0] - out["unguarded_accuracy"][0]
    out["accuracy_gain"] = (gain, float("nan"), float("nan"), int((~refused).sum()))
    return out
