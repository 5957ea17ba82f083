"""Dataset registry: a name gives uint8 images, integer labels and a checksum.

Every set of ``../shared/data`` is here (its README documents the files), plus seeded noise:

=================  =========================================  ====================
name               source file(s)                              splits
=================  =========================================  ====================
``mnist``          ``MNIST/raw/*.gz`` (IDX)                    train, test
``fashionmnist``   ``FashionMNIST/raw/*.gz`` (IDX)             train, test
``cifar10``        ``cifar10_jpeg.npz`` or torchvision's        train, test
                   ``cifar-10-batches-py``
``tinyimagenet``   ``tinyimagenet_val32.npz``                  test
``dtd``            ``dtd_subset32.npz``                        test
``notmnist``       ``notmnist.npz``                            test
``omniglot``       ``omniglot_small.npz`` (``x_test_28``)      test
``gaussian``       generated, seeded                           test
``uniform``        generated, seeded                           test
``cifar100``,      optional: torchvision layouts, used when     test
``svhn``,          present and reported as skipped with the
``places365``      reason when absent
=================  =========================================  ====================

A file is accepted when its bytes match the offline copy's sha256 (``checksums.py``), the sha256 that
``oodbench download`` recorded in the data folder's ``oodbench-downloads.json`` (:mod:`.manifest`), or the
MD5 published for it (CIFAR batches, SVHN; :mod:`.sources`); or when its decoded arrays match the offline
copy's or the manifest's array checksums (so a losslessly re-encoded copy, e.g. the GPU bundle, passes).
A missing, undecodable or corrupt file raises :class:`DatasetError` naming the file, what is wrong and the
command that gets a good copy. CIFAR python batches are decoded by a restricted unpickler that cannot run
code (:mod:`.formats`). :mod:`.download` fetches every set from its public source.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from oodbench.benchmark.data import checksums, formats, manifest
from oodbench.benchmark.data.errors import (  # noqa: F401  (re-exported: data.DatasetError, ...)
    HOW_TO_GET, DatasetError, DatasetUnavailable, FormatError, how_to_get)
from oodbench.benchmark.data.sources import PUBLISHED_MD5, dataset_of
from oodbench.benchmark.io import array_digest


@dataclass
class ImageSet:
    """uint8 images ``(N,H,W)`` (grey) or ``(N,H,W,3)`` (RGB), int64 labels (-1 = none), and a checksum."""

    name: str
    x: np.ndarray
    y: np.ndarray
    checksum: str
    classes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx, name: str | None = None) -> "ImageSet":
        idx = np.asarray(idx)
        return ImageSet(name or self.name, self.x[idx], self.y[idx],
                        array_digest(np.concatenate([np.asarray(idx, np.int64)])) + ":" + self.checksum,
                        self.classes)


def _fix(root: Path, rel: str) -> str:
    return how_to_get(dataset_of(rel), root)


def _verify(root: Path, rel: str, arrays: dict[str, np.ndarray] | None = None) -> str:
    """Check ``root/rel`` and return the checksum that identifies it.

    Accepted: the sha256 of the offline copy (``checksums.FILE_SHA256``), of the download manifest's entry,
    or the published MD5 (:data:`.sources.PUBLISHED_MD5`); else, when ``arrays`` (what the caller decoded)
    all match the offline copy's or the manifest's array checksums, a re-encoded copy. A file with none of
    these references (e.g. a user's own ``places365_32.npz``) is accepted as it is. Otherwise: DatasetError.
    """
    path = root / rel
    want = checksums.FILE_SHA256.get(rel)
    if not path.exists():
        expected = f" (expected sha256 {want})" if want else ""
        raise DatasetError(f"dataset file {path} is missing{expected}. " + _fix(root, rel))
    got = file_digest(path, "sha256")
    if got == want:
        return want
    entry, md5 = manifest.read(root).get(rel), PUBLISHED_MD5.get(rel)
    if not (want or entry or md5):  # nothing to check it against: a user's own file
        return got
    if (entry and got == entry.get("sha256")) or (md5 and file_digest(path, "md5") == md5):
        return got
    refs = ([f"sha256 {want} (the offline copy)"] if want else []) + (
        [f"sha256 {entry.get('sha256')} (downloaded {entry.get('date')}, {manifest.NAME})"] if entry else []) + (
        [f"MD5 {md5} (published)"] if md5 else [])
    if arrays:  # a re-encoded copy: accept it when every array we read matches
        digests = {k: array_digest(a) for k, a in arrays.items()}
        shared = {k: checksums.ARRAY_SHA256.get(rel if k == "idx" else f"{rel}:{k}") for k in digests}
        if want and shared == digests:
            return want
        recorded = (entry or {}).get("arrays") or {}
        if entry and all(recorded.get(k) == d for k, d in digests.items()):
            return entry.get("sha256", got)
        bad = sorted(k for k, d in digests.items() if d not in (shared[k], recorded.get(k))) or sorted(digests)
        raise DatasetError(
            f"dataset file {path} is corrupt: its sha256 is {got}, expected {' or '.join(refs)}, and the arrays "
            f"{bad} do not match their checksums. Replace it. " + _fix(root, rel))
    raise DatasetError(f"dataset file {path} is corrupt: its sha256 is {got}, expected {' or '.join(refs)}. "
                       "Replace it. " + _fix(root, rel))


def file_digest(path, algo: str = "sha256") -> str:
    """Hex digest (``sha256`` or ``md5``) of a file, cached by path, size and modification time."""
    st = Path(path).stat()
    return _hash(str(path), st.st_size, st.st_mtime_ns, algo)


@lru_cache(maxsize=128)
def _hash(path: str, size: int, mtime: int, algo: str) -> str:
    h = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_ok(root, rel: str) -> bool:
    """Whether ``root/rel`` exists and passes :func:`_verify` on its bytes alone (no decoding)."""
    try:
        _verify(Path(root), rel)
        return True
    except DatasetError:
        return False


def _decode(root: Path, rel: str, decode):
    """``decode(bytes of root/rel)``, with a missing, unreadable or undecodable file as a DatasetError
    that names the file, what is wrong and the fix."""
    path = root / rel
    if not path.exists():
        _verify(root, rel)  # raises: missing
    try:
        return decode(path.read_bytes())
    except FormatError as e:
        raise DatasetError(f"dataset file {path} {e}. Replace it. " + _fix(root, rel)) from e
    except OSError as e:
        raise DatasetError(f"dataset file {path} cannot be read ({e}). " + _fix(root, rel)) from e


def _idx_set(root: Path, folder: str, split: str, name: str) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    imgs_rel = f"{folder}/raw/{prefix}-images-idx3-ubyte.gz"
    labs_rel = f"{folder}/raw/{prefix}-labels-idx1-ubyte.gz"
    for rel in (imgs_rel, labs_rel):
        if not (root / rel).exists():
            _verify(root, rel)  # raises with the full message
    x = _decode(root, imgs_rel, formats.decode_idx)
    y = _decode(root, labs_rel, formats.decode_idx)
    c1 = _verify(root, imgs_rel, {"idx": x})
    c2 = _verify(root, labs_rel, {"idx": y})
    return ImageSet(f"{name}:{split}", x, y.astype(np.int64), f"{c1[:16]}{c2[:16]}",
                    [str(i) for i in range(10)])


def _npz(root: Path, rel: str, keys: list[str]) -> tuple[dict[str, np.ndarray], str]:
    path = root / rel
    if not path.exists():
        _verify(root, rel)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in keys if k in z.files}
    except Exception as e:  # zip errors (bad CRC, truncated), zlib errors, pickled objects
        raise DatasetError(f"dataset file {path} cannot be read as an .npz archive ({type(e).__name__}: {e}). "
                           "Replace it. " + _fix(root, rel)) from e
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DatasetError(f"dataset file {path} lacks the keys {missing} (it has {sorted(arrays)}). Replace it. "
                           + _fix(root, rel))
    return arrays, _verify(root, rel, arrays)


def _test_npz(root, rel, name, xkey="x_test"):
    keys = [xkey, "y_test", "classes"]
    a, c = _npz(root, rel, keys)
    return ImageSet(f"{name}:test", a[xkey], a["y_test"].astype(np.int64), c[:32], [str(s) for s in a["classes"]])


def _decode_jpegs(buf: np.ndarray, off: np.ndarray) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(off) - 1, 32, 32, 3), np.uint8)
    for i, (a, b) in enumerate(zip(off[:-1], off[1:])):
        out[i] = np.asarray(Image.open(io.BytesIO(buf[a:b].tobytes())).convert("RGB"))
    return out


def _cifar_batch(root: Path, rel: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR python batch, decoded without running code (see :mod:`.formats`) and then checked."""
    data, labels = _decode(root, rel, lambda raw: formats.cifar_batch(raw, label_key))
    _verify(root, rel, {"data": data, label_key: labels})
    return data, labels


def _cifar10(root: Path, split: str, cache: Path | None) -> ImageSet:
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = root / "cifar-10-batches-py"
    if not (root / "cifar10_jpeg.npz").exists() and batches.is_dir():  # torchvision's layout (oodbench download)
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        xs, ys = [], []
        for f in files:
            data, labels = _cifar_batch(root, f"cifar-10-batches-py/{f}", "labels")
            xs.append(formats.cifar_images(data))
            ys.append(labels)
        x, y = np.concatenate(xs), np.concatenate(ys)
        return ImageSet(f"cifar10:{split}", x, y, "tv:" + array_digest(x)[:24], classes)
    if split == "test":
        a, c = _npz(root, "cifar10_jpeg.npz", ["x_test", "y_test"])
        return ImageSet("cifar10:test", a["x_test"], a["y_test"].astype(np.int64), c[:32], classes)
    a, c = _npz(root, "cifar10_jpeg.npz", ["x_train_jpeg", "x_train_jpeg_offsets", "y_train"])
    x = None
    if cache is not None:  # decoding 50,000 JPEGs takes ~10 s: keep the decoded array
        from oodbench.benchmark.io import CorruptCacheError, load_arrays, save_arrays

        p = cache / "data" / f"cifar10_train_{c[:16]}.npz"
        try:
            x = load_arrays(p)["x"] if p.exists() else None
        except CorruptCacheError:
            x = None
        if x is None:
            x = _decode_jpegs(a["x_train_jpeg"], a["x_train_jpeg_offsets"])
            from oodbench.benchmark.cache import write_or_warn  # a read-only cache: used, not stored

            write_or_warn(lambda: save_arrays(p, {"x": x}), p)
    else:
        x = _decode_jpegs(a["x_train_jpeg"], a["x_train_jpeg_offsets"])
    return ImageSet("cifar10:train", x, a["y_train"].astype(np.int64), c[:32], classes)


def _noise(kind: str, n: int, shape: tuple, seed: int) -> ImageSet:
    rng = np.random.default_rng([seed, 1 if kind == "gaussian" else 2])
    if kind == "gaussian":
        x = np.clip(rng.normal(127.5, 64.0, size=(n, *shape)), 0, 255).round().astype(np.uint8)
    else:
        x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return ImageSet(f"{kind}:test", x, np.full(n, -1, np.int64), f"{kind}-{n}-{shape}-{seed}", [])


def _optional(root: Path, name: str) -> ImageSet:
    """CIFAR-100, SVHN, Places365 in torchvision's layouts, when a user has them (``oodbench download NAME``)."""
    files = {"cifar100": ("CIFAR-100", "cifar-100-python/test"), "svhn": ("SVHN", "test_32x32.mat"),
             "places365": ("Places365", "places365_32.npz")}
    if name not in files:
        raise KeyError(name)
    title, rel = files[name]
    if not (root / rel).exists():
        layout = " (x_test (N,32,32,3) uint8, y_test, classes)" if name == "places365" else ""
        raise DatasetUnavailable(f"{title} not found ({root / rel}{layout}); it is not in the "
                                 "offline data. " + how_to_get(name, root))
    if name == "cifar100":
        data, labels = _cifar_batch(root, rel, "fine_labels")
        x = formats.cifar_images(data)
        return ImageSet("cifar100:test", x, labels, "tv:" + array_digest(x)[:24])
    if name == "svhn":
        x, y = _decode(root, rel, lambda raw: formats.svhn_mat(io.BytesIO(raw)))
        _verify(root, rel, {"x": x, "y": y})
        return ImageSet("svhn:test", x, y, "tv:" + array_digest(x)[:24])
    a, c = _npz(root, rel, ["x_test", "y_test", "classes"])
    return ImageSet("places365:test", a["x_test"], a["y_test"].astype(np.int64), c[:32])


DATASETS = {
    "mnist": {"splits": ("train", "test"), "shape": (28, 28), "source": "MNIST/raw"},
    "fashionmnist": {"splits": ("train", "test"), "shape": (28, 28), "source": "FashionMNIST/raw"},
    "cifar10": {"splits": ("train", "test"), "shape": (32, 32, 3), "source": "cifar10_jpeg.npz"},
    "tinyimagenet": {"splits": ("test",), "shape": (32, 32, 3), "source": "tinyimagenet_val32.npz"},
    "dtd": {"splits": ("test",), "shape": (32, 32, 3), "source": "dtd_subset32.npz"},
    "notmnist": {"splits": ("test",), "shape": (28, 28), "source": "notmnist.npz"},
    "omniglot": {"splits": ("test",), "shape": (28, 28), "source": "omniglot_small.npz (x_test_28)"},
    "gaussian": {"splits": ("test",), "shape": "any", "source": "generated: N(127.5, 64) clipped, seeded"},
    "uniform": {"splits": ("test",), "shape": "any", "source": "generated: U{0..255}, seeded"},
    "cifar100": {"splits": ("test",), "shape": (32, 32, 3), "source": "optional: cifar-100-python/", "optional": True},
    "svhn": {"splits": ("test",), "shape": (32, 32, 3), "source": "optional: test_32x32.mat", "optional": True},
    "places365": {"splits": ("test",), "shape": (32, 32, 3), "source": "optional: places365_32.npz", "optional": True},
}


def load(name: str, split: str = "test", root: str | os.PathLike | None = None, cache: Path | None = None,
         n: int = 10000, shape: tuple = (28, 28), seed: int = 0) -> ImageSet:
    """Load dataset ``name`` (a key of :data:`DATASETS`) and ``split`` from ``root``."""
    from oodbench.benchmark.config import data_dir

    root = data_dir(root)
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if split not in DATASETS[name]["splits"]:
        raise KeyError(f"dataset {name!r} has no split {split!r} (it has {DATASETS[name]['splits']})")
    if name == "mnist":
        return _idx_set(root, "MNIST", split, name)
    if name == "fashionmnist":
        return _idx_set(root, "FashionMNIST", split, name)
    if name == "cifar10":
        return _cifar10(root, split, cache)
    if name == "tinyimagenet":
        s = _test_npz(root, "tinyimagenet_val32.npz", name)
        return s
    if name == "dtd":
        return _test_npz(root, "dtd_subset32.npz", name)
    if name == "notmnist":
        return _test_npz(root, "notmnist.npz", name)
    if name == "omniglot":
        return _test_npz(root, "omniglot_small.npz", name, xkey="x_test_28")
    if name in ("gaussian", "uniform"):
        return _noise(name, n, tuple(shape), seed)
    return _optional(root, name)


def tinyimagenet_classes(root=None) -> list[str]:
    from oodbench.benchmark.config import data_dir

    a, _ = _npz(data_dir(root), "tinyimagenet_val32.npz", ["classes"])
    return [str(s) for s in a["classes"]]


def convert(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Convert uint8 images to ``shape`` = (H, W) grey or (H, W, 3) RGB: luma for RGB→grey,
    replication for grey→RGB, bilinear (antialiased) resize with Pillow."""
    from PIL import Image

    want_rgb = len(shape) == 3
    h, w = shape[0], shape[1]
    if x.ndim == 4 and not want_rgb:  # RGB -> grey (ITU-R 601 luma, as Pillow's "L")
        x = np.round(x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114).clip(0, 255).astype(np.uint8)
    if x.shape[1:3] != (h, w):
        mode = "RGB" if x.ndim == 4 else "L"
        x = np.stack([np.asarray(Image.fromarray(im, mode).resize((w, h), Image.BILINEAR)) for im in x])
    if want_rgb and x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=3)
    return np.ascontiguousarray(x)
