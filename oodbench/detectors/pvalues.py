"""p-value tools for OOD detection as hypothesis testing.

Everything here is plain, vectorised numpy. The conventions:

* **Conformal p-values** from a reference sample ``r_1..r_n`` (ID data the test point is
  exchangeable with)::

      right (large values anomalous):  p+ = (1 + #{r_i >= t}) / (n + 1)
      left  (small values anomalous):  p- = (1 + #{r_i <= t}) / (n + 1)
      two-sided:                       p  = min(1, 2 * min(p+, p-))

  Ties are counted on the non-rejecting side (``>=`` / ``<=``), so a value sitting on a point mass
  of the reference (a ReLU zero) gets a large p-value, never a spuriously small one: the test is
  conservative. With the ``+1`` the smallest p-value is ``1/(n+1)`` (never 0, so ``log p`` is
  finite). Under exchangeability ``P(p <= a) <= a`` for every ``a`` (exactly ``floor(a(n+1))/(n+1)``
  for continuous data and the one-sided versions).

* **Combinations** of ``k`` p-values along an axis: :func:`simes`, :func:`bonferroni`,
  :func:`fisher`, :func:`stouffer`, :func:`harmonic_mean`, :func:`cauchy`. Simes and Bonferroni are
  valid p-values without calibration (Simes under independence or positive dependence, PRDS;
  Bonferroni always); Fisher and Stouffer assume independence, the harmonic mean and Cauchy
  combinations are only asymptotically valid under dependence. When the tests are dependent (layers
  of one network are), calibrate the combined statistic empirically on held-out ID data with
  :class:`EmpiricalNull` instead of trusting its nominal null.

* :func:`benjamini_hochberg`: FDR control over a batch of test inputs.

* :class:`~oodbench.detectors.grouped_reference.GroupedReference`: the fast engine behind the
  statistical-test detector. Exact two-sided (or one-sided) conformal p-values of many channels under many class-conditional references at
  once, via a per-channel lookup table (see its docstring for the algorithm and memory use).
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

SIDES = ("right", "left", "two-sided")


# ------------------------------------------------------------------------------------------------
# conformal p-values
# ------------------------------------------------------------------------------------------------
def sort_reference(ref) -> np.ndarray:
    """Sort a reference sample along axis 0 (``(n,)`` or ``(n, d)`` channels). Do it once, query often."""
    return np.sort(np.asarray(ref), axis=0)


def tail_counts(ref_sorted, t):
    """``(#{r <= t}, #{r >= t})`` for each query, with ``ref_sorted`` sorted along axis 0.

    ``ref_sorted``: ``(n,)`` with ``t`` of any shape, or ``(n, d)`` with ``t`` of shape ``(..., d)``
    (channel ``j`` of ``t`` is looked up in column ``j``). Two ``searchsorted`` per channel, exact
    for ties.
    """
    r = np.asarray(ref_sorted)
    t = np.asarray(t)
    n = r.shape[0]
    if r.ndim == 1:
        le = np.searchsorted(r, t, side="right")
        lt = np.searchsorted(r, t, side="left")
        return le, n - lt
    if t.shape[-1] != r.shape[1]:
        raise ValueError(f"queries have {t.shape[-1]} channels, the reference {r.shape[1]}")
    le = np.empty(t.shape, np.int64)
    ge = np.empty(t.shape, np.int64)
    for j in range(r.shape[1]):
        le[..., j] = np.searchsorted(r[:, j], t[..., j], side="right")
        ge[..., j] = n - np.searchsorted(r[:, j], t[..., j], side="left")
    return le, ge


def conformal_p(cal_scores, scores) -> np.ndarray:
    """Right-sided conformal p-value of ``scores`` against an unsorted calibration sample
    ``(1 + #{cal >= s}) / (n + 1)`` (ties count against rejection)."""
    return conformal_pvalues(sort_reference(np.asarray(cal_scores, np.float64)), np.asarray(scores, np.float64))


def conformal_p_randomized(cal_scores, scores, seed: int) -> np.ndarray:
    """Right-sided conformal p-value with ties broken at random (the smoothed conformal p-value)::

        p = (#{cal > s} + U * (1 + #{cal == s})) / (n + 1),   U ~ Uniform(0, 1] (seeded)

    Exactly uniform under exchangeability even where the scores have point masses (a Δz of 0 for
    every input whose label the reconstruction already changes): the ``>=`` convention of
    :func:`conformal_p` then gives every tied input the same large p-value and the test never
    rejects them; here a tied input is rejected at level α with probability α, ID and OOD alike.

    >>> p = conformal_p_randomized(np.zeros(999), np.zeros(100_000), seed=0)
    >>> round(float((p <= 0.05).mean()), 2)
    0.05
    """
    ref = sort_reference(np.asarray(cal_scores, np.float64))
    t = np.asarray(scores, np.float64)
    n = ref.shape[0]
    above = n - np.searchsorted(ref, t, side="right")
    tied = np.searchsorted(ref, t, side="right") - np.searchsorted(ref, t, side="left")
    u = 1.0 - np.random.default_rng(seed).random(t.shape)
    return (above + u * (1.0 + tied)) / (n + 1.0)


def conformal_pvalues(ref_sorted, t, side: str = "right") -> np.ndarray:
    """Exact conformal p-values of ``t`` against a sorted reference (see the module docstring).

    >>> conformal_pvalues(np.array([1., 2., 2., 3.]), np.array([2., 5., 0.]), "right")
    array([0.6, 0.2, 1. ])
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    n = np.asarray(ref_sorted).shape[0]
    le, ge = tail_counts(ref_sorted, t)
    if side == "right":
        return (1.0 + ge) / (n + 1.0)
    if side == "left":
        return (1.0 + le) / (n + 1.0)
    return np.minimum(1.0, 2.0 * (1.0 + np.minimum(le, ge)) / (n + 1.0))


# ------------------------------------------------------------------------------------------------
# combinations of k p-values along an axis
# ------------------------------------------------------------------------------------------------
def _clip(p):
    p = np.asarray(p, dtype=np.float64)
    return np.clip(p, np.finfo(np.float64).tiny, 1.0)


def simes(p, axis: int = -1) -> np.ndarray:
    """Simes' combination ``min_i k p_(i) / i`` (capped at 1). Valid for independent or PRDS tests."""
    p = np.sort(np.asarray(p, dtype=np.float64), axis=axis)
    k = p.shape[axis]
    shape = [1] * p.ndim
    shape[axis] = k
    w = (k / np.arange(1, k + 1, dtype=np.float64)).reshape(shape)
    return np.minimum(1.0, (p * w).min(axis=axis))


def bonferroni(p, axis: int = -1) -> np.ndarray:
    """``min(1, k min_i p_i)``: valid under any dependence."""
    p = np.asarray(p, dtype=np.float64)
    return np.minimum(1.0, p.shape[axis] * p.min(axis=axis))


def fisher_statistic(p, axis: int = -1) -> np.ndarray:
    """``-2 sum_i log p_i`` (chi-square with 2k degrees of freedom for independent uniform p)."""
    return -2.0 * np.log(_clip(p)).sum(axis=axis)


def fisher(p, axis: int = -1) -> np.ndarray:
    """Fisher's combined p-value, assuming independence: ``chi2_{2k}.sf(-2 sum log p)``."""
    k = np.asarray(p).shape[axis]
    return stats.chi2.sf(fisher_statistic(p, axis), 2 * k)


def stouffer_statistic(p, axis: int = -1, weights=None) -> np.ndarray:
    """``sum_i w_i z_i / sqrt(sum w_i^2)`` with ``z_i = Phi^{-1}(1 - p_i)`` (standard normal when independent)."""
    z = -special.ndtri(_clip(p))  # = Phi^-1(1 - p), accurate for tiny p
    k = z.shape[axis]
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
    shape = [1] * z.ndim
    shape[axis] = k
    return (z * w.reshape(shape)).sum(axis=axis) / np.sqrt((w ** 2).sum())


def stouffer(p, axis: int = -1, weights=None) -> np.ndarray:
    """Stouffer's combined p-value ``1 - Phi(Z)``, assuming independence."""
    return special.ndtr(-stouffer_statistic(p, axis, weights))


def harmonic_mean(p, axis: int = -1, weights=None) -> np.ndarray:
    """Harmonic mean p-value ``sum w_i / sum (w_i / p_i)`` (Wilson 2019), weights default equal.

    The raw HMP is a valid p-value only up to a factor (``<= e log k`` in the worst case) and is
    approximately valid for small values under dependence; calibrate it (:class:`EmpiricalNull`)
    when exact control matters.
    """
    p = _clip(p)
    k = p.shape[axis]
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
    shape = [1] * p.ndim
    shape[axis] = k
    w = w.reshape(shape)
    return np.minimum(1.0, w.sum() / (w / p).sum(axis=axis))


def cauchy_statistic(p, axis: int = -1, weights=None) -> np.ndarray:
    """Cauchy combination ``T = sum_i w_i tan((1/2 - p_i) pi)`` with weights summing to 1 (Liu & Xie 2020)."""
    p = _clip(p)
    k = p.shape[axis]
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    shape = [1] * p.ndim
    shape[axis] = k
    # tan((1/2 - p) pi) = 1 / tan(p pi); the latter keeps precision for tiny p
    return (w.reshape(shape) / np.tan(p * np.pi)).sum(axis=axis)


def cauchy(p, axis: int = -1, weights=None) -> np.ndarray:
    """Cauchy combination p-value ``1/2 - arctan(T)/pi``: exact under independence, asymptotically
    valid (for small p) under arbitrary dependence."""
    t = cauchy_statistic(p, axis, weights)
    # 1/2 - arctan(T)/pi = arctan2(1, T)/pi, precise for large T
    return np.arctan2(1.0, t) / np.pi


COMBINERS = {"simes": simes, "bonferroni": bonferroni, "fisher": fisher, "stouffer": stouffer,
             "hmp": harmonic_mean, "harmonic_mean": harmonic_mean, "cauchy": cauchy}


def combine(p, method: str = "simes", axis: int = -1) -> np.ndarray:
    """Combine p-values along ``axis`` by name: one of :data:`COMBINERS`."""
    if method not in COMBINERS:
        raise ValueError(f"unknown combiner {method!r}; known: {sorted(COMBINERS)}")
    return COMBINERS[method](p, axis=axis)


def combined_statistic(p, method: str, axis: int = -1) -> np.ndarray:
    """A statistic that is **larger for stronger evidence** (more OOD), for empirical calibration:
    ``-log`` of the combined p-value (Fisher's sum and Stouffer's Z are monotone in it)."""
    if method == "fisher":
        return fisher_statistic(p, axis)
    if method == "stouffer":
        return stouffer_statistic(p, axis)
    if method == "cauchy":
        return cauchy_statistic(p, axis)
    return -np.log(_clip(combine(p, method, axis)))


class EmpiricalNull:
    """Empirical null of a statistic (larger = more anomalous) measured on held-out ID samples.

    ``EmpiricalNull(stat_cal).pvalue(stat)`` is the conformal p-value
    ``(1 + #{cal >= stat}) / (n + 1)``, valid for any statistic, whatever the dependence between the
    tests it combines, as long as the test point is exchangeable with the calibration points.
    ``leave_one_out()`` gives the calibration points' own p-values, each ranked against the *other*
    ``n - 1`` points, ``(1 + #{j != i: cal_j >= cal_i}) / n`` (what a fresh ID point would get, up
    to O(1/n)); use it to calibrate a second-stage statistic on the same points.
    """

    def __init__(self, stat_cal):
        s = np.asarray(stat_cal, dtype=np.float64).ravel()
        if s.size == 0:
            raise ValueError("an empirical null needs at least one calibration value")
        if np.isnan(s).any():
            raise ValueError("calibration statistics contain NaN")
        self.values = s
        self.sorted = np.sort(s)
        self.n = s.size
        self.mean = float(s[np.isfinite(s)].mean()) if np.isfinite(s).any() else 0.0
        sd = float(s[np.isfinite(s)].std()) if np.isfinite(s).sum() > 1 else 0.0
        self.std = sd if sd > 0 else 1.0

    def pvalue(self, stat, side: str = "right") -> np.ndarray:
        return conformal_pvalues(self.sorted, np.asarray(stat, dtype=np.float64), side)

    def leave_one_out(self, side: str = "right") -> np.ndarray:
        le, ge = tail_counts(self.sorted, self.values)
        if side == "right":
            return ge / self.n
        if side == "left":
            return le / self.n
        return np.minimum(1.0, 2.0 * np.minimum(le, ge) / self.n)

    def standardize(self, stat) -> np.ndarray:
        return (np.asarray(stat, dtype=np.float64) - self.mean) / self.std


# ------------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------------
def benjamini_hochberg(p, q: float = 0.1, dependence: str = "prds"):
    """Benjamini–Hochberg over a batch of p-values (1-D).

    Returns ``(rejected, adjusted)``: the boolean rejections at FDR level ``q`` and the BH-adjusted
    p-values (``adjusted <= q`` iff rejected). ``dependence="arbitrary"`` applies the
    Benjamini–Yekutieli factor ``sum_{i<=m} 1/i``.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return np.zeros(0, bool), np.zeros(0)
    order = np.argsort(p, kind="stable")
    factor = m / np.arange(1, m + 1)
    if dependence in ("arbitrary", "by"):
        factor = factor * np.sum(1.0 / np.arange(1, m + 1))
    elif dependence not in ("prds", "independent", "bh"):
        raise ValueError(f"dependence must be 'prds' or 'arbitrary', got {dependence!r}")
    adj_sorted = np.minimum.accumulate((p[order] * factor)[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(1.0, adj_sorted)
    return adj <= q, adj
