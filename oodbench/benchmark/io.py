"""Atomic file writes and checksummed array stores.

Every file the harness writes goes through :func:`atomic_write`: the content is written to a
temporary file in the same folder and renamed over the target, so an interrupted run never leaves
a half-written file behind. Array stores (``.npz``) carry a sha256 of their content in a sidecar
``.sha256`` file; :func:`load_arrays` checks it and raises :class:`CorruptCacheError` naming the file
when it does not match, so a damaged cache entry is recomputed rather than trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np


class CorruptCacheError(RuntimeError):
    """A cache file exists but fails its integrity check."""


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path, default=None):
    """The content of the JSON file at ``path``, or ``default`` when the file is missing or is not
    valid JSON (a results folder written by an interrupted or older run is read as far as it goes)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def array_digest(a: np.ndarray) -> str:
    """sha256(str(dtype) + str(shape) + raw bytes): the array checksum of ``arrays.sha256``."""
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Save arrays uncompressed (fast to load) with a checksum sidecar; both written atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    atomic_write(path, data)
    atomic_write(str(path) + ".sha256", sha256_bytes(data) + "\n")


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a store written by :func:`save_arrays`; raise CorruptCacheError if it fails its check."""
    path = Path(path)
    side = Path(str(path) + ".sha256")
    if not side.exists():
        raise CorruptCacheError(f"{path}: checksum file {side.name} is missing")
    data = path.read_bytes()
    want = side.read_text().strip()
    if sha256_bytes(data) != want:
        raise CorruptCacheError(f"{path}: content does not match its checksum {want[:12]}…")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
