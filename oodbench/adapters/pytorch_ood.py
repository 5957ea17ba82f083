"""pytorch-ood 0.4.0 adapter: the library's own detector classes, fed from the representation cache.

pytorch-ood types its detectors by what they consume (``LogitsDetector.predict_logits``,
``FeaturesDetector.fit_features`` / ``predict_features``, ...), which maps directly onto our
``consumes``. Gradient detectors (ODIN, ...) get the classifier and run it on raw inputs.
Scores are pytorch-ood's outlier scores (already higher = more OOD). Hyperparameters are the
library's defaults, read from its constructors and recorded with the results; pass keyword
arguments to override them. Registered as ``pytorch_ood.<method>``.
"""
from __future__ import annotations

import inspect
from typing import ClassVar

import numpy as np
import pytorch_ood
import torch
from pytorch_ood import detector as pod

from oodbench.adapters.base import Detector, DetectorInfo
from oodbench.adapters.registry import register

VERSION = pytorch_ood.__version__
_MODEL_ARGS = ("model", "encoder", "backbone", "head", "w", "b", "criterion")


def _paper(cls) -> str:
    info = getattr(cls, "info", None)
    p = getattr(info, "paper", None)
    return f"{p.title} ({p.venue} {p.year}) {p.url}" if p else ""


class PytorchOODDetector(Detector):
    """Base of every pytorch-ood wrapper. ``target`` is the pytorch-ood class name, ``kind`` how it is
    fed: ``logits``, ``features``, ``model`` (raw inputs, the library runs the network)."""

    target: ClassVar[str] = ""
    kind: ClassVar[str] = "logits"

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self._det = None

    @classmethod
    def library_class(cls):
        return getattr(pod, cls.target)

    @classmethod
    def defaults(cls) -> dict:
        sig = inspect.signature(cls.library_class().__init__)
        return {p.name: p.default for p in sig.parameters.values()
                if p.name not in ("self", *_MODEL_ARGS) and p.default is not inspect.Parameter.empty
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    def get_params(self) -> dict:
        return {**self.defaults(), **self.kwargs}

    def set_params(self, **params):
        self.kwargs.update(params)
        return self

    def clone(self):
        return type(self)(**dict(self.kwargs))

    def _build(self, rep):
        """Construct the library object; representation-API detectors get ``None`` as model."""
        cls = self.library_class()
        first = [p for p in inspect.signature(cls.__init__).parameters if p != "self"][0]
        model = rep.model if self.kind == "model" else None
        return cls(**{first: model}, **self.kwargs)

    def fit(self, fit, cal=None):
        self._det = self._build(fit)
        cls = self.library_class()
        if getattr(cls, "requires_fit", False):
            if self.kind == "logits":
                self._det.fit_logits(torch.from_numpy(fit.logits), torch.from_numpy(fit.labels))
            elif self.kind == "features":
                self._det.fit_features(torch.from_numpy(fit.features), torch.from_numpy(fit.labels))
            else:
                raise NotImplementedError(f"{self.name}: fitting for kind {self.kind}")
        return self

    def score(self, rep) -> np.ndarray:
        if self._det is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        if self.kind == "logits":
            with torch.no_grad():
                out = self._det.predict_logits(torch.from_numpy(rep.logits))
        elif self.kind == "features":
            with torch.no_grad():
                out = self._det.predict_features(torch.from_numpy(rep.features))
        else:
            self._det.model = rep.model
            out = torch.cat([self._det.predict(x).detach().cpu() for x in rep.inputs()])
        return out.detach().cpu().double().numpy()


def _define(name: str, target: str, kind: str, needs_fit: bool = False, gradients: bool = False, notes: str = ""):
    cls = getattr(pod, target)
    consumes = {"logits": {"logits"}, "features": {"features"}, "model": {"model"}}[kind]
    info = DetectorInfo(library="pytorch-ood", library_version=VERSION, paper=_paper(cls),
                        needs_fit=bool(getattr(cls, "requires_fit", needs_fit)), needs_gradients=gradients,
                        notes=notes, extra={"class": f"pytorch_ood.detector.{target}",
                                            "ai_coded": bool(getattr(getattr(cls, "info", None), "ai_coded", False))})
    sub = type(f"PytorchOOD_{target}", (PytorchOODDetector,),
               {"target": target, "kind": kind, "consumes": frozenset(consumes), "info": info,
                "__doc__": f"pytorch-ood's ``{target}`` ({kind})."})
    return register(f"pytorch_ood.{name}")(sub)


MSP = _define("msp", "MaxSoftmax", "logits")
Energy = _define("energy", "EnergyBased", "logits")
MaxLogit = _define("maxlogit", "MaxLogit", "logits")
Mahalanobis = _define("mahalanobis", "Mahalanobis", "features")
KNN = _define("knn", "KNN", "features")
ODIN = _define("odin", "ODIN", "model", gradients=True)
