"""Open-set suites: the classifier is trained on a subset of the ID classes, the others are held out.

A suite with ``"id_classes": [c_0, ..., c_{k-1}]`` keeps only those classes in its ``train`` / ``fit`` /
``cal`` splits and its ID test set, with labels renumbered ``c_j -> j`` (so a classifier with ``k``
outputs is trained). A test set with ``"held_out": [c]`` is the official ID test images of the held-out
class(es) ``c`` (original labels kept), typically in group ``"novel"``: images of a class the classifier
never saw. :func:`.suites.materialise` calls :func:`restrict` and :func:`held_out` for such suites.
"""
from __future__ import annotations

import numpy as np

from oodbench.benchmark import data as datamod


def restrict(images: datamod.ImageSet, classes) -> datamod.ImageSet:
    """The images of ``classes`` only, labels renumbered to ``0..len(classes)-1`` in that order."""
    classes = [int(c) for c in classes]
    keep = np.flatnonzero(np.isin(images.y, classes))
    sub = images.subset(keep, images.name)
    remap = np.full(int(max(images.y.max(), max(classes))) + 1, -1, np.int64)
    remap[classes] = np.arange(len(classes))
    names = [images.classes[c] for c in classes] if len(images.classes) > max(classes) else []
    return datamod.ImageSet(sub.name, sub.x, remap[sub.y], f"open{classes}:{sub.checksum}", names)


def held_out(id_test: datamod.ImageSet, name: str, classes) -> datamod.ImageSet:
    """The ID test images of the held-out ``classes`` (original labels), named ``name``."""
    keep = np.flatnonzero(np.isin(id_test.y, [int(c) for c in classes]))
    return id_test.subset(keep, name)
