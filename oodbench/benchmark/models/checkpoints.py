"""The checkpoint cache of classifiers: ``<cache>/models/<arch>-<key>.pt`` with a ``.json`` sidecar
holding its sha256 and the training log, keyed by a hash of (architecture, recipe, training data
checksum, seed); a checkpoint that fails its checksum is retrained, not trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import torch

from oodbench.benchmark.io import atomic_write, sha256_bytes, write_json
from oodbench.benchmark.models.architectures import Classifier, build
from oodbench.benchmark.models.recipes import Recipe
from oodbench.benchmark.models.training import train


def checkpoint_key(arch: str, recipe: Recipe, data_checksum: str, seed: int) -> str:
    blob = json.dumps({"arch": arch, "recipe": asdict(recipe), "data": data_checksum, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_or_train(arch: str, recipe: Recipe, train_set, seed: int, cache: Path, device="cpu",
                  progress=True) -> tuple[Classifier, dict]:
    """Return the trained classifier for (arch, recipe, data, seed), training it if not cached."""
    in_ch = 1 if train_set.x.ndim == 3 else 3
    ncls = int(train_set.y.max()) + 1
    key = checkpoint_key(arch, recipe, train_set.checksum, seed)
    path = Path(cache) / "models" / f"{arch}-{key}.pt"
    meta_path = path.with_suffix(".json")
    model = build(arch, in_ch, ncls)
    if path.exists() and meta_path.exists():
        data = path.read_bytes()
        meta = json.loads(meta_path.read_text())
        if sha256_bytes(data) == meta.get("sha256"):
            model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
            meta["cached"] = True
            return model.to(device).eval(), meta
        print(f"warning: checkpoint {path} fails its checksum; retraining")
    log = train(model, train_set.x, train_set.y, recipe, seed, device, progress)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    data = buf.getvalue()
    meta = {"arch": arch, "recipe": asdict(recipe), "data_checksum": train_set.checksum, "seed": seed,
            "key": key, "sha256": sha256_bytes(data), "device": str(device), **log}
    atomic_write(path, data)
    write_json(meta_path, meta)
    meta["cached"] = False
    return model.to(device).eval(), meta
