"""Decoders and one encoder for the dataset file formats; no checksums or paths here.

* :func:`decode_idx`: an MNIST-style IDX file, gzip-compressed (``*-idx3-ubyte.gz`` images,
  ``*-idx1-ubyte.gz`` labels), with its header checked against its length.
* :func:`cifar_batch` / :func:`cifar_names`: CIFAR python batches (pickles), read by a **restricted
  unpickler** that only builds dicts, lists, strings, numbers and numpy arrays (the globals it resolves:
  numpy's ``_reconstruct``, ``ndarray`` and ``dtype``, and ``_codecs.encode``). A crafted pickle that asks
  for any other global (``os.system``, ``builtins.open``, ...) is refused before anything runs.
* :func:`svhn_mat`: SVHN's ``test_32x32.mat`` (MATLAB v5; scipy reads it without running code).
* :func:`npz_bytes`: a deterministic ``.npz`` (deflate, fixed zip timestamps): the same arrays give the
  same bytes, and the offline ``.npz`` files of ``../shared/data`` are reproduced bit for bit.

Every decoder raises :class:`~oodbench.benchmark.data.errors.FormatError` saying what is wrong; the caller
adds the file's name and the fix.
"""
from __future__ import annotations

import gzip
import io
import pickle
import zipfile
import zlib

import numpy as np

from oodbench.benchmark.data.errors import FormatError

IDX_IMAGES, IDX_LABELS = 2051, 2049


def decode_idx(gz: bytes) -> np.ndarray:
    """Images ``(N,H,W)`` uint8 or labels ``(N,)`` uint8 from the bytes of an IDX ``.gz`` file."""
    try:
        raw = gzip.decompress(gz)
    except (OSError, EOFError, zlib.error) as e:  # bad magic / CRC (OSError), truncated (EOFError), bad deflate
        raise FormatError(f"is not a valid gzip file ({type(e).__name__}: {e})") from e
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < (16 if magic == IDX_IMAGES else 8):
        raise FormatError(f"is too short for an IDX header ({len(raw)} bytes after decompression)")
    if magic == IDX_IMAGES:
        n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
        if len(raw) != 16 + n * h * w:
            raise FormatError(f"holds {len(raw) - 16} pixel bytes but its header declares {n} images of {h}x{w} "
                              f"({n * h * w} bytes): it is truncated or damaged")
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)
    if magic == IDX_LABELS:
        n = int.from_bytes(raw[4:8], "big")
        if len(raw) != 8 + n:
            raise FormatError(f"holds {len(raw) - 8} label bytes but its header declares {n}: "
                              "it is truncated or damaged")
        return np.frombuffer(raw, np.uint8, offset=8)
    raise FormatError(f"is not an IDX file: magic number {magic}, expected {IDX_IMAGES} (images) or "
                      f"{IDX_LABELS} (labels)")


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as f  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as f
    return f


class _DataOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in a protocol-2 pickle written by Python 3
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(f"it asks for the global {module}.{name}, which a CIFAR batch never needs "
                                     "(refused: unpickling it could run code)")


def _unpickle(raw: bytes) -> dict:
    try:
        d = _DataOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # any failure to decode is a bad file, whatever the exception type
        raise FormatError(f"is not a valid CIFAR python batch: {e}") from e
    if not isinstance(d, dict):
        raise FormatError(f"is not a valid CIFAR python batch: it holds a {type(d).__name__}, not a dict")
    return d


def cifar_batch(raw: bytes, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """``(data (N,3072) uint8, labels (N,) int64)`` of a CIFAR-10 batch (``label_key="labels"``) or of
    CIFAR-100's ``train`` / ``test`` (``"fine_labels"``)."""
    d = _unpickle(raw)
    x, y = d.get("data"), d.get(label_key)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        what = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise FormatError(f"has no 'data' array of uint8 rows of 3072 pixels (found {what})")
    try:
        y = np.asarray(y, np.int64)
    except (TypeError, ValueError) as e:
        raise FormatError(f"has no integer '{label_key}' list ({e})") from e
    if y.shape != (len(x),):
        raise FormatError(f"has {len(x)} images but '{label_key}' has shape {y.shape}")
    return x, y


def cifar_names(raw: bytes, key: str) -> list[str]:
    """Class names from ``batches.meta`` (``key="label_names"``) or CIFAR-100's ``meta`` (``"fine_label_names"``)."""
    names = _unpickle(raw).get(key)
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise FormatError(f"has no list of strings '{key}'")
    return names


def cifar_images(data: np.ndarray) -> np.ndarray:
    """CIFAR rows (N,3072), channel-major, to images (N,32,32,3)."""
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def svhn_mat(src) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N,32,32,3) uint8, y (N,) int64 in 0..9)`` from SVHN's ``*_32x32.mat`` (a path or a file object);
    SVHN labels the digit 0 as 10."""
    from scipy.io import loadmat

    try:
        m = loadmat(src)
    except Exception as e:  # scipy raises several types for damaged or non-v5 files
        raise FormatError(f"is not a readable MATLAB v5 file ({type(e).__name__}: {e})") from e
    x, y = m.get("X"), m.get("y")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise FormatError("has no 'X' array of uint8 images (32, 32, 3, N)")
    if not isinstance(y, np.ndarray) or y.size != x.shape[3]:
        raise FormatError(f"has no 'y' array of {x.shape[3]} labels")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y.ravel().astype(np.int64) % 10


def npz_bytes(arrays: dict) -> bytes:
    """A deflate-compressed ``.npz`` with fixed zip metadata, so that equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for key, a in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.asarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr, info.create_system = zipfile.ZIP_DEFLATED, 0o644 << 16, 3
            z.writestr(info, npy.getvalue())
    return buf.getvalue()
