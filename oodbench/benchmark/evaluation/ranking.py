"""Ranks with ties, and the Friedman / Nemenyi statistics of a critical-difference diagram.

**Rank ranges** (:func:`rank_tiers`), per group and metric, over the *unflagged* detectors only:

1. the best detector (highest mean over seeds; lowest for FPR) is compared one-sided with every
   other one: ``H0: the other is not worse``, z-test on the difference ``best − other`` with the
   standard deviation of that difference from the two-level bootstrap of :mod:`.summary` —
   *paired* (the difference of replicates computed on the same resampled test samples and the same
   resampled seeds) when paired replicates are given, otherwise the two detectors' bootstrap
   variances added (unpaired; conservative, as detectors on the same samples are positively
   correlated);
2. Holm's step-down correction over those comparisons at family-wise alpha = 0.05;
3. the best and every detector not significantly worse share a tier: ranks ``1–k``; the tier is
   removed and steps 1–2 repeat on the rest (``k+1–…``), until every detector has a rank range.

**Critical-difference diagram** (:func:`friedman_nemenyi`, Demšar 2006, JMLR 7:1–30): blocks are
(test set, seed) pairs; within each block detectors are ranked by AUROC (1 = best, ties averaged);
the Friedman chi-square and Iman–Davenport F test whether the average ranks differ, and two
detectors differ by the Nemenyi post-hoc test when their average ranks differ by more than
``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` (``q_alpha``: studentized range quantile / sqrt 2).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

ALPHA = 0.05


def holm_reject(pvalues, alpha: float = ALPHA) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``."""
    p = np.asarray(pvalues, dtype=float)
    reject = np.zeros(p.size, dtype=bool)
    for i, j in enumerate(np.argsort(p, kind="mergesort")):
        if not p[j] <= alpha / (p.size - i):
            break
        reject[j] = True
    return reject


def _p_worse(diff: float, sd: float) -> float:
    """One-sided p-value of ``H0: difference <= 0`` (the other detector not worse) from a normal
    approximation; with no spread, 0 for a positive difference and 1 otherwise."""
    if not np.isfinite(sd) or sd <= 0:
        return 0.0 if diff > 0 else 1.0
    return 0.5 * math.erfc(diff / sd / math.sqrt(2))


def rank_tiers(names: list, means: np.ndarray, reps: np.ndarray, higher_better: bool,
               paired_reps: np.ndarray | None = None, alpha: float = ALPHA) -> dict:
    """``{name: "1–7"}`` for detectors ``names`` with point estimates ``means`` and two-level bootstrap
    replicates ``reps`` (n, R). ``paired_reps`` (n, R'): replicates on shared resamples, NaN rows for
    detectors without; a comparison of two detectors that both have them uses the paired difference."""
    sign = 1.0 if higher_better else -1.0
    m = sign * np.asarray(means, dtype=float)
    has_p = (np.zeros(len(names), bool) if paired_reps is None or paired_reps.shape[1] < 2
             else ~np.isnan(paired_reps).any(1))
    left = [i for i in np.argsort(-m, kind="mergesort") if np.isfinite(m[i])]
    out, start = {}, 1
    while left:
        best, rest = left[0], left[1:]
        p = []
        for j in rest:
            if has_p[best] and has_p[j]:
                sd = float(np.std(paired_reps[best] - paired_reps[j], ddof=1))
            else:
                sd = math.sqrt(np.nanvar(reps[best], ddof=1) + np.nanvar(reps[j], ddof=1)) \
                    if reps.shape[1] > 1 else np.nan
            p.append(_p_worse(m[best] - m[j], sd))
        rej = holm_reject(p, alpha) if rest else np.zeros(0, bool)
        tier = [best] + [j for j, r in zip(rest, rej) if not r]
        end = start + len(tier) - 1
        for i in tier:
            out[names[i]] = str(start) if end == start else f"{start}–{end}"
        left = [j for j in left if j not in tier]
        start = end + 1
    return out


def friedman_nemenyi(values: pd.DataFrame, alpha: float = ALPHA) -> dict | None:
    """Friedman test and Nemenyi critical difference over ``values``: rows = blocks (test set × seed),
    columns = detectors, higher = better (AUROC); blocks with a missing value are dropped. Returns
    ``{"avg_rank": Series (1 = best), "chi2", "p_chi2", "F", "p_F", "cd", "N", "k"}``, or None with
    fewer than 2 detectors or 2 blocks."""
    from scipy import stats

    v = values.dropna(axis=0, how="any")
    n, k = v.shape
    if k < 2 or n < 2:
        return None
    ranks = np.vstack([stats.rankdata(-row) for row in v.to_numpy(float)])
    r = ranks.mean(0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r ** 2) - k * (k + 1) ** 2 / 4)
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 0 else float("inf")
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return {"avg_rank": pd.Series(r, index=v.columns).sort_values(kind="mergesort"), "chi2": float(chi2),
            "p_chi2": float(stats.chi2.sf(chi2, k - 1)), "F": float(f),
            "p_F": float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f) else 0.0,
            "cd": float(q * math.sqrt(k * (k + 1) / (6 * n))), "N": int(n), "k": int(k), "alpha": alpha}
