"""The OpenOOD detectors: one :class:`OpenOODDetector` subclass per postprocessor of :data:`SPECS`,
constructed from our config table, run under the CPU patch where there is no CUDA."""
from __future__ import annotations

import contextlib
import copy
import importlib
from typing import ClassVar

import numpy as np
import torch

from oodbench.adapters.base import DetectorInfo, LibraryDetector
from oodbench.adapters.common import vim_dim
from oodbench.adapters.cuda import cpu_patch
from oodbench.adapters.openood.networks import ContractNet, LookupNet, loader
from oodbench.adapters.openood.specs import DATASET, INSTALL, SPECS


class OpenOODMissing(ImportError):
    pass


_MOD: dict = {}


def _openood():
    """Import the parts of OpenOOD the adapter uses (lazily; cached). Raises OpenOODMissing."""
    if "pp" not in _MOD:
        try:
            _MOD["pp"] = importlib.import_module("openood.postprocessors")
            _MOD["info"] = importlib.import_module("openood.postprocessors.info")
            _MOD["config"] = importlib.import_module("openood.utils.config")
            _MOD["ash_net"] = importlib.import_module("openood.networks.ash_net")
            _MOD["scale_net"] = importlib.import_module("openood.networks.scale_net")
            _MOD["transform"] = importlib.import_module("openood.preprocessors.transform")
        except Exception as e:  # ImportError, or numpy 2 breaking imgaug (AttributeError: np.sctypes)
            _MOD.clear()
            raise OpenOODMissing(f"{INSTALL}\n(import failed: {type(e).__name__}: {e})") from e
    return _MOD


def available() -> tuple[bool, str]:
    try:
        _openood()
        return True, ""
    except OpenOODMissing as e:
        return False, str(e).splitlines()[-1]


#: faiss's default below which a flat index searches query by query, in faiss 1.7 (OpenOOD v1.5's)
FAISS_BLAS_THRESHOLD = 20


@contextlib.contextmanager
def faiss_blas(threshold: int = FAISS_BLAS_THRESHOLD):
    """Let faiss's flat indexes use their BLAS kernel for batches of ``threshold`` queries and more, while
    an OpenOOD postprocessor runs (its KNN, NNGuide), and restore faiss's own setting afterwards.

    OpenOOD v1.5 was written against faiss 1.7, whose default was 20; the faiss-cpu pinned in its
    environment (1.15.1) raised ``distance_compute_blas_threshold`` to 128,000, so OpenOOD's batches of 200
    queries fall to the loop that streams the whole bank once per query (mnist: 50,000 x 500 features,
    6.6x slower per query here on 2026-12-03, 13.5x on 2026-12-02: ``benchmarks/faiss_batch_kernel.py``).
    The kernels find the same neighbours up to ties and float rounding. Does nothing where faiss is not
    installed."""
    try:
        import faiss
    except ImportError:
        faiss = None
    cvar = getattr(faiss, "cvar", None)
    if cvar is None or not hasattr(cvar, "distance_compute_blas_threshold"):
        yield
        return
    old = cvar.distance_compute_blas_threshold
    cvar.distance_compute_blas_threshold = int(threshold)
    try:
        yield
    finally:
        cvar.distance_compute_blas_threshold = old


class OpenOODDetector(LibraryDetector):
    """Base of the OpenOOD wrappers; ``pp_name`` is the Evaluator registry name."""

    pp_name: ClassVar[str] = ""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self._pp = None
        self._net = None

    @classmethod
    def spec(cls) -> dict:
        return SPECS[cls.pp_name]

    @classmethod
    def defaults(cls) -> dict:
        return copy.deepcopy(cls.spec()["args"])

    @classmethod
    def hyperparameter_space(cls) -> dict:
        """OpenOOD's APS grid (``postprocessor_sweep``), keyed by the argument names."""
        out = {}
        for k, v in cls.spec()["sweep"].items():
            key = k[:-5] if k.endswith("_list") else k
            if key in cls.spec()["args"]:
                out[key] = list(v)
        return out

    # --- helpers ------------------------------------------------------------------------------------
    def _patched(self, rep):
        return cpu_patch(not (rep.device.type == "cuda" and torch.cuda.is_available()))

    def _construct(self, rep):
        mods = _openood()
        ncls = int(rep.logits.shape[1])
        mods["info"].num_classes_dict[DATASET] = ncls
        mods["transform"].normalization_dict[DATASET] = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
        args = self.get_params()
        if self.pp_name == "vim":
            args["dim"] = min(int(args["dim"]), vim_dim(rep.features.shape[1])) if "dim" not in self.kwargs \
                else int(args["dim"])
        sweep = copy.deepcopy(self.spec()["sweep"])
        cfg = mods["config"].Config(**{"postprocessor": {"name": self.pp_name, "APS_mode": False,
                                                         "postprocessor_args": args or None,
                                                         "postprocessor_sweep": sweep or None},
                                       "dataset": {"name": DATASET}})
        self._args = args
        return getattr(mods["pp"], self.spec()["cls"])(cfg)

    def _inputs(self, rep):
        x = rep.input_tensor()
        if self.spec()["cls"] == "ODINPostprocessor" and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        return x

    def _net_for(self, rep):
        feed = self.spec()["feed"]
        if feed == "net":
            grey3 = self.spec()["cls"] == "ODINPostprocessor" and rep.input_tensor()[:1].shape[1] == 1
            return ContractNet(rep.model, grey3=grey3).eval()
        net = LookupNet(rep.model.fc, device=rep.device)
        if feed == "ash":
            return _openood()["ash_net"].ASHNet(net).eval()
        if feed == "scale":
            return _openood()["scale_net"].ScaleNet(net).eval()
        return net.eval()

    def _lookup(self):
        n = self._net
        return n if isinstance(n, LookupNet) else getattr(n, "backbone", None)

    def _loaders(self, reps):
        """Dict-batch loaders; for lookup feeds ``data`` are row offsets into the loaded banks."""
        lk = self._lookup()
        if lk is not None:
            lk.load(reps)
            out, off = [], 0
            for r in reps:
                idx = torch.arange(off, off + len(r), dtype=torch.float32)
                out.append(loader(idx, r.labels))
                off += len(r)
            return out
        return [loader(self._inputs(r), r.labels) for r in reps]

    # --- the contract ---------------------------------------------------------------------------------
    def fit(self, fit, cal=None):
        cal = cal if cal is not None else fit
        with self._patched(fit), faiss_blas():
            self._pp = self._construct(fit)
            self._net = self._net_for(fit)
            train, val = self._loaders([fit, cal])
            self._pp.setup(self._net, {"train": train, "val": val, "test": val}, {})
        return self

    def score(self, rep) -> np.ndarray:
        if self._pp is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        with self._patched(rep), faiss_blas():
            (batches,) = self._loaders([rep])
            _, conf, _ = self._pp.inference(self._net, batches, progress=False)
        return -np.asarray(conf, dtype=np.float64).reshape(-1)


def _installed() -> tuple[bool, str]:
    """Whether an ``openood`` package is installed, and its version+commit, without importing it (cheap)."""
    import importlib.util

    spec = importlib.util.find_spec("openood")
    if spec is None or not spec.origin:
        return False, ""
    v = ""
    try:
        import importlib.metadata as md

        v = md.version("openood")
    except Exception:
        pass
    try:
        import subprocess
        from pathlib import Path

        r = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(spec.origin).resolve().parents[1],
                           capture_output=True, text=True, timeout=5)
        if r.returncode == 0 and r.stdout.strip():
            v = f"{v}+{r.stdout.strip()}"
    except Exception:
        pass
    return True, v


INSTALLED, VERSION = _installed()
if not INSTALLED:  # shown by `oodbench list` in the library column
    VERSION = "(not installed: see docs/openood.md)"


def _define(name: str):
    spec = SPECS[name]
    info = DetectorInfo(
        library="openood", library_version=VERSION, paper="", needs_fit=True, expensive=spec.get("expensive", False),
        needs_gradients=spec.get("gradients", False),
        notes=spec.get("notes", ""),
        extra={"class": f"openood.postprocessors.{spec['cls']}", "feed": spec["feed"], "APS_mode_in_yml": spec["aps"],
               "sweep": spec["sweep"], "optional_dependency": "OpenOOD (see docs/openood.md)",
               "available": INSTALLED, **({"separable_toy": spec["toy"]} if spec.get("toy") else {})})
    sub = type(f"OpenOOD_{name}", (OpenOODDetector,),
               {"pp_name": name, "consumes": frozenset({"logits", "features", "model"}), "info": info,
                "needs_spatial_maps": spec.get("spatial_maps", False),
                "__doc__": f"OpenOOD's ``{spec['cls']}`` ({name}); default args {spec['args']}."})
    sub.name = f"openood.{name}"
    return sub


#: every wrapper, by registry name (registered by :func:`register_all`), available or not
DETECTORS: dict[str, type] = {f"openood.{n}": _define(n) for n in SPECS}


def register_all(registry) -> None:
    """Register every OpenOOD wrapper in ``registry`` (also when OpenOOD is not installed)."""
    for name, cls in DETECTORS.items():
        registry.add(name, cls)
