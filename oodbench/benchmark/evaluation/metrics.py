"""OOD metrics from raw scores, one implementation for every detector.

Conventions (those of OpenOOD v1.5 and pytorch-ood 0.4.0; see ``../shared/specs/anchors.md`` §0, §7):

* scores are **outlier scores** (higher = more OOD) and **OOD is the positive class**;
* the ROC and PR curves have one point per unique score (exact, no subsampling); tied samples enter
  at the same threshold, so ties count half in AUROC;
* ``auroc``: trapezoid under the ROC through (0, 0) … (1, 1) (= Mann–Whitney U with ties halved);
* ``fpr95``: fraction of ID samples flagged at the **first** threshold where at least 95 % of OOD
  samples are flagged (no interpolation) — "FPR@95TPR, OOD positive";
* ``fpr95_id``: the older ODIN-paper / pre-2023 OpenOOD variant, **ID positive**: fraction of OOD
  samples accepted at the first threshold where at least 95 % of ID samples are accepted.
  Reported only under this name; TNR@95TPR of those papers is ``1 - fpr95_id``;
* ``aupr_out`` / ``aupr_in``: trapezoid over the precision–recall curve (as
  ``sklearn.metrics.auc(recall, precision)``, not average precision) with OOD / ID as positive
  (for ``aupr_in`` the scores are negated);
* aggregates over test sets (near / far / covariate) are unweighted means of per-set values.

NaN scores raise ``ValueError``; ±inf are valid scores (they sort to the ends). All values are
fractions in [0, 1]. :func:`bootstrap` gives stratified percentile confidence intervals, computing
every resample at once from multinomial weights on the one sorted order (:func:`replicates`);
:func:`paired_bootstrap` gives replicates of several detectors on shared resamples (paired).
``benchmarks/bootstrap_speed.py`` measures the speed against a per-resample loop.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

METRICS = ("auroc", "fpr95", "fpr95_id", "aupr_in", "aupr_out")
TPR_LEVEL = 0.95


def _check(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(id_scores, dtype=np.float64).ravel()
    b = np.asarray(ood_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"metrics need ID and OOD scores, got {a.size} ID and {b.size} OOD")
    for name, s in (("ID", a), ("OOD", b)):
        n_nan = int(np.isnan(s).sum())
        if n_nan:
            raise ValueError(f"{name} scores contain {n_nan} NaN values; a detector must return finite scores "
                             "or ±inf, never NaN")
    return a, b


class _Counts:
    """Cumulative OOD (tps) and ID (fps) counts at each unique threshold, descending; optionally
    for a batch of sample weights (bootstrap), shape (B, m)."""

    def __init__(self, id_scores: np.ndarray, ood_scores: np.ndarray, w_id=None, w_ood=None):
        s = np.concatenate([ood_scores, id_scores])
        pos = np.concatenate([np.ones(ood_scores.size), np.zeros(id_scores.size)])
        order = np.argsort(-s, kind="mergesort")
        ss = s[order]
        last = np.ones(s.size, dtype=bool)
        last[:-1] = ss[1:] != ss[:-1]  # ±inf ties with itself; -0.0 == 0.0
        idx = np.flatnonzero(last)
        self.thresholds = ss[idx]
        if w_id is None:
            self.tps = np.cumsum(pos[order])[idx]
            self.fps = idx + 1 - self.tps
        else:
            w = np.concatenate([w_ood, w_id], axis=-1)[..., order]
            tps = np.cumsum(np.where(pos[order] > 0, w, 0), axis=-1, dtype=np.int32)[..., idx]
            self.tps = tps.astype(np.float64)
            self.fps = (np.cumsum(w, axis=-1, dtype=np.int32)[..., idx] - tps).astype(np.float64)

    def reversed(self):
        """Counts of ``-scores`` with ID as the positive class."""
        n_pos, n_neg = self.tps[..., -1:], self.fps[..., -1:]
        zero = np.zeros_like(n_pos)
        tps = n_neg - np.concatenate([zero, self.fps[..., :-1]], axis=-1)
        fps = n_pos - np.concatenate([zero, self.tps[..., :-1]], axis=-1)
        return tps[..., ::-1], fps[..., ::-1]


def _roc(tps, fps):
    zero = np.zeros(tps.shape[:-1] + (1,))
    fpr = np.concatenate([zero, fps], axis=-1) / fps[..., -1:]
    tpr = np.concatenate([zero, tps], axis=-1) / tps[..., -1:]
    return fpr, tpr


def _area(x, y):
    return ((x[..., 1:] - x[..., :-1]) * (y[..., 1:] + y[..., :-1])).sum(-1) / 2


def _fpr_at(tps, fps, level=TPR_LEVEL):
    fpr, tpr = _roc(tps, fps)
    i = np.argmax(tpr >= level, axis=-1)  # first threshold reaching the level; the curve ends at 1
    return np.take_along_axis(fpr, i[..., None], axis=-1)[..., 0]


def _aupr(tps, fps):
    denom = tps + fps
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(denom > 0, tps / np.where(denom > 0, denom, 1), 1.0)
        recall = tps / tps[..., -1:]
    one = np.ones(tps.shape[:-1] + (1,))
    precision = np.concatenate([precision[..., ::-1], one], axis=-1)
    recall = np.concatenate([recall[..., ::-1], one - 1], axis=-1)
    return -_area(recall, precision)


def _all(c: _Counts, which=METRICS) -> dict:
    out = {}
    if "auroc" in which:
        fpr, tpr = _roc(c.tps, c.fps)
        out["auroc"] = _area(fpr, tpr)
    if "fpr95" in which:
        out["fpr95"] = _fpr_at(c.tps, c.fps)
    if "fpr95_id" in which or "aupr_in" in which:
        rt, rf = c.reversed()
        if "fpr95_id" in which:
            out["fpr95_id"] = _fpr_at(rt, rf)
        if "aupr_in" in which:
            out["aupr_in"] = _aupr(rt, rf)
    if "aupr_out" in which:
        out["aupr_out"] = _aupr(c.tps, c.fps)
    return {k: out[k] for k in METRICS if k in out}


def evaluate(id_scores, ood_scores) -> dict[str, float]:
    """All metrics for one ID/OOD pair: ``auroc``, ``fpr95``, ``fpr95_id``, ``aupr_in``, ``aupr_out``
    (fractions; scores higher = more OOD; OOD positive)."""
    a, b = _check(id_scores, ood_scores)
    return {k: float(v) for k, v in _all(_Counts(a, b)).items()}


def auroc(id_scores, ood_scores) -> float:
    return evaluate(id_scores, ood_scores)["auroc"]


def fpr_at_tpr(id_scores, ood_scores, level: float = TPR_LEVEL) -> float:
    """FPR (ID flagged) at the first threshold where the OOD TPR reaches ``level`` (OOD positive)."""
    a, b = _check(id_scores, ood_scores)
    c = _Counts(a, b)
    return float(_fpr_at(c.tps, c.fps, level))


def fpr95_id(id_scores, ood_scores) -> float:
    return evaluate(id_scores, ood_scores)["fpr95_id"]


def aupr_in(id_scores, ood_scores) -> float:
    return evaluate(id_scores, ood_scores)["aupr_in"]


def aupr_out(id_scores, ood_scores) -> float:
    return evaluate(id_scores, ood_scores)["aupr_out"]


def _resample_weights(rng, n: int, reps: int) -> np.ndarray:
    """(reps, n) bootstrap counts: how often each of n samples is drawn in each resample."""
    idx = rng.integers(0, n, size=(reps, n)) + (np.arange(reps) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=reps * n).reshape(reps, n)


@lru_cache(maxsize=6)
def _weights(seed: int, stream: int, n: int, n_boot: int, chunk: int) -> tuple:
    """The resample counts of one stream (0: ID, 1: OOD) in chunks, as small integers; cached, as every
    detector and every test set of a run draws the same ones (that is what makes them paired)."""
    rng = np.random.default_rng([seed, stream])
    out = []
    for done in range(0, n_boot, chunk):
        w = _resample_weights(rng, n, min(chunk, n_boot - done))
        out.append(w.astype(np.uint8 if w.max() < 256 else np.int32))
    return tuple(out)


def resample_counts(seed: int, stream: int, n: int, n_boot: int, chunk: int = 100) -> tuple:
    """The bootstrap resample counts of ``n`` samples on one stream (0: ID, 1: OOD, 2: a labelled set
    resampled whole, for failure detection and the guard), ``n_boot`` rows in chunks of ``chunk``; the same
    for every detector given the same seed and size (so replicates are paired)."""
    return _weights(int(seed), int(stream), int(n), int(n_boot), int(chunk))


def _first_reaching(n, level: float) -> np.ndarray:
    """The smallest integer count c with ``c / n >= level`` (as float division decides it), per n."""
    n = np.asarray(n, dtype=np.int64)
    c = np.ceil(level * n).astype(np.int64)
    c = np.where((c - 1) / n >= level, c - 1, c)
    return np.where(c / n < level, c + 1, c)


def _weighted_auroc_fpr95(id_sorted, ood_desc, lo, hi, w_id, w_ood):
    """AUROC and FPR@95 (OOD positive) for a batch of sample weights, in O(B·n), in exact integer
    arithmetic until the final division.

    ``id_sorted``: ID scores ascending, ``ood_desc``: OOD scores descending, ``lo``/``hi``: the
    left/right insertion points of each OOD score among the ID scores; ``w_id``/``w_ood``: (B, n)
    counts in those orders. Same definitions as :func:`evaluate` (ties count half; first threshold
    whose TPR reaches 0.95)."""
    n_id, n_ood = w_id.sum(1, dtype=np.int64), w_ood.sum(1, dtype=np.int64)
    W = np.zeros((w_id.shape[0], w_id.shape[1] + 1), dtype=np.int32)
    np.cumsum(w_id, axis=1, dtype=np.int32, out=W[:, 1:])
    twice_below = W[:, lo] + W[:, hi]  # twice the ID mass under each OOD score, ties halved
    auroc = np.einsum("ij,ij->i", w_ood, twice_below, dtype=np.float64) / (2.0 * n_id * n_ood)
    cum = np.cumsum(w_ood, axis=1, dtype=np.int32)
    k = np.argmax(cum >= _first_reaching(n_ood, TPR_LEVEL)[:, None], axis=1)
    j = np.searchsorted(id_sorted, ood_desc[k], side="left")
    fpr = (n_id - W[np.arange(len(j)), j]) / n_id
    return auroc, fpr


def replicates(id_scores, ood_scores, n_boot: int = 200, seed: int = 0, metrics: tuple = ("auroc", "fpr95"),
               chunk: int = 100) -> dict[str, np.ndarray]:
    """Stratified bootstrap replicates: ``{metric: array (n_boot,)}``. ID and OOD samples are resampled
    separately (their sizes stay fixed), every resample computed at once from multinomial weights on
    one sorted order. The resample weights depend only on ``seed`` and the two sample sizes (ID and OOD
    weights from separate streams, so all test sets of a run resample the ID samples alike), so two
    detectors scored on the same samples and bootstrapped with the same ``seed`` get **paired**
    replicates (the same resampled images in replicate ``b``); :func:`paired_bootstrap` relies on this.
    AUROC and FPR@95 use an O(B·n) path, the other :data:`METRICS` the general curve code."""
    a, b = _check(id_scores, ood_scores)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; known: {METRICS}")
    if n_boot <= 0:
        return {k: np.zeros(0) for k in metrics}
    # one stream for ID weights, one for OOD: every test set of a run resamples the shared ID samples alike
    ws_id, ws_ood = _weights(int(seed), 0, a.size, n_boot, chunk), _weights(int(seed), 1, b.size, n_boot, chunk)
    oi, oo = np.argsort(a, kind="mergesort"), np.argsort(-b, kind="mergesort")
    id_sorted, ood_desc = a[oi], b[oo]
    lo = np.searchsorted(id_sorted, ood_desc, side="left")
    hi = np.searchsorted(id_sorted, ood_desc, side="right")
    general = [m for m in metrics if m not in ("auroc", "fpr95")]
    out = {k: [] for k in metrics}
    for w_id, w_ood in zip(ws_id, ws_ood):
        # weights drawn in sample order, then put in each detector's sorted order: shared across detectors
        w_id, w_ood = w_id[:, oi], w_ood[:, oo]
        if "auroc" in out or "fpr95" in out:
            au, fp = _weighted_auroc_fpr95(id_sorted, ood_desc, lo, hi, w_id, w_ood)
            if "auroc" in out:
                out["auroc"].append(au)
            if "fpr95" in out:
                out["fpr95"].append(fp)
        if general:
            vals = _all(_Counts(id_sorted, ood_desc, w_id, w_ood), general)
            for k in general:
                out[k].append(vals[k])
    return {k: np.concatenate(v) for k, v in out.items()}


def bootstrap(id_scores, ood_scores, n_boot: int = 200, ci: float = 0.95, seed: int = 0,
              metrics: tuple = ("auroc", "fpr95"), chunk: int = 100) -> dict[str, tuple[float, float]]:
    """Stratified bootstrap percentile intervals ``{metric: (low, high)}`` from :func:`replicates`
    (``metrics`` any of :data:`METRICS`); NaN bounds when ``n_boot`` is 0."""
    reps = replicates(id_scores, ood_scores, n_boot, seed, metrics, chunk)
    return {k: percentile_ci(v, ci) for k, v in reps.items()}


def percentile_ci(values, ci: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN, NaN when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    q = ((1 - ci) / 2 * 100, (1 + ci) / 2 * 100)
    return tuple(float(x) for x in np.percentile(v, q))


def paired_bootstrap(id_scores: list, ood_scores: list, n_boot: int = 1000, seed: int = 0,
                     metrics: tuple = ("auroc",)) -> dict[str, np.ndarray]:
    """Paired bootstrap of several detectors scored on the **same** ID and OOD samples: ``{metric:
    array (n_detectors, n_boot)}`` where column ``b`` of every detector is computed on the same
    resampled images (shared resample weights). Differences of rows are then paired differences,
    whose spread is far smaller than that of two independent intervals when the detectors agree."""
    sizes = {(np.size(a), np.size(b)) for a, b in zip(id_scores, ood_scores)}
    if len(sizes) != 1:
        raise ValueError(f"a paired bootstrap needs the same samples for every detector; sizes {sorted(sizes)}")
    per = [replicates(a, b, n_boot, seed, metrics) for a, b in zip(id_scores, ood_scores)]
    return {k: np.stack([p[k] for p in per]) for k in metrics}


def aggregate(values) -> float:
    """Unweighted mean over test sets (OpenOOD's near / far aggregate)."""
    v = np.asarray(list(values), dtype=np.float64)
    return float(v.mean()) if v.size else float("nan")


def roc_points(id_scores, ood_scores, grid: int = 101) -> dict[str, list]:
    """The ROC curve (OOD positive) resampled on a fixed FPR grid: for each FPR in
    ``linspace(0, 1, grid)`` the highest TPR reached at that FPR or below. Small enough to commit."""
    a, b = _check(id_scores, ood_scores)
    c = _Counts(a, b)
    fpr, tpr = _roc(c.tps, c.fps)
    g = np.linspace(0, 1, grid)
    idx = np.searchsorted(fpr, g, side="right") - 1
    t = np.maximum.accumulate(tpr)[np.clip(idx, 0, len(tpr) - 1)]
    return {"fpr": [round(float(x), 4) for x in g], "tpr": [round(float(x), 4) for x in t]}


def histograms(scores: dict[str, np.ndarray], bins: int = 40, ref: str = "id") -> dict:
    """Histograms of several score arrays on shared bin edges: the 0.5 %–99.5 % quantiles of the
    ``ref`` (ID) scores, widened to reach the median of every other array, so the ID distribution
    stays resolved when some OOD scores are huge; values outside are clipped into the end bins."""
    def finite(s):
        s = np.asarray(s, np.float64)
        return s[np.isfinite(s)]

    base = finite(scores.get(ref, np.concatenate([finite(s) for s in scores.values()])))
    if base.size == 0:
        base = np.zeros(1)
    lo, hi = np.quantile(base, [0.005, 0.995])
    for k, s in scores.items():
        f = finite(s)
        if k != ref and f.size:
            med = float(np.median(f))
            lo, hi = min(lo, med), max(hi, med)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    out = {"edges": [float(f"{e:.6g}") for e in edges]}
    for k, s in scores.items():
        s = np.clip(np.nan_to_num(s, posinf=hi, neginf=lo), lo, hi)
        out[k] = np.histogram(s, edges)[0].astype(int).tolist()
    return out
