"""A folder of files updated as one unit: a results folder is always one consistent set.

A results folder holds several files that belong together (``results.csv.gz``, ``run.json``,
``curves.json.gz``, ``leaderboard.md``). Writing them one after the other, each atomically, is not
enough: a run killed between two writes would leave ``results.csv`` of one run beside ``run.json`` of
another. :func:`write_set` therefore

1. writes every new file into ``<folder>/.staging/`` (each fsynced), then ``.staging/manifest.json``
   naming each file's sha256 — the commit point: a staging folder without its manifest is discarded;
2. renames each staged file over its target, then the staged manifest over ``<folder>/manifest.json``
   (the names and hashes of the consistent set), and removes the staging folder.

:func:`recover`, called under the folder's lock before every read-for-update and by every reader,
finishes an interrupted update: a staging folder with its manifest is rolled forward (step 2 is
completed), one without it is rolled back (removed; the old files are untouched). Then every file the
manifest names must match its hash; one that does not (truncated, edited by hand, written by a tool
that bypasses this module) raises :class:`FolderMismatch` naming the file. A folder written before
manifests existed (no ``manifest.json``) is accepted as it is.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from oodbench.benchmark.io import atomic_write, sha256_bytes, sha256_file

MANIFEST = "manifest.json"
STAGING = ".staging"


class FolderMismatch(RuntimeError):
    """A results folder's files do not match its manifest (a file was damaged or changed outside oodbench)."""


class locked:
    """An exclusive advisory lock on a file (fcntl), held for the ``with`` block. Not re-entrant:
    take it once per update."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a")
        try:
            import fcntl

            fcntl.flock(self.f, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        return self

    def __exit__(self, *exc):
        self.f.close()


def lock(folder) -> locked:
    return locked(Path(folder) / ".lock")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o644)


def read_manifest(folder) -> dict | None:
    """The manifest of ``folder`` (``{"files": {name: sha256}, ...}``), or None when there is none."""
    p = Path(folder) / MANIFEST
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        m = {"error": str(e)}
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        why = m.get("error", "no 'files' table") if isinstance(m, dict) else "not a JSON object"
        raise FolderMismatch(f"{p} is unreadable ({why}); delete it to accept the folder's files as they are")
    return m


def write_set(folder, files: dict[str, bytes | str], info: dict | None = None, remove=()) -> None:
    """Replace the files named in ``files`` in ``folder`` as one unit (see the module docstring); files
    of the previous set that ``files`` does not name are kept, except those named in ``remove`` (files a
    newer layout replaces), which leave the manifest and are deleted once the new set is in place. Call
    under :func:`lock`, after :func:`recover`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stage = folder / STAGING
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    old = read_manifest(folder) or {"files": {}}
    hashes = {k: v for k, v in old["files"].items() if k not in remove}
    for name, data in files.items():
        b = data.encode() if isinstance(data, str) else data
        _write_synced(stage / name, b)
        hashes[name] = sha256_bytes(b)
    manifest = {"files": hashes, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(info or {})}
    atomic_write(stage / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # the commit point
    _fsync_dir(stage)
    _roll_forward(folder)
    for name in remove:
        if name not in files:
            (folder / name).unlink(missing_ok=True)


def _roll_forward(folder: Path) -> None:
    stage = folder / STAGING
    m = json.loads((stage / MANIFEST).read_text())
    for name, want in sorted(m["files"].items()):
        staged, target = stage / name, folder / name
        if staged.exists():
            if sha256_file(staged) != want:
                raise FolderMismatch(f"{staged} does not match the staged manifest; remove {stage} and rerun")
            os.replace(staged, target)
        elif not target.exists() or sha256_file(target) != want:
            raise FolderMismatch(f"{target} is neither the old nor the new version of an interrupted update; "
                                 f"remove {stage} and {folder / MANIFEST} and rerun")
    _fsync_dir(folder)
    os.replace(stage / MANIFEST, folder / MANIFEST)
    _fsync_dir(folder)
    shutil.rmtree(stage, ignore_errors=True)


def recover(folder) -> None:
    """Finish or undo an interrupted :func:`write_set`, then check the files against the manifest.
    Call under :func:`lock` (:func:`check` takes it)."""
    folder = Path(folder)
    stage = folder / STAGING
    if stage.is_dir():
        if (stage / MANIFEST).exists():
            _roll_forward(folder)
        else:
            shutil.rmtree(stage)
    verify(folder)


def verify(folder) -> None:
    """Raise :class:`FolderMismatch` naming the first file that does not match the manifest."""
    folder = Path(folder)
    m = read_manifest(folder)
    if m is None:
        return
    for name, want in sorted(m["files"].items()):
        p = folder / name
        if not p.exists():
            raise FolderMismatch(f"{p} is missing but {folder / MANIFEST} names it; restore it, or delete "
                                 f"{MANIFEST} to accept the folder as it is")
        if sha256_file(p) != want:
            raise FolderMismatch(f"{p} does not match {folder / MANIFEST} (damaged or edited outside oodbench); "
                                 f"restore it, or delete {MANIFEST} to accept the folder as it is")


def check(folder) -> None:
    """:func:`recover` under the folder's lock; a folder that does not exist yet is fine."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    if not (folder / STAGING).exists():
        try:
            verify(folder)  # the common case needs no lock (and works on a read-only folder)
            return
        except FolderMismatch:
            if not os.access(folder, os.W_OK):
                raise
            # perhaps a writer is between its renames: wait for it under the lock, then look again
    with lock(folder):
        recover(folder)
