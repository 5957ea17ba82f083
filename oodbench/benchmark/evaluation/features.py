"""Representation extraction and its disk cache: one forward pass per (model, dataset).

``RepresentationStore`` runs the classifier over a dataset in batches and keeps, on disk under
``<cache>/features/<model key>/``, the *kinds* of representation detectors ask for:

* ``core``: ``logits`` (N, C) float32, ``features`` (N, D) float32 (penultimate), ``preds`` (N,) int64;
* ``taps``: per-layer statistics from forward hooks on named layers: for a 4-D activation the
  per-channel spatial max and mean (N, 2C), for a 2-D one the values (N, D). Stored as
  ``tap:<layer>`` arrays; the layer list is part of the cache key.

All kinds missing for a dataset are computed in one pass. Every entry carries a checksum; an entry
that fails it is recomputed, not trusted. :class:`Representation` is what a detector receives: lazy
access to these arrays, the labels, and (for detectors that run the network themselves) the model
and the raw inputs.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from oodbench.adapters.context import FitContext
from oodbench.benchmark.data import ImageSet
from oodbench.benchmark.io import CorruptCacheError, load_arrays, save_arrays
from oodbench.detectors.images import to_tensor
from oodbench.detectors.taps import tap_stats

CORE = "core"
TAPS = "taps"


class RepresentationStore:
    """Extract and cache representations of one classifier. ``cache=None`` keeps them in memory only;
    ``live=True`` disables caching altogether (every request runs the network again), which is how
    detectors behave when they run the model themselves."""

    def __init__(self, model, model_key: str, cache: Path | None, device="cpu", batch_size: int = 512,
                 taps: Sequence[str] | None = None, live: bool = False, progress: bool = False):
        self.model = model
        self.model_key = model_key
        self.live = live
        self.root = None if (live or cache is None) else Path(cache) / "features" / model_key
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.taps = tuple(taps if taps is not None else getattr(model, "tap_layers", ()))
        self.progress = progress
        self.stats = {"forward_passes": 0, "forward_seconds": 0.0, "cache_hits": 0}
        self._mem: dict = {}
        #: what detectors that train their own models need: ID ``train`` split, device, seed, checkpoints
        self.context = FitContext(model=model, device=str(device))

    def _tap_key(self) -> str:
        return hashlib.sha256(",".join(self.taps).encode()).hexdigest()[:10]

    def _path(self, images: ImageSet, kind: str) -> Path:
        ck = hashlib.sha256(images.checksum.encode()).hexdigest()[:20]
        suffix = kind if kind == CORE else f"{kind}-{self._tap_key()}"
        return self.root / f"{ck}-{suffix}.npz"

    def get(self, images: ImageSet, kind: str) -> dict[str, np.ndarray]:
        """Arrays of ``kind`` for ``images``, from memory, disk, or one forward pass."""
        mk = (images.checksum, kind)
        if mk in self._mem:
            return self._mem[mk]
        if self.root is not None:
            p = self._path(images, kind)
            if p.exists():
                try:
                    arr = load_arrays(p)
                    if len(next(iter(arr.values()))) == len(images):
                        self.stats["cache_hits"] += 1
                        self._mem[mk] = arr
                        return arr
                except CorruptCacheError as e:
                    print(f"warning: {e}; recomputing")
        out = self.extract(images, {kind})
        return out[kind]

    def ensure(self, images: ImageSet, kinds: set[str]) -> None:
        """Make sure all ``kinds`` are cached for ``images``, computing the missing ones in one pass."""
        missing = set()
        for k in kinds:
            mk = (images.checksum, k)
            if mk in self._mem:
                continue
            if self.root is not None and self._path(images, k).exists():
                try:
                    self._mem[mk] = load_arrays(self._path(images, k))
                    self.stats["cache_hits"] += 1
                    continue
                except CorruptCacheError as e:
                    print(f"warning: {e}; recomputing")
            missing.add(k)
        if missing:
            self.extract(images, missing)

    @torch.no_grad()
    def extract(self, images: ImageSet, kinds: set[str]) -> dict[str, dict[str, np.ndarray]]:
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        model = self.model.eval()
        hooks, tapped = [], {}
        if TAPS in kinds:
            modules = dict(model.named_modules())
            for name in self.taps:
                if name not in modules:
                    raise KeyError(f"tap layer {name!r} not in the model; layers: {list(modules)[1:]}")

                def hook(mod, inp, out, name=name):
                    tapped[name] = tap_stats(out.float()).cpu()

                hooks.append(modules[name].register_forward_hook(hook))
        chunks: dict[str, list] = {}
        try:
            n = len(images)
            for i in tqdm(range(0, n, self.batch_size), desc=f"extract {images.name}", disable=not self.progress,
                          leave=False, unit="batch"):
                xb = to_tensor(images.x[i:i + self.batch_size]).to(self.device)
                logits, feats = model.forward_features(xb)
                if CORE in kinds:
                    chunks.setdefault("logits", []).append(logits.float().cpu())
                    chunks.setdefault("features", []).append(feats.float().cpu())
                for name, v in tapped.items():
                    chunks.setdefault("tap:" + name, []).append(v)
                tapped.clear()
        finally:
            for h in hooks:
                h.remove()
        arrays = {k: torch.cat(v).numpy() for k, v in chunks.items()}
        out = {}
        if CORE in kinds:
            out[CORE] = {"logits": arrays["logits"], "features": arrays["features"],
                         "preds": arrays["logits"].argmax(1).astype(np.int64)}
        if TAPS in kinds:
            out[TAPS] = {k: v for k, v in arrays.items() if k.startswith("tap:")}
        for kind, arr in out.items():
            self._mem[(images.checksum, kind)] = arr
            if self.root is not None:
                save_arrays(self._path(images, kind), arr)
        self.stats["forward_passes"] += 1
        self.stats["forward_seconds"] += time.perf_counter() - t0
        if self.live:  # live: forget immediately so the next request runs the network again
            for kind in out:
                self._mem.pop((images.checksum, kind), None)
        return out

    def representation(self, images: ImageSet, role: str) -> "Representation":
        return Representation(images, self, role)


class Representation:
    """What a detector sees of one dataset: lazy cached arrays, labels, model and inputs (the harness's
    implementation of :class:`oodbench.adapters.context.Representation`).

    ``role`` is ``fit``, ``cal``, ``id`` (ID test) or the OOD test set's name. ``labels`` are the
    dataset's true labels (ID splits only; -1 or unrelated for OOD sets — detectors must use ``preds``).
    """

    def __init__(self, images: ImageSet, store: RepresentationStore, role: str = ""):
        self.images = images
        self.store = store
        self.role = role

    def __len__(self) -> int:
        return len(self.images)

    @property
    def name(self) -> str:
        return self.images.name

    @property
    def labels(self) -> np.ndarray:
        return self.images.y

    def _core(self):
        return self.store.get(self.images, CORE)

    @property
    def logits(self) -> np.ndarray:
        return self._core()["logits"]

    @property
    def features(self) -> np.ndarray:
        return self._core()["features"]

    @property
    def preds(self) -> np.ndarray:
        return self._core()["preds"]

    def taps(self) -> dict[str, np.ndarray]:
        """Per-layer statistics, ``{layer: (N, d)}``, in the store's tap order."""
        t = self.store.get(self.images, TAPS)
        return {name: t["tap:" + name] for name in self.store.taps}

    @property
    def model(self):
        return self.store.model

    @property
    def context(self) -> FitContext:
        """The :class:`~oodbench.adapters.context.FitContext` of the session (ID ``train`` split, device,
        seed, checkpoint store)."""
        return self.store.context

    @property
    def device(self):
        return self.store.device

    def inputs(self, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """Float inputs in [0, 1], (B, C, H, W), on the model's device, in order."""
        bs = batch_size or self.store.batch_size
        for i in range(0, len(self.images), bs):
            yield to_tensor(self.images.x[i:i + bs]).to(self.device)

    def input_tensor(self) -> torch.Tensor:
        return to_tensor(self.images.x)
