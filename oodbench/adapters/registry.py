"""Detector registry: every detector is addressable by name (``library.method`` for wrapped
libraries, plain names for the lab's own methods), from Python and from the command line.

Third-party detectors register through the entry-point group ``oodbench.detectors``: in your
package's ``pyproject.toml``::

    [project.entry-points."oodbench.detectors"]
    my_detector = "my_package.module:MyDetector"

and it appears in ``oodbench list`` and in runs as ``my_detector``.
"""
from __future__ import annotations

import fnmatch
import importlib

from oodbench.adapters.base import Detector

_REGISTRY: dict[str, type] = {}
_UNAVAILABLE: dict[str, str] = {}  # module -> reason it could not be imported
_LOADED = False

#: modules that register built-in detectors when imported
BUILTIN_MODULES = (
    "oodbench.adapters.pytorch_ood",
    "oodbench.adapters.openood",
    "oodbench.adapters.lab_stattest",
    "oodbench.adapters.lab_generative",
)


def register(name: str | None = None):
    """Class decorator: ``@register("pytorch_ood.msp")``."""

    def deco(cls):
        n = name or cls.name
        if not n:
            raise ValueError(f"{cls} needs a name")
        cls.name = n
        _REGISTRY[n] = cls
        return cls

    return deco


def _load():
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:  # the module itself does not exist (yet)
                continue
            _UNAVAILABLE[mod] = f"{type(e).__name__}: {e}"
        except Exception as e:  # a broken adapter module must not break the harness
            _UNAVAILABLE[mod] = f"{type(e).__name__}: {e}"
    try:
        from importlib.metadata import entry_points

        eps = entry_points()
        group = eps.select(group="oodbench.detectors") if hasattr(eps, "select") else eps.get("oodbench.detectors", [])
        for ep in group:
            try:
                cls = ep.load()
                register(ep.name)(cls)
            except Exception as e:  # a broken plug-in must not break the harness
                _UNAVAILABLE[f"entry point {ep.name}"] = f"{type(e).__name__}: {e}"
    except Exception:
        pass


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> type:
    _load()
    if name not in _REGISTRY:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, **params) -> Detector:
    return get(name)(**params)


def resolve(patterns) -> list[str]:
    """Expand names and shell-style patterns (``pytorch_ood.*``) into registered names, in order."""
    _load()
    out = []
    for p in patterns:
        hits = [n for n in sorted(_REGISTRY) if fnmatch.fnmatchcase(n, p)] if any(c in p for c in "*?[") else [p]
        if not hits:
            raise KeyError(f"no detector matches {p!r}; known: {', '.join(sorted(_REGISTRY))}")
        for h in hits:
            get(h)
            if h not in out:
                out.append(h)
    return out


def unavailable() -> dict[str, str]:
    _load()
    return dict(_UNAVAILABLE)


def load_object(spec: str):
    """Import ``module:attr`` (for ``oodbench check my_module:MyDetector``)."""
    mod, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:Class', got {spec!r}")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
