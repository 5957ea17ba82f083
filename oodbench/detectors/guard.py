"""A deployment guard: a classifier whose every prediction comes with a p-value, and which refuses
to answer when the input does not look like its training distribution.

``Guard(model, detector, alpha)`` (:class:`oodbench.benchmark.evaluation.guard.Guard`, the harness's
classifiers) wraps a classifier and a **fitted** detector that gives p-values
(``detector.p_value(rep)``; e.g. ``stattest``). For each input it returns the predicted class and
the p-value of H0 "this input is from the ID distribution"; when ``p <= alpha`` the prediction is
**refused**. On exchangeable ID inputs the refusal rate is at most ``alpha`` (the detector's
guarantee), so ``alpha`` is the price in false refusals the deployment is willing to pay.

Two ways to get the answer:

* ``guard.check(x)`` -> a list of typed results, :class:`Accepted` or :class:`Refused` (never
  raises for an OOD input); ``guard.check_batch(x)`` -> arrays (:class:`GuardBatch`);
* ``guard.predict(x)`` -> the accepted label of one input, or raises :class:`OODRefusal` (a
  ``ValueError`` subclass carrying the p-value, the level and the label that was withheld).

Here: the typed results, the shared :class:`GuardBase`, and :class:`ArrayGuard`, the guard for any plain
``nn.Module`` with the statistical-test core (:class:`~oodbench.detectors.stattest.MaxSimesFisher`)
fitted on :func:`~oodbench.detectors.taps.module_taps` arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oodbench.detectors.taps import module_taps


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


class GuardBase:
    """What every guard shares: ``check`` (typed results) and ``predict`` (one label, or
    :class:`OODRefusal`) over the subclass's ``check_batch(x) -> GuardBatch``."""

    alpha: float

    def check_batch(self, x) -> GuardBatch:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, x) -> list:
        """A typed result per input: :class:`Accepted` or :class:`Refused`."""
        return self.check_batch(x).results()

    def _one(self, x):
        """``x`` as a batch of one input (subclasses know what a single input looks like)."""
        return x

    def predict(self, x) -> int:
        """The label of one input, or :class:`OODRefusal` if it is rejected."""
        r = self.check(self._one(x))
        if len(r) != 1:
            raise ValueError(f"predict takes one input, got {len(r)}; use check() for batches")
        if r[0].refused:
            raise OODRefusal(r[0].p_value, r[0].alpha, r[0].label)
        return r[0].label


def check_alpha(alpha) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


class ArrayGuard(GuardBase):
    """The guard for any ``nn.Module``: the statistical-test core
    (:class:`~oodbench.detectors.stattest.MaxSimesFisher`, fitted on :func:`module_taps` arrays)
    reads the named ``layers`` through forward hooks; the model's output is the logits.
    ``x``: the model's input tensor/array."""

    def __init__(self, model, core, layers, alpha: float = 0.05, device=None, batch_size: int = 512):
        self.model, self.detector, self.layers, self.alpha = model, core, list(layers), check_alpha(alpha)
        self.device, self.batch_size = device, batch_size

    def check_batch(self, x) -> GuardBatch:
        import torch

        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        batches = [x[i:i + self.batch_size] for i in range(0, len(x), self.batch_size)]
        taps, logits = module_taps(self.model, batches, self.layers, self.device, return_outputs=True)
        preds = logits.argmax(1).astype(np.int64)
        p = self.detector.evaluate(taps, preds)["p"]
        return GuardBatch(preds, p, p <= self.alpha, self.alpha)

    def _one(self, x):
        import torch

        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        return x[None] if x.ndim == 1 else x
