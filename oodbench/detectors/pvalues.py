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

* :class:`GroupedReference`: the fast engine behind the statistical-test detector. Exact two-sided
  (or one-sided) conformal p-values of many channels under many class-conditional references at
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


# ------------------------------------------------------------------------------------------------
# the fast multi-channel, multi-class engine
# ------------------------------------------------------------------------------------------------
_FMAX = np.finfo(np.float32).max


def _smallest_uint(maxval: int):
    for dt in (np.uint16, np.uint32):
        if maxval <= np.iinfo(dt).max:
            return dt
    return np.uint64


class GroupedReference:
    """Exact conformal p-values of ``d`` channels under ``G`` group-conditional references at once.

    ``GroupedReference(values, groups)`` with ``values`` ``(n, d)`` (e.g. the per-channel statistics
    of the ID reference split) and ``groups`` ``(n,)`` in ``0..G-1`` (their classes).
    ``codes(t)`` returns, for queries ``t`` ``(m, d)``, integer codes ``(m, G, d)`` with
    ``p[i, g, j] = codes[i, g, j] / (n_g + 1)`` -- exactly :func:`conformal_pvalues` of channel ``j``
    against the ``n_g`` reference values of group ``g`` (ties against rejection, smallest p
    ``1/(n_g+1)``); ``pvalues(t)`` divides for you.

    Algorithm (all exact; no interpolation):

    * fit: per channel, the sorted distinct reference values ``v_0 < ... < v_{U-1}`` and, for each
      of the ``2U + 1`` *slots* -- "strictly between ``v_{u-1}`` and ``v_u``" (even slot ``2u``) and
      "equal to ``v_u``" (odd slot ``2u+1``) -- the code of every group, precomputed from
      cumulative group counts. The code depends only on the slot, so scoring is a table look-up.
    * finding the slot of a query: a uniform grid of ``grid_factor * U`` buckets over
      ``[v_0, v_{U-1}]`` stores how many distinct values lie in earlier buckets; the query's bucket
      is one multiply, then the values from the start of its bucket are compared in sorted order
      (``max_scan`` vectorised steps; the few queries in crowded buckets keep scanning). Bucket
      indices of references and queries use the same float32 arithmetic, which is monotone, so
      values in later buckets are larger than the query and the count is exact.
      After a few extra steps the remaining queries of very crowded buckets (a channel whose range is
      stretched by a far outlier) fall back to ``searchsorted``.
    * everything is vectorised over a chunk of queries x all channels; one look-up gathers the ``G``
      codes of a slot as one contiguous row.

    Memory: ``d * (2U + 1) * G`` codes (uint16 while ``n_g < 65535``) + ``d * U`` float32 values +
    ``d * grid_factor * U`` bucket starts; ``U <= n``, so linear in the reference size ``n``
    (MNIST/LeNet taps, ``n = 5000``, ``d = 650``, ``G = 10``: 161 MiB, 33 KiB per reference sample).
    NaN queries are treated as larger than every reference value, and as equal to NaN references;
    infinities as the largest finite float32.
    """

    def __init__(self, values, groups, n_groups: int | None = None, side: str = "two-sided",
                 grid_factor: int = 4, max_scan: int = 1, chunk: int = 1024):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        x = np.asarray(values, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"values must be (n, d), got shape {x.shape}")
        g = np.asarray(groups, dtype=np.int64).ravel()
        if g.shape[0] != x.shape[0]:
            raise ValueError("values and groups have different lengths")
        G = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
        if g.size and (g.min() < 0 or g.max() >= G):
            raise ValueError(f"groups must be in 0..{G - 1}")
        x = np.nan_to_num(x, nan=_FMAX, posinf=_FMAX, neginf=-_FMAX)  # only the +inf padding is infinite
        n, d = x.shape
        self.side, self.n_groups, self.d = side, G, d
        self.n_per_group = np.bincount(g, minlength=G).astype(np.int64)
        if (self.n_per_group == 0).any():
            raise ValueError(f"groups {np.flatnonzero(self.n_per_group == 0).tolist()} have no reference values")
        self.chunk, self.max_scan = int(chunk), int(max_scan)
        code_dt = _smallest_uint(int(self.n_per_group.max()) + 1)

        uniq = [np.unique(x[:, j]) for j in range(d)]
        U = np.array([len(u) for u in uniq], np.int64)
        Umax = int(U.max()) if d else 1
        S = 2 * Umax + 1
        self.U, self.Umax, self.S = U, Umax, S
        # sorted distinct values per channel, padded with >= max_scan + 1 times +inf so that a scan
        # never runs into the next channel's values
        self.width = Umax + self.max_scan + 1
        self.values = np.full((d, self.width), np.inf, np.float32)
        self.table = np.zeros((d, S, G), code_dt)  # [channel, slot, group]
        nb = max(1, int(grid_factor) * Umax)
        self.n_buckets = nb
        self.lo = np.zeros(d, np.float32)
        self.scale = np.zeros(d, np.float32)
        start_dt = np.int16 if Umax < 2 ** 15 - 1 else (np.int32 if Umax < 2 ** 31 - 1 else np.int64)
        self.starts = np.zeros((d, nb + 1), start_dt)
        ng = self.n_per_group[None, :]
        for j in range(d):
            u = uniq[j]
            self.values[j, :len(u)] = u
            inv = np.searchsorted(u, x[:, j])
            cnt = np.bincount(inv * G + g, minlength=len(u) * G).reshape(len(u), G)
            below = np.zeros((len(u) + 1, G), np.int64)  # below[k, g] = #{group g values < v_k}
            np.cumsum(cnt, axis=0, out=below[1:])
            le_gap, ge_gap = below, ng - below  # strictly between v_{k-1} and v_k
            le_hit, ge_hit = below[1:], ng - below[:-1]  # equal to v_k
            self.table[j, 0:2 * len(u) + 1:2] = self._code(le_gap, ge_gap, ng)
            self.table[j, 1:2 * len(u):2] = self._code(le_hit, ge_hit, ng)
            fin = u[np.isfinite(u)]
            lo = fin[0] if fin.size else np.float32(0)
            hi = fin[-1] if fin.size else np.float32(0)
            self.lo[j] = lo
            self.scale[j] = np.float32(nb / (float(hi) - float(lo))) if hi > lo else np.float32(0)
            bu = self._bucket(u[None, :], self.lo[j:j + 1, None], self.scale[j:j + 1, None])[0]
            self.starts[j] = np.searchsorted(bu, np.arange(nb + 1), side="left")

    def _code(self, le, ge, ng):
        if self.side == "right":
            return 1 + ge
        if self.side == "left":
            return 1 + le
        return np.minimum(ng + 1, 2 * (1 + np.minimum(le, ge)))

    def _bucket(self, t, lo, scale):
        with np.errstate(over="ignore", invalid="ignore"):
            b = (t - lo) * scale  # float32, monotone in t
        np.clip(b, 0, self.n_buckets - 1, out=b)
        return b.astype(np.int64)

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes + self.values.nbytes + self.starts.nbytes)

    def slots(self, t) -> np.ndarray:
        """Slot index (see the class docstring) of each query, ``(m, d)`` for ``t`` ``(m, d)``.

        Values in later buckets than the query's are larger than it (the bucket map is monotone),
        so counting ``v < t`` from the start of the query's bucket, in sorted order, stops by itself
        at the first value ``>= t``; no occupancy bookkeeping is needed.
        """
        tq = np.asarray(t, dtype=np.float32)
        if not np.isfinite(tq).all():  # NaN -> largest float32, +-inf -> +-largest (same as the references)
            tq = np.nan_to_num(tq, nan=_FMAX, posinf=_FMAX, neginf=-_FMAX)
        m, d = tq.shape
        with np.errstate(over="ignore", invalid="ignore"):
            b = tq - self.lo
            b *= self.scale  # float32, monotone in t; inf * 0 -> NaN on constant channels
        np.fmax(b, 0, out=b)  # fmax/fmin also map NaN to the bound
        np.fmin(b, self.n_buckets - 1, out=b)
        bi = b.astype(np.intp)
        bi += np.arange(d, dtype=np.intp) * (self.n_buckets + 1)
        pos = self.starts.ravel().take(bi).astype(np.int64)  # number of distinct values in earlier buckets
        base = pos + np.arange(d, dtype=np.int64) * self.width  # flat index of the first value to compare
        vflat = self.values.ravel()
        hit = np.zeros(tq.shape, bool)
        lt = np.ones(tq.shape, bool)
        eq = np.empty(tq.shape, bool)
        for k in range(self.max_scan):
            v = vflat.take(base + k if k else base)
            np.less(v, tq, out=lt)
            pos += lt
            np.equal(v, tq, out=eq)
            hit |= eq
        idx = np.flatnonzero(lt)  # still below t after max_scan values: crowded bucket, keep scanning
        if idx.size:
            po, hi_ = pos.reshape(-1), hit.reshape(-1)
            bs, tv = base.reshape(-1)[idx], tq.reshape(-1)[idx]
            k = self.max_scan
            while idx.size and k < self.max_scan + 4:
                v = vflat.take(bs + k)
                less = v < tv
                po[idx] += less
                hi_[idx] |= v == tv
                k += 1
                idx, bs, tv = idx[less], bs[less], tv[less]
            if idx.size:  # very crowded buckets: binary search, channel by channel
                ch = idx % d
                for j in np.unique(ch):
                    sel = ch == j
                    vals = self.values[j, :self.U[j]]
                    q = tv[sel]
                    p = np.searchsorted(vals, q, side="left")
                    po[idx[sel]] = p
                    hi_[idx[sel]] = (p < self.U[j]) & (vals[np.minimum(p, self.U[j] - 1)] == q)
        pos *= 2
        pos += hit
        return pos

    def codes(self, t, out=None) -> np.ndarray:
        """Integer codes ``(m, G, d)``: ``p = code / (n_g + 1)`` (see the class docstring)."""
        t = np.asarray(t, dtype=np.float32)
        if t.ndim != 2 or t.shape[1] != self.d:
            raise ValueError(f"queries must be (m, {self.d}), got {t.shape}")
        m, G, d = t.shape[0], self.n_groups, self.d
        if out is None:
            out = np.empty((m, G, d), self.table.dtype)
        rows = self.table.reshape(d * self.S, G).view(np.dtype((np.void, G * self.table.itemsize))).ravel()
        offs = np.arange(d, dtype=np.int64) * self.S
        for i in range(0, m, self.chunk):
            sl = self.slots(t[i:i + self.chunk])  # (mc, d)
            sl += offs
            got = rows.take(sl).view(self.table.dtype).reshape(sl.shape[0], d, G)  # one G-row per look-up
            out[i:i + self.chunk] = got.transpose(0, 2, 1)
        return out

    def pvalues(self, t) -> np.ndarray:
        """Float p-values ``(m, G, d)``."""
        return self.codes(t) / (self.n_per_group[None, :, None] + 1.0)
