"""The lab's statistical-test detector analysed: calibration, deciding layers, rejection against alpha.

:func:`analyse` runs every section (the sweeps over reference size and shift severity are in
:mod:`.sweeps`) and returns one JSON-ready dict; :mod:`.document` turns it into Markdown and figures.

* **calibration**: on the whole ID test set, per true class ``c``: the class's own calibrated p-value
  ``P_c(x)`` (exactly conformal, so uniform up to its 1/(n_cal,c + 1) grid when the test images are
  exchangeable with the calibration split) and the detector's final p-value ``P = max_c P_c``
  (conservative by construction); Kolmogorov-Smirnov tests of uniformity, two-sided and one-sided
  towards "too many small p-values" (anti-conservative), QQ points, false alarms at alpha.
* **layers**: for each rejected input (``P <= alpha``), the Fisher terms ``-2 log p_layer`` of the
  class that decides ``P`` (the class with the largest ``P_c``; ties, common once every ``P_c`` is at
  its floor, go to the class with the smallest standardised statistic, as the detector's tie-break
  does): the share of rejections whose largest term is each layer's (layers tied for the largest
  term share the credit: far-OOD inputs put every layer at the floor ``1/(n+1)``), each layer's mean
  share of the Fisher sum; and, with the test restricted to layer subsets and recalibrated on
  ``cal`` (:class:`LayerTests`), the rejection rate of each layer alone, and the share of rejections
  lost when one layer is left out.
* **alpha**: rejection rate against alpha on the ID test set and on every OOD set.

The detector is created with ``registry.create(name)``; the per-layer and per-class quantities come
from its fitted array-level core ``det.core_`` (:class:`~oodbench.detectors.stattest.MaxSimesFisher`:
``layer_pvalues``, ``combine_layers``, ``class_pvalues``, ``standardized``, ``aggregate``), which for
the default detector gives exactly ``det.p_value``. For variants with extra tests or Mondrian
calibration the layer breakdown is that of their MaSF part.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

#: the alpha grid of the rejection-against-alpha curves
ALPHAS = tuple(float(a) for a in np.unique(np.round(np.concatenate(
    [np.geomspace(0.001, 0.5, 19), [0.01, 0.05, 0.1]]), 6)))


@dataclass
class Config:
    """What :func:`analyse` runs. ``max_eval`` caps each scored set of the layer, alpha and sweep
    sections (a seeded subsample; the calibration section always uses the whole ID test set)."""

    suite: str = "mnist"
    detector: str = "stattest"
    seed: int = 0
    alpha: float = 0.05
    ref_sizes: tuple = (100, 300, 1000, 3000)
    repeats: int = 3
    max_eval: int | None = 2000
    severities: tuple = (1, 2, 3, 4, 5)
    shifts: tuple | None = None  # None: every shift of data/shifts.py
    sample_seed: int = 0
    extra: dict = field(default_factory=dict)


def subsample(images, n, seed: int = 0, tag: str = "eval"):
    """A seeded subsample of ``n`` images (the set itself when it is not larger); the same length and
    seed give the same indices, so an ID set and its shifted copies stay paired."""
    if not n or len(images) <= n:
        return images
    idx = np.sort(np.random.default_rng([seed, len(images)]).choice(len(images), int(n), replace=False))
    return images.subset(idx, f"{images.name}[{tag}{n}]")


# ------------------------------------------------------------------------------------------------
# the detector's decomposition
# ------------------------------------------------------------------------------------------------
def decompose(det, rep) -> dict:
    """The fitted detector's MaSF core on ``rep``: layer p-values ``lp`` (m, C, L), Fisher statistic
    ``F`` (m, C), per-class p-values ``pc`` (m, C), final ``p`` and the deciding class ``cls`` (m,)."""
    core = det.core_
    all_taps = rep.taps()
    taps = {n: all_taps[n] for n in det.tap_layers}
    lp = core.layer_pvalues(taps)
    F = core.combine_layers(lp)
    pc = core.class_pvalues(F)
    z = core.standardized(F)
    preds = rep.preds if core.class_agg == "pred" else None
    p, _ = core.aggregate(pc, z, preds)
    if core.class_agg == "pred":
        cls = np.asarray(preds, np.int64)
    else:  # largest P_c, ties to the smallest standardised statistic
        cls = _deciding_class(pc, z)
    return {"lp": lp, "F": F, "pc": pc, "p": p, "cls": cls, "layers": list(det.tap_layers)}


def _deciding_class(pc, z) -> np.ndarray:
    best = pc.max(axis=1, keepdims=True)
    zz = np.where(pc >= best, z, np.inf)
    return zz.argmin(axis=1)


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------
def _ks(p) -> dict:
    from scipy import stats

    p = np.asarray(p, np.float64)
    two = stats.kstest(p, "uniform")
    anti = stats.kstest(p, "uniform", alternative="greater")
    return {"n": int(p.size), "ks_D": float(two.statistic), "ks_p": float(two.pvalue),
            "ks_anticonservative_D": float(anti.statistic), "ks_anticonservative_p": float(anti.pvalue)}


def _qq(p, points: int = 101) -> list:
    """Observed quantiles of ``p`` at ``points`` evenly spaced uniform quantiles."""
    q = np.linspace(0.0, 1.0, points)
    return [float(v) for v in np.quantile(np.asarray(p, np.float64), q)]


def calibration(det, id_rep, alpha: float) -> dict:
    """Per-class uniformity of the ID test p-values (own-class ``P_c`` and final ``P``)."""
    d = decompose(det, id_rep)
    y = np.asarray(id_rep.labels, np.int64)
    p_det = np.asarray(det.p_value(id_rep), np.float64)
    rows = []
    for c in range(d["pc"].shape[1]):
        sel = y == c
        if not sel.any():
            continue
        own, fin = d["pc"][sel, c], p_det[sel]
        rows.append({"class": c, "n_cal": int(det.core_.n_cal[c]), "n_ref": int(det.core_.n_ref[c]),
                     "own": {**_ks(own), "false_alarm": float(np.mean(own <= alpha)), "qq": _qq(own)},
                     "final": {**_ks(fin), "false_alarm": float(np.mean(fin <= alpha)), "qq": _qq(fin)}})
    own_all = d["pc"][np.arange(len(y)), y]
    return {"n": int(len(y)), "alpha": alpha, "per_class": rows,
            "pooled": {"own": {**_ks(own_all), "false_alarm": float(np.mean(own_all <= alpha))},
                       "final": {**_ks(p_det), "false_alarm": float(np.mean(p_det <= alpha))}},
            "min_attainable_p": float(1.0 / (det.core_.n_cal.min() + 1)),
            "core_matches_detector": bool(np.allclose(d["p"], p_det)),
            "alpha_curves": {"own": rejection_curve(own_all), "final": rejection_curve(p_det)}}


class LayerTests:
    """The detector's test restricted to a subset of its layers, calibrated on ``cal`` exactly as the
    detector calibrates the full Fisher sum (per class, conformal), so each subset is a valid test of
    its own: the full set reproduces ``det.p_value``; "all but one" and "one alone" say which layers
    the rejections need and what each layer can do by itself."""

    def __init__(self, det, cal_rep):
        self.core = det.core_
        t = cal_rep.taps()
        self.cal_lp = self.core.layer_pvalues({n: t[n] for n in det.tap_layers})
        self.cal_y = np.asarray(cal_rep.labels, np.int64)
        self.n_layers = self.cal_lp.shape[-1]
        self._nulls = {}

    def _null(self, mask: tuple):
        from oodbench.detectors.pvalues import EmpiricalNull

        if mask not in self._nulls:
            F = self.core.combine_layers(self.cal_lp[..., list(mask)])
            self._nulls[mask] = [EmpiricalNull(F[self.cal_y == c, c]) for c in range(F.shape[1])]
        return self._nulls[mask]

    def pvalue(self, lp, mask, preds=None) -> np.ndarray:
        """Final p-value of inputs with layer p-values ``lp`` (m, C, L) using the layers in ``mask``."""
        mask = tuple(int(i) for i in mask)
        F = self.core.combine_layers(lp[..., list(mask)])
        pc = np.stack([nl.pvalue(F[:, c]) for c, nl in enumerate(self._null(mask))], axis=1)
        if self.core.class_agg == "pred":
            return pc[np.arange(len(pc)), np.asarray(preds, np.int64)]
        return pc.max(axis=1)


def layer_shares(det, rep, alpha: float, tests: LayerTests) -> dict:
    """Which layers drive the rejections of ``rep`` at ``alpha`` (see the module docstring)."""
    d = decompose(det, rep)
    p = np.asarray(det.p_value(rep), np.float64)
    rej = p <= alpha
    L = len(d["layers"])
    preds = rep.preds if det.core_.class_agg == "pred" else None
    terms = -2.0 * np.log(d["lp"][np.arange(len(p)), d["cls"]])  # (m, L), under the deciding class
    alone = [tests.pvalue(d["lp"], [i], preds) <= alpha for i in range(L)]
    without = [tests.pvalue(d["lp"], [j for j in range(L) if j != i], preds) <= alpha for i in range(L)]
    out = {"n": int(len(p)), "rejected": int(rej.sum()), "rejection_rate": float(rej.mean()),
           "layers": d["layers"], "alone_rate": [float(a.mean()) for a in alone],
           "without_rate": [float(w.mean()) for w in without],
           "subset_test_matches_detector": bool(np.array_equal(tests.pvalue(d["lp"], range(L), preds) <= alpha, rej))}
    if rej.any():
        t = terms[rej]
        top = np.isclose(t, t.max(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)  # ties share the credit
        dom = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
        tot = t.sum(axis=1, keepdims=True)
        frac = np.divide(t, tot, out=np.full_like(t, 1.0 / L), where=tot > 0).mean(axis=0)
        out.update(dominant_share=[float(v) for v in dom], mean_term_share=[float(v) for v in frac],
                   all_tied_share=float(top.all(axis=1).mean()),
                   lost_without=[float(np.mean(~w[rej])) for w in without],
                   only_with=[float(np.mean(a[rej])) for a in alone])
    else:
        out.update(dominant_share=None, mean_term_share=None, all_tied_share=None, lost_without=None,
                   only_with=None)
    return out


def rejection_curve(p, alphas=ALPHAS) -> list:
    p = np.sort(np.asarray(p, np.float64))
    return [float(np.searchsorted(p, a, side="right") / len(p)) for a in alphas]


# ------------------------------------------------------------------------------------------------
# the whole analysis
# ------------------------------------------------------------------------------------------------
def fitted_detector(cfg: Config, fit_rep, cal_rep):
    from oodbench.adapters import registry

    det = registry.create(cfg.detector)
    if "taps" not in det.consumes:
        raise TypeError(f"{cfg.detector!r} is not a statistical-test (MaSF) detector")
    det.fit(fit_rep, cal_rep)
    return det


def analyse(cfg: Config, session=None, cache=None, data_dir=None, progress=None) -> dict:
    """Run every section; ``progress(message)`` is called between steps."""
    from oodbench.adapters import registry
    from oodbench.benchmark.analysis import sweeps
    from oodbench.benchmark.evaluation import metrics
    from oodbench.benchmark.evaluation.session import Session

    say = progress or (lambda m: None)
    t_start = time.perf_counter()
    s = session or Session(cfg.suite, cfg.seed, "cpu", cache, data_dir)
    d = s.data
    say(f"classifier {s.arch} (seed {cfg.seed})")
    _ = s.model
    fit_rep, cal_rep = s.representation(d.fit, "fit"), s.representation(d.cal, "cal")
    for r in (fit_rep, cal_rep):
        r.taps(), r.preds
    registry.names()  # import every adapter module now, not inside the timed fit
    say("fitting the detector on the whole fit split")
    full = sweeps.timed_fit(lambda: fitted_detector(cfg, fit_rep, cal_rep), memory=True)
    det = full["det"]

    id_eval = subsample(d.id_test, cfg.max_eval, cfg.sample_seed)
    sets = [(t.name, t.group, subsample(t.images, cfg.max_eval, cfg.sample_seed)) for t in d.tests]
    # first, so that the whole split's scoring time is measured before anything is memoised
    say("reference-size sweep")
    ref = sweeps.reference_sweep(cfg, s, full, id_eval, [(n, g, im) for n, g, im in sets if g != "covariate"])

    say("calibration on the ID test set")
    id_rep = s.representation(d.id_test, "id")
    calib = calibration(det, id_rep, cfg.alpha)

    say(f"layers and alpha curves on {len(sets)} OOD sets")
    tests = LayerTests(det, s.representation(d.cal, "cal"))
    layers = {"id": layer_shares(det, id_rep, cfg.alpha, tests)}
    alpha_curves = {"id": rejection_curve(det.p_value(id_rep))}
    aurocs = {}
    id_score = det.score(s.representation(id_eval, "id"))
    for name, group, images in sets:
        rep = s.representation(images, name)
        layers[name] = {**layer_shares(det, rep, cfg.alpha, tests), "group": group}
        alpha_curves[name] = rejection_curve(det.p_value(rep))
        aurocs[name] = metrics.auroc(id_score, det.score(rep))

    say("severity sweep")
    sev = sweeps.severity_sweep(cfg, s, det, id_eval)

    return {
        "suite": s.name, "detector": cfg.detector, "classifier": {"arch": s.arch, "seed": cfg.seed,
                                                                  "key": s.model_meta.get("key")},
        "config": {**asdict(cfg), "alphas": list(ALPHAS)},
        "splits": {"fit_per_class": np.bincount(d.fit.y).tolist(), "cal_per_class": np.bincount(d.cal.y).tolist(),
                   "id_test": len(d.id_test), "eval_per_set": {n: len(im) for n, _, im in sets} | {
                       "id": len(id_eval)}},
        "groups": {n: g for n, g, _ in sets},
        "layers_order": list(det.tap_layers),
        "channels": dict(zip(det.tap_layers, (int(w) for w in det.core_.widths))),
        "calibration": calib,
        "layers": layers,
        "alpha_curves": {"alphas": list(ALPHAS), "rates": alpha_curves},
        "auroc_full_reference": aurocs,
        "reference_size": ref,
        "severity": sev,
        "wall_seconds": time.perf_counter() - t_start,
    }
