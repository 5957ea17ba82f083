"""Permutation tests on sets of feature vectors, for the novelty detector (:mod:`.novelty`).

Plain numpy. Every p-value uses the ``+1`` rule, ``p = (1 + #{null >= observed}) / (B + 1)``, so it is
valid (``P(p <= a) <= a`` under the null) for any number of permutations ``B``. Both tests stop early,
in chunks, once ``(1 + exceedances) / (B + 1)`` exceeds the caller's level ``stop_above``: the
decision at that level is then the one the full test would give (it can only get larger), and the
returned p-value is the running ``(1 + exceedances) / (done + 1)``.

* :func:`local_cohesion`: for each point, the mean cosine similarity to its ``k`` nearest neighbours
  in the set (a point inside a tight group of at least ``k + 1`` points scores near 1).
* :func:`cohesion_null`: the null distribution of ``max_i local_cohesion`` when the set has no
  grouping beyond its marginal spread: the points are rotated to their own principal axes and every
  axis is permuted independently (keeping each axis' marginal and the covariance, destroying
  clusters). Comparing a cluster's cohesion to this *maximum* accounts for the cluster having been
  selected by a clustering of the same points, and for every cluster of the window at once (max-T).
* :func:`energy_test`: the two-sample energy-distance test (Székely & Rizzo) with a permutation null.
* :func:`window_enrichment_pvalue`: the exact permutation p-value of "this group holds more of the
  recent windows' points than chance": the windows are exchangeable under the null, so the recent
  ones are a uniformly random ``m``-subset of all windows.
"""
from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def local_cohesion(x: np.ndarray, k: int) -> np.ndarray:
    """``(n,)`` mean cosine similarity of each row of ``x`` to its ``k`` most similar other rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return local_cohesion(x[None], k)[0]
    n = x.shape[-2]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    u = _unit(x)
    s = u @ np.swapaxes(u, -1, -2)
    idx = np.arange(n)
    s[..., idx, idx] = -np.inf
    top = np.partition(s, n - k, axis=-1)[..., n - k:]
    return top.mean(axis=-1)


def principal_axes(c: np.ndarray) -> np.ndarray:
    """Rows: the principal axes of the centred rows ``c``, by decreasing variance (``(d, d)``)."""
    w, v = np.linalg.eigh(c.T @ c)
    return v[:, ::-1].T


def _axis_permuted(x: np.ndarray, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_perm, n, d)`` copies of ``x`` with each principal axis permuted independently."""
    c = x - x.mean(0)
    vt = principal_axes(c)
    z = c @ vt.T  # coordinates on the set's own principal axes (uncorrelated)
    n, d = z.shape
    order = np.argsort(rng.random((n_perm, n, d)), axis=1)
    zp = np.take_along_axis(np.broadcast_to(z, (n_perm, n, d)), order, axis=1)
    return zp @ vt + x.mean(0)


def cohesion_null(x: np.ndarray, k: int, n_perm: int = 999, seed=0, chunk: int = 50,
                  stop_above: float | None = None, observed: float | None = None) -> np.ndarray:
    """Null sample of ``max_i local_cohesion(x', k)`` over axis-permuted copies ``x'`` of ``x``.

    With ``observed`` and ``stop_above`` given, stops once the test of ``observed`` cannot reject at
    ``stop_above`` (see the module docstring); the returned sample is then shorter than ``n_perm``.
    """
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    done = exceed = 0
    while done < n_perm:
        b = min(chunk, n_perm - done)
        m = local_cohesion(_axis_permuted(x, b, rng), k).max(axis=-1)
        out.append(m)
        done += b
        if observed is not None and stop_above is not None:
            exceed += int((m >= observed).sum())
            if (1 + exceed) / (n_perm + 1) > stop_above:
                break
    return np.concatenate(out)


def window_enrichment_pvalue(counts, m: int, observed: int | None = None) -> float:
    """Exact ``P(sum of counts over m windows drawn without replacement >= observed)``.

    ``counts[w]``: how many points of a group (a cluster) came from window ``w``; under the null that
    the windows are exchangeable (a stationary stream), which ``m`` of them are the recent ones is a
    uniformly random ``m``-subset, so the p-value of the recent windows' count ``observed`` (default:
    the sum of the last ``m`` counts) is the share of ``m``-subsets whose counts sum to at least it.
    Computed by dynamic programming over (windows chosen, count) — every subset, no Monte Carlo. The
    smallest attainable value is ``1 / C(len(counts), m)``."""
    from math import comb

    c = np.asarray(counts, np.int64)
    if c.ndim != 1 or not 1 <= m <= len(c) or (c < 0).any():
        raise ValueError(f"need 1 <= m <= {len(c)} windows and non-negative counts, got m={m}")
    obs = int(c[-m:].sum()) if observed is None else int(observed)
    if obs <= 0:
        return 1.0
    tot = int(c.sum())
    if obs > tot:
        return 0.0
    dp = np.zeros((m + 1, tot + 1))  # dp[j, s]: subsets of j windows seen so far with count sum s
    dp[0, 0] = 1.0
    for x in c:
        x = int(x)
        for j in range(m, 0, -1):
            dp[j, x:] += dp[j - 1, :tot + 1 - x]
    return float(min(1.0, dp[m, obs:].sum() / comb(len(c), m)))


def perm_pvalue(null: np.ndarray, observed: float) -> float:
    """``(1 + #{null >= observed}) / (len(null) + 1)``."""
    null = np.asarray(null)
    return float((1 + np.sum(null >= observed)) / (null.size + 1))


def _pairwise(a: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * a @ a.T
    return np.sqrt(np.maximum(d2, 0.0))


def energy_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (V-statistic), Euclidean."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = _pairwise(np.concatenate([x, y]))
    a = np.zeros(len(d))
    a[:len(x)] = 1.0
    return float(_energy_from_labels(d, a[None], len(x))[0])


def _energy_from_labels(d: np.ndarray, a: np.ndarray, nx: int) -> np.ndarray:
    """Energy statistic for each row of the 0/1 label matrix ``a`` (``(B, N)``, ``nx`` ones per row)."""
    ny = d.shape[0] - nx
    ad = a @ d
    tot = d.sum()
    sxx = (ad * a).sum(1)
    sxy = (ad * (1.0 - a)).sum(1)
    syy = tot - 2.0 * sxy - sxx
    return 2.0 * sxy / (nx * ny) - sxx / (nx * nx) - syy / (ny * ny)


def energy_test(x: np.ndarray, y: np.ndarray, n_perm: int = 999, seed=0, chunk: int = 200,
                stop_above: float | None = None) -> tuple[float, float]:
    """Permutation two-sample test of ``x`` (n, d) against ``y`` (m, d): ``(statistic, p-value)``.

    A small p-value means ``x`` and ``y`` are not samples of one distribution.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    nx, n = len(x), len(x) + len(y)
    if nx < 2 or len(y) < 2:
        raise ValueError(f"energy_test needs at least 2 points per sample, got {nx} and {len(y)}")
    d = _pairwise(np.concatenate([x, y]))
    a0 = np.zeros((1, n))
    a0[0, :nx] = 1.0
    obs = float(_energy_from_labels(d, a0, nx)[0])
    rng = np.random.default_rng(seed)
    done = exceed = 0
    while done < n_perm:
        b = min(chunk, n_perm - done)
        pos = np.argsort(rng.random((b, n)), axis=1)[:, :nx]
        a = np.zeros((b, n))
        np.put_along_axis(a, pos, 1.0, axis=1)
        exceed += int((_energy_from_labels(d, a, nx) >= obs - 1e-12 * abs(obs)).sum())
        done += b
        if stop_above is not None and (1 + exceed) / (n_perm + 1) > stop_above:
            break
    return obs, (1 + exceed) / (done + 1)
