"""One detector on one session: fit on the ID ``fit`` (and ``cal``) split, score the ID test set and
every OOD test set, and the p-values of the ID test set when the detector gives p-values; with the
score cache in front (:mod:`.scorecache`).

A detector too expensive to score every sample answers ``subsample_size(device)`` with an int:
the ID test set and each OOD set are then scored on a seeded subsample of that size (recorded in the
run record and visible as ``n_id``/``n_ood`` in the results).
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field

from oodbench.adapters import registry
from oodbench.adapters.base import check_scores
from oodbench.benchmark.evaluation import scorecache
from oodbench.detectors.sampling import seeded_subset


@dataclass
class Scored:
    """What one detector produced on one session: scores per test set (``"id"`` and each OOD set's
    name), ID p-values (or None), and the job's record (timings, memory, parameters, ``cached``)."""

    detector: object
    scores: dict
    pvalues: dict | None
    meta: dict = field(default_factory=dict)


def subsample(images, n_max: int | None, seed: int):
    """A seeded subsample (without replacement, in original order) of at most ``n_max`` images."""
    if not n_max or len(images) <= n_max:
        return images
    return images.subset(seeded_subset(len(images), n_max, [seed, len(images), n_max]), images.name)


def fit_and_score(session, name: str, params: dict | None = None) -> Scored:
    """Fit detector ``name`` (with ``params`` over its defaults) and score every test set of ``session``."""
    det = registry.create(name, **(params or {}))
    data, device, seed = session.data, session.device, session.seed
    fit = session.representation(data.fit, "fit")
    cal = session.representation(data.cal, "cal")
    tracemalloc.start()
    t0 = time.perf_counter()
    det.fit(fit, cal)
    t_fit = time.perf_counter() - t0
    scores, pvals, n_scored = {}, {}, 0
    t0 = time.perf_counter()
    n_max = det.subsample_size(device)
    sets = [("id", subsample(data.id_test, n_max, seed))] + [(t.name, subsample(t.images, n_max, seed))
                                                             for t in data.tests]
    for key, images in sets:
        rep = session.representation(images, key)
        scores[key] = check_scores(det.score(rep), len(images), name)
        n_scored += len(images)
    t_score = time.perf_counter() - t0
    if det.gives_p_values():
        id_set = sets[0][1]
        pvals["id"] = check_scores(det.p_value(session.representation(id_set, "id")), len(id_set),
                                   name + " p_value")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    meta = {"fit_seconds": t_fit, "score_seconds": t_score, "samples_scored": n_scored, "subsample": n_max,
            "throughput_per_s": n_scored / t_score if t_score > 0 else None, "peak_python_mb": peak / 2 ** 20,
            "params": {k: repr(v) for k, v in det.get_params().items()}}
    return Scored(det, scores, pvals or None, meta)


def score_cached(session, name: str, params: dict | None = None, use_cache: bool = True, warn=print) -> Scored:
    """:func:`fit_and_score` behind the score cache: a cached entry is returned as it is
    (``meta["cached"] = True``); a computed one is stored."""
    path = scorecache.path_for(session, name, params) if use_cache else None
    if path is not None:
        hit = scorecache.load(path, warn)
        if hit is not None:
            scores, pvals, meta = hit
            return Scored(registry.create(name, **(params or {})), scores, pvals, {**meta, "cached": True})
    res = fit_and_score(session, name, params)
    if path is not None:
        scorecache.save(path, res.scores, res.pvalues, res.meta)
    res.meta["cached"] = False
    return res
