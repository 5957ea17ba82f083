"""Per-detector facts (``oodbench ease``): what it consumes, the library arguments a user must supply,
its requirements (fit data, OOD data for tuning, gradients, GPU only, expensive), the lines of its adapter
code, network access during construction, and the robustness probes (:mod:`.probes`).

Runs as ``python -m oodbench.benchmark.tools.ease.detectors --inner-detectors PATTERN [--skip-probes]
[--probe-expensive]`` inside another environment (OpenOOD's), printing the facts as JSON.
"""
from __future__ import annotations

import importlib
import inspect
import json
import sys

from oodbench.benchmark.tools.ease.lines import detector_lines
from oodbench.benchmark.tools.ease.probes import probe_detector
from oodbench.benchmark.tools.guards import no_network

MODEL_ARGS = {"model": "a callable model", "encoder": "a feature encoder", "backbone": "a backbone",
              "head": "the classifier head", "w": "classifier weights W", "b": "classifier bias b",
              "config": "a Config object with the YAML hyperparameters", "net": "a network"}


def _library_class(cls):
    """The library class a library adapter wraps (its ``library_class()``), or None."""
    get = getattr(cls, "library_class", None)  # -> LibraryDetector.library_class() (lead merges)
    try:
        return get() if get is not None else None
    except Exception:
        return None


def required_args(cls) -> list[str]:
    """Parameters without a default of the wrapped library class (``library_class()`` or
    ``info.extra["class"]``); for our own detectors, of the detector's constructor."""
    target = _library_class(cls)
    if target is None and isinstance(cls.info.extra, dict) and cls.info.extra.get("class"):
        mod, _, attr = cls.info.extra["class"].rpartition(".")
        try:
            target = getattr(importlib.import_module(mod), attr)
        except Exception:
            target = None
    target = target or cls
    try:
        sig = inspect.signature(target.__init__)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values() if p.name != "self" and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def detector_facts(name: str, cls) -> dict:
    """What can be read off a detector class without running it."""
    i = cls.info
    req = required_args(cls)
    return {"library": i.library, "library_version": i.library_version, "module": cls.__module__,
            "consumes": sorted(cls.consumes), "required_args": req,
            "model_contract": [MODEL_ARGS[a] for a in req if a in MODEL_ARGS],
            "requirements": {"fit_data": bool(i.needs_fit), "ood_tuning": bool(i.needs_ood_tuning),
                             "gradients": bool(i.needs_gradients), "gpu_only": not i.cpu_ok,
                             "expensive": bool(i.expensive)},
            "adapter_lines": detector_lines(cls, name.split(".")[-1])}


def robustness_facts(cls, problem, probe_expensive=False) -> dict:
    """Network access and the robustness probes on ``problem`` (None: not probed). An expensive detector
    (it trains a model) is only constructed unless ``probe_expensive``."""
    i = cls.info
    if isinstance(i.extra, dict) and i.extra.get("available") is False:
        return {"probes": {}, "probe_note": "not probed: its library is not installed in this environment"}
    if problem is None:
        return {}
    if i.expensive and not probe_expensive:
        e, conns = {}, []
        try:
            with no_network(conns):
                cls()
        except Exception as ex:  # noqa: BLE001
            e["construct_error"] = f"{type(ex).__name__}: {ex}"[:200]
        return {**e, "network_at_construction": bool(conns), "probes": {},
                "probe_note": "not probed: expensive=True (trains a model); run `oodbench ease --probe-expensive`"}
    pr = probe_detector(cls, problem)
    e = {"network_at_construction": bool(pr.pop("network_attempts", [])), "probe_seconds": pr.pop("seconds", None)}
    if "fit_error" in pr:
        return {**e, "probe_fit_error": pr["fit_error"], "probes": {}}
    return {**e, "probes": pr}


def measure_detectors(patterns=None, skip_probes=False, probe_expensive=False) -> dict:
    """Per detector (in this environment): metadata, required args, adapter lines, probes."""
    from oodbench.adapters import registry
    from oodbench.benchmark.tools import separable

    names = registry.resolve(patterns) if patterns else registry.names()
    problem = None if skip_probes else separable.problem()
    return {n: {**detector_facts(n, registry.get(n)), **robustness_facts(registry.get(n), problem, probe_expensive)}
            for n in names}

if __name__ == "__main__":  # runs in another environment (OpenOOD's) too
    if sys.argv[1:2] == ["--inner-detectors"]:
        print(json.dumps(measure_detectors([sys.argv[2]], "--skip-probes" in sys.argv, "--probe-expensive" in sys.argv),
                         sort_keys=True, default=str))
    else:
        sys.exit("usage: python -m oodbench.benchmark.tools.ease.detectors --inner-detectors PATTERN [--skip-probes]")
