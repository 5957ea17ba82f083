"""Tuning policy: by default no detector sees OOD data; an optional *tuned* mode picks hyperparameters
on an OOD validation set disjoint from every test set (OpenOOD's APS protocol).

* ``mode="default"`` (what ``oodbench run`` does): fixed library defaults, recorded with the results.
* ``mode="tuned"``: for each detector, every point of its library's grid (``hyperparameter_space()``:
  pytorch-ood's ``hyperparameter_space`` class attribute, OpenOOD's ``postprocessor_sweep``) is fitted on
  the ID ``fit`` split (``cal`` where the detector calibrates) and scored on **ID validation** (the
  held-out ``cal`` split) and **OOD validation**; the point with the best AUROC wins (ties: the first
  grid point, as OpenOOD's ``Evaluator.hyperparam_search``). The detector is then refitted with it and
  evaluated on the test sets as usual.

The OOD validation set must share no image with any test set: :func:`assert_disjoint` compares
per-image hashes and raises otherwise. :data:`OOD_VAL` gives each suite's default, following OpenOOD
(which validates on a held-out split of one near-OOD source, e.g. Tiny ImageNet val for CIFAR): the
*training* split of the suite's first near-OOD dataset (test sets use its test split), first 2 000.

Proposed runner change (not made here): ``evaluate(..., tuning="default" | "tuned")``; with "tuned"
call :func:`tune` per detector before ``_run_detector``, create the detector with the chosen
parameters, include ``tuning`` and the chosen parameters in the score-cache key, and record
``{"tuning": mode, "ood_val": name, "grid": table}`` in ``run.json`` and a ``tuning`` column in
``results.csv``.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np

#: suite -> (dataset, split, n) of its default OOD validation set
OOD_VAL = {
    "mnist": ("fashionmnist", "train", 2000),
    "fashionmnist": ("mnist", "train", 2000),
    "cifar10": ("cifar100", "train", 2000),
}


@dataclass
class TuningResult:
    detector: str
    params: dict
    auroc: float
    mode: str = "tuned"
    ood_val: str = ""
    grid: list = field(default_factory=list)  # [{"params": {...}, "auroc": float, "error": str}]

    def as_dict(self) -> dict:
        return {"detector": self.detector, "mode": self.mode, "ood_val": self.ood_val, "params": self.params,
                "auroc": self.auroc, "grid": self.grid}


def grid_of(name: str, space: dict | None = None) -> list[dict]:
    """The grid points for a registered detector: its library's hyperparameter space (or ``space``)."""
    from oodbench.adapters import registry

    cls = registry.get(name)
    if space is None:
        hs = getattr(cls, "hyperparameter_space", None)
        space = hs() if callable(hs) else {}
    if not space:
        return [{}]
    keys = list(space)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(space[k] for k in keys))]


def _row_hashes(x: np.ndarray) -> set:
    x = np.ascontiguousarray(x)
    return {hashlib.sha1(r.tobytes()).hexdigest() for r in x.reshape(len(x), -1)}


def assert_disjoint(val, tests) -> None:
    """Raise ValueError when the OOD validation ImageSet shares a checksum or any image with a test set."""
    hv = _row_hashes(val.x)
    for t in tests:
        if t.checksum == val.checksum:
            raise ValueError(f"OOD validation set {val.name!r} is the test set {t.name!r}")
        if t.x.shape[1:] != val.x.shape[1:]:
            continue
        common = len(hv & _row_hashes(t.x))
        if common:
            raise ValueError(f"OOD validation set {val.name!r} shares {common} images with test set {t.name!r}")


def ood_val_set(suite_d: dict, data_dir=None, cache=None):
    """The suite's default OOD validation ImageSet (:data:`OOD_VAL`), converted to the suite's shape."""
    from oodbench.benchmark import data as datamod

    base = suite_d["name"].replace("-smoke", "")
    if base not in OOD_VAL or "id_source" in suite_d:  # a suite file declares no OOD validation set
        from oodbench.benchmark.data.user_images import UserInputError

        raise UserInputError(f"--tuning tuned needs an OOD validation set; suite {suite_d['name']!r} has none "
                             f"(the built-in suites {sorted(OOD_VAL)} do); run it with --tuning default")
    ds, split, n = OOD_VAL[base]
    s = datamod.load(ds, split, data_dir, cache)
    s = s.subset(np.arange(min(n, len(s))), name=f"{ds}-{split}-val")
    shape = tuple(suite_d["shape"])
    if s.x.shape[1:3] != shape or (s.x.ndim == 4) != (len(suite_d.get("channels", ())) == 3):
        try:
            x = datamod.convert(s.x, shape)
            from oodbench.benchmark.data import ImageSet

            s = ImageSet(s.name, x, np.full(len(x), -1, np.int64), s.checksum + f":{shape}")
        except Exception:
            pass
    return s


def tune(name: str, fit, cal, id_val, ood_val, space: dict | None = None) -> TuningResult:
    """Grid search for detector ``name``: best AUROC of ``id_val`` vs ``ood_val`` Representations."""
    from oodbench.adapters import registry
    from oodbench.adapters.base import check_scores
    from oodbench.benchmark.evaluation import metrics

    rows, best = [], None
    for params in grid_of(name, space):
        try:
            det = registry.create(name, **params).fit(fit, cal)
            a = metrics.auroc(check_scores(det.score(id_val), len(id_val), name),
                              check_scores(det.score(ood_val), len(ood_val), name))
            rows.append({"params": params, "auroc": float(a)})
            if best is None or a > best[1]:
                best = (params, float(a))
        except Exception as e:  # a grid point that fails is recorded, not chosen
            rows.append({"params": params, "auroc": float("nan"), "error": f"{type(e).__name__}: {e}"})
    if best is None:
        raise RuntimeError(f"{name}: every grid point failed: {rows}")
    return TuningResult(name, best[0], best[1], ood_val=getattr(ood_val, "name", ""), grid=rows)
