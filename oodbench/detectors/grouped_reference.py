"""The fast engine behind the statistical-test detector: exact conformal p-values of many channels
under many group-conditional (class-conditional) references at once, via a per-channel look-up table
(see :class:`GroupedReference` for the algorithm and memory use). The conventions are those of
:mod:`oodbench.detectors.pvalues`."""
from __future__ import annotations

import numpy as np

from oodbench.detectors.pvalues import SIDES

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
