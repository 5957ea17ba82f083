"""Convert each dataset's public archive(s) into the files the harness reads (the layout of ../shared/data).

A builder takes ``{archive file name: local path}`` (see :mod:`.sources`) and returns the :class:`Output`
files, each with the arrays it holds (recorded in the download manifest). Archives are read in place
(zip members by name, tar members in one streaming pass); nothing is extracted by its stored path.

Processing, as documented in ../shared/data/README.md:

* ``mnist``, ``fashionmnist``: the IDX ``.gz`` files as published; ``cifar10``: ``cifar-10-batches-py/*`` and
  ``cifar100``: ``cifar-100-python/{test,meta}`` as in the archive; ``svhn``: ``test_32x32.mat`` as published.
* ``notmnist``: 1,000 glyphs per letter drawn from notMNIST_small the way D. Flanagan drew the offline
  sample (``convert_to_mnist_format.py``: non-empty PNGs sorted by name, ``random.sample`` per letter then
  ``random.shuffle``, Python's ``random`` seeded with ``int("notMNIST", 36)``); an undecodable file drawn is
  dropped. Whether the result equals the offline sample is checked and recorded.
* ``omniglot``: ``images_background_small1`` + ``small2`` merged (Greek and Latin are in both),
  characters sorted as ``Alphabet/characterNN``, drawings by file name; ``x_test`` 105x105 (255 = paper),
  ``x_test_28`` = inverted, then Pillow BILINEAR 105 -> 28.
* ``tinyimagenet``: ``val/images/val_N.JPEG`` in order of N, labels from ``val_annotations.txt`` as an
  index into ``wnids.txt``, ``class_words`` from ``words.txt``; 64 -> 32 by Pillow BOX (2x2 mean).
* ``dtd``: all images of the 10 classes below (sorted by file name), shorter side resized to 32 (Pillow
  BILINEAR, antialiased; the long side rounded), centre crop 32x32 at offset ``(n - 32) // 2``.
* ``places365``: the first :data:`PLACES365_N` images of ``places365_val.txt`` (val_256: 256x256) reduced to
  32x32 by Pillow BOX (8x8 mean); ``classes`` from ``categories_places365.txt``.
"""
from __future__ import annotations

import io
import random
import tarfile
import zipfile
from dataclasses import dataclass

import numpy as np

from oodbench.benchmark.data import checksums, formats, sources
from oodbench.benchmark.io import array_digest

DTD_CLASSES = ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
               "crosshatched", "crystalline")
LETTERS = "ABCDEFGHIJ"
NOTMNIST_PER_LETTER = 1000
PLACES365_N = 10000


@dataclass
class Output:
    """One file to write: ``rel`` in the data folder, the arrays it holds, and its bytes when it is
    written as fetched (``raw``; otherwise the arrays are written as a deterministic ``.npz``)."""

    rel: str
    arrays: dict
    raw: bytes | None = None
    note: str = ""

    def payload(self) -> bytes:
        return self.raw if self.raw is not None else formats.npz_bytes(self.arrays)


def _image(b: bytes, mode: str):
    from PIL import Image

    im = Image.open(io.BytesIO(b))
    return im.convert(mode)


def _tar_files(path, keep):
    """``(member name, bytes)`` of the regular files of tar ``path`` whose name passes ``keep`` (one pass)."""
    with tarfile.open(path, "r|*") as t:
        for m in t:
            if m.isfile() and keep(m.name):
                yield m.name, t.extractfile(m).read()


def _missing(archive: str, what) -> ValueError:
    return ValueError(f"{archive} lacks {what}")


def idx_files(folder: str):
    """Builder for MNIST / Fashion-MNIST: the four IDX ``.gz`` files, checked by decoding them."""
    def build(paths: dict) -> list:
        out = []
        for name, p in paths.items():
            raw = p.read_bytes()
            out.append(Output(f"{folder}/raw/{name}", {"idx": formats.decode_idx(raw)}, raw))
        return out
    return build


def _cifar_files(archive: str, folder: str, files: dict, paths: dict) -> list:
    got = dict(_tar_files(paths[archive], lambda n: n.startswith(folder + "/") and n.split("/")[-1] in files))
    out = []
    for f, key in files.items():
        raw = got.get(f"{folder}/{f}")
        if raw is None:
            raise _missing(archive, f"{folder}/{f}")
        if key.endswith("names"):
            arrays = {key: np.array(formats.cifar_names(raw, key))}
        else:
            arrays = dict(zip(("data", key), formats.cifar_batch(raw, key)))
        out.append(Output(f"{folder}/{f}", arrays, raw))
    return out


def cifar10(paths: dict) -> list:
    files = {f: "labels" for f in sources.CIFAR10_BATCHES[:-1]}
    files["batches.meta"] = "label_names"
    return _cifar_files("cifar-10-python.tar.gz", "cifar-10-batches-py", files, paths)


def cifar100(paths: dict) -> list:
    return _cifar_files("cifar-100-python.tar.gz", "cifar-100-python",
                        {"test": "fine_labels", "meta": "fine_label_names"}, paths)


def svhn(paths: dict) -> list:
    raw = paths["test_32x32.mat"].read_bytes()
    x, y = formats.svhn_mat(io.BytesIO(raw))
    return [Output("test_32x32.mat", {"x": x, "y": y}, raw)]


def notmnist(paths: dict) -> list:
    files: dict = {c: {} for c in LETTERS}
    for name, b in _tar_files(paths["notMNIST_small.tar.gz"], lambda n: n.endswith(".png")):
        parts = name.split("/")
        if len(parts) >= 2 and parts[-2] in files and b:  # Flanagan's sample skipped empty files
            files[parts[-2]][parts[-1]] = b
    rng = random.Random(int("notMNIST", 36))
    picks = []
    for label, letter in enumerate(LETTERS):
        names = sorted(files[letter])
        if len(names) < NOTMNIST_PER_LETTER:
            raise _missing("notMNIST_small.tar.gz", f"{NOTMNIST_PER_LETTER} PNGs of {letter} (it has {len(names)})")
        picks += [(label, letter, f) for f in rng.sample(names, NOTMNIST_PER_LETTER)]
    rng.shuffle(picks)
    x, y, dropped = [], [], []
    for label, letter, f in picks:
        try:
            a = np.asarray(_image(files[letter][f], "L"))
        except (OSError, SyntaxError, ValueError):  # Pillow's errors for an undecodable or broken PNG
            a = None
        if a is None or a.shape != (28, 28):
            dropped.append(f"{letter}/{f}")
            continue
        x.append(a)
        y.append(label)
    arrays = {"x_test": np.stack(x), "y_test": np.array(y, np.int64), "classes": np.array(list(LETTERS))}
    same = all(array_digest(arrays[k]) == checksums.ARRAY_SHA256[f"notmnist.npz:{k}"] for k in arrays)
    note = (f"{len(x)} glyphs drawn from notMNIST_small with D. Flanagan's procedure; identical to the offline "
            f"copy: {'yes' if same else 'no'}" + (f"; {len(dropped)} undecodable files dropped" if dropped else ""))
    return [Output("notmnist.npz", arrays, note=note)]


def omniglot(paths: dict) -> list:
    from PIL import Image

    chars: dict = {}
    for archive in ("images_background_small1.zip", "images_background_small2.zip"):
        with zipfile.ZipFile(paths[archive]) as z:
            for n in z.namelist():
                parts = n.split("/")
                if len(parts) == 4 and n.endswith(".png") and not n.startswith("__MACOSX"):
                    chars.setdefault(f"{parts[1]}/{parts[2]}", {})[parts[3]] = z.read(n)
    classes = sorted(chars)
    x = np.stack([np.asarray(_image(chars[c][f], "L")) for c in classes for f in sorted(chars[c])])
    y = np.array([i for i, c in enumerate(classes) for _ in chars[c]], np.int64)
    x28 = np.stack([np.asarray(Image.fromarray(255 - a).resize((28, 28), Image.BILINEAR)) for a in x])
    arrays = {"x_test": x, "x_test_28": x28, "y_test": y, "classes": np.array(classes)}
    return [Output("omniglot_small.npz", arrays, note=f"{len(classes)} characters, {len(x)} drawings")]


def _box32(b: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(_image(b, "RGB").resize((32, 32), Image.BOX))


def tinyimagenet(paths: dict) -> list:
    base = "tiny-imagenet-200/"
    with zipfile.ZipFile(paths["tiny-imagenet-200.zip"]) as z:
        wnids = z.read(base + "wnids.txt").decode().split()
        words = dict(line.split("\t", 1) for line in z.read(base + "words.txt").decode().splitlines() if "\t" in line)
        ann = [line.split("\t")[:2] for line in z.read(base + "val/val_annotations.txt").decode().splitlines()
               if line.strip()]
        ann.sort(key=lambda a: int(a[0].split("_")[1].split(".")[0]))  # val_N.JPEG, in order of N
        x = np.stack([_box32(z.read(base + "val/images/" + f)) for f, _ in ann])
    index = {w: i for i, w in enumerate(wnids)}
    y = np.array([index[w] for _, w in ann], np.int64)
    arrays = {"x_test": x, "y_test": y, "classes": np.array(wnids),
              "class_words": np.array([words[w].strip() for w in wnids])}
    return [Output("tinyimagenet_val32.npz", arrays, note=f"{len(x)} validation images, {len(wnids)} classes")]


def _texture32(b: bytes) -> np.ndarray:
    from PIL import Image

    im = _image(b, "RGB")
    w, h = im.size
    s = 32 / min(w, h)
    nw, nh = (32, round(h * s)) if w <= h else (round(w * s), 32)
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - 32) // 2, (nh - 32) // 2
    return np.asarray(im.crop((left, top, left + 32, top + 32)))


def dtd(paths: dict) -> list:
    got = {}
    for name, b in _tar_files(paths["dtd-r1.0.1.tar.gz"], lambda n: n.endswith(".jpg") and "/images/" in n):
        cls, f = name.split("/")[-2:]
        if cls in DTD_CLASSES:
            got[(DTD_CLASSES.index(cls), f)] = _texture32(b)
    keys = sorted(got)
    counts = [sum(k[0] == i for k in keys) for i in range(len(DTD_CLASSES))]
    if min(counts) == 0:
        raise _missing("dtd-r1.0.1.tar.gz", f"images of every class of {DTD_CLASSES} (found {counts})")
    arrays = {"x_test": np.stack([got[k] for k in keys]), "y_test": np.array([k[0] for k in keys], np.int64),
              "classes": np.array(DTD_CLASSES)}
    return [Output("dtd_subset32.npz", arrays, note=f"{len(keys)} images of {len(DTD_CLASSES)} classes")]


def places365(paths: dict) -> list:
    names = ("categories_places365.txt", "places365_val.txt")
    lists = {n.split("/")[-1]: b.decode()
             for n, b in _tar_files(paths["filelist_places365-standard.tar"], lambda n: n.endswith(names))}
    if len(lists) != 2:
        raise _missing("filelist_places365-standard.tar", "categories_places365.txt and places365_val.txt")
    cats = sorted((int(i), c) for c, i in (line.split() for line in lists[names[0]].splitlines() if line))
    want = {}
    for line in lists[names[1]].splitlines()[:PLACES365_N]:
        f, label = line.split()
        want[f] = int(label)
    x = {}
    for name, b in _tar_files(paths["val_256.tar"], lambda n: n.split("/")[-1] in want):
        x[name.split("/")[-1]] = _box32(b)
        if len(x) == len(want):
            break
    if len(x) != len(want):
        raise _missing("val_256.tar", f"{len(want) - len(x)} of the images listed in places365_val.txt")
    order = list(want)  # places365_val.txt order
    arrays = {"x_test": np.stack([x[f] for f in order]), "y_test": np.array([want[f] for f in order], np.int64),
              "classes": np.array([c for _, c in cats])}
    return [Output("places365_32.npz", arrays, note=f"first {len(order)} validation images, 365 classes")]


BUILDERS = {"mnist": idx_files("MNIST"), "fashionmnist": idx_files("FashionMNIST"), "cifar10": cifar10,
            "notmnist": notmnist, "omniglot": omniglot, "tinyimagenet": tinyimagenet, "dtd": dtd,
            "cifar100": cifar100, "svhn": svhn, "places365": places365}
