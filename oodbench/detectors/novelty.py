"""Novelty detection: decide, with a statistical test, when a new class appears among OOD-flagged inputs.

Plain arrays in, decisions out (lab_methods.md §6). :class:`NoveltyDetector` is fitted on ID reference
features and labels, then :meth:`NoveltyDetector.process` takes one window of test inputs (features and
any per-input p-values: StatTest, VAE, or conformal p-values of any score via :func:`score_pvalues`):

1. **flag**: Benjamini–Hochberg at level ``q`` over the window's p-values (FDR of the flagged set <= q);
   flagged inputs near a prototype of an already declared new class are assigned to it (open-world
   loop) and leave the discovery step; the others join a buffer holding the last ``memory`` windows'
   flagged, unassigned inputs, which is the set clustered next;
2. **embed**: L2-normalised features projected on a PCA fitted on the ID reference features;
3. **cluster** the remaining flagged inputs: HDBSCAN (``min_cluster_size = min_size``) or a GMM with
   the number of components chosen by BIC; clusters smaller than ``min_size`` are dropped;
4. **test** each cluster S against two nulls:

   * *chance grouping* (null 1), two ways (``null1``):

     - ``"history"`` (default): *the cluster is made of the kind of flagged inputs seen before.* The
       flagged inputs of the first ``history`` windows are kept as a frozen reference of what rejected
       inputs normally look like (scattered junk, and junk that is itself coherent, like noise images);
       the pool clustered at each later window is that reference plus the last ``memory`` windows'
       flagged, unassigned inputs, clustered without knowing which is which. Under the null that the
       windows are exchangeable (a stationary stream), the recent windows are a random ``memory``-subset
       of all pooled windows, so the number of recent inputs in a cluster has an exact permutation
       p-value (:func:`.permtests.window_enrichment_pvalue`); Bonferroni over the window's candidate
       clusters. A cluster that a new class fills is almost all recent; a junk cluster is not. Then
       only the cluster's recent members whose ``min_size - 1`` nearest pooled neighbours are at least
       half recent are kept (HDBSCAN / the GMM may join a new class to nearby junk), and the cluster
       is declared only if ``min_size`` of them remain. Nothing is declared during the first
       ``history`` windows.
     - ``"cohesion"`` (the design of lab_methods.md §6, within one pool, no reference): the cohesion
       ``T(S) = median_{i in S}`` (mean cosine similarity of i to its ``min_size - 1`` nearest flagged
       neighbours, cosines about the mean of the flagged inputs) is compared with the permutation
       distribution of the **maximum** of the same statistic over the whole flagged set after each of
       its principal axes has been permuted independently (:func:`.permtests.cohesion_null`); max-T
       covers the selection by clustering and every cluster of the window at once. Measured on
       mnist-open it almost never rejects: junk forms coherent clusters too (noise images), and axis
       permutation keeps clusters that separate along one axis, so its null maximum is high.
   * *shifted known class* (null 2): energy-distance permutation test of S against each ID class's
     reference features — its most atypical reference points when reference p-values are given
     (:meth:`NoveltyDetector.fit`), plus then the most atypical ID points of all classes together —
     and each declared new class's members; ``p_shift = max`` over classes, so
     the cluster must differ from every known class. Bonferroni over the ``m`` candidate clusters of
     the window: reject when ``p_shift <= alpha / m``.

   A new class is declared when both nulls are rejected (intersection–union: each at its level, no
   further correction) and ``|S| >= min_size``. Per window, the probability of declaring a cluster for
   which either null holds is at most ``alpha``, so ``alpha = 0.001`` targets <= 1 false declaration
   per 1,000 windows when the nulls' assumptions hold (for ``"history"``: windows exchangeable, i.e.
   the junk of the reference period is the junk that follows).
5. **output** per declared class (:class:`NovelClass`): members, prototype (mean embedding), the
   p-values and a conformal assignment radius (the ``ceil((1 - assign_level)(s + 1))``-th smallest
   member distance to the prototype); later inputs within a prototype's radius are assigned to it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from math import comb

import numpy as np

from oodbench.detectors import permtests
from oodbench.detectors.pvalues import benjamini_hochberg, conformal_pvalues, sort_reference

CLUSTERINGS = ("hdbscan", "gmm")
NULL1 = ("history", "cohesion")
#: a declared member's nearest pooled neighbours must be at least this share recent (``null1="history"``)
RECENT_SHARE = 0.5
#: HDBSCAN noise points within GROW x a cluster's largest member distance join it
GROW = 1.5


def score_pvalues(cal_scores, scores) -> np.ndarray:
    """Conformal p-values of any OOD score (higher = more OOD) against ID calibration scores."""
    return conformal_pvalues(sort_reference(np.asarray(cal_scores, np.float64)), np.asarray(scores, np.float64),
                             "right")


@dataclass
class NovelClass:
    """One declared new class."""

    id: int
    window: int
    members: np.ndarray  # ids of the members (see :meth:`NoveltyDetector.process`)
    prototype: np.ndarray  # mean embedding of the members
    radius: float  # conformal assignment radius (Euclidean, embedding space)
    p_chance: float  # null 1 (chance grouping): window enrichment or cohesion, see ``null1``
    p_shift: float
    p_shift_per_class: dict
    size: int
    embedded: np.ndarray = field(repr=False, default=None)  # members' embeddings (a reference for null 2)

    def as_dict(self) -> dict:
        return {"id": self.id, "window": self.window, "size": self.size, "members": self.members.tolist(),
                "radius": self.radius, "p_chance": self.p_chance, "p_shift": self.p_shift,
                "p_shift_per_class": self.p_shift_per_class, "prototype": self.prototype.tolist()}


@dataclass
class WindowResult:
    """What :meth:`NoveltyDetector.process` decided for one window (indices are within the window)."""

    flagged: np.ndarray  # bool (n,)
    assigned: np.ndarray  # int (n,): id of a declared new class, or -1
    clusters: np.ndarray  # int (n,): cluster label of this window's flagged, unassigned inputs, else -1
    candidates: list  # dict per cluster with >= min_size recent members: size, statistic, p-values, declared
    declared: list  # NovelClass declared in this window


class NoveltyDetector:
    """Windowed new-class discovery on OOD-flagged inputs (see the module docstring).

    ``q``: BH level for flagging; ``alpha``: per-window level of a false declaration; ``min_size``:
    smallest declared class (also HDBSCAN's ``min_cluster_size`` and ``k + 1`` of the cohesion);
    ``n_components``: PCA dimensions; ``cluster``: ``"hdbscan"`` or ``"gmm"``; ``n_perm``: permutations
    per test (at least ``1/alpha - 1`` so that ``alpha`` is attainable); ``n_ref_per_class``: reference
    points per known class in the two-sample test; ``assign_level``: miss rate of the assignment radius;
    ``memory``: windows whose flagged, unassigned inputs are clustered together (1 = this window only);
    ``null1``: ``"history"`` or ``"cohesion"`` (the chance-grouping null, see the module docstring);
    ``history``: windows whose flagged inputs form the frozen reference of ``null1="history"``.
    """

    def __init__(self, q: float = 0.1, alpha: float = 0.001, min_size: int = 20, n_components: int = 32,
                 cluster: str = "hdbscan", n_perm: int = 999, n_ref_per_class: int = 200,
                 assign_level: float = 0.05, max_gmm_components: int = 8, memory: int = 5, null1: str = "history",
                 history: int = 40, seed: int = 0):
        if cluster not in CLUSTERINGS:
            raise ValueError(f"cluster must be one of {CLUSTERINGS}, got {cluster!r}")
        if null1 not in NULL1:
            raise ValueError(f"null1 must be one of {NULL1}, got {null1!r}")
        if null1 == "history" and comb(history + memory, memory) * alpha < 1:
            raise ValueError(f"history={history} and memory={memory} windows cannot reach alpha={alpha}: the "
                             f"smallest window-enrichment p-value is 1/C({history + memory}, {memory})")
        if not 0 < alpha < 1 or not 0 < q < 1:
            raise ValueError(f"q and alpha must be in (0, 1), got q={q}, alpha={alpha}")
        if (n_perm + 1) * alpha < 1:
            raise ValueError(f"n_perm={n_perm} cannot reach alpha={alpha}: need n_perm >= {int(np.ceil(1 / alpha)) - 1}")
        if min_size < 3:
            raise ValueError(f"min_size must be >= 3, got {min_size}")
        self.q, self.alpha, self.min_size, self.n_components = q, alpha, min_size, n_components
        self.cluster, self.n_perm, self.n_ref_per_class = cluster, n_perm, n_ref_per_class
        self.assign_level, self.max_gmm_components, self.seed = assign_level, max_gmm_components, seed
        self.memory, self.null1, self.history = memory, null1, history
        self._reset()

    def _reset(self) -> None:
        self.classes: list[NovelClass] = []
        self._window = self._seen = 0
        self._buffer: list = []  # (window, ids, embeddings) of flagged, unassigned, undeclared inputs
        self._reference: list = []  # the same for the first ``history`` windows (null1="history")

    # -- fitting and embedding ---------------------------------------------------------------------
    def fit(self, ref_features, ref_labels, ref_pvalues=None) -> "NoveltyDetector":
        """Fit the PCA on ID reference features and keep, per ID class, the null-2 reference: the
        ``n_ref_per_class`` points with the smallest ``ref_pvalues`` when given (flagged ID inputs are
        a class's atypical tail, so a cluster of them must be compared with that tail, not with the
        whole class), else a random subsample. ``ref_pvalues`` must come from the same detector as the
        p-values of the windows, on ID data not used to calibrate it (or only slightly: ranks matter)."""
        f = np.asarray(ref_features, np.float64)
        y = np.asarray(ref_labels)
        if f.ndim != 2 or len(f) != len(y):
            raise ValueError(f"ref_features must be (n, d) with one label each, got {f.shape} and {y.shape}")
        if ref_pvalues is not None and len(ref_pvalues) != len(y):
            raise ValueError(f"{len(ref_pvalues)} ref_pvalues for {len(y)} reference points")
        u = permtests._unit(f)
        self.mean_ = u.mean(0)
        k = min(self.n_components, f.shape[1], len(f) - 1)
        self.components_ = permtests.principal_axes(u - self.mean_)[:k]
        z = self.embed(f)
        rng = np.random.default_rng(self.seed)
        self.ref_ = {}
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if len(idx) > self.n_ref_per_class:
                if ref_pvalues is None:
                    idx = rng.choice(idx, self.n_ref_per_class, replace=False)
                else:
                    idx = idx[np.argsort(np.asarray(ref_pvalues)[idx], kind="stable")[:self.n_ref_per_class]]
            self.ref_[int(c)] = z[idx]
        if ref_pvalues is not None:  # the atypical tail of ID as a whole (a cluster mixing several classes' tails)
            self.ref_["tail"] = z[np.argsort(np.asarray(ref_pvalues), kind="stable")[:self.n_ref_per_class]]
        self._reset()
        return self

    def embed(self, features) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise RuntimeError("NoveltyDetector: call fit() before use")
        return (permtests._unit(np.asarray(features, np.float64)) - self.mean_) @ self.components_.T

    # -- open-world assignment ---------------------------------------------------------------------
    def assign(self, features=None, embedded=None) -> np.ndarray:
        """Id of the declared class whose prototype is nearest, when within its radius; else -1."""
        z = self.embed(features) if embedded is None else embedded
        out = np.full(len(z), -1, np.int64)
        if not self.classes or len(z) == 0:
            return out
        protos = np.stack([c.prototype for c in self.classes])
        d = np.linalg.norm(z[:, None, :] - protos[None], axis=-1) / np.array([c.radius for c in self.classes])
        best = d.argmin(1)
        ok = d[np.arange(len(z)), best] <= 1.0
        out[ok] = np.array([c.id for c in self.classes])[best[ok]]
        if self._reference and ok.any():  # null1="history": the input must also look like the class, not the reference
            out[ok] = np.where(self._vote(z[ok], out[ok]), out[ok], -1)
        return out

    def _vote(self, z: np.ndarray, cls: np.ndarray) -> np.ndarray:
        """Whether at least :data:`RECENT_SHARE` of each point's ``min_size - 1`` nearest neighbours among
        the declared classes' members and the reference period's flagged inputs are members of ``cls``."""
        ref = np.concatenate([b[2] for b in self._reference])
        bank = np.concatenate([ref] + [c.embedded for c in self.classes])
        owner = np.concatenate([np.full(len(ref), -1)] + [np.full(len(c.embedded), c.id) for c in self.classes])
        nn = _nearest(z, bank, min(self.min_size - 1, len(bank)))
        return (owner[nn] == cls[:, None]).mean(1) >= RECENT_SHARE

    # -- one window --------------------------------------------------------------------------------
    def process(self, features, pvalues, ids=None) -> WindowResult:
        """Flag, assign, cluster, test and declare on one window (``features`` (n, d), ``pvalues`` (n,)).

        ``ids``: identifiers of the inputs (default: a running count over all windows processed); a
        declared class's ``members`` are ids, and may include flagged inputs of the previous
        ``memory - 1`` windows that were left unassigned.
        """
        if not hasattr(self, "components_"):
            raise RuntimeError("NoveltyDetector: call fit() before use")
        features = np.asarray(features)
        pvalues = np.asarray(pvalues, np.float64)
        if len(features) != len(pvalues):
            raise ValueError(f"{len(features)} feature rows but {len(pvalues)} p-values")
        n = len(pvalues)
        ids = np.arange(self._seen, self._seen + n) if ids is None else np.asarray(ids)
        self._seen += n
        w = self._window
        self._window += 1
        flagged, _ = benjamini_hochberg(pvalues, self.q)
        assigned = np.full(n, -1, np.int64)
        clusters = np.full(n, -1, np.int64)
        fidx = np.flatnonzero(flagged)
        z_all = self.embed(features[fidx]) if len(fidx) else np.zeros((0, len(self.components_)))
        assigned[fidx] = self.assign(embedded=z_all)
        free = assigned[fidx] < 0
        entry = (w, ids[fidx[free]], z_all[free])
        history = self.null1 == "history"
        if history and len(self._reference) < self.history:  # still building the reference period
            self._reference.append(entry)
            return WindowResult(flagged, assigned, clusters, [], [])
        # the discovery pool: the reference windows (null1="history"), then the recent windows' buffer
        self._buffer = [b for b in self._buffer if b[0] > w - self.memory] + [entry]
        wins = (self._reference if history else []) + self._buffer
        pool = np.concatenate([b[1] for b in wins])
        z = np.concatenate([b[2] for b in wins])
        tags = np.concatenate([np.full(len(b[1]), i) for i, b in enumerate(wins)]).astype(np.int64)
        recent = tags >= len(wins) - len(self._buffer)
        here = {int(i): j for j, i in enumerate(ids)}
        if recent.sum() < max(self.min_size, 3):
            return WindowResult(flagged, assigned, clusters, [], [])
        labels = self._cluster(z)
        for i, lab in zip(pool, labels):
            if int(i) in here:
                clusters[here[int(i)]] = lab
        cands = [c for c in np.unique(labels) if c >= 0 and np.sum((labels == c) & recent) >= self.min_size]
        if not cands:
            return WindowResult(flagged, assigned, clusters, [], [])
        level = self.alpha / len(cands)
        if history:
            p_chance = {c: permtests.window_enrichment_pvalue(np.bincount(tags[labels == c], minlength=len(wins)),
                                                               len(self._buffer)) for c in cands}
            stat = {c: float(np.sum((labels == c) & recent)) for c in cands}
            level1 = level
        else:
            k = self.min_size - 1
            zc = z - z.mean(0)  # cosines about the pool's mean: a common offset of all flagged inputs is no cohesion
            coh = permtests.local_cohesion(zc, k)
            stat = {c: float(np.median(coh[labels == c])) for c in cands}
            null = permtests.cohesion_null(zc, k, self.n_perm, seed=[self.seed, w, 1], stop_above=self.alpha,
                                           observed=max(stat.values()))
            p_chance = {c: permtests.perm_pvalue(null, stat[c]) for c in cands}
            level1 = self.alpha  # max-T: one comparison covers every cluster
        results, declared = [], []
        for c in cands:
            members = (labels == c) & recent
            res = {"cluster": int(c), "size": int(members.sum()), "statistic": stat[c], "p_chance": p_chance[c],
                   "p_shift": None, "p_shift_per_class": {}, "declared": False}
            if p_chance[c] <= level1:
                if history:
                    members = self._purified(z, recent, members)
                    res["size"] = int(members.sum())
                if members.sum() >= self.min_size:
                    res["p_shift"], res["p_shift_per_class"] = self._shift_test(z[members], level, [self.seed, w, c])
                    if res["p_shift"] <= level:
                        declared.append(self._declare(pool[members], z[members], w, p_chance[c], res))
                        res["declared"] = True
            results.append(res)
        if declared:  # declared members, and buffered inputs now within a prototype, leave the buffer
            self._buffer = [(bw, bi[keep], bz[keep]) for bw, bi, bz in self._buffer
                            for keep in [~np.isin(bi, np.concatenate([c.members for c in declared]))
                                         & (self.assign(embedded=bz) < 0)]]
        return WindowResult(flagged, assigned, clusters, results, declared)

    def _purified(self, z: np.ndarray, recent: np.ndarray, members: np.ndarray) -> np.ndarray:
        """The members whose ``min_size - 1`` nearest pooled neighbours are at least :data:`RECENT_SHARE`
        recent (a cluster that joined a new class to nearby reference junk keeps the new class)."""
        idx = np.flatnonzero(members)
        nn = _nearest(z[idx], z, min(self.min_size - 1, len(z) - 1), self_index=idx)
        out = np.zeros_like(members)
        out[idx[recent[nn].mean(1) >= RECENT_SHARE]] = True
        return out

    def _cluster(self, z: np.ndarray) -> np.ndarray:
        if self.cluster == "hdbscan":
            from sklearn.cluster import HDBSCAN

            labels = HDBSCAN(min_cluster_size=self.min_size, allow_single_cluster=True, copy=True).fit_predict(z)
            return _grow(z, labels)
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        best, best_bic = None, np.inf
        for m in range(1, min(self.max_gmm_components, len(z) // self.min_size) + 1):
            with warnings.catch_warnings():  # a component count BIC rejects anyway may not converge: not news
                warnings.simplefilter("ignore", ConvergenceWarning)
                g = GaussianMixture(m, covariance_type="diag", init_params="k-means++", random_state=self.seed,
                                    reg_covar=1e-4).fit(z)
            bic = g.bic(z)
            if bic < best_bic:
                best, best_bic = g, bic
        if best is None:
            return np.full(len(z), -1, np.int64)
        return best.predict(z)

    def _shift_test(self, zs: np.ndarray, level: float, seed) -> tuple[float, dict]:
        """Max over known classes (ID and declared) of the energy-test p-values; nearest class first,
        stopping as soon as one class is not rejected at ``level``."""
        refs = {f"id:{c}": r for c, r in self.ref_.items()}
        refs.update({f"new:{c.id}": c.embedded for c in self.classes})
        mu = zs.mean(0)
        order = sorted(refs, key=lambda c: np.linalg.norm(refs[c].mean(0) - mu))
        per = {}
        n_perm = max(self.n_perm, int(np.ceil(1 / level)) - 1)  # so that ``level`` is attainable
        for i, c in enumerate(order):
            _, p = permtests.energy_test(zs, refs[c], n_perm, seed=[*seed, i], stop_above=level)
            per[c] = p
            if p > level:
                break
        return max(per.values()), per

    def _declare(self, members, zs, w, p1, res) -> NovelClass:
        proto = zs.mean(0)
        d = np.sort(np.linalg.norm(zs - proto, axis=1))
        r = int(np.ceil((1 - self.assign_level) * (len(d) + 1)))
        radius = float(d[min(r, len(d)) - 1])
        nc = NovelClass(len(self.classes), w, members, proto, max(radius, 1e-12), p1, res["p_shift"],
                        res["p_shift_per_class"], len(members), zs)
        self.classes.append(nc)
        return nc


def _nearest(query: np.ndarray, bank: np.ndarray, k: int, self_index: np.ndarray | None = None,
             chunk: int = 64) -> np.ndarray:
    """``(len(query), k)`` indices of each query point's ``k`` nearest rows of ``bank`` (squared Euclidean,
    in no particular order); ``self_index[i]``: the row of ``bank`` that is query ``i`` itself, left out.
    In chunks of query rows, so memory stays at ``chunk × len(bank) × dim``."""
    out = np.empty((len(query), k), np.int64)
    for a in range(0, len(query), chunk):
        d = ((query[a:a + chunk, None, :] - bank[None, :, :]) ** 2).sum(-1)
        if self_index is not None:
            d[np.arange(len(d)), self_index[a:a + chunk]] = np.inf  # not its own neighbour
        out[a:a + chunk] = np.argpartition(d, k - 1, axis=1)[:, :k]
    return out


def _grow(z: np.ndarray, labels: np.ndarray, factor: float = GROW) -> np.ndarray:
    """Give each HDBSCAN noise point to the cluster with the nearest prototype when it lies within that
    cluster's largest member distance times ``factor`` (HDBSCAN leaves a cluster's fringe as noise)."""
    cs = [c for c in np.unique(labels) if c >= 0]
    noise = np.flatnonzero(labels < 0)
    if not cs or not len(noise):
        return labels
    protos = np.stack([z[labels == c].mean(0) for c in cs])
    radii = factor * np.array([np.linalg.norm(z[labels == c] - protos[i], axis=1).max() for i, c in enumerate(cs)])
    d = np.linalg.norm(z[noise, None, :] - protos[None], axis=-1) / np.maximum(radii, 1e-12)
    best = d.argmin(1)
    ok = d[np.arange(len(noise)), best] <= 1.0
    out = labels.copy()
    out[noise[ok]] = np.asarray(cs)[best[ok]]
    return out
