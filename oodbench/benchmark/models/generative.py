"""Checkpoint cache for the generative models the lab detectors train (VAE, WGAN-GP + inverter): the
harness's implementation of :class:`oodbench.adapters.context.CheckpointStore`, handed to detectors in
their :class:`~oodbench.adapters.context.FitContext`.

Mirrors :func:`oodbench.benchmark.models.load_or_train`: a checkpoint lives under
``<cache>/generative/<kind>-<key>.pt`` with a ``.json`` sidecar holding its sha256 and the training
log; the key is a hash of (kind, architecture/training hyperparameters, training-data checksum,
seed, training thread count, code: the source of ``build``/``train`` and what they call). The module
is built *and* trained under :func:`~oodbench.benchmark.models.training.reproducible` (seeded before
the build, fixed threads, deterministic algorithms), so one key gives one set of weights. "Check,
train, write" holds the entry's lock (a second process waits and reuses); both files are written
atomically, and a failed write is a warning, not an error. A checkpoint that fails its checksum is
retrained, not trusted. ``cache=None`` (tests) trains in memory and caches nothing.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import torch

from oodbench.benchmark import cache as cachemod
from oodbench.benchmark import jobclock
from oodbench.benchmark.io import atomic_write, sha256_bytes, write_json
from oodbench.benchmark.models.training import reproducible


#: trained modules of this process when there is no cache folder, (kind, key) -> (state_dict, meta)
_MEMO: dict = {}
#: CPU threads the generative models train with, whatever the run's ``--threads`` (in the key)
TRAIN_THREADS = 1


def key_of(kind: str, config: dict, data_checksum: str, seed: int, code: str = "") -> str:
    blob = json.dumps({"kind": kind, "config": config, "data": data_checksum, "seed": int(seed),
                       "threads": TRAIN_THREADS, "code": code}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class GenerativeCheckpoints:
    """The :class:`~oodbench.adapters.context.CheckpointStore` of one cache folder (``None``: in memory)."""

    def __init__(self, cache=None):
        self.cache = cache

    def load_or_train(self, kind: str, config: dict, data_checksum: str, seed: int, build, train):
        """:func:`load_or_train` in this cache folder, off a score job's time limit: training the model, or
        waiting for another worker that trains it, does not count towards ``--timeout``
        (:mod:`oodbench.benchmark.jobclock`)."""
        with jobclock.paused():
            return load_or_train(kind, config, data_checksum, seed, self.cache, build, train)


def load_or_train(kind: str, config: dict, data_checksum: str, seed: int, cache, build: Callable[[], torch.nn.Module],
                  train: Callable[[torch.nn.Module], dict]) -> tuple[torch.nn.Module, dict]:
    """Return ``(module, meta)``: the cached checkpoint of ``build()`` for this key, or ``train(module)``'s
    result (``train`` trains in place and returns a JSON-able log) saved to the cache."""
    key = key_of(kind, config, data_checksum, seed, cachemod.source_hash(*cachemod.code_closure(build, train,
                                                                                               load_or_train)))
    if cache is None:
        return _load_or_train(kind, key, config, data_checksum, seed, None, build, train)
    path = Path(cache) / "generative" / f"{kind}-{key}.pt"
    with cachemod.entry_lock(path):  # two processes wanting this model: one trains, the other waits and reuses
        return _load_or_train(kind, key, config, data_checksum, seed, path, build, train)


def _load_or_train(kind, key, config, data_checksum, seed, path, build, train):
    meta_path = None if path is None else path.with_suffix(".json")

    def loaded(state):
        with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG alone
            module = build()
        module.load_state_dict(state)
        return module.eval()

    if path is None and (kind, key) in _MEMO:  # no cache folder (tests): reuse within the process
        state, meta = _MEMO[(kind, key)]
        return loaded(state), {**meta, "cached": True}
    if path is not None:
        if path.exists() and meta_path.exists():
            try:
                data = path.read_bytes()
                meta = json.loads(meta_path.read_text())
                if sha256_bytes(data) == meta.get("sha256"):
                    module = loaded(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
                    meta["cached"] = True
                    return module, meta
            except (ValueError, RuntimeError, OSError, AttributeError) as e:
                print(f"warning: checkpoint {path} unreadable ({e}); retraining")
            else:
                print(f"warning: checkpoint {path} fails its checksum; retraining")
    # seeded *before* the build (the initial weights are drawn from the seeded RNG), then trained
    with reproducible(seed, TRAIN_THREADS, "cuda" if torch.cuda.is_available() else "cpu") as how:
        module = build()
        log = train(module)
    module = module.cpu().eval()
    meta = {"kind": kind, "config": config, "data_checksum": data_checksum, "seed": int(seed), "key": key, **log,
            **how}
    if path is not None:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
        data = buf.getvalue()
        meta["sha256"] = sha256_bytes(data)

        def write():
            atomic_write(path, data)
            write_json(meta_path, meta)

        cachemod.write_or_warn(write, path)
    else:
        if len(_MEMO) >= 4:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[(kind, key)] = ({k: v.detach().clone() for k, v in module.state_dict().items()}, dict(meta))
    meta["cached"] = False
    return module, meta

