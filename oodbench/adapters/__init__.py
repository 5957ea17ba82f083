"""Adapters: the one detector interface (:mod:`.base`), what the harness hands a detector besides its
representations (:mod:`.context`), the registry (:mod:`.registry`), and one module or package per
wrapped library or family (:mod:`.pytorch_ood`, :mod:`.openood`, :mod:`.lab`), with what they share
(:mod:`.common`, :mod:`.cuda`). Adapters import :mod:`oodbench.detectors` and libraries, never
:mod:`oodbench.benchmark`."""
from oodbench.adapters.base import Detector, DetectorError, DetectorInfo  # noqa: F401
from oodbench.adapters.context import CheckpointStore, FitContext, Representation  # noqa: F401
from oodbench.adapters.registry import REGISTRY, Registry, create, names, register  # noqa: F401
