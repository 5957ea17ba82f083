"""Adapters: the one detector interface (:mod:`.base`), the registry (:mod:`.registry`), and one
module per wrapped library or family (:mod:`.pytorch_ood`, :mod:`.openood`, :mod:`.lab`)."""
from oodbench.adapters.base import Detector, DetectorError, DetectorInfo  # noqa: F401
from oodbench.adapters.registry import create, names, register  # noqa: F401
