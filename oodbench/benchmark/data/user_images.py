"""A user's own images: an image folder (with or without one sub-folder per class), an ``.npz`` with ``x``
(and ``y``), or arrays handed over in Python (:func:`register`), read as an :class:`ImageSet`.

Every image is decoded with Pillow, converted to the suite's channels (``L`` for grey, ``RGB``) and resized to
the suite's image size (Pillow BILINEAR, which is antialiased when it shrinks). The set's checksum is the
sha256 of the decoded arrays (images and labels), so two copies with the same content share every cache
entry. Problems raise :class:`UserDataError` naming the file and what is wrong.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from oodbench.benchmark.data.datasets import ImageSet, convert
from oodbench.benchmark.io import array_digest

_MEMORY: dict[str, tuple] = {}  # key -> (x uint8, y int64, classes)


class UserInputError(ValueError):
    """Something the user declared or supplied (suite file, images, model) cannot be used; the message says
    what and where. ``oodbench`` prints it as one line, without a traceback."""


class UserDataError(UserInputError):
    """A user's image folder, .npz or arrays cannot be used; the message names the file and the problem."""


def register(x: np.ndarray, y: np.ndarray | None = None, classes=()) -> str:
    """Keep in-memory uint8 images (N,H,W) or (N,H,W,3) under a content key usable as ``{"memory": key}``."""
    x = _as_images(np.asarray(x), "arrays")
    y = np.full(len(x), -1, np.int64) if y is None else np.asarray(y, np.int64).reshape(-1)
    if len(y) != len(x):
        raise UserDataError(f"arrays: {len(x)} images but {len(y)} labels")
    key = array_digest(x)[:20] + array_digest(y)[:12]
    _MEMORY[key] = (x, y, list(classes))
    return key


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files (by extension Pillow knows) in ``folder`` (and its sub-folders, with ``recursive``),
    sorted by path; hidden files and folders skipped."""
    from PIL import Image

    exts = {e.lower() for e in Image.registered_extensions()}
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in exts
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def folder_layout(folder: Path) -> tuple[list[str], list[list[Path]]]:
    """``(class names, files per class)`` of an image folder: one class per sub-folder (its images, at any
    depth) when every image lies in a sub-folder; otherwise every image under it as one unnamed class."""
    if not folder.is_dir():
        raise UserDataError(f"image folder {folder} does not exist")
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(s.name, image_files(s, recursive=True)) for s in subs]
    if image_files(folder) or not subs:
        groups = [("", image_files(folder, recursive=True))]
    if not sum(len(f) for _, f in groups):  # an empty class sub-folder still names a class
        raise UserDataError(f"image folder {folder} holds no image files")
    return [n for n, _ in groups], [f for _, f in groups]


def probe(source: dict) -> tuple[tuple, int]:
    """``((H, W), channels)`` of a source without decoding it all: the first image's size, and 1 when every
    image is grey (Pillow modes ``1``, ``L``, ``I``, ``I;16``, ``F``, ``LA``), else 3."""
    from PIL import Image

    if "memory" in source:
        x = _MEMORY[source["memory"]][0]
        return x.shape[1:3], 3 if x.ndim == 4 else 1
    p = Path(source["path"])
    if p.suffix == ".npz":
        x = _npz(p)[0]
        return x.shape[1:3], 3 if x.ndim == 4 else 1
    _, files = folder_layout(p)
    files = [f for fs in files for f in fs]
    modes, size = set(), None
    for f in files:
        try:
            with Image.open(f) as im:
                modes.add(im.mode)
                size = size or im.size
        except (OSError, SyntaxError, ValueError) as e:
            raise UserDataError(f"unreadable image {f}: {e}") from e
    w, h = size
    return (h, w), (1 if modes <= {"1", "L", "I", "I;16", "F", "LA"} else 3)


def load(source: dict, shape: tuple, name: str, id_classes=None, labels: bool = True) -> ImageSet:
    """The images of ``source`` (``{"path": folder or .npz}`` or ``{"memory": key}``) as uint8 arrays of
    ``shape`` ((H, W) grey or (H, W, 3) RGB). With ``labels``, class sub-folder names (or an .npz ``y``) give
    the labels, mapped onto ``id_classes`` by name when the folder has sub-folders; otherwise labels are -1."""
    if "memory" in source:
        x, y, classes = _MEMORY[source["memory"]]
        x = convert(x, tuple(shape))
    else:
        x, y, classes = _load_path(str(source["path"]), tuple(shape), tuple(id_classes or ()), labels)
    if not labels:
        y = np.full(len(x), -1, np.int64)
    return ImageSet(name, x, y, "user:" + array_digest(x)[:24] + array_digest(y)[:8], list(classes))


def _load_path(path: str, shape: tuple, id_classes: tuple, labels: bool):
    p = Path(path)
    if p.suffix == ".npz":
        x, y = _npz(p)
        if labels and y is None:
            raise UserDataError(f"{p}: labels = true but the .npz has no array 'y'")
        y = np.full(len(x), -1, np.int64) if y is None else y
        return _checked(convert(x, shape), p), y, list(id_classes)
    names, files = folder_layout(p)
    if labels and names == [""]:
        raise UserDataError(f"image folder {p}: labels (of an ID set, or a test set with labels = true) need every "
                            f"image in a sub-folder per class" + (f", named as the ID classes {list(id_classes)[:12]}"
                                                        if id_classes else ""))
    index = {c: i for i, c in enumerate(id_classes)} if id_classes else {c: i for i, c in enumerate(names)}
    if labels:
        unknown = [n for n in names if n not in index]
        if unknown:
            raise UserDataError(f"image folder {p}: sub-folders {unknown} are not ID classes "
                                f"(the ID classes are {list(index)[:20]})")
    x = np.stack([_decode(f, shape) for fs in files for f in fs])
    y = np.array([index.get(n, -1) if labels else -1 for n, fs in zip(names, files) for _ in fs], np.int64)
    return x, y, names if names != [""] else []


def _decode(f: Path, shape: tuple) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(f) as im:
            im = im.convert("RGB" if len(shape) == 3 else "L")
            if im.size != (shape[1], shape[0]):
                im = im.resize((shape[1], shape[0]), Image.BILINEAR)
            return np.asarray(im, np.uint8)
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for an undecodable or truncated file
        raise UserDataError(f"unreadable image {f}: {e}") from e


def _npz(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z.files:
                raise UserDataError(f"{p}: an image .npz needs an array 'x' (it has {sorted(z.files)})")
            x, y = z["x"], (z["y"].astype(np.int64).reshape(-1) if "y" in z.files else None)
    except UserDataError:
        raise
    except Exception as e:  # zip/zlib errors, pickled objects, not a file
        raise UserDataError(f"{p} cannot be read as an .npz ({type(e).__name__}: {e})") from e
    x = _as_images(x, str(p))
    if y is not None and len(y) != len(x):
        raise UserDataError(f"{p}: {len(x)} images in 'x' but {len(y)} labels in 'y'")
    return x, y


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,3) from (N,H,W), (N,H,W,1|3|4) or (N,1|3,H,W); floats must lie in [0, 1]."""
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] not in (1, 3, 4):  # channels first (torch layout)
        x = np.moveaxis(x, 1, 3)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    elif x.ndim == 4 and x.shape[3] == 4:
        x = x[..., :3]  # RGBA: alpha dropped
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)):
        raise UserDataError(f"{where}: images of shape {x.shape[1:]} have unsupported channels; expected "
                            "(N, H, W) grey or (N, H, W, 3) RGB (also accepted: 1 or 4 channels, channels first)")
    if x.dtype.kind == "f":
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1):
            raise UserDataError(f"{where}: float images must lie in [0, 1] (found {x.min():.3g}..{x.max():.3g}); "
                                "or give uint8")
        x = np.round(x * 255)
    elif x.dtype != np.uint8 and x.size and (x.min() < 0 or x.max() > 255):
        raise UserDataError(f"{where}: integer images must lie in 0..255 (found {x.min()}..{x.max()})")
    return np.ascontiguousarray(x.astype(np.uint8))


def _checked(x: np.ndarray, where) -> np.ndarray:
    if not len(x):
        raise UserDataError(f"{where} holds no images")
    return x
