"""Detector registry: every detector is addressable by name (``library.method`` for wrapped
libraries, plain names for the lab's own methods), from Python and from the command line.

:data:`REGISTRY` is the process's :class:`Registry`; the module functions (``register``, ``names``,
``get``, ``create``, ``resolve``, ``unavailable``) use it. Built-in detectors are registered on first
use by explicit imports of their families (:func:`_load_builtins`); tests that add detectors do so
inside ``with REGISTRY.scoped():`` (everything registered in the block is forgotten at its end) or
on a ``Registry()`` of their own.

Third-party detectors register through the entry-point group ``oodbench.detectors``: in your
package's ``pyproject.toml``::

    [project.entry-points."oodbench.detectors"]
    my_detector = "my_package.module:MyDetector"

and it appears in ``oodbench list`` and in runs as ``my_detector``. A family or plug-in that fails to
load is listed by ``oodbench list`` with its error (:meth:`Registry.unavailable`).
"""
from __future__ import annotations

import contextlib
import fnmatch
import importlib
from importlib.metadata import entry_points

from oodbench.adapters.base import Detector


class Registry:
    """Names → detector classes, and the families / plug-ins that failed to load (with their error).
    ``Registry(builtins=False)`` starts empty and loads nothing on its own."""

    def __init__(self, builtins: bool = True):
        self._classes: dict[str, type] = {}
        self._unavailable: dict[str, str] = {}
        self._loaded = not builtins

    # --- registering -----------------------------------------------------------------------------
    def add(self, name: str, cls: type) -> type:
        if not name:
            raise ValueError(f"{cls} needs a name")
        cls.name = name
        self._classes[name] = cls
        return cls

    def register(self, name: str | None = None):
        """Class decorator: ``@registry.register("pytorch_ood.msp")``."""
        return lambda cls: self.add(name or cls.name, cls)

    def remove(self, name: str) -> None:
        self._classes.pop(name, None)

    def failed(self, what: str, error: BaseException) -> None:
        """Record that ``what`` (a family, a plug-in) could not be loaded."""
        self._unavailable[what] = f"{type(error).__name__}: {error}"

    @contextlib.contextmanager
    def scoped(self):
        """Within the block, registrations and removals are local: the registry is restored on exit."""
        self._load()
        saved = dict(self._classes), dict(self._unavailable)
        try:
            yield self
        finally:
            self._classes, self._unavailable = dict(saved[0]), dict(saved[1])

    # --- loading -----------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        _load_builtins(self)
        for ep in entry_points(group="oodbench.detectors"):
            try:
                self.add(ep.name, ep.load())
            except Exception as e:  # a broken plug-in must not break the harness: it is listed instead
                self.failed(f"entry point {ep.name}", e)

    # --- reading -----------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._classes

    def names(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> type:
        self._load()
        if name not in self._classes:
            raise KeyError(f"unknown detector {name!r}; known: {', '.join(sorted(self._classes))}")
        return self._classes[name]

    def create(self, name: str, **params) -> Detector:
        return self.get(name)(**params)

    def resolve(self, patterns) -> list[str]:
        """Expand names and shell-style patterns (``pytorch_ood.*``) into registered names, in order."""
        known = self.names()
        out = []
        for p in patterns:
            hits = [n for n in known if fnmatch.fnmatchcase(n, p)] if any(c in p for c in "*?[") else [p]
            if not hits:
                raise KeyError(f"no detector matches {p!r}; known: {', '.join(known)}")
            for h in hits:
                self.get(h)
                if h not in out:
                    out.append(h)
        return out

    def unavailable(self) -> dict[str, str]:
        self._load()
        return dict(self._unavailable)


def _load_builtins(reg: Registry) -> None:
    """The built-in families, each imported explicitly; one that fails to import is recorded, not raised."""
    try:
        from oodbench.adapters import pytorch_ood

        pytorch_ood.register_all(reg)
    except Exception as e:
        reg.failed("oodbench.adapters.pytorch_ood", e)
    try:
        from oodbench.adapters import openood

        openood.register_all(reg)
    except Exception as e:
        reg.failed("oodbench.adapters.openood", e)
    try:
        from oodbench.adapters import lab

        lab.register_all(reg)
    except Exception as e:
        reg.failed("oodbench.adapters.lab", e)


#: the process's registry
REGISTRY = Registry()
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get
create = REGISTRY.create
resolve = REGISTRY.resolve
unavailable = REGISTRY.unavailable


def load_object(spec: str):
    """Import ``module:attr`` (for ``oodbench check my_module:MyDetector``)."""
    mod, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:Class', got {spec!r}")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
