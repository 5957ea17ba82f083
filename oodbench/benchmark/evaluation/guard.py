"""The deployment guard for the harness's classifiers: predictions with p-values, refused when
``p <= alpha`` (the typed results and the plain-``nn.Module`` :class:`~oodbench.detectors.guard.ArrayGuard`
are in :mod:`oodbench.detectors.guard`)."""
from __future__ import annotations

import hashlib
import itertools

import numpy as np

from oodbench.adapters.base import Detector
from oodbench.benchmark.data import ImageSet
from oodbench.benchmark.evaluation.features import RepresentationStore
from oodbench.benchmark.models import Classifier
from oodbench.detectors.guard import GuardBase, GuardBatch, check_alpha

_COUNTER = itertools.count()


class Guard(GuardBase):
    """Classifier + fitted p-value detector -> predictions with p-values, refused when ``p <= alpha``.

    ``x``: uint8 images ``(N, H, W)`` / ``(N, H, W, 3)`` as the harness stores them (a single image
    without the batch axis is accepted too).
    """

    def __init__(self, model, detector, alpha: float = 0.05, device="cpu", batch_size: int = 512):
        if not (isinstance(detector, Detector) and detector.gives_p_values()):
            raise TypeError(f"{type(detector).__name__} gives no p-values (no p_value method); wrap a detector "
                            "that does, e.g. registry.create('stattest')")
        alpha = check_alpha(alpha)
        if not isinstance(model, Classifier):
            raise TypeError("Guard needs a harness classifier (forward_features); for a plain nn.Module use ArrayGuard")
        self.model, self.detector, self.alpha = model, detector, float(alpha)
        self.device, self.batch_size = device, batch_size

    def _representation(self, x):
        x = np.asarray(x)
        if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3):  # one image
            x = x[None]
        if x.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {x.dtype}")
        taps = self.detector.tap_layers or self.model.tap_layers
        store = RepresentationStore(self.model, "guard", cache=None, device=self.device,
                                    batch_size=self.batch_size, taps=taps)
        key = f"guard-{next(_COUNTER)}-{hashlib.sha256(x.tobytes()).hexdigest()[:16]}"
        images = ImageSet("guard", x, np.full(len(x), -1, np.int64), key)
        return store.representation(images, "guard")

    def check_batch(self, x) -> GuardBatch:
        rep = self._representation(x)
        p = np.asarray(self.detector.p_value(rep), np.float64)
        return GuardBatch(np.asarray(rep.preds, np.int64), p, p <= self.alpha, self.alpha)

    def _one(self, x):
        x = np.asarray(x)
        return x[None] if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3) else x
