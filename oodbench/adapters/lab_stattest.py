"""The lab's statistical-test detector (Max-Simes-Fisher with exact conformal p-values) and its
ablation variants, each its own leaderboard row. Implementation: :mod:`oodbench.detectors.stattest`;
spec: ``shared/specs/lab_methods.md`` §2.

=============================  ==================================================================
name                           what differs from ``stattest``
=============================  ==================================================================
``stattest``                   §2.3 defaults: two-sided channel p-values, Simes per layer, Fisher
                               over layers calibrated per class on ``cal``, max over classes
``stattest.pred``              p-value of the predicted class only
``stattest.hmp``               harmonic mean instead of Fisher across layers (calibrated)
``stattest.cluster``           layers selected by correlation clustering (Haroush's findCluster)
``stattest.mondrian``          final p-value calibrated per predicted class (Mondrian conformal)
``stattest+energy+maha``       + energy and Mahalanobis tests, Simes combination
``stattest+energy+maha.hmp``   + energy and Mahalanobis tests, calibrated harmonic-mean p-value
``stattest+knn``               + KNN-distance test (normalised penultimate features), Simes
``stattest+vae``               + the VAE detector's score as a conformal p-value, calibrated HMP;
                               registered only when a detector named ``vae`` is
=============================  ==================================================================
"""
from __future__ import annotations

import importlib

from oodbench.adapters import registry
from oodbench.adapters.base import DetectorInfo
from oodbench.detectors.stattest import PAPER, StatTest, variant

LIB = "oodbench-lab"


def _info(notes: str, **kw) -> DetectorInfo:
    return DetectorInfo(library=LIB, paper=PAPER, needs_fit=True, notes=notes, **kw)


def _reg(name: str, notes: str, consumes=("taps",), info_kw=None, **defaults):
    cls = variant(StatTest, "StatTest_" + "".join(ch if ch.isalnum() else "_" for ch in name), notes,
                  consumes=consumes, **defaults)
    cls.info = _info(notes, **(info_kw or {}))
    return registry.register(name)(cls)


StatTest.info = _info("Max-Simes-Fisher, exact conformal p-values; false alarms <= alpha on exchangeable ID data")
registry.register("stattest")(StatTest)

_reg("stattest.pred", "p-value under the predicted class only (valid conditionally on a correct prediction)",
     consumes=("taps", "logits"), class_agg="pred")
_reg("stattest.hmp", "harmonic-mean combination across layers instead of Fisher, calibrated on cal",
     layer_combiner="hmp")
_reg("stattest.cluster", "layers selected by correlation clustering of per-layer log p-values on fit",
     select_layers="cluster")
_reg("stattest.mondrian", "final p-value calibrated per predicted class (Mondrian conformal)",
     consumes=("taps", "logits"), mondrian=True)
_reg("stattest+energy+maha", "MaSF + energy + Mahalanobis as extra conformal tests, Simes combination",
     consumes=("taps", "logits", "features"), extras=("energy", "maha"), extra_combiner="simes")
_reg("stattest+energy+maha.hmp", "MaSF + energy + Mahalanobis, harmonic-mean p-value calibrated on cal",
     consumes=("taps", "logits", "features"), extras=("energy", "maha"), extra_combiner="hmp")
_reg("stattest+knn", "MaSF + KNN distance (normalised penultimate features) as an extra test, Simes",
     consumes=("taps", "features"), extras=("knn",), extra_combiner="simes")


def _register_vae_variant() -> None:
    """``stattest+vae`` exists only when a detector named ``vae`` does (built by another module)."""
    if "vae" not in registry._REGISTRY:
        for mod in ("oodbench.adapters.lab_generative", "oodbench.detectors.vae"):
            try:
                importlib.import_module(mod)
            except Exception:  # absent or broken: the registry reports it when it imports it itself
                pass
            if "vae" in registry._REGISTRY:
                break
    vae = registry._REGISTRY.get("vae")
    if vae is None:
        return
    cons = frozenset({"taps"}) | frozenset(getattr(vae, "consumes", frozenset()))
    vinfo = getattr(vae, "info", None)
    _reg("stattest+vae", "MaSF + the VAE detector's score as a conformal p-value, calibrated harmonic mean",
         consumes=cons, extras=("vae",), extra_combiner="hmp",
         info_kw={"expensive": bool(getattr(vinfo, "expensive", False)),
                  "cpu_ok": bool(getattr(vinfo, "cpu_ok", True))})


_register_vae_variant()
