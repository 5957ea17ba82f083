"""OpenOOD adapter: OpenOOD's own postprocessor classes, so that the numbers are OpenOOD's implementation.

OpenOOD is **optional** (not on PyPI, needs numpy < 2); see ``docs/openood.md`` for the install. This
module imports without it: every postprocessor is registered as ``openood.<name>`` either way (so
``oodbench list`` shows them, with ``available`` in their metadata), and ``fit`` raises
:class:`OpenOODMissing` with the install instructions when OpenOOD cannot be imported.

What the adapter supplies (details and measurements in ``docs/openood.md``):

* **Configs without network**: each postprocessor is constructed from an ``openood.utils.config.Config``
  built here from :data:`SPECS` (our table of OpenOOD's default hyperparameters; values are facts
  read from OpenOOD's ``configs/postprocessors/*.yml``, no file is copied or downloaded).
  ``get_postprocessor`` (which downloads missing YAML files) is never called.
* **Dataset name**: a name ``oodbench`` is registered in OpenOOD's ``num_classes_dict`` (with the
  classifier's class count) and ``normalization_dict`` (mean 0, std 1: our classifiers take [0, 1]
  pixels and normalise inside, so ODIN's perturbation is ``noise`` in pixel space, as in pytorch-ood).
* **Model contract**: :class:`LookupNet` serves *cached* logits and features to every postprocessor
  that only needs them (``forward(x, return_feature=True)``, ``forward_threshold``, ``get_fc``,
  ``fc``): the loader's ``data`` are row indices into the representation cache, so OpenOOD costs no
  extra forward pass. :class:`ContractNet` wraps the classifier for those that need the network
  (ODIN: input gradients, on 3 replicated channels for grey models; Gram: hooks; RankFeat:
  ``intermediate_forward``/``layer4``/``avgpool``).
* **CPU**: OpenOOD hard-codes ``.cuda()``. On a machine without CUDA, construction, ``setup`` and
  ``inference`` run inside :func:`cpu_patch`, which turns ``Tensor.cuda``/``Module.cuda`` into no-ops
  and rewrites ``device='cuda'`` arguments to the CPU, and restores everything on exit.
* **Scores** are OpenOOD's confidence negated (higher = more OOD).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn

from oodbench.adapters.base import DetectorInfo, LibraryDetector
from oodbench.adapters.registry import register

INSTALL = (
    "OpenOOD is not installed (it is not on PyPI and needs numpy<2). Install it in its own virtualenv:\n"
    "  python3 -m venv ood-venv && ood-venv/bin/pip install torch torchvision 'numpy<2' 'pandas<3' "
    "'opencv-python<4.12' faiss-cpu statsmodels scikit-learn scipy pyyaml json5 imgaug tqdm matplotlib tabulate "
    "diffdist Cython\n"
    "  ood-venv/bin/pip install --no-build-isolation libmr\n"
    "  git clone https://github.com/Jingkang50/OpenOOD && ood-venv/bin/pip install --no-deps -e ./OpenOOD\n"
    "  ood-venv/bin/pip install --no-deps -e <oodbench checkout> pytorch-ood==0.4.0\n"
    "(see docs/openood.md)"
)
DATASET = "oodbench"
BATCH = 200  # OpenOOD's Evaluator default


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


def version() -> str:
    try:
        import importlib.metadata as md

        v = md.version("openood")
    except Exception:
        v = ""
    commit = ""
    try:
        import subprocess
        from pathlib import Path

        root = Path(_openood()["pp"].__file__).resolve().parents[2]
        r = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                           timeout=5)
        commit = r.stdout.strip()
    except Exception:
        pass
    return f"{v}+{commit}" if commit else v


# --- CPU patch ------------------------------------------------------------------------------------------
class _NoCuda(torch.overrides.TorchFunctionMode):
    """Rewrites ``device='cuda…'`` keyword arguments and ``.to('cuda')`` to the CPU."""

    @staticmethod
    def _fix(v):
        if isinstance(v, str) and v.startswith("cuda"):
            return "cpu"
        if isinstance(v, torch.device) and v.type == "cuda":
            return torch.device("cpu")
        return v

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "device" in kwargs:
            kwargs["device"] = self._fix(kwargs["device"])
        if func in (torch.Tensor.to,):
            args = tuple(self._fix(a) for a in args)
        return func(*args, **kwargs)


@contextlib.contextmanager
def cpu_patch(active: bool = True):
    """Make OpenOOD's hard-coded ``.cuda()`` calls no-ops on a machine without CUDA (restored on exit)."""
    if not active:
        yield
        return
    saved = (torch.Tensor.cuda, nn.Module.cuda)
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    try:
        with _NoCuda():
            yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = saved


# --- networks ---------------------------------------------------------------------------------------------
class LookupNet(nn.Module):
    """OpenOOD's model contract served from cached representations: ``data`` are row indices into
    ``logits``/``features`` loaded with :meth:`load`. ``fc`` is a copy of the classifier's last layer."""

    def __init__(self, fc: nn.Linear, device="cpu"):
        super().__init__()
        self.fc = copy.deepcopy(fc).float().to(device)
        self.dev = torch.device(device)
        self.logits = self.features = None

    def load(self, reps):
        self.logits = torch.cat([torch.from_numpy(np.asarray(r.logits, np.float32)) for r in reps]).to(self.dev)
        self.features = torch.cat([torch.from_numpy(np.asarray(r.features, np.float32)) for r in reps]).to(self.dev)

    def _idx(self, x):
        return x.reshape(-1).long().to(self.dev)

    def forward(self, x, return_feature=False, return_feature_list=False):
        i = self._idx(x)
        logits, feats = self.logits[i], self.features[i]  # advanced indexing copies: in-place edits are safe
        if return_feature_list:
            raise NotImplementedError("LookupNet serves pooled features only")
        return (logits, feats) if return_feature else logits

    def forward_threshold(self, x, threshold):
        return self.fc(self.features[self._idx(x)].clip(max=threshold))

    def get_fc(self):
        return self.fc.weight.detach().cpu().numpy(), self.fc.bias.detach().cpu().numpy()

    def get_fc_layer(self):
        return self.fc


class ContractNet(nn.Module):
    """OpenOOD's model contract around one of our classifiers (inputs in [0, 1]). With ``grey3`` the
    input has 3 replicated channels (ODIN indexes channels 0-2) and is averaged back to one."""

    def __init__(self, model, grey3: bool = False):
        super().__init__()
        self.model = model
        self.grey3 = grey3
        self.layer4 = nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    @property
    def fc(self):
        return self.model.fc

    def _x(self, x):
        return x.mean(dim=1, keepdim=True) if self.grey3 else x

    def forward(self, x, return_feature=False, return_feature_list=False):
        from oodbench.adapters.pytorch_ood import _layer_outputs, feature_layers

        x = self._x(x)
        if return_feature_list:
            return _layer_outputs(self.model, x, feature_layers(self.model))
        logits, feats = self.model.forward_features(x)
        return (logits, feats) if return_feature else logits

    def forward_threshold(self, x, threshold):
        return self.model.fc(self.model.pool(self.model.feature_maps(self._x(x))).clip(max=threshold))

    def intermediate_forward(self, x, layer_index):
        # RankFeat asks for block 4 and block 3 (then applies layer4); ours have one "last block"
        return self.model.feature_maps(self._x(x))

    def get_fc(self):
        return self.fc.weight.detach().cpu().numpy(), self.fc.bias.detach().cpu().numpy()

    def get_fc_layer(self):
        return self.model.fc


# --- datasets -------------------------------------------------------------------------------------------------
class _DictSet(torch.utils.data.Dataset):
    def __init__(self, data, labels):
        self.data, self.labels = data, torch.as_tensor(np.asarray(labels, np.int64))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"data": self.data[i], "label": self.labels[i]}


def _loader(data, labels):
    return torch.utils.data.DataLoader(_DictSet(data, labels), batch_size=BATCH, shuffle=False, num_workers=0)


# --- our table of OpenOOD defaults (facts from configs/postprocessors/<name>.yml at OpenOOD 3c35632) -----------
#: name -> class in openood.postprocessors, feed ("lookup": cached logits/features, "net": the classifier,
#: "ash"/"scale": the cached features inside OpenOOD's ASHNet/ScaleNet), args, sweep (APS grid), APS flag
SPECS = {
    "msp": dict(cls="BasePostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "temp_scaling": dict(cls="TemperatureScalingPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "ebo": dict(cls="EBOPostprocessor", feed="lookup", args={"temperature": 1}, sweep={"temperature_list": [1]},
                aps=True),
    "mls": dict(cls="MaxLogitPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "odin": dict(expensive=True, cls="ODINPostprocessor", feed="net", args={"temperature": 1000, "noise": 0.0014},
                 sweep={"temperature": [1, 10, 100, 1000], "noise": [0.0014, 0.0028]}, aps=True, gradients=True),
    "gen": dict(cls="GENPostprocessor", feed="lookup", args={"gamma": 0.1, "M": 100},
                sweep={"gamma_list": [0.01, 0.1, 0.5, 1, 2, 5, 10], "M_list": [10, 50, 100, 200, 500, 1000]},
                aps=True),
    "klm": dict(expensive=True, cls="KLMatchingPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "mds": dict(cls="MDSPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "rmds": dict(cls="RMDSPostprocessor", feed="lookup", args={}, sweep={}, aps=False),
    "knn": dict(cls="KNNPostprocessor", feed="lookup", args={"K": 50}, sweep={"K_list": [50, 100, 200, 500, 1000]},
                aps=True),
    "vim": dict(cls="VIMPostprocessor", feed="lookup", args={"dim": 256}, sweep={"dim_list": [256, 1000]}, aps=True,
                notes="dim must be < D: 256 if D > 256 else D // 2 (all-NaN scores otherwise)"),
    "react": dict(cls="ReactPostprocessor", feed="lookup", args={"percentile": 90},
                  sweep={"percentile_list": [85, 90, 95, 99]}, aps=True),
    "ash": dict(cls="ASHPostprocessor", feed="ash", args={"percentile": 90},
                sweep={"percentile_list": [65, 70, 75, 80, 85, 90, 95]}, aps=True,
                notes="through openood.networks.ash_net.ASHNet (ash_b on pooled features)"),
    "scale": dict(cls="ScalePostprocessor", feed="scale", args={"percentile": 85},
                  sweep={"percentile_list": [65, 70, 75, 80, 85, 90, 95]}, aps=True,
                  notes="through openood.networks.scale_net.ScaleNet (on pooled features)",
                  toy="percentile 85 keeps 2 of 16 toy features: flat OOD features get a larger scale (e^8) "
                      "than the 4-hot ID features (e^2), so the energy ranks them as ID"),
    "dice": dict(cls="DICEPostprocessor", feed="lookup", args={"p": 90}, sweep={"p_list": [90]}, aps=False,
                 toy="p=90 keeps 6 of the toy head's 64 weights, so some classes lose all their evidence"),
    "she": dict(cls="SHEPostprocessor", feed="lookup", args={"metric": "inner_product"}, sweep={}, aps=False),
    "gradnorm": dict(expensive=True, cls="GradNormPostprocessor", feed="lookup", args={}, sweep={}, aps=False, gradients=True,
                     notes="gradient of the fc layer only, one sample at a time"),
    "rankfeat": dict(expensive=True, cls="RankFeatPostprocessor", feed="net", args={"accelerate": False, "temperature": 1},
                     sweep={}, aps=False, notes="block 3 = block 4 = model.feature_maps, layer4 = identity",
                     toy="the toy's maps are 1x1: removing the rank-1 part leaves zeros"),
    "gram": dict(expensive=True, cls="GRAMPostprocessor", feed="net", args={"powers": [1, 2, 3, 4, 5]},
                 sweep={"powers_list": [[1, 2, 3, 4, 5]]}, aps=True,
                 notes="hooks every nn.Conv2d / nn.ReLU module (functional relu is invisible)"),
    "nnguide": dict(cls="NNGuidePostprocessor", feed="lookup", args={"alpha": 0.01, "K": 100},
                    sweep={"K_list": [100], "alpha_list": [0.01]}, aps=False,
                    notes="bank = the first loader batches covering alpha*N samples (batch-size dependent)"),
    "fdbd": dict(cls="fDBDPostprocessor", feed="lookup", args={"distance_as_normalizer": True},
                 sweep={"distance_as_normalizer_list": [True, False]}, aps=True),
    "nci": dict(cls="NCIPostprocessor", feed="lookup", args={"alpha": 0.0001},
                sweep={"alpha_list": [0.0001, 0.001, 0.01, 0.1]}, aps=True),
    "openmax": dict(expensive=True, cls="OpenMax", feed="lookup", args={}, sweep={}, aps=False,
                    toy="Weibull tails fitted on 60 samples per class of a 4-class toy"),
    "relation": dict(cls="RelationPostprocessor", feed="lookup", args={"pow": 1}, sweep={"pow_list": [1, 2, 4, 6, 8]},
                     aps=True),
    "vra": dict(cls="VRAPostprocessor", feed="lookup", args={"percentile_high": 90, "percentile_low": 10},
                sweep={"percentile_high_list": [85, 90, 95, 99], "percentile_low_list": [1, 5, 10, 15]}, aps=True),
}


def vim_dim(d_features: int) -> int:
    return 256 if d_features > 256 else max(1, d_features // 2)


class OpenOODDetector(LibraryDetector):
    """Base of the OpenOOD wrappers; ``pp_name`` is the Evaluator registry name."""

    #: per-set sample cap on CPU for postprocessors marked expensive (the runner's seeded subsample)
    CPU_SUBSAMPLE = 2000

    def subsample_size(self, device):
        if self.info.expensive and not str(device).startswith("cuda"):
            return self.CPU_SUBSAMPLE
        return None

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
                out.append(_loader(idx, r.labels))
                off += len(r)
            return out
        return [_loader(self._inputs(r), r.labels) for r in reps]

    # --- the contract ---------------------------------------------------------------------------------
    def fit(self, fit, cal=None):
        cal = cal if cal is not None else fit
        with self._patched(fit):
            self._pp = self._construct(fit)
            self._net = self._net_for(fit)
            train, val = self._loaders([fit, cal])
            self._pp.setup(self._net, {"train": train, "val": val, "test": val}, {})
        return self

    def score(self, rep) -> np.ndarray:
        if self._pp is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        with self._patched(rep):
            (loader,) = self._loaders([rep])
            _, conf, _ = self._pp.inference(self._net, loader, progress=False)
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
                "__doc__": f"OpenOOD's ``{spec['cls']}`` ({name}); default args {spec['args']}."})
    return register(f"openood.{name}")(sub)


for _n in SPECS:
    _define(_n)
