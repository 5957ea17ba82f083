"""Data: datasets by name (:mod:`.datasets`), their published checksums (:mod:`.checksums`), covariate
shifts (:mod:`.shifts`), benchmark suites (:mod:`.suites`) and downloads from the public sources
(:mod:`.download`).

The names below are the package's public API (``data.load``, ``data.ImageSet``, ...)."""
from oodbench.benchmark.data.datasets import (  # noqa: F401
    DATASETS, HOW_TO_GET, DatasetError, DatasetUnavailable, ImageSet, convert, load,
    tinyimagenet_classes)
