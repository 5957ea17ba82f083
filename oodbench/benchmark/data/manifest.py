"""The download manifest: ``oodbench-downloads.json`` in the data folder.

``oodbench download`` records there, for every file it writes (by its path relative to the data folder):
the dataset, the source URLs and their MD5s, the date, the file's sha256 and size, and the checksum of
every array it holds (``sha256(dtype + shape + bytes)``, as ``arrays.sha256`` of ../shared/data). The loader
accepts a file whose sha256 or arrays match its manifest entry, as it accepts one that matches the
offline copy's published checksums; a file that matches neither is reported as corrupt::

    {"format": 1,
     "files": {"notmnist.npz": {"dataset": "notmnist", "date": "2025-01-31T12:00:00Z",
                                "sha256": "...", "bytes": 3215119, "arrays": {"x_test": "...", ...},
                                "sources": [{"url": "http://...", "md5": "..."}], "note": "..."}}}
"""
from __future__ import annotations

import json
import shlex
from functools import lru_cache
from pathlib import Path

from oodbench.benchmark.data.errors import DatasetError
from oodbench.benchmark.io import write_json

NAME = "oodbench-downloads.json"


def read(root) -> dict:
    """``{relative path: entry}`` of the manifest in ``root`` ({} when there is none). Do not modify it."""
    p = Path(root) / NAME
    try:
        st = p.stat()
    except FileNotFoundError:
        return {}
    return _read(str(p), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _read(path: str, size: int, mtime: int) -> dict:
    try:
        files = json.loads(Path(path).read_text())["files"]
        if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
            raise ValueError("'files' is not a mapping of entries")
    except (OSError, ValueError, KeyError, TypeError) as e:
        root = shlex.quote(str(Path(path).parent))
        raise DatasetError(
            f"download manifest {path} cannot be read ({type(e).__name__}: {e}); it holds the checksums of the "
            f"downloaded files. Delete it and run `oodbench download all --data-dir {root}` again.") from e
    return files


def record(root, entries: dict) -> None:
    """Add or replace ``entries`` (``{relative path: entry}``) in the manifest of ``root`` (atomic write)."""
    files = dict(read(root))
    files.update(entries)
    write_json(Path(root) / NAME, {"format": 1, "files": dict(sorted(files.items()))})
