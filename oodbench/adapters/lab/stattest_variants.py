"""The lab's statistical-test detector (Max-Simes-Fisher with exact conformal p-values) and its
ablation variants, each its own leaderboard row. Implementation: :mod:`oodbench.detectors.stattest`
(the method) and :mod:`oodbench.adapters.lab.stattest` (the detector);
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
                               registered only when the registry has a detector named ``vae``
=============================  ==================================================================
"""
from __future__ import annotations

from oodbench.adapters.base import DetectorInfo
from oodbench.adapters.lab.stattest import StatTest, variant
from oodbench.detectors.stattest import PAPER

LIB = "oodbench-lab"


def _info(notes: str, **kw) -> DetectorInfo:
    return DetectorInfo(library=LIB, paper=PAPER, needs_fit=True, notes=notes, **kw)


def _variant(name: str, notes: str, consumes=("taps",), info_kw=None, **defaults) -> type:
    cls = variant(StatTest, "StatTest_" + "".join(ch if ch.isalnum() else "_" for ch in name), notes,
                  consumes=consumes, **defaults)
    cls.info = _info(notes, **(info_kw or {}))
    return cls


StatTest.info = _info("Max-Simes-Fisher, exact conformal p-values; false alarms <= alpha on exchangeable ID data")

#: name -> (notes, keyword arguments of :func:`_variant`)
VARIANTS = {
    "stattest.pred": ("p-value under the predicted class only (valid conditionally on a correct prediction)",
                      dict(consumes=("taps", "logits"), class_agg="pred")),
    "stattest.hmp": ("harmonic-mean combination across layers instead of Fisher, calibrated on cal",
                     dict(layer_combiner="hmp")),
    "stattest.cluster": ("layers selected by correlation clustering of per-layer log p-values on fit",
                         dict(select_layers="cluster")),
    "stattest.mondrian": ("final p-value calibrated per predicted class (Mondrian conformal)",
                          dict(consumes=("taps", "logits"), mondrian=True)),
    "stattest+energy+maha": ("MaSF + energy + Mahalanobis as extra conformal tests, Simes combination",
                             dict(consumes=("taps", "logits", "features"), extras=("energy", "maha"),
                                  extra_combiner="simes")),
    "stattest+energy+maha.hmp": ("MaSF + energy + Mahalanobis, harmonic-mean p-value calibrated on cal",
                                 dict(consumes=("taps", "logits", "features"), extras=("energy", "maha"),
                                      extra_combiner="hmp")),
    "stattest+knn": ("MaSF + KNN distance (normalised penultimate features) as an extra test, Simes",
                     dict(consumes=("taps", "features"), extras=("knn",), extra_combiner="simes")),
}
CLASSES = {name: _variant(name, notes, **kw) for name, (notes, kw) in VARIANTS.items()}


def register_all(registry) -> None:
    """Register ``stattest`` and its variants in ``registry``; ``stattest+vae`` only when ``registry``
    already has a detector named ``vae``."""
    registry.add("stattest", StatTest)
    for name, cls in CLASSES.items():
        registry.add(name, cls)
    if "vae" not in registry:
        return
    vae = registry.get("vae")
    registry.add("stattest+vae", _variant(
        "stattest+vae", "MaSF + the VAE detector's score as a conformal p-value, calibrated harmonic mean",
        consumes=frozenset({"taps"}) | vae.consumes, extras=("vae",), extra_combiner="hmp",
        info_kw={"expensive": bool(vae.info.expensive), "cpu_ok": bool(vae.info.cpu_ok)}))
