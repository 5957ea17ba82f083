"""What every cache of the harness shares (checkpoints, representations, scores, generative models):

* **content keys**: :func:`content_key` hashes a JSON description of an entry; :func:`source_hash`
  hashes the source code of the functions, classes and modules that produce it (with
  :func:`code_closure`, what they call; :func:`module_closure`, the modules a module imports), so
  edited code is never served an old entry;
* **one computation per entry**: :func:`entry_lock` holds an exclusive lock (``fcntl.flock`` on a
  ``.lock`` file beside the entry) around "check, compute, write", so of two processes that want the
  same missing entry one computes it and the other waits and reuses it (the entries themselves are
  written atomically, :func:`oodbench.benchmark.io.atomic_write`);
* **writes that warn instead of failing**: :func:`write_or_warn` runs a cache write and turns any
  error into one warning (a read-only or full cache folder), so a result that was computed is used
  even when it cannot be stored.
"""
from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

#: the (what, error type, errno) already reported in this process: one warning per kind of failure
_REPORTED: set = set()
#: per-path locks of this process: flock is per open file, so a second acquisition in the same
#: process (nested or from another thread) goes through this re-entrant lock and reuses the file lock
_HELD: dict = {}
_HELD_GUARD = threading.Lock()


def content_key(obj, n: int = 20) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    blob = json.dumps(obj, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def source_hash(*objects, n: int = 16) -> str:
    """Hash of the source code of ``objects`` (modules, classes, functions), in order."""
    h = hashlib.sha256()
    for obj in objects:
        try:
            h.update(inspect.getsource(obj).encode())
        except (TypeError, OSError):  # built-in or source not available: its qualified name only
            h.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}".encode())
    return h.hexdigest()[:n]


def code_closure(*objects) -> list:
    """``objects`` (functions, classes, lambdas) and every function or class of oodbench that their
    source names, transitively: the code that defines what they compute (a network and the blocks it
    is built from; a training lambda and the training function it calls). Names are resolved in the
    module each object is defined in; the result is in a stable order (``objects`` first)."""
    import re
    import sys

    found, seen, i = list(objects), {id(o) for o in objects}, 0
    while i < len(found):
        obj = inspect.unwrap(found[i]) if callable(found[i]) else found[i]
        i += 1
        try:
            src = inspect.getsource(obj)
        except (TypeError, OSError):
            continue
        mod = sys.modules.get(getattr(obj, "__module__", None) or "")
        names = getattr(obj, "__globals__", None) or (vars(mod) if mod else {})
        new = []
        for name in sorted(set(re.findall(r"[A-Za-z_]\w*", src))):
            o = names.get(name)
            if (inspect.isfunction(o) or inspect.isclass(o)) and id(o) not in seen \
                    and (getattr(o, "__module__", "") or "").startswith("oodbench"):
                seen.add(id(o))
                new.append(o)
        found += sorted(new, key=lambda o: (o.__module__, o.__qualname__))
    return found


def module_closure(module: str, package: str = "oodbench", stop: tuple = ()) -> list[Path]:
    """The source files of ``module`` and of every module of ``package`` it imports, transitively (import
    statements anywhere in the file, function-level ones included), in a stable order: the code a
    detector's scores depend on beyond its own file (``oodbench.detectors.stattest`` behind the
    ``stattest`` adapter, ``adapters.common`` behind the pytorch-ood wrappers). ``from pkg import name``
    counts ``pkg.name`` when that is a module, else ``pkg``. The modules in ``stop`` are included but their
    imports not followed. Third-party modules are not followed (their versions are keyed apart)."""
    import ast
    import importlib.util

    def spec_file(name: str) -> Path | None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = getattr(spec, "origin", None) if spec else None
        return Path(origin) if origin and origin.endswith(".py") else None

    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    files, seen, todo = [], set(), [module]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        path = spec_file(name)
        if path is None:
            continue
        seen.add(name)
        files.append(path)
        if name in stop:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += sorted(a.name for a in node.names if inside(a.name))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level and inside(node.module):
                subs = [f"{node.module}.{a.name}" for a in node.names if spec_file(f"{node.module}.{a.name}")]
                todo += sorted(subs) if len(subs) == len(node.names) else sorted(subs) + [node.module]
    return files


def file_hash(paths, n: int = 16) -> str:
    """Hash of the bytes of the files ``paths``, in order (empty when one cannot be read)."""
    h = hashlib.sha256()
    try:
        for p in paths:
            h.update(Path(p).read_bytes())
    except OSError:
        return ""
    return h.hexdigest()[:n]


def _warn_once(e: BaseException, action: str, what: str, warn: Callable) -> None:
    kind = (action, type(e).__name__, getattr(e, "errno", None))
    if kind in _REPORTED:
        return
    _REPORTED.add(kind)
    warn(f"warning: {what} ({type(e).__name__}: {e}); further cache failures of this kind are not reported")


def write_or_warn(write: Callable[[], object], path, warn: Callable = print) -> bool:
    """Run ``write()`` (a cache write of the entry at ``path``); on any error warn (once per kind of
    error in this process) and return False. The caller uses its computed result either way."""
    try:
        write()
        return True
    except Exception as e:  # a cache that cannot be written is not a failure of what was computed
        _warn_once(e, "write", f"cannot write the cache entry {path}; the result is used but not cached", warn)
        return False


@contextmanager
def entry_lock(path, warn: Callable = print):
    """Exclusive lock of the cache entry at ``path`` (a file ``<path>.lock`` beside it) for the body.

    Other processes asking for the same entry wait; the same process may nest it. A lock file that
    cannot be created (a read-only cache) is reported once and the body runs unlocked."""
    lock_path = str(path) + ".lock"
    with _HELD_GUARD:
        entry = _HELD.setdefault(lock_path, [threading.RLock(), 0, None])
    rlock = entry[0]
    with rlock:
        if entry[1] == 0:
            entry[2] = _open_locked(lock_path, warn)
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0 and entry[2] is not None:
                fd, entry[2] = entry[2], None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _open_locked(lock_path: str, warn: Callable):
    """An open file descriptor of ``lock_path`` holding an exclusive flock, or None if impossible."""
    fd = None
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(lock_path, os.O_RDONLY)  # an existing lock file in a read-only folder still locks
        except OSError as e:
            _warn_once(e, "lock", f"cannot lock the cache entry {lock_path}; going on without the lock", warn)
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        os.close(fd)
        _warn_once(e, "lock", f"cannot lock the cache entry {lock_path}; going on without the lock", warn)
        return None
    return fd
