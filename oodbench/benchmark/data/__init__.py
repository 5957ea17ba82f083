"""Data: datasets by name (:mod:`.datasets`), their published checksums (:mod:`.checksums`), covariate
shifts (:mod:`.shifts`) and benchmark suites (:mod:`.suites`).

The names below are the package's public API (``data.load``, ``data.ImageSet``, ...)."""
from oodbench.benchmark.data.datasets import (  # noqa: F401
    DATASETS, HOW_TO_GET, DatasetError, DatasetUnavailable, ImageSet, convert, download, load,
    tinyimagenet_classes)
