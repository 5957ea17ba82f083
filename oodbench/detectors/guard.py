"""A deployment guard: a classifier whose every prediction comes with a p-value, and which refuses
to answer when the input does not look like its training distribution.

``Guard(model, detector, alpha)`` wraps a classifier and a **fitted** detector that gives p-values
(``detector.p_value(rep)``; e.g. ``stattest``). For each input it returns the predicted class and
the p-value of H0 "this input is from the ID distribution"; when ``p <= alpha`` the prediction is
**refused**. On exchangeable ID inputs the refusal rate is at most ``alpha`` (the detector's
guarantee), so ``alpha`` is the price in false refusals the deployment is willing to pay.

Two ways to get the answer:

* ``guard.check(x)`` -> a list of typed results, :class:`Accepted` or :class:`Refused` (never
  raises for an OOD input); ``guard.check_batch(x)`` -> arrays (:class:`GuardBatch`);
* ``guard.predict(x)`` -> the accepted label of one input, or raises :class:`OODRefusal` (a
  ``ValueError`` subclass carrying the p-value, the level and the label that was withheld).

``model`` is a harness classifier (``forward_features``; any ``oodbench.benchmark.models``
architecture). A plain ``nn.Module`` works with the statistical-test detector fitted on
``module_taps`` arrays (:class:`ArrayGuard`).
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np

_COUNTER = itertools.count()


@dataclass(frozen=True)
class Accepted:
    """The input looks in-distribution at level ``alpha``: ``label`` is the classifier's answer."""

    label: int
    p_value: float
    alpha: float
    refused: bool = False


@dataclass(frozen=True)
class Refused:
    """The input was rejected as out-of-distribution (``p_value <= alpha``); ``label`` is what the
    classifier would have said, withheld."""

    label: int
    p_value: float
    alpha: float
    refused: bool = True


class OODRefusal(ValueError):
    """Raised by :meth:`Guard.predict` when the input is rejected as out-of-distribution."""

    def __init__(self, p_value: float, alpha: float, label: int):
        self.p_value, self.alpha, self.label = float(p_value), float(alpha), int(label)
        super().__init__(f"input refused as out-of-distribution: p = {self.p_value:.4g} <= alpha = {self.alpha:g} "
                         f"(withheld prediction: {self.label})")


@dataclass
class GuardBatch:
    labels: np.ndarray  # (N,) int64, the classifier's predictions
    p_values: np.ndarray  # (N,) float64
    refused: np.ndarray  # (N,) bool, p <= alpha
    alpha: float

    def results(self) -> list:
        return [(Refused if r else Accepted)(int(lab), float(p), self.alpha)
                for lab, p, r in zip(self.labels, self.p_values, self.refused)]


class Guard:
    """Classifier + fitted p-value detector -> predictions with p-values, refused when ``p <= alpha``.

    ``x``: uint8 images ``(N, H, W)`` / ``(N, H, W, 3)`` as the harness stores them (a single image
    without the batch axis is accepted too).
    """

    def __init__(self, model, detector, alpha: float = 0.05, device="cpu", batch_size: int = 512):
        if not hasattr(detector, "p_value"):
            raise TypeError(f"{type(detector).__name__} gives no p-values (no p_value method); wrap a detector "
                            "that does, e.g. registry.create('stattest')")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if not hasattr(model, "forward_features"):
            raise TypeError("Guard needs a harness classifier (forward_features); for a plain nn.Module use ArrayGuard")
        self.model, self.detector, self.alpha = model, detector, float(alpha)
        self.device, self.batch_size = device, batch_size

    def _representation(self, x):
        from oodbench.benchmark.data import ImageSet
        from oodbench.benchmark.evaluation.features import RepresentationStore

        x = np.asarray(x)
        if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3):  # one image
            x = x[None]
        if x.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {x.dtype}")
        taps = getattr(self.detector, "tap_layers", None) or getattr(self.model, "tap_layers", ())
        store = RepresentationStore(self.model, "guard", cache=None, device=self.device,
                                    batch_size=self.batch_size, taps=taps)
        key = f"guard-{next(_COUNTER)}-{hashlib.sha256(x.tobytes()).hexdigest()[:16]}"
        images = ImageSet("guard", x, np.full(len(x), -1, np.int64), key)
        return store.representation(images, "guard")

    def check_batch(self, x) -> GuardBatch:
        rep = self._representation(x)
        p = np.asarray(self.detector.p_value(rep), np.float64)
        return GuardBatch(np.asarray(rep.preds, np.int64), p, p <= self.alpha, self.alpha)

    def check(self, x) -> list:
        """A typed result per input: :class:`Accepted` or :class:`Refused`."""
        return self.check_batch(x).results()

    def predict(self, x) -> int:
        """The label of one input, or :class:`OODRefusal` if it is rejected."""
        x = np.asarray(x)
        if x.ndim in (2,) or (x.ndim == 3 and x.shape[-1] == 3):
            x = x[None]
        if len(x) != 1:
            raise ValueError(f"predict takes one input, got {len(x)}; use check() for batches")
        r = self.check(x)[0]
        if r.refused:
            raise OODRefusal(r.p_value, r.alpha, r.label)
        return r.label


class ArrayGuard(Guard):
    """The guard for any ``nn.Module``: the statistical-test core
    (:class:`~oodbench.detectors.stattest.MaxSimesFisher`, fitted on :func:`module_taps` arrays)
    reads the named ``layers`` through forward hooks; the model's output is the logits.
    ``x``: the model's input tensor/array."""

    def __init__(self, model, core, layers, alpha: float = 0.05, device=None, batch_size: int = 512):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.model, self.detector, self.layers, self.alpha = model, core, list(layers), float(alpha)
        self.device, self.batch_size = device, batch_size

    def check_batch(self, x) -> GuardBatch:
        import torch

        from oodbench.detectors.stattest import module_taps

        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        batches = [x[i:i + self.batch_size] for i in range(0, len(x), self.batch_size)]
        taps, logits = module_taps(self.model, batches, self.layers, self.device, return_outputs=True)
        preds = logits.argmax(1).astype(np.int64)
        p = self.detector.evaluate(taps, preds)["p"]
        return GuardBatch(preds, p, p <= self.alpha, self.alpha)

    def predict(self, x) -> int:
        import torch

        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        r = self.check(x[None] if x.ndim == 1 else x)
        if len(r) != 1:
            raise ValueError(f"predict takes one input, got {len(r)}; use check() for batches")
        if r[0].refused:
            raise OODRefusal(r[0].p_value, r[0].alpha, r[0].label)
        return r[0].label
