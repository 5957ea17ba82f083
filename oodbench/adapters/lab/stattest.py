"""The ``stattest`` detector: Max-Simes-Fisher with exact conformal p-values (lab spec §2.3) over the
representation's per-layer taps, with its variants' parameters (extra tests, layer selection by
clustering, Mondrian calibration). The array-level method is
:class:`oodbench.detectors.stattest.MaxSimesFisher`; the variants are registered in
:mod:`oodbench.adapters.lab.stattest_variants`.
"""
from __future__ import annotations

import inspect

import numpy as np

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.detectors import pvalues as pv
from oodbench.detectors.stattest import (BUILTIN_EXTRAS, PAPER, KNNDistance, Mahalanobis, MaxSimesFisher, energy,
                                         msp, tiebreak_amplitude)
from oodbench.detectors.taps import module_taps

class StatTest(Detector):
    """Max-Simes-Fisher with exact conformal p-values (lab spec §2.3); variants via parameters.

    Parameters: ``layers`` (tap names; ``None`` = the cache's default taps of the architecture);
    ``channel_combiner`` (``simes`` | ``bonferroni`` | ``simes_by`` | ``hmp``); ``layer_combiner``
    (``fisher`` | ``stouffer`` | ``hmp`` | ``min``, always calibrated empirically on ``cal``);
    ``class_agg`` (``max`` | ``pred``); ``ranking`` (``tiebreak`` | ``pvalue`` | ``continuous``: what
    ``score`` ranks by); ``extras`` (extra tests, see module docstring); ``extra_combiner``
    (``simes`` | ``hmp`` | ``cauchy`` | ``fisher`` | ``bonferroni``); ``select_layers``
    (``None`` | ``"cluster"``) and ``cluster_cut``; ``mondrian``; ``knn_k``; ``alpha`` (the level
    used by :meth:`predict` by default).
    """

    consumes = frozenset({"taps"})
    info = DetectorInfo(library="oodbench-lab", paper=PAPER, needs_fit=True,
                        notes="p-values: false-alarm rate <= alpha on exchangeable ID data")

    def __init__(self, layers=None, channel_combiner="simes", layer_combiner="fisher", class_agg="max",
                 ranking="tiebreak", extras=(), extra_combiner="simes", select_layers=None, cluster_cut=0.3,
                 mondrian=False, knn_k=10, alpha=0.05):
        self.layers = layers
        self.channel_combiner = channel_combiner
        self.layer_combiner = layer_combiner
        self.class_agg = class_agg
        self.ranking = ranking
        self.extras = extras
        self.extra_combiner = extra_combiner
        self.select_layers = select_layers
        self.cluster_cut = cluster_cut
        self.mondrian = mondrian
        self.knn_k = knn_k
        self.alpha = alpha

    # --- representation access ------------------------------------------------------------------
    def _taps(self, rep, names=None) -> dict:
        names = list(names if names is not None else (self.layers or rep.store.taps))
        have = set(rep.store.taps)
        out = {}
        cached = [n for n in names if n in have]
        if cached:
            t = rep.taps()
            out.update({n: t[n] for n in cached})
        other = [n for n in names if n not in have]
        if other:  # layers the cache does not tap: hook them on the model (memoised per dataset)
            memo = self.__dict__.setdefault("_tap_memo", {})
            key = (rep.images.checksum, tuple(other))
            if key not in memo:
                memo.clear()
                memo[key] = module_taps(rep.model, rep.inputs(), other)
            out.update(memo[key])
        return {n: out[n] for n in names}

    # --- fit ----------------------------------------------------------------------------------------
    def fit(self, fit, cal=None):
        if cal is None:
            raise ValueError("stattest needs the held-out 'cal' split to calibrate its p-values")
        fy, cy = np.asarray(fit.labels, np.int64), np.asarray(cal.labels, np.int64)
        C = int(max(fy.max(), cy.max()) + 1)
        ftaps, ctaps = self._taps(fit), self._taps(cal)
        self.layers_ = list(ftaps)
        if self.select_layers == "cluster":
            self.layers_ = self._cluster_layers(ftaps, fy, C)
            ftaps = {n: ftaps[n] for n in self.layers_}
            ctaps = {n: ctaps[n] for n in self.layers_}
        elif self.select_layers not in (None, "none"):
            raise ValueError("select_layers must be None or 'cluster'")
        self.core_ = MaxSimesFisher(self.channel_combiner, self.layer_combiner, self.class_agg, ranking=self.ranking)
        self.core_.fit(ftaps, fy, ctaps, cy, C)
        cal_pred = cal.preds if (self.class_agg == "pred" or self.mondrian) else None
        base = self.core_.calibration_result(cal_pred)
        # extra tests, each a right-sided conformal p-value on cal
        self.extras_ = []
        self._cal_rep = cal
        comps_cal, conts_cal = [base["p"]], [base["cont"]]
        for e in self._extra_names():
            fn = self._make_extra(e, fit, fy, C)
            s_cal = np.asarray(fn(cal), np.float64)
            null = pv.EmpiricalNull(s_cal)
            self.extras_.append((e, fn, null))
            comps_cal.append(null.leave_one_out())
            conts_cal.append(null.standardize(s_cal))
        self._cal_rep = None
        self.combined_null_ = None
        if self.extras_:
            P = np.stack(comps_cal, axis=1)
            if self._calibrate_combination():
                self.combined_null_ = pv.EmpiricalNull(pv.combined_statistic(P, self.extra_combiner))
            final_p, cont = self._final(P, np.stack(conts_cal, axis=1), loo=True)
            # calibrated: p on the 1/(n_cal + 1) grid; Simes & co of several grids: finer, tiny tie-break
            self.delta_ = (tiebreak_amplitude([self.combined_null_.n]) if self.combined_null_ is not None
                           else 1e-9)
        else:
            final_p, cont = base["p"], base["cont"]
            self.delta_ = self.core_.delta
        self.mondrian_nulls_ = None
        if self.mondrian:
            t_cal = self._rank(final_p, cont)
            cp = np.asarray(cal_pred, np.int64)
            self.mondrian_nulls_ = {c: pv.EmpiricalNull(t_cal[cp == c]) for c in range(C) if (cp == c).any()}
            self.mondrian_delta_ = tiebreak_amplitude([nl.n for nl in self.mondrian_nulls_.values()])
        self._memo = {}
        return self

    def _extra_names(self):
        ex = self.extras
        if isinstance(ex, str):
            ex = [e for e in ex.replace("+", ",").split(",") if e]
        return list(ex or ())

    def _calibrate_combination(self) -> bool:
        return self.extra_combiner in ("hmp", "cauchy", "fisher", "stouffer")

    def _make_extra(self, name, fit, fy, C):
        if name == "energy":
            return lambda rep: energy(rep.logits)
        if name == "msp":
            return lambda rep: msp(rep.logits)
        if name == "maha":
            m = Mahalanobis().fit(fit.features, fy, C)
            return lambda rep: m(rep.features)
        if name == "knn":
            m = KNNDistance(self.knn_k).fit(fit.features)
            return lambda rep: m(rep.features)
        from oodbench.adapters import registry

        if name.startswith("stattest"):
            raise ValueError(f"extra test {name!r} would nest the detector in itself")
        if name not in registry.names():
            raise KeyError(f"extra test {name!r} is neither built in ({', '.join(BUILTIN_EXTRAS)}) nor a "
                           f"registered detector (is the module that registers it installed?)")
        det = registry.create(name)
        det.fit(fit, self._cal_rep)
        return lambda rep: det.score(rep)

    def _final(self, P, conts, loo=False):
        """Combine the MaSF p-value with the extra tests' p-values -> (p, continuous statistic)."""
        if self.combined_null_ is not None:
            stat = pv.combined_statistic(P, self.extra_combiner)
            p = self.combined_null_.leave_one_out() if loo else self.combined_null_.pvalue(stat)
        else:
            p = pv.combine(P, self.extra_combiner)
        return p, conts.max(axis=1)

    def _rank(self, p, cont):
        if self.ranking == "tiebreak":
            return -np.log(p) + self.delta_ * (0.5 + np.arctan(cont) / np.pi)
        return self.core_.rank_score(p, cont)

    def _cluster_layers(self, ftaps, fy, C) -> list:
        """Haroush's findCluster: correlation of per-layer log p-values (own class, on ``fit``,
        in-sample), Ward linkage on ``1 - |corr|``, cut at ``cluster_cut``, one medoid per cluster."""
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform

        names = list(ftaps)
        if len(names) < 3:
            return names
        probe = MaxSimesFisher(self.channel_combiner).fit_reference(ftaps, fy, C)
        rng = np.random.default_rng(0)
        idx = rng.choice(len(fy), min(len(fy), 2000), replace=False)
        lp = probe.layer_pvalues({n: ftaps[n][idx] for n in names})[np.arange(len(idx)), fy[idx]]  # (m, L)
        lg = np.log(lp)
        sd = lg.std(0)
        corr = np.eye(len(names))
        ok = sd > 0
        if ok.sum() > 1:
            corr[np.ix_(ok, ok)] = np.corrcoef(lg[:, ok].T)
        dist = np.clip(1 - np.abs(corr), 0, None)
        np.fill_diagonal(dist, 0)
        labels = fcluster(linkage(squareform(dist, checks=False), "ward"), t=self.cluster_cut, criterion="distance")
        keep = []
        for k in np.unique(labels):
            mem = np.flatnonzero(labels == k)
            keep.append(mem[np.argmax(np.abs(corr[np.ix_(mem, mem)]).sum(1))])
        self.layer_clusters_ = {names[i]: int(labels[i]) for i in range(len(names))}
        return [names[i] for i in sorted(keep)]

    # --- scoring ------------------------------------------------------------------------------------
    def _result(self, rep):
        key = (rep.images.checksum, len(rep))
        memo = self.__dict__.setdefault("_memo", {})  # score() and p_value() of one dataset share the work
        if key in memo:
            return memo[key]
        preds = rep.preds if (self.class_agg == "pred" or self.mondrian) else None
        base = self.core_.evaluate(self._taps(rep, self.layers_), preds)
        p, cont = base["p"], base["cont"]
        if self.extras_:
            comps, conts = [p], [cont]
            for _, fn, null in self.extras_:
                s = np.asarray(fn(rep), np.float64)
                comps.append(null.pvalue(s))
                conts.append(null.standardize(s))
            p, cont = self._final(np.stack(comps, 1), np.stack(conts, 1))
        score = self._rank(p, cont)
        if self.mondrian_nulls_ is not None:
            t = score
            p = np.ones(len(t))
            for c, null in self.mondrian_nulls_.items():
                sel = preds == c
                p[sel] = null.pvalue(t[sel])
            z = np.zeros(len(t))
            for c, null in self.mondrian_nulls_.items():
                sel = preds == c
                z[sel] = null.standardize(t[sel])
            score = -np.log(p) + self.mondrian_delta_ * (0.5 + np.arctan(z) / np.pi)
        res = {"p": np.asarray(p, np.float64), "score": np.asarray(score, np.float64)}
        if len(memo) >= 64:
            memo.pop(next(iter(memo)))
        memo[key] = res
        return res

    def score(self, rep) -> np.ndarray:
        return self._result(rep)["score"]

    def p_value(self, rep) -> np.ndarray:
        return self._result(rep)["p"]

    def predict(self, rep, alpha: float | None = None) -> np.ndarray:
        """True = OOD (reject H0 at level ``alpha``)."""
        return self.p_value(rep) <= (self.alpha if alpha is None else alpha)

    @property
    def tap_layers(self) -> list:
        """The layers the fitted detector reads (for building a representation of new inputs)."""
        return list(getattr(self, "layers_", self.layers or []))


def variant(base: type, name: str, doc: str = "", consumes=None, **defaults) -> type:
    """A subclass of ``base`` whose hyperparameter defaults are ``defaults`` (so that ``clone`` and
    ``get_params`` work unchanged)."""
    sig = inspect.signature(base.__init__)
    bad = set(defaults) - set(sig.parameters)
    if bad:
        raise TypeError(f"unknown parameters {bad}")
    params = [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in sig.parameters.values()]

    def __init__(self, **kw):
        base.__init__(self, **{**defaults, **kw})

    __init__.__signature__ = sig.replace(parameters=params)
    attrs = {"__init__": __init__, "__doc__": doc or base.__doc__}
    if consumes is not None:
        attrs["consumes"] = frozenset(consumes)
    return type(name, (base,), attrs)
