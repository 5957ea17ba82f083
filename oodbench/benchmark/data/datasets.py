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

A file is accepted when its bytes match the published sha256 or its decoded arrays match the array
checksums (so a losslessly re-encoded copy, e.g. the GPU bundle, passes). A missing or corrupt file
raises :class:`DatasetError` naming the file, the expected checksum and how to get it.
``download(name, root)`` fetches MNIST, FashionMNIST and CIFAR-10 through torchvision when online.
"""
from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from oodbench.benchmark.data import checksums
from oodbench.benchmark.io import array_digest, sha256_file


class DatasetError(RuntimeError):
    """A dataset file is missing or fails its checksum."""


class DatasetUnavailable(DatasetError):
    """An optional dataset is not present; the suite skips it with this reason."""


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


HOW_TO_GET = (
    "Point --data-dir (or $OODBENCH_DATA) at a folder laid out like ../shared/data (see its README), "
    "or, when online, run `oodbench download {name} --data-dir DIR` (MNIST, FashionMNIST, CIFAR-10)."
)


def _verify(root: Path, rel: str, arrays: dict[str, np.ndarray] | None = None) -> str:
    """Check ``root/rel`` against the published checksums; return the checksum that identifies it."""
    path = root / rel
    want = checksums.FILE_SHA256.get(rel)
    if not path.exists():
        raise DatasetError(
            f"dataset file {path} is missing (expected sha256 {want}). " + HOW_TO_GET.format(name=rel.split("/")[0]))
    got = _file_hash(str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if want is None or got == want:
        return got
    if arrays:  # a re-encoded copy: accept it when every array we read matches
        bad = []
        for key, a in arrays.items():
            ref = checksums.ARRAY_SHA256.get(rel if key == "idx" else f"{rel}:{key}")
            if ref is None or array_digest(a) != ref:
                bad.append(key)
        if not bad:
            return want
        raise DatasetError(
            f"dataset file {path} is corrupt: its sha256 is {got}, expected {want}, and the arrays {bad} do not "
            f"match their checksums. Replace it. " + HOW_TO_GET.format(name=rel.split("/")[0]))
    raise DatasetError(f"dataset file {path}: sha256 {got}, expected {want}. " + HOW_TO_GET.format(name=rel))


@lru_cache(maxsize=64)
def _file_hash(path: str, size: int, mtime: int) -> str:
    return sha256_file(path)


def _read_idx(path: Path) -> np.ndarray:
    try:
        raw = gzip.open(path).read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"dataset file {path} cannot be read as gzip: {e}") from e
    magic = int.from_bytes(raw[:4], "big")
    if magic == 2051:
        n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)
    if magic == 2049:
        return np.frombuffer(raw, np.uint8, offset=8)
    raise DatasetError(f"dataset file {path} is not an IDX file (magic {magic})")


def _idx_set(root: Path, folder: str, split: str, name: str) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    imgs_rel = f"{folder}/raw/{prefix}-images-idx3-ubyte.gz"
    labs_rel = f"{folder}/raw/{prefix}-labels-idx1-ubyte.gz"
    for rel in (imgs_rel, labs_rel):
        if not (root / rel).exists():
            _verify(root, rel)  # raises with the full message
    x = _read_idx(root / imgs_rel)
    y = _read_idx(root / labs_rel)
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
    except Exception as e:  # zip errors, truncated files
        raise DatasetError(f"dataset file {path} cannot be read: {e}. " + HOW_TO_GET.format(name=rel)) from e
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DatasetError(f"dataset file {path} lacks the keys {missing}")
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


def _cifar10(root: Path, split: str, cache: Path | None) -> ImageSet:
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = root / "cifar-10-batches-py"
    if not (root / "cifar10_jpeg.npz").exists() and batches.is_dir():
        import pickle

        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        xs, ys = [], []
        for f in files:
            with open(batches / f, "rb") as fh:
                d = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(d["labels"], np.int64))
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
            save_arrays(p, {"x": x})
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
    """CIFAR-100, SVHN, Places365 in torchvision's layouts, when a user has them."""
    if name == "cifar100":
        p = root / "cifar-100-python" / "test"
        if p.exists():
            import pickle

            with open(p, "rb") as fh:
                d = pickle.load(fh, encoding="latin1")
            x = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return ImageSet("cifar100:test", x, np.asarray(d["fine_labels"], np.int64), "tv:" + array_digest(x)[:24])
        raise DatasetUnavailable(f"CIFAR-100 not found ({p}); it is not in the offline data")
    if name == "svhn":
        p = root / "test_32x32.mat"
        if p.exists():
            from scipy.io import loadmat

            m = loadmat(p)
            x = np.ascontiguousarray(m["X"].transpose(3, 0, 1, 2))
            return ImageSet("svhn:test", x, m["y"].ravel().astype(np.int64) % 10, "tv:" + array_digest(x)[:24])
        raise DatasetUnavailable(f"SVHN not found ({p}); it is not in the offline data")
    if name == "places365":
        p = root / "places365_32.npz"
        if p.exists():
            a, c = _npz(root, "places365_32.npz", ["x_test", "y_test", "classes"])
            return ImageSet("places365:test", a["x_test"], a["y_test"].astype(np.int64), c[:32])
        raise DatasetUnavailable(f"Places365 not found ({p}: x_test (N,32,32,3) uint8, y_test, classes); "
                                 "it is not in the offline data")
    raise KeyError(name)


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


def download(name: str, root: str | os.PathLike) -> Path:
    """Download MNIST, FashionMNIST or CIFAR-10 into ``root`` through torchvision (needs the network)."""
    import torchvision

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cls = {"mnist": torchvision.datasets.MNIST, "fashionmnist": torchvision.datasets.FashionMNIST,
           "cifar10": torchvision.datasets.CIFAR10}.get(name)
    if cls is None:
        raise DatasetError(f"{name} cannot be downloaded through torchvision; see the data README for its source")
    for train in (True, False):
        cls(str(root), train=train, download=True)
    return root


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
