"""The one detector interface.

A detector **declares what it consumes** (``consumes``): any of ``logits``, ``features`` (penultimate),
``taps`` (per-layer statistics), ``model`` (it runs the classifier on raw inputs itself, e.g. for
input gradients) and ``images`` (raw uint8 images, for classifier-free detectors such as a VAE).
Detectors that train their own model (VAE, GAN) find the ID ``train`` split, the device, the seed and
a checkpoint store in ``rep.context``, a :class:`~oodbench.adapters.context.FitContext`. The runner
extracts each representation once per dataset and hands the detector
:class:`~oodbench.adapters.context.Representation` objects that serve them from the cache.

The contract, in scikit-learn's spirit:

* ``__init__(**hyperparameters)`` stores hyperparameters and does no work; ``get_params()`` reads them
  back and ``clone()`` makes an unfitted copy.
* ``fit(fit, cal=None)`` sees ID data only: the suite's ``fit`` split (or, for a third-party
  baseline run with ``--fit-split train``, the classifier's training split: ``follows_fit_split``)
  and, for detectors that calibrate, the held-out ``cal`` split. Returns ``self``.
* ``score(rep)`` returns float64 of shape ``(len(rep),)``; **higher = more OOD**.
* Optional methods, declared here with their defaults: ``p_value(rep)`` (values in (0, 1], small = OOD;
  a detector that implements it answers ``gives_p_values()`` with True), ``subsample_size(device)``
  (at most this many inputs of each test set are scored, a seeded subsample; None = all) and
  ``tap_layers`` (the layers a fitted detector reads).
* ``info`` (:class:`DetectorInfo`) carries metadata the reports read: library and version, paper,
  whether it needs fitting, OOD data for tuning, gradients; whether it works on CPU.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
import torch

_UNSET = object()
CONSUMABLE = frozenset({"logits", "features", "taps", "model", "images"})


@dataclass(frozen=True)
class DetectorInfo:
    library: str
    library_version: str = ""
    paper: str = ""
    needs_fit: bool = False
    needs_ood_tuning: bool = False
    needs_gradients: bool = False
    cpu_ok: bool = True
    expensive: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class DetectorError(RuntimeError):
    """A detector broke its contract (wrong shape, dtype, NaN) or failed."""


class Detector:
    """Base class. Subclasses set ``name``, ``consumes`` and ``info`` and implement ``fit``/``score``."""

    name: ClassVar[str] = ""
    consumes: ClassVar[frozenset] = frozenset()
    info: ClassVar[DetectorInfo] = DetectorInfo(library="oodbench")
    #: True for a third-party baseline: the harness's ``--fit-split`` chooses what ``fit`` receives
    #: (``train``: the classifier's training split, OpenOOD's protocol; ``fit``: the held-out ``fit``
    #: split). False (the lab's methods, users' detectors): ``fit`` always receives the ``fit`` split,
    #: disjoint from the training data and from ``cal``, as conformal p-values need.
    follows_fit_split: ClassVar[bool] = False

    def __init__(self, **params):
        for k, v in params.items():
            setattr(self, k, v)

    def diagnostics(self) -> dict:
        """What a fitted detector reports about itself after scoring (JSON-able; recorded under the
        detector's entry in ``run.json``), e.g. a calibration check. Empty by default."""
        return {}

    def not_applicable(self, fit) -> str:
        """Why this method cannot work on the classifier behind ``fit`` (the representation it is
        fitted on), or "" when it can. The harness still scores it; a non-empty reason is recorded
        per row (``not_applicable_reason``) and the leaderboard shows the row apart, unranked."""
        return ""

    # --- scikit-learn style parameter handling -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        values = {k: getattr(self, k, _UNSET) for k in self._param_names()}
        return {k: v for k, v in values.items() if v is not _UNSET}

    def set_params(self, **params) -> "Detector":
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"{type(self).__name__} has no hyperparameter {k!r}; it has {self._param_names()}")
            setattr(self, k, v)
        return self

    def clone(self) -> "Detector":
        return type(self)(**copy.deepcopy(self.get_params()))

    # --- the contract -----------------------------------------------------------------------------
    def fit(self, fit, cal=None) -> "Detector":
        return self

    def score(self, rep) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- optional methods (overridden where a detector has them) ---------------------------------
    def p_value(self, rep) -> np.ndarray:
        """p-values of H0 "ID" for every input of ``rep``, in (0, 1] (small = OOD)."""
        raise NotImplementedError(f"{type(self).__name__} gives no p-values")

    @classmethod
    def gives_p_values(cls) -> bool:
        """Whether this detector implements :meth:`p_value`."""
        return cls.p_value is not Detector.p_value

    def subsample_size(self, device) -> int | None:
        """Score at most this many inputs of each test set (a seeded subsample) on ``device``; None: all."""
        return None

    def id_subsample_size(self, device) -> int | None:
        """Score at most this many inputs of the ID test set on ``device``; by default as many as of every
        set (:meth:`subsample_size`). A detector giving p-values may score more ID inputs than OOD ones: its
        false-alarm rate is measured on the ID test set."""
        return self.subsample_size(device)

    @property
    def tap_layers(self) -> list:
        """The classifier layers whose taps the (fitted) detector reads; empty: the cache's default."""
        return []

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class LibraryDetector(Detector):
    """Base of wrappers around a library's detector: hyperparameters are the keyword arguments passed
    to the library class, over its defaults (``defaults()``, which subclasses provide). One marked
    ``expensive`` scores a seeded subsample of ``CPU_SUBSAMPLE`` inputs per set on CPU."""

    #: per-set sample cap on CPU for detectors marked expensive (the runner's seeded subsample)
    CPU_SUBSAMPLE: ClassVar[int] = 2000
    follows_fit_split: ClassVar[bool] = True
    #: the method reads ``feature_maps`` with spatial extent (RankFeat): not applicable on 1×1 maps
    needs_spatial_maps: ClassVar[bool] = False

    def not_applicable(self, fit) -> str:
        if self.needs_spatial_maps:
            from oodbench.adapters.common import spatial_maps_reason

            return spatial_maps_reason(fit, self.name)
        return ""

    def subsample_size(self, device) -> int | None:
        if self.info.expensive and not str(device).startswith("cuda"):
            return self.CPU_SUBSAMPLE
        return None

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    @classmethod
    def defaults(cls) -> dict:
        return {}

    def get_params(self) -> dict:
        return {**self.defaults(), **self.kwargs}

    def set_params(self, **params):
        self.kwargs.update(params)
        return self

    def clone(self):
        return type(self)(**dict(self.kwargs))


def check_scores(scores, n: int, who: str = "detector") -> np.ndarray:
    """Validate a detector's output: numeric, shape (n,), no NaN. Returns float64."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores)
    if arr.dtype.kind not in "fiu":
        raise DetectorError(f"{who} returned dtype {arr.dtype}, expected a float array")
    if arr.shape != (n,):
        raise DetectorError(f"{who} returned shape {arr.shape}, expected ({n},)")
    arr = arr.astype(np.float64)
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise DetectorError(f"{who} returned {n_nan} NaN scores out of {n}")
    return arr
