"""The score cache: a detector's scores (and ID p-values) for one classifier and suite, stored under
``<cache>/scores/<representation key>/<detector>-<key>.npz``. The key hashes the detector's name,
parameters, library version and source files (its module and every oodbench module that one imports,
and those of the registered detectors it runs inside it, :func:`extras_code`), the device kind, the
representations' content key (weights, network and extraction code:
:attr:`~.features.RepresentationStore.key`), the session's seed, the split it is fitted on and the
checksums of every set the detector fits on or scores (train, fit, cal, ID test, each OOD test set), so
edited detector code, a retrained classifier or other data is never served stale scores."""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np

from oodbench.adapters import registry
from oodbench.benchmark import cache as cachemod
from oodbench.benchmark.io import CorruptCacheError, load_arrays, save_arrays


def code_hash(cls) -> str:
    """Hash of the source file defining a detector class and of every oodbench module it imports
    (:func:`~oodbench.benchmark.cache.module_closure`: the lab's methods in ``oodbench.detectors``, the
    adapters' shared helpers), so edited detector code invalidates cached scores."""
    try:
        # the registry's imports load every family; a detector run inside another is keyed by extras_code
        files = cachemod.module_closure(cls.__module__, stop=(registry.__name__,)) or [Path(inspect.getfile(cls))]
    except (TypeError, OSError, SyntaxError):
        return ""
    return cachemod.file_hash(files)


def extras_code(det) -> dict:
    """Code hashes of the registered detectors a detector runs inside it (``stattest+vae``'s ``extras``), so
    that editing the VAE's code also invalidates the scores of the test that includes it; empty for the
    others (their keys stay as they were)."""
    names = [e for e in (det.get_params().get("extras") or ()) if isinstance(e, str) and e in registry.names()]
    return {e: code_hash(registry.get(e)) for e in names}


def key(name: str, det, rep_key: str, data, device: str = "cpu", seed: int = 0, fit_split: str = "fit") -> str:
    extra = extras_code(det)
    blob = json.dumps({**({"extras_code": extra} if extra else {}),
                       "name": name, "fit_split": fit_split, "params": det.get_params(),
                       "lib": det.info.library_version, "device": "cuda" if str(device).startswith("cuda") else "cpu",
                       "code": code_hash(type(det)), "representations": rep_key, "seed": int(seed),
                       "train": data.train.checksum, "fit": data.fit.checksum, "cal": data.cal.checksum,
                       "id": data.id_test.checksum, "tests": [[t.name, t.images.checksum] for t in data.tests]},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def path_for(session, name: str, params: dict | None = None, fit_split: str = "fit") -> Path:
    """The entry of detector ``name`` fitted on split ``fit_split`` (the split it actually uses)."""
    det = registry.create(name, **(params or {}))
    rk = session.store.key
    k = key(name, det, rk, session.data, session.device, session.seed, fit_split)
    return session.cache / "scores" / rk / f"{name}-{k}.npz"


def load(path: Path, warn=print):
    """``(scores, pvalues or None, meta)`` from a cache entry, or None when absent or unusable."""
    if not path.exists():
        return None
    try:
        arr = load_arrays(path)
        meta = json.loads(str(arr.pop("__meta__")))
    except (CorruptCacheError, KeyError, ValueError) as e:
        warn(f"warning: score cache {path} unusable ({e}); recomputing")
        return None
    pv = {k[2:]: v for k, v in arr.items() if k.startswith("p:")}
    sc = {k: v for k, v in arr.items() if not k.startswith("p:")}
    return sc, (pv or None), meta


def save(path: Path, scores: dict, pvalues: dict | None, meta: dict) -> None:
    save_arrays(path, {**scores, **{"p:" + k: v for k, v in (pvalues or {}).items()},
                       "__meta__": np.array(json.dumps(meta))})
