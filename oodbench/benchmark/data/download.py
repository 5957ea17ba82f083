"""Fetch each built-in dataset from its public source and convert it into the layout the harness reads.

``oodbench download all --data-dir DIR`` (or names: mnist fashionmnist cifar10 notmnist omniglot
tinyimagenet dtd, and the optional cifar100 svhn places365) fetches the archives listed in :mod:`.sources`
into ``DIR/_archives/`` (each checked against its published MD5; an archive already there with the right
MD5 is not fetched again, so one downloaded by hand can be dropped there), converts them with
:mod:`.builders`, writes every file atomically, records it in ``DIR/oodbench-downloads.json``
(:mod:`.manifest`: source URLs, date, sha256, array checksums) and removes the archives (unless
``keep_archives``). A dataset whose files are already present and pass their checksums is skipped.

What a download reproduces of the offline copy in ../shared/data (checked here by converting the
copies' own sources, with the data README's processing):

* MNIST, Fashion-MNIST: the same files, byte for byte (the offline copies match torchvision's MD5s).
* Omniglot: the same file, byte for byte (the same two zips, from the same repository).
* Tiny ImageNet: the offline file is reproduced byte for byte from the copy of the distribution it was
  made from; from CS231n's zip it is identical if that copy's JPEGs are the distribution's (not checked
  here: no network).
* DTD: **differs**. The offline copy was made from JPEGs that a GitHub repository re-saved at a lower
  quality; the download uses the original DTD JPEGs, so the same 1,200 images have slightly different pixels.
* notMNIST: the offline copy is D. Flanagan's random sample of notMNIST_small; the download draws again
  with his procedure and seed. Whether that reproduces his sample could not be checked offline; the
  download reports it ("identical to the offline copy: yes/no") in its summary and the manifest.
* CIFAR-10: **differs**. The offline copy is a JPEG re-encoding (``cifar10_jpeg.npz``, quality 75, images
  in class order); the download is the original ``cifar-10-batches-py`` (lossless, the official order),
  which the loader uses when ``cifar10_jpeg.npz`` is absent. Classifiers, features and scores on it differ
  from the committed CIFAR-10 results.
* CIFAR-100, SVHN, Places365 are not in the offline copy; Places365 is reduced to the first
  :data:`.builders.PLACES365_N` validation images at 32x32 (``val_256.tar`` is a 2.2 GB download).
"""
from __future__ import annotations

import os
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from oodbench.benchmark.data import builders, manifest, sources
from oodbench.benchmark.data.datasets import file_digest, file_ok
from oodbench.benchmark.data.errors import DatasetError, DownloadError, FormatError
from oodbench.benchmark.io import array_digest, atomic_write, sha256_bytes

ARCHIVE_DIR = "_archives"
USER_AGENT = "oodbench-download"
TIMEOUT_S = 60


@dataclass
class Result:
    """What ``download`` did for one dataset: ``status`` is ``written``, ``present`` or ``failed``."""

    name: str
    status: str
    files: list = field(default_factory=list)  # (relative path, bytes) of each file written
    note: str = ""
    error: str = ""


def _open(url: str):
    """``(readable response, total size or None)`` for ``url``; tests replace this function."""
    r = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}), timeout=TIMEOUT_S)
    n = r.headers.get("Content-Length")
    return r, int(n) if n and n.isdigit() else None


def _get(url: str, dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    resp, total = _open(url)
    with resp, open(dest, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                           desc=dest.name.removesuffix(".part"), disable=not progress,
                                           file=sys.stderr, leave=True) as bar:
        for block in iter(lambda: resp.read(1 << 20), b""):
            f.write(block)
            bar.update(len(block))


def fetch(archive: sources.Archive, folder: Path, progress: bool = True, log=print) -> Path:
    """``folder/archive.filename``, downloaded from the first URL that works and checked against its MD5."""
    dest = folder / archive.filename
    if dest.exists() and (archive.md5 is None or file_digest(dest, "md5") == archive.md5):
        log(f"  {archive.filename}: already in {folder}")
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    part, errors = dest.with_name(dest.name + ".part"), []
    for url in archive.urls:
        log(f"  fetching {url}")
        try:
            _get(url, part, progress)
        except (urllib.error.URLError, OSError, ValueError) as e:  # offline, HTTP error, timeout, reset
            errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
            continue
        got = file_digest(part, "md5")
        if archive.md5 and got != archive.md5:
            errors.append(f"{url}: MD5 {got}, expected the published {archive.md5}")
            continue
        os.replace(part, dest)
        return dest
    part.unlink(missing_ok=True)
    raise DownloadError(
        f"cannot download {archive.filename} ({'; '.join(errors)}). This command needs the network: check the "
        f"connection and run it again, or download {archive.urls[0]} by hand into {folder}/ and run it again.")


def present(name: str, root: Path) -> bool:
    """Whether every file of dataset ``name`` is in ``root`` and passes its checksum (bytes only)."""
    files = sources.WRITES[name]
    if name == "cifar10" and (root / "cifar10_jpeg.npz").exists():
        files = ["cifar10_jpeg.npz"]  # the offline JPEG copy
    return all(file_ok(root, rel) for rel in files)


def _convert(name: str, paths: dict) -> list:
    try:
        return builders.BUILDERS[name](paths)
    except (FormatError, OSError, EOFError, ValueError, KeyError, IndexError, SyntaxError, tarfile.TarError,
            zipfile.BadZipFile, zlib.error) as e:  # a damaged archive, or one laid out unlike the published one
        names = ", ".join(str(p) for p in paths.values())
        raise DatasetError(f"cannot convert {name} from {names} ({type(e).__name__}: {e}). Delete the archive(s) "
                           "and run the download again.") from e


def _entry(name: str, out: builders.Output, data: bytes, date: str) -> dict:
    return {"dataset": name, "date": date, "sha256": sha256_bytes(data), "bytes": len(data),
            "arrays": {k: array_digest(a) for k, a in out.arrays.items()},
            "sources": [{"url": a.urls[0], "md5": a.md5} for a in sources.ARCHIVES[name]], "note": out.note}


def download_one(name: str, root: Path, keep_archives: bool = False, progress: bool = True, log=print) -> Result:
    """Fetch, convert, write and record dataset ``name`` in ``root``; errors are raised (DatasetError, OSError)."""
    folder = root / ARCHIVE_DIR
    paths = {a.filename: fetch(a, folder, progress, log) for a in sources.ARCHIVES[name]}
    log(f"  converting {name} ...")
    outs = _convert(name, paths)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries, files = {}, []
    for out in outs:
        data = out.payload()
        atomic_write(root / out.rel, data)
        entries[out.rel] = _entry(name, out, data, date)
        files.append((out.rel, len(data)))
    manifest.record(root, entries)
    if not keep_archives:
        for p in paths.values():
            p.unlink(missing_ok=True)
    return Result(name, "written", files, "; ".join(o.note for o in outs if o.note))


def expand(names) -> list:
    """Dataset names in order, without repeats; ``all`` stands for :data:`.sources.REQUIRED`."""
    out = []
    for n in names:
        for m in (sources.REQUIRED if n == "all" else (n,)):
            if m not in sources.ARCHIVES:
                raise KeyError(f"unknown dataset {m!r}; known: all, {', '.join(sources.ARCHIVES)}")
            if m not in out:
                out.append(m)
    return out


def download(names, root, keep_archives: bool = False, force: bool = False, progress: bool = True,
             log=print) -> list:
    """Download datasets ``names`` (see :func:`expand`) into ``root``; one :class:`Result` per dataset.

    A failure (offline, bad archive, read-only folder) is recorded in its Result and the next dataset is
    tried; nothing is half-written (atomic writes; the manifest is updated after each dataset)."""
    root = Path(root)
    results = []
    for name in expand(names):
        log(f"{name}:")
        if not force and present(name, root):
            log("  already present and verified")
            results.append(Result(name, "present"))
            continue
        try:
            root.mkdir(parents=True, exist_ok=True)
            results.append(download_one(name, root, keep_archives, progress, log))
        except DatasetError as e:
            results.append(Result(name, "failed", error=str(e)))
        except OSError as e:
            results.append(Result(name, "failed", error=f"cannot write into {root}: {e}"))
        if results[-1].status == "failed":
            log("  failed")
    archives = root / ARCHIVE_DIR
    if archives.is_dir() and not any(archives.iterdir()):
        archives.rmdir()
    return results
