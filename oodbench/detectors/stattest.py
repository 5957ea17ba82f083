"""The lab's statistical-test detector: Max-Simes-Fisher (MaSF) with exact conformal p-values.

Spec: ``shared/specs/lab_methods.md`` §2.3 (defaults) and §2.4 (variants). For each input ``x`` and
each class ``c`` it tests H0: "x is an ID input of class c", using only the untouched
classifier's per-layer channel statistics (``rep.taps()``: per-channel spatial max + mean of 4-D
activations, the values of 2-D ones):

1. **channel p-values**: two-sided exact conformal p-values of every channel against the ``fit``
   samples of class ``c`` (ties counted against rejection, smallest ``1/(n_c + 1)``);
2. **layer p-value**: Simes over the channels of each layer;
3. **sample statistic**: Fisher's ``F_c = -2 sum_layers log p_layer``; layers are dependent, so
   ``F_c`` is **calibrated empirically** on the ``cal`` samples of class ``c``:
   ``P_c = (1 + #{F_c(cal) >= F_c(x)}) / (n_cal,c + 1)``;
4. **class aggregation**: ``P = max_c P_c`` (default; valid: an ID point of class ``c*`` has
   ``P >= P_{c*}``) or ``P = P_{predicted class}`` (``class_agg="pred"``).

Outputs: ``p_value`` (``P``, in (0, 1]), ``score`` (``-log P`` plus a tie-break smaller than any
gap between attainable ``-log P`` values, from the continuous statistic
``min_c (F_c - mean_cal F_c) / std_cal F_c``, so AUROC is not distorted by the many ties of a
discrete p-value), ``predict(rep, alpha)`` (True = OOD, iff ``P <= alpha``; false-alarm rate on
exchangeable ID data ``<= alpha``).

The detector (``stattest`` in the registry, reading ``rep.taps()``) and its variants are
:class:`oodbench.adapters.lab.stattest.StatTest` and :mod:`oodbench.adapters.lab.stattest_variants`:

* ``extras``: extra statistics as additional tests -- ``energy`` (``-logsumexp(logits)``),
  ``maha`` (class-conditional Mahalanobis distance on penultimate features, shared covariance),
  ``knn`` (k-th nearest-neighbour distance of L2-normalised penultimate features to ``fit``),
  ``msp``, or the name of **any registered detector** (its score on ``cal`` gives a right-sided
  conformal p-value), combined with the MaSF p-value by Simes (valid under PRDS) or an empirically
  calibrated harmonic-mean / Cauchy / Fisher combination;
* ``select_layers="cluster"``: layer selection by correlation clustering of per-layer log
  p-values (Haroush's ``findCluster``: Ward linkage on ``1 - |corr|``, cut 0.3, one representative
  per cluster), measured on ``fit`` so that ``cal`` stays untouched for calibration;
* ``mondrian=True``: the final statistic is calibrated separately per predicted class (Mondrian
  conformal): false-alarm control within every predicted class;
* ``layers``: any layer names of the classifier; names the representation cache does not tap are
  hooked on the model directly (:func:`module_taps`).

The array-level core, :class:`MaxSimesFisher`, needs no harness: ``fit(ref_taps, ref_y, cal_taps,
cal_y)`` and ``evaluate(taps)`` on ``{layer: (n, d)}`` dicts (see :func:`module_taps` for any
``nn.Module``).
"""
from __future__ import annotations

import numpy as np

from oodbench.detectors import pvalues as pv
from oodbench.detectors.grouped_reference import GroupedReference
from oodbench.detectors.taps import module_taps  # noqa: F401  (part of this module's API)

PAPER = ("Haroush, Frostig, Heller, Soudry, 'A Statistical Framework for Efficient Out of Distribution "
         "Detection in Deep Neural Networks', ICLR 2022 (MaSF); exact conformal p-values, held-out "
         "calibration: lab spec shared/specs/lab_methods.md §2")

CHANNEL_COMBINERS = ("simes", "bonferroni", "simes_by", "hmp")
LAYER_COMBINERS = ("fisher", "stouffer", "hmp", "min")
BUILTIN_EXTRAS = ("energy", "maha", "knn", "msp")


def tiebreak_amplitude(sizes) -> float:
    """Half the smallest gap between distinct attainable ``-log p`` for conformal p-values
    ``k / (n + 1)`` with ``n`` in ``sizes``: a tie-break below it never reorders distinct p-values."""
    att = np.unique(np.concatenate([-np.log(np.arange(1, int(n) + 2) / (int(n) + 1.0)) for n in sizes]))
    return 0.5 * float(np.diff(att).min()) if att.size > 1 else 1.0


# ------------------------------------------------------------------------------------------------
# the array-level core
# ------------------------------------------------------------------------------------------------
class MaxSimesFisher:
    """Array-level MaSF (no harness). See the module docstring for the algorithm.

    ``fit(ref_taps, ref_y, cal_taps, cal_y, n_classes=None)`` with ``{layer: (n, d)}`` dicts and
    true labels; ``evaluate(taps, preds=None)`` returns a dict with ``p`` (final p-value), ``score``,
    ``cont`` (continuous statistic), ``pc`` (per-class p-values ``(m, C)``) and ``F`` (per-class
    layer-combined statistics ``(m, C)``).
    """

    def __init__(self, channel_combiner: str = "simes", layer_combiner: str = "fisher", class_agg: str = "max",
                 side: str = "two-sided", ranking: str = "tiebreak", chunk: int = 1024, grid_factor: int = 4,
                 n_jobs: int = 1):
        if channel_combiner not in CHANNEL_COMBINERS:
            raise ValueError(f"channel_combiner must be one of {CHANNEL_COMBINERS}")
        if layer_combiner not in LAYER_COMBINERS:
            raise ValueError(f"layer_combiner must be one of {LAYER_COMBINERS}")
        if class_agg not in ("max", "pred"):
            raise ValueError("class_agg must be 'max' or 'pred'")
        if ranking not in ("tiebreak", "pvalue", "continuous"):
            raise ValueError("ranking must be 'tiebreak', 'pvalue' or 'continuous'")
        self.channel_combiner, self.layer_combiner, self.class_agg = channel_combiner, layer_combiner, class_agg
        self.side, self.ranking, self.chunk, self.grid_factor = side, ranking, int(chunk), int(grid_factor)
        self.n_jobs = int(n_jobs)  # threads over sample chunks (numpy releases the GIL in the heavy steps)

    # --- fitting ----------------------------------------------------------------------------------
    def fit(self, ref_taps: dict, ref_y, cal_taps: dict, cal_y, n_classes: int | None = None):
        ref_y = np.asarray(ref_y, np.int64)
        cal_y = np.asarray(cal_y, np.int64)
        C = int(n_classes if n_classes is not None else max(ref_y.max(), cal_y.max()) + 1)
        self.fit_reference(ref_taps, ref_y, C)
        F = self.statistic(cal_taps)  # (n_cal, C)
        self.nulls = []
        for c in range(C):
            sel = cal_y == c
            if not sel.any():
                raise ValueError(f"class {c} has no calibration samples")
            self.nulls.append(pv.EmpiricalNull(F[sel, c]))
        self.n_cal = np.array([nl.n for nl in self.nulls])
        self._cal_F, self._cal_y = F, cal_y
        self.delta = tiebreak_amplitude(self.n_cal)
        return self

    def fit_reference(self, ref_taps: dict, ref_y, n_classes: int):
        """The per-class channel references only (enough for :meth:`layer_pvalues`)."""
        self.layers = list(ref_taps)
        self.n_classes = C = int(n_classes)
        self.widths = [int(ref_taps[n].shape[1]) for n in self.layers]
        self.bounds = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        X = np.concatenate([np.asarray(ref_taps[n], np.float32) for n in self.layers], axis=1)
        self.ref = GroupedReference(X, np.asarray(ref_y, np.int64), C, side=self.side, chunk=self.chunk,
                                       grid_factor=self.grid_factor)
        self.n_ref = self.ref.n_per_group
        # per-layer Simes weights d / i, and the harmonic number for the BY correction
        self._w = [(w / np.arange(1, w + 1)).astype(np.float32) for w in self.widths]
        self._harm = [float(np.sum(1.0 / np.arange(1, w + 1))) for w in self.widths]
        return self

    # --- statistics ---------------------------------------------------------------------------------
    def layer_pvalues(self, taps: dict) -> np.ndarray:
        """Per-class layer p-values ``(m, C, L)`` (channel p-values combined within each layer)."""
        X = self._stack(taps)
        out = np.empty((X.shape[0], self.n_classes, len(self.layers)), np.float64)
        for i in range(0, X.shape[0], self.chunk):
            out[i:i + self.chunk] = self._layer_p_chunk(X[i:i + self.chunk])
        return out

    def _stack(self, taps: dict) -> np.ndarray:
        missing = [n for n in self.layers if n not in taps]
        if missing:
            raise KeyError(f"taps lack layers {missing}")
        return np.concatenate([np.asarray(taps[n], np.float32) for n in self.layers], axis=1)

    def _layer_p_chunk(self, X) -> np.ndarray:
        codes = self.ref.codes(X)  # (m, C, d) uint
        denom = (self.n_ref + 1.0)[None, :]
        res = np.empty((X.shape[0], self.n_classes, len(self.layers)), np.float64)
        for li, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            blk = codes[:, :, a:b]
            if self.channel_combiner in ("simes", "simes_by"):
                s = np.sort(blk, axis=-1)
                v = (s * self._w[li]).min(axis=-1)
                if self.channel_combiner == "simes_by":
                    v = v * self._harm[li]
            elif self.channel_combiner == "bonferroni":
                v = blk.min(axis=-1) * float(b - a)
            else:  # harmonic mean of channel p-values
                v = (b - a) / (1.0 / blk.astype(np.float32)).sum(axis=-1)
            res[:, :, li] = np.minimum(1.0, v / denom)
        return res

    def combine_layers(self, lp) -> np.ndarray:
        """Layer-combined statistic ``(m, C)``, larger = more OOD (Fisher's sum by default)."""
        if self.layer_combiner == "fisher":
            return pv.fisher_statistic(lp, axis=-1)
        if self.layer_combiner == "stouffer":
            return pv.stouffer_statistic(lp, axis=-1)
        if self.layer_combiner == "hmp":
            return -np.log(pv.harmonic_mean(lp, axis=-1))
        return -np.log(lp.min(axis=-1))

    def statistic(self, taps: dict) -> np.ndarray:
        """``F_c(x)`` for every class, ``(m, C)`` float64."""
        X = self._stack(taps)
        out = np.empty((X.shape[0], self.n_classes), np.float64)

        def work(i):
            out[i:i + self.chunk] = self.combine_layers(self._layer_p_chunk(X[i:i + self.chunk]))

        starts = range(0, X.shape[0], self.chunk)
        if self.n_jobs > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.n_jobs) as ex:
                list(ex.map(work, starts))
        else:
            for i in starts:
                work(i)
        return out

    def class_pvalues(self, F) -> np.ndarray:
        """Calibrated per-class p-values ``P_c`` ``(m, C)`` from ``F`` ``(m, C)``."""
        return np.stack([self.nulls[c].pvalue(F[:, c]) for c in range(self.n_classes)], axis=1)

    def standardized(self, F) -> np.ndarray:
        return np.stack([self.nulls[c].standardize(F[:, c]) for c in range(self.n_classes)], axis=1)

    def aggregate(self, pc, z, preds=None):
        """(P, continuous statistic) from per-class p-values and standardized statistics."""
        if self.class_agg == "max":
            return pc.max(axis=1), z.min(axis=1)
        if preds is None:
            raise ValueError("class_agg='pred' needs the predicted classes")
        preds = np.asarray(preds, np.int64)
        r = np.arange(len(preds))
        return pc[r, preds], z[r, preds]

    def rank_score(self, p, cont) -> np.ndarray:
        """Higher = more OOD. ``tiebreak``: ``-log P`` + a tie-break below any gap of ``-log P``."""
        if self.ranking == "pvalue":
            return -np.log(p)
        if self.ranking == "continuous":
            return np.asarray(cont, np.float64)
        return -np.log(p) + self.delta * (0.5 + np.arctan(cont) / np.pi)

    def evaluate(self, taps: dict, preds=None) -> dict:
        F = self.statistic(taps)
        return self.evaluate_F(F, preds)

    def evaluate_F(self, F, preds=None, loo_labels=None) -> dict:
        pc = self.class_pvalues(F)
        if loo_labels is not None:  # calibration points ranked against the *other* calibration points
            for c in range(self.n_classes):
                sel = loo_labels == c
                pc[sel, c] = self.nulls[c].leave_one_out()
        z = self.standardized(F)
        p, cont = self.aggregate(pc, z, preds)
        return {"p": p, "cont": cont, "score": self.rank_score(p, cont), "pc": pc, "F": F}

    def calibration_result(self, preds=None) -> dict:
        """:meth:`evaluate` of the calibration points themselves, leave-one-out within their class
        (what a fresh ID point would get, up to O(1/n)); for calibrating a second-stage statistic."""
        return self.evaluate_F(self._cal_F, preds, loo_labels=self._cal_y)

    @property
    def nbytes(self) -> int:
        return self.ref.nbytes + int(self._cal_F.nbytes)


# ------------------------------------------------------------------------------------------------
# extra statistics (variants)
# ------------------------------------------------------------------------------------------------
def energy(logits):
    from scipy.special import logsumexp

    return -logsumexp(np.asarray(logits, np.float64), axis=1)


def msp(logits):
    from scipy.special import softmax

    return -softmax(np.asarray(logits, np.float64), axis=1).max(axis=1)


class Mahalanobis:
    """Class-conditional Mahalanobis distance (Lee et al. 2018): class means and a shared covariance
    of penultimate features on ``fit``; statistic = min over classes of the squared distance."""

    def fit(self, feats, y, C):
        f = np.asarray(feats, np.float64)
        self.mu = np.stack([f[y == c].mean(0) for c in range(C)])
        cen = f - self.mu[y]
        cov = cen.T @ cen / len(f)
        self.prec = np.linalg.pinv(cov, hermitian=True)
        return self

    def __call__(self, feats):
        f = np.asarray(feats, np.float64)
        out = np.empty(len(f))
        for i in range(0, len(f), 2048):
            x = f[i:i + 2048]
            xp = x @ self.prec
            d = (xp * x).sum(1)[:, None] - 2 * xp @ self.mu.T + ((self.mu @ self.prec) * self.mu).sum(1)[None, :]
            out[i:i + 2048] = d.min(1)
        return out


class KNNDistance:
    """k-th nearest-neighbour distance of L2-normalised penultimate features to the ``fit`` bank
    (Sun et al. 2022)."""

    def __init__(self, k):
        self.k = int(k)

    def fit(self, feats, y=None, C=None):
        f = np.asarray(feats, np.float32)
        self.bank = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        return self

    def __call__(self, feats):
        f = np.asarray(feats, np.float32)
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        k = min(self.k, len(self.bank))
        out = np.empty(len(f))
        for i in range(0, len(f), 1024):
            sim = f[i:i + 1024] @ self.bank.T
            kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
            out[i:i + 1024] = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * kth))
        return out
