"""Seeded test streams for the novelty protocol: ID test images, far-OOD junk, held-out classes arriving.

A :class:`Pool` holds every image the stream can draw, already scored: its truth code (``ID = -1``,
``JUNK = -2``, or the held-out class label), its source set, its penultimate features and its per-input
p-value under each method. :func:`make_stream` draws windows of indices into the pool:

* windows ``0 .. n_before - 1`` (junk-only): ``round(junk_frac * window)`` junk images (a junk set drawn
  uniformly for each, then an image), the rest ID test images;
* windows ``n_before ..`` (after the arrival): additionally ``round(novel_frac * window)`` held-out
  images, each of a held-out class drawn uniformly.

Within a window images are drawn without replacement; windows are independent draws (an image may
recur in a later window). Everything is a function of the seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ID, JUNK = -1, -2


@dataclass
class Pool:
    truth: np.ndarray  # (n,) ID, JUNK or held-out class label
    source: np.ndarray  # (n,) index into ``sources``
    sources: list  # set names
    features: np.ndarray  # (n, d) penultimate features
    pvalues: dict  # method -> (n,) p-values
    class_names: dict = field(default_factory=dict)  # held-out class code -> what to call it in reports

    def __len__(self) -> int:
        return len(self.truth)

    @property
    def novel_classes(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.truth) if c >= 0)


def build_pool(parts: list[tuple[str, int, np.ndarray, np.ndarray, dict]]) -> Pool:
    """Concatenate ``(name, truth code or None, labels, features, {method: p-values})`` parts.

    ``truth code`` is ``ID`` or ``JUNK`` for the whole part, or ``None`` to take each image's label
    (a held-out class set).
    """
    truth, source, feats, names = [], [], [], []
    pv: dict[str, list] = {}
    for i, (name, code, labels, f, p) in enumerate(parts):
        n = len(f)
        truth.append(np.asarray(labels, np.int64) if code is None else np.full(n, code, np.int64))
        source.append(np.full(n, i, np.int64))
        feats.append(np.asarray(f, np.float32))
        names.append(name)
        for m, v in p.items():
            if len(v) != n:
                raise ValueError(f"{name}: {len(v)} p-values of {m} for {n} images")
            pv.setdefault(m, []).append(np.asarray(v, np.float64))
    if any(len(v) != len(parts) for v in pv.values()):
        raise ValueError("every part needs p-values of every method")
    return Pool(np.concatenate(truth), np.concatenate(source), names, np.concatenate(feats),
                {m: np.concatenate(v) for m, v in pv.items()})


def make_stream(pool: Pool, seed: int, window: int = 500, n_before: int = 200, n_after: int = 20,
                junk_frac: float = 0.15, novel_frac: float = 0.1) -> list[np.ndarray]:
    """``n_before + n_after`` windows of pool indices (see the module docstring)."""
    n_junk, n_novel = round(junk_frac * window), round(novel_frac * window)
    if n_junk + n_novel > window:
        raise ValueError(f"junk_frac + novel_frac must be <= 1, got {junk_frac} + {novel_frac}")
    rng = np.random.default_rng([seed, window, n_before, n_after])
    id_idx = np.flatnonzero(pool.truth == ID)
    junk_sets = [np.flatnonzero((pool.truth == JUNK) & (pool.source == s)) for s in np.unique(pool.source)]
    junk_sets = [j for j in junk_sets if len(j)]
    novel_sets = [np.flatnonzero(pool.truth == c) for c in pool.novel_classes]
    if not len(id_idx) or not junk_sets or (n_after and n_novel and not novel_sets):
        raise ValueError("the pool needs ID, junk and (for windows after the arrival) held-out images")
    out = []
    for w in range(n_before + n_after):
        k_novel = n_novel if w >= n_before else 0
        parts = [_draw(rng, [id_idx], window - n_junk - k_novel), _draw(rng, junk_sets, n_junk)]
        if k_novel:
            parts.append(_draw(rng, novel_sets, k_novel))
        idx = np.concatenate(parts)
        out.append(idx[rng.permutation(len(idx))])
    return out


def _draw(rng: np.random.Generator, sets: list[np.ndarray], k: int) -> np.ndarray:
    """``k`` indices: for each, a set drawn uniformly; within each set without replacement."""
    which = rng.integers(0, len(sets), k)
    got = [rng.choice(s, int(np.sum(which == i)), replace=np.sum(which == i) > len(s))
           for i, s in enumerate(sets)]
    return np.concatenate(got) if got else np.zeros(0, np.int64)
