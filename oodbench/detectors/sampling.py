"""The one seeded subsample: which inputs a detector too expensive to score everything scores."""
from __future__ import annotations

import numpy as np


def seeded_subset(n: int, n_max: int | None, entropy) -> np.ndarray:
    """Indices (sorted, without replacement) of at most ``n_max`` of ``range(n)``, drawn by
    ``np.random.default_rng(entropy)``; all of ``range(n)`` when ``n_max`` is None/0 or ``n <= n_max``."""
    if not n_max or n <= n_max:
        return np.arange(n)
    return np.sort(np.random.default_rng(entropy).choice(n, int(n_max), replace=False))
