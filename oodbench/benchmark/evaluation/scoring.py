"""One detector on one session: fit on the ID ``fit`` (and ``cal``) split (a third-party baseline on
the ``train`` split when the run's fit split is ``train``: :func:`fit_split_of`), score the ID test set and
every OOD test set, and the p-values of every scored set when the detector gives p-values (the ID
test set's give the false-alarm rates, the others the guard's refusals); with the score cache in front
(:mod:`.scorecache`; an entry from before every set had p-values is recomputed).

A detector too expensive to score every sample answers ``subsample_size(device)`` with an int:
the ID test set and each OOD set are then scored on a seeded subsample of that size (recorded in the
run record and visible as ``n_id``/``n_ood`` in the results). ``id_subsample_size(device)`` (by default the
same) sizes the ID test set's subsample apart: ``wgan_dz_fast`` scores the whole ID test set, so that its
false-alarm rate is measured on 10,000 inputs rather than 2,000.
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from oodbench.adapters import registry
from oodbench.adapters.base import check_scores
from oodbench.benchmark.cache import entry_lock, write_or_warn
from oodbench.benchmark.evaluation import scorecache
from oodbench.detectors.sampling import seeded_subset


@dataclass
class Scored:
    """What one detector produced on one session: scores per test set (``"id"`` and each OOD set's
    name), p-values on the same keys (or None), and the job's record (timings, memory, parameters, ``cached``)."""

    detector: object
    scores: dict
    pvalues: dict | None
    meta: dict = field(default_factory=dict)


def subsample_index(n: int, n_max: int | None, seed: int) -> np.ndarray | None:
    """Indices (sorted) of the seeded subsample of at most ``n_max`` of ``n`` items; None = all of them."""
    if not n_max or n <= n_max:
        return None
    return seeded_subset(n, n_max, [seed, n, n_max])


def subsample(images, n_max: int | None, seed: int):
    """A seeded subsample (without replacement, in original order) of at most ``n_max`` images."""
    idx = subsample_index(len(images), n_max, seed)
    return images if idx is None else images.subset(idx, images.name)


class _served_scores:
    """While active, ``det.score(rep)`` returns the scores already computed for ``rep``'s images
    (keyed by checksum) instead of computing them again: a detector whose ``p_value`` calls its own
    ``score`` then costs nothing more on the sets it has scored."""

    def __init__(self, det, known: dict):
        self.det, self.known = det, known

    def __enter__(self):
        inner = self.det.score

        def score(rep):
            hit = self.known.get(rep.images.checksum)
            return hit.copy() if hit is not None and len(hit) == len(rep) else inner(rep)

        self.det.score = score
        return self

    def __exit__(self, *exc):
        self.det.__dict__.pop("score", None)


FIT_SPLITS = ("train", "fit")


def fit_split_of(name: str, fit_split: str = "train") -> str:
    """The ID split detector ``name`` is fitted on when the run asks for ``fit_split``: a third-party
    baseline (``follows_fit_split``) takes the run's choice — ``train``, the classifier's training
    split (OpenOOD v1.5's protocol, comparable with published numbers), or ``fit``, the held-out
    5,000-image split; every other detector (the lab's conformal methods) always ``fit``."""
    if fit_split not in FIT_SPLITS:
        raise ValueError(f"fit split {fit_split!r}: give one of {', '.join(FIT_SPLITS)}")
    return fit_split if registry.get(name).follows_fit_split else "fit"


def fit_representation(session, name: str, fit_split: str = "train"):
    """The representation ``name`` is fitted on (see :func:`fit_split_of`)."""
    if fit_split_of(name, fit_split) == "train":
        return session.representation(session.data.train, "train")
    return session.representation(session.data.fit, "fit")


def fit_and_score(session, name: str, params: dict | None = None, fit_split: str = "train") -> Scored:
    """Fit detector ``name`` (with ``params`` over its defaults) on the split :func:`fit_split_of`
    chooses and score every test set of ``session``."""
    det = registry.create(name, **(params or {}))
    data, device, seed = session.data, session.device, session.seed
    fit = fit_representation(session, name, fit_split)
    cal = session.representation(data.cal, "cal")
    not_applicable = det.not_applicable(fit)
    tracemalloc.start()
    t0 = time.perf_counter()
    det.fit(fit, cal)
    t_fit = time.perf_counter() - t0
    scores, pvals, n_scored = {}, {}, 0
    t0 = time.perf_counter()
    n_max, n_id = det.subsample_size(device), det.id_subsample_size(device)
    sets = [("id", subsample(data.id_test, n_id, seed))] + [(t.name, subsample(t.images, n_max, seed))
                                                            for t in data.tests]
    for key, images in sets:
        rep = session.representation(images, key)
        scores[key] = check_scores(det.score(rep), len(images), name)
        n_scored += len(images)
    t_score = time.perf_counter() - t0
    if det.gives_p_values():  # every set's p-values (the guard's refusals), ID test first
        with _served_scores(det, {images.checksum: scores[key] for key, images in sets}):
            for key, images in sets:
                pvals[key] = check_scores(det.p_value(session.representation(images, key)), len(images),
                                          name + " p_value")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    meta = {"fit_seconds": t_fit, "score_seconds": t_score, "samples_scored": n_scored, "subsample": n_max,
            "id_subsample": n_id,
            "throughput_per_s": n_scored / t_score if t_score > 0 else None, "peak_python_mb": peak / 2 ** 20,
            "params": {k: repr(v) for k, v in det.get_params().items()},
            "fit_split": fit_split_of(name, fit_split), "fit_samples": len(fit),
            "not_applicable_reason": not_applicable}
    diag = det.diagnostics()
    if diag:
        meta["diagnostics"] = diag
    return Scored(det, scores, pvals or None, meta)


def score_cached(session, name: str, params: dict | None = None, use_cache: bool = True, warn=print,
                 fit_split: str = "train") -> Scored:
    """:func:`fit_and_score` behind the score cache: a cached entry is returned as it is
    (``meta["cached"] = True``); a computed one is stored. "Check, compute, store" holds the entry's
    lock (another process scoring the same entry waits and reuses it); a store that fails (read-only
    or full cache) is one warning, never a failure of the detector: its scores are used anyway."""
    if not use_cache:
        res = fit_and_score(session, name, params, fit_split)
        res.meta["cached"] = False
        return res
    path = scorecache.path_for(session, name, params, fit_split_of(name, fit_split))
    with entry_lock(path):  # cache failures are shown also in a quiet run (``warn`` may be silent)
        hit = scorecache.load(path, warn)
        if hit is not None:
            scores, pvals, meta = hit
            if pvals is not None and set(pvals) < set(scores):  # from before every set had p-values
                hit = None
        if hit is not None:
            return Scored(registry.create(name, **(params or {})), scores, pvals, {**meta, "cached": True})
        res = fit_and_score(session, name, params, fit_split)
        write_or_warn(lambda: scorecache.save(path, res.scores, res.pvalues, res.meta), path)
    res.meta["cached"] = False
    return res
