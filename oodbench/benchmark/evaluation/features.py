"""Representation extraction and its disk cache: one forward pass per (model, dataset).

``RepresentationStore`` runs the classifier over a dataset in batches and keeps, on disk under
``<cache>/features/<representation key>/``, the *kinds* of representation detectors ask for:

* ``core``: ``logits`` (N, C) float32, ``features`` (N, D) float32 (penultimate), ``preds`` (N,) int64;
* ``taps``: per-layer statistics from forward hooks on named layers: for a 4-D activation the
  per-channel spatial max and mean (N, 2C), for a 2-D one the values (N, D). Stored as
  ``tap:<layer>`` arrays; the layer list is part of the cache key;
* ``maps``: ``maps`` (N, C, H, W) float32, the 4-D activations the head pools (``model.feature_maps``),
  for the detectors that transform them before the head (pytorch-ood's ReAct, ASH, SCALE, VRA,
  RankFeat): one forward pass per dataset instead of one per detector. Kept only while a dataset's maps
  fit in :data:`MAPS_LIMIT_BYTES` (about 1.7 GB for the cifar10 suite's 40,000-image ``train`` split on
  ``airbench_wide``); larger ones are computed batch by batch whenever asked for, as before.

All kinds missing for a dataset are computed in one pass, under a lock of that dataset's entry (a
second process waits and reuses). Entries are keyed by content (:attr:`RepresentationStore.key`: the
weights' sha256, network and extraction code, batch size, device kind; then the dataset's checksum),
so a retrained checkpoint never meets the old model's arrays. Every entry carries a checksum; an
entry that fails it is recomputed, not trusted; one that cannot be written is used uncached.
:class:`Representation` is what a detector receives: lazy access to these arrays, the labels, and
(for detectors that run the network themselves) the model and the raw inputs.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from oodbench.adapters.context import FitContext
from oodbench.benchmark.cache import code_closure, content_key, entry_lock, source_hash, write_or_warn
from oodbench.benchmark.data import ImageSet
from oodbench.benchmark.io import CorruptCacheError, load_arrays, save_arrays
from oodbench.benchmark.models.checkpoints import architecture_code
from oodbench.detectors.images import to_tensor
from oodbench.detectors.taps import tap_stats

CORE = "core"
TAPS = "taps"
MAPS = "maps"
#: the largest feature maps of one dataset kept in the cache (float32 bytes); beyond it they are computed
#: batch by batch on every request (a 224x224 ResNet-50 has 100,352 values per image: 20 GB for 50,000)
MAPS_LIMIT_BYTES = 4 * 2**30


class RepresentationStore:
    """Extract and cache representations of one classifier whose weights have the content key
    ``model_key`` (the checkpoint's sha256). ``cache=None`` keeps them in memory only;
    ``live=True`` disables caching altogether (every request runs the network again), which is how
    detectors behave when they run the model themselves."""

    def __init__(self, model, model_key: str, cache: Path | None, device="cpu", batch_size: int = 512,
                 taps: Sequence[str] | None = None, live: bool = False, progress: bool = False):
        self.model = model
        self.model_key = model_key
        self.live = live
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._key = None
        self.root = None if (live or cache is None) else Path(cache) / "features" / self.key
        self.taps = tuple(taps if taps is not None else getattr(model, "tap_layers", ()))
        self.progress = progress
        self.stats = {"forward_passes": 0, "forward_seconds": 0.0, "cache_hits": 0}
        self._mem: dict = {}
        self._map_bytes: int | None = None  # float32 bytes of one image's feature maps (probed once)
        #: what detectors that train their own models need: ID ``train`` split, device, seed, checkpoints
        self.context = FitContext(model=model, device=str(device))

    @property
    def key(self) -> str:
        """The content key of this store's representations: the weights (``model_key``, the checkpoint's
        sha256 for a cached classifier), the network's code, the extraction code, the batch size and
        the device kind. Entries live under ``<cache>/features/<key>/``."""
        if self._key is None:
            extract = source_hash(RepresentationStore.extract, *code_closure(tap_stats, to_tensor))
            self._key = content_key({"weights": self.model_key, "net": architecture_code(type(self.model)),
                                     "extract": extract, "batch": int(self.batch_size), "device": self.device.type})
        return self._key

    def _lock_path(self, images: ImageSet) -> Path:
        return self.root / f"{hashlib.sha256(images.checksum.encode()).hexdigest()[:20]}"

    def _tap_key(self) -> str:
        return hashlib.sha256(",".join(self.taps).encode()).hexdigest()[:10]

    @staticmethod
    def _maps_key() -> str:
        # extract_maps is not part of :attr:`key` (whose entries would all change with it): its own code
        # keys its files
        return source_hash(RepresentationStore.extract_maps)[:10]

    def _path(self, images: ImageSet, kind: str) -> Path:
        ck = hashlib.sha256(images.checksum.encode()).hexdigest()[:20]
        suffix = {CORE: CORE, MAPS: f"{MAPS}-{self._maps_key()}"}.get(kind) or f"{kind}-{self._tap_key()}"
        return self.root / f"{ck}-{suffix}.npz"

    def _load(self, images: ImageSet, kind: str) -> dict[str, np.ndarray] | None:
        """The arrays of ``kind`` for ``images`` from disk (kept in memory), or None if absent or unusable."""
        p = self._path(images, kind)
        if not p.exists():
            return None
        try:
            arr = load_arrays(p)
        except CorruptCacheError as e:
            print(f"warning: {e}; recomputing")
            return None
        if not arr or len(next(iter(arr.values()))) != len(images):
            return None
        self.stats["cache_hits"] += 1
        if kind != MAPS:  # maps are large: read again when asked for, not held by every worker
            self._mem[(images.checksum, kind)] = arr
        return arr

    def get(self, images: ImageSet, kind: str) -> dict[str, np.ndarray]:
        """Arrays of ``kind`` for ``images``, from memory, disk, or one forward pass."""
        mk = (images.checksum, kind)
        if mk in self._mem:
            return self._mem[mk]
        if self.root is None:
            return self._compute(images, {kind})[kind]
        with entry_lock(self._lock_path(images)):  # another process extracting this set: wait, then reuse
            arr = self._load(images, kind)
            return arr if arr is not None else self._compute(images, {kind})[kind]

    def ensure(self, images: ImageSet, kinds: set[str]) -> None:
        """Make sure all ``kinds`` are cached for ``images``, computing the missing ones in one pass."""
        missing = {k for k in kinds if (images.checksum, k) not in self._mem}
        if not missing:
            return
        if self.root is None:
            self._compute(images, missing)
            return
        with entry_lock(self._lock_path(images)):
            missing = {k for k in missing if self._load(images, k) is None}
            if missing:
                self._compute(images, missing)

    def _compute(self, images: ImageSet, kinds: set[str]) -> dict[str, dict[str, np.ndarray]]:
        out = self.extract(images, kinds - {MAPS}) if kinds - {MAPS} else {}
        if MAPS in kinds:
            out[MAPS] = self.extract_maps(images)
        return out

    def maps_fit(self, images: ImageSet) -> bool:
        """Whether the feature maps of ``images`` are small enough to be kept (:data:`MAPS_LIMIT_BYTES`)."""
        if self._map_bytes is None:
            x = to_tensor(images.x[:1]).to(self.device)
            with torch.no_grad():
                self._map_bytes = self.model.eval().feature_maps(x).numel() * 4
        return self._map_bytes * len(images) <= MAPS_LIMIT_BYTES

    @torch.no_grad()
    def extract_maps(self, images: ImageSet) -> dict[str, np.ndarray]:
        """The ``maps`` kind: ``model.feature_maps`` of ``images`` in batches, float32, contiguous
        (N, C, H, W), written to the cache (not held in memory: they are large)."""
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        model = self.model.eval()
        maps = None  # filled in place: batches then a concatenation would hold the maps twice
        for i in tqdm(range(0, len(images), self.batch_size), desc=f"extract maps {images.name}",
                      disable=not self.progress, leave=False, unit="batch"):
            m = model.feature_maps(to_tensor(images.x[i:i + self.batch_size]).to(self.device)).float().cpu()
            if maps is None:
                maps = np.empty((len(images), *m.shape[1:]), dtype=np.float32)
            maps[i:i + len(m)] = m.numpy()
        arr = {"maps": maps}
        if self.root is not None:  # not held in memory (see _load)
            path = self._path(images, MAPS)
            write_or_warn(lambda: save_arrays(path, arr), path)
        self.stats["forward_passes"] += 1
        self.stats["forward_seconds"] += time.perf_counter() - t0
        return arr

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
            if self.root is not None:  # a cache that cannot be written warns; the arrays are used anyway
                path = self._path(images, kind)
                write_or_warn(lambda: save_arrays(path, arr), path)
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

    def feature_maps(self, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """(B, C, H, W) float32 batches of ``model.feature_maps`` on the model's device, in order: from the
        ``maps`` cache (one forward pass per dataset, whichever detectors ask), or, when this dataset's
        maps are larger than :data:`MAPS_LIMIT_BYTES`, from the network batch by batch."""
        bs = batch_size or self.store.batch_size
        if self.store.maps_fit(self.images):
            maps = torch.from_numpy(self.store.get(self.images, MAPS)["maps"])
            for i in range(0, len(maps), bs):
                yield maps[i:i + bs].to(self.device)
            return
        for x in self.inputs(bs):
            with torch.no_grad():  # never yield inside it: the caller would run with gradients off
                maps = self.model.feature_maps(x).float().contiguous()
            yield maps

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
