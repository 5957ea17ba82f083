"""The checkpoint cache of classifiers: ``<cache>/models/<arch>-<key>.pt`` with a ``.json`` sidecar
holding its sha256 and the training log.

The key hashes (architecture, recipe (with its training thread count), training data checksum,
seed, training code): the code is the source of :mod:`.training`, of the architecture's own training
module if it has one (:func:`own_training`: ``airbench`` and ``airbench_wide`` → :mod:`.airbench`) and of
the architecture's classes (:func:`training_code`), so edited training or network code trains a new
checkpoint instead of reusing one made by other code. A checkpoint that fails its checksum, or whose
sidecar is unreadable, is retrained, not trusted. "Check, train, write" runs under a lock of the entry, so two processes
that want the same missing checkpoint train it once. What is cached downstream (representations,
scores) is keyed by the checkpoint's sha256, i.e. by the weights themselves, not by this key.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from oodbench.benchmark import cache as cachemod
from oodbench.benchmark import machine
from oodbench.benchmark.io import atomic_write, sha256_bytes, write_json
from oodbench.benchmark.models import airbench, training
from oodbench.benchmark.models.architectures import ARCHITECTURES, Classifier, build
from oodbench.benchmark.models.recipes import Recipe


def architecture_code(cls) -> str:
    """Hash of the source of a network class, its bases and the blocks it is built from."""
    return cachemod.source_hash(*cachemod.code_closure(cls))


def own_training(arch: str):
    """The module holding the training loop of ``arch`` when it has its own (a ``train_new`` with the
    signature of :func:`.training.train_new`), else None (the generic :mod:`.training` trains it): the
    one place that says which loop trains which architecture. (It lives here, not in :mod:`.training`,
    whose source is in every checkpoint key: editing that module would retrain every cached classifier.)"""
    return {"airbench": airbench, "airbench_wide": airbench}.get(arch)


def training_code(arch: str) -> str:
    """Hash of the code that makes a checkpoint of ``arch``: the training module(s) and the network's classes.
    :mod:`.training` is always in (its :func:`~.training.reproducible` runs every training); an
    architecture's own training module follows it, so the keys of the others do not change."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    own = own_training(arch)
    return cachemod.source_hash(training, *([own] if own else []), *cachemod.code_closure(ARCHITECTURES[arch]))


def checkpoint_key(arch: str, recipe: Recipe, data_checksum: str, seed: int) -> str:
    return cachemod.content_key({"arch": arch, "recipe": asdict(recipe), "data": data_checksum, "seed": seed,
                                 "code": training_code(arch)})


def _load(path: Path, arch: str, in_ch: int, ncls: int):
    """``(model, meta)`` from a cached checkpoint that passes its checksum, or None."""
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        data = path.read_bytes()
        meta = json.loads(meta_path.read_text())
        if sha256_bytes(data) != meta.get("sha256"):
            print(f"warning: checkpoint {path} fails its checksum; retraining")
            return None
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's RNG alone
            model = build(arch, in_ch, ncls)
        model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    except (OSError, ValueError, RuntimeError, AttributeError, KeyError, EOFError, pickle.UnpicklingError) as e:
        print(f"warning: checkpoint {path} unreadable ({type(e).__name__}: {e}); retraining")
        return None
    return model, {**meta, "cached": True}


def load_or_train(arch: str, recipe: Recipe, train_set, seed: int, cache: Path, device="cpu",
                  progress=True) -> tuple[Classifier, dict]:
    """Return the trained classifier for (arch, recipe, data, seed, code), training it if not cached.

    ``meta["sha256"]`` is the checksum of the weights (the content key of everything derived from them);
    ``meta["cached"]`` says whether they came from the cache."""
    in_ch = 1 if train_set.x.ndim == 3 else 3
    ncls = int(train_set.y.max()) + 1
    key = checkpoint_key(arch, recipe, train_set.checksum, seed)
    path = Path(cache) / "models" / f"{arch}-{key}.pt"
    with cachemod.entry_lock(path):
        hit = _load(path, arch, in_ch, ncls)
        if hit is not None:
            return hit[0].to(device).eval(), hit[1]
        train_new = (own_training(arch) or training).train_new
        model, log = train_new(arch, in_ch, ncls, recipe, train_set.x, train_set.y, seed, device, progress)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
        data = buf.getvalue()
        meta = {"arch": arch, "recipe": asdict(recipe), "data_checksum": train_set.checksum, "seed": seed,
                "key": key, "code": training_code(arch), "sha256": sha256_bytes(data), "device": str(device),
                "cpu": machine.cpu(), **log}

        def write():
            atomic_write(path, data)
            write_json(path.with_suffix(".json"), meta)

        cachemod.write_or_warn(write, path)
    return model.to(device).eval(), {**meta, "cached": False}
