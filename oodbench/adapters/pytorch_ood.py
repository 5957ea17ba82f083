"""pytorch-ood 0.4.0 adapter: the library's own detector classes, fed from the representation cache.

pytorch-ood types its detectors by what they consume (``LogitsDetector.predict_logits``,
``FeaturesDetector.fit_features`` / ``predict_features``, ``FeatureMapsDetector.predict_feature_maps``,
``StructuredDetector.fit_structured``, ``GradientDetector``), which maps onto our ``consumes``. Each
wrapper has a *kind* saying how it is fed:

* ``logits`` / ``features``: the cached logits / penultimate features (no forward pass);
* ``maps``: the 4-D activations the classifier head pools (``model.feature_maps``) and the head
  (``model.head``). When those maps are 1×1 (LeNet: the 500 ``fc1`` units) they *are* the cached
  features, so they are served from the cache; otherwise they are computed in batches;
* ``taps``: the cached per-layer statistics (MultiMahalanobis takes each layer's spatial mean);
* ``model``: the detector runs the classifier on raw inputs itself (gradients, hooks).

Scores are pytorch-ood's outlier scores (already higher = more OOD). Hyperparameters are the
library's constructor defaults, read from its signatures and recorded with the results; where the
library has no default (DICE ``p``, ViM ``d``) the value we chose is in :data:`POLICY_DEFAULTS`.
Pass keyword arguments to override them. Registered as ``pytorch_ood.<method>``; the coverage table
(what is wired, what is not and why) is ``docs/pytorch_ood_coverage.md``.
"""
from __future__ import annotations

import copy
import inspect
import weakref
from typing import ClassVar

import numpy as np
import pytorch_ood
import torch
from pytorch_ood import detector as pod

from oodbench.adapters.base import DetectorInfo, LibraryDetector
from oodbench.adapters.common import feature_layers, layer_outputs, vim_dim

VERSION = pytorch_ood.__version__
#: constructor arguments that are the network or parts of it (supplied by the adapter, not hyperparameters)
_MODEL_ARGS = ("model", "encoder", "backbone", "head", "w", "b", "criterion", "weights", "layers",
               "feature_layers", "num_classes", "detector", "param_filter", "feature_reduce", "device")

#: values we chose where pytorch-ood 0.4.0 has no default (recorded with the results)
POLICY_DEFAULTS = {
    # DICE paper default sparsity and OpenOOD's configs/postprocessors/dice.yml (p: 90 percent)
    "DICE": {"p": 0.9},
    # ViM: OpenOOD's default dim 256 (configs/postprocessors/vim.yml) when the feature size allows it, else D // 2
    "ViM": {"d": "auto"},
}
BATCH = 256
#: every wrapper this module defines, by registry name (registered by :func:`register_all`)
DETECTORS: dict[str, type] = {}


def _paper(cls) -> str:
    info = getattr(cls, "info", None)
    p = getattr(info, "paper", None)
    return f"{p.title} ({p.venue} {p.year}) {p.url}" if p else ""


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _cpu_fc(model) -> torch.nn.Linear:
    """A CPU copy of the classifier's final ``nn.Linear`` (cached representations live on the CPU)."""
    fc = copy.deepcopy(model.fc).cpu().float()
    for p in fc.parameters():
        p.requires_grad_(False)
    return fc


_NDIM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> ndims


def layer_ndims(rep) -> list[int]:
    """ndim of each :func:`feature_layers` output (one probe sample through forward hooks; cached per model)."""
    key = rep.model
    if key not in _NDIM:
        with torch.no_grad():
            _, outs = layer_outputs(rep.model, next(iter(rep.inputs(batch_size=1))), feature_layers(rep.model))
        _NDIM[key] = [o.ndim for o in outs]
    return _NDIM[key]


def conv_layers(rep) -> list[str]:
    """The :func:`feature_layers` with 4-D outputs (Gram: a 2-D layer of width D would give D x D Gram
    matrices per sample; OpenOOD's Gram hooks only Conv2d/ReLU modules)."""
    return [n for n, d in zip(feature_layers(rep.model), layer_ndims(rep)) if d == 4]


_MAP_PROBE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> bool


def maps_are_features(rep) -> bool:
    """True when ``model.feature_maps`` is (N, D, 1, 1), i.e. the cached penultimate features reshaped."""
    model = rep.model
    key = model
    if key not in _MAP_PROBE:
        x = next(iter(rep.inputs(batch_size=1)))
        with torch.no_grad():
            m = model.feature_maps(x)
        _MAP_PROBE[key] = tuple(m.shape[2:]) == (1, 1)
    return _MAP_PROBE[key]


def feature_maps(rep):
    """Yield (B, C, H, W) feature maps of ``rep`` on the model's device, in order, contiguous (a
    channels-last network such as ``airbench`` gives strided maps, on which pytorch-ood's SCALE ``view``
    fails). From the cached penultimate features when the maps are 1x1, else from the harness's cached
    maps (``rep.feature_maps``: one forward pass per dataset for ReAct, ASH, SCALE, VRA and RankFeat
    together), else from the network."""
    if maps_are_features(rep):
        f = _t(rep.features)
        for i in range(0, len(f), BATCH):
            yield f[i:i + BATCH, :, None, None].to(rep.device)
    elif callable(getattr(rep, "feature_maps", None)):
        for maps in rep.feature_maps(BATCH):
            yield maps.contiguous()
    else:
        for x in rep.inputs(batch_size=BATCH):
            with torch.no_grad():  # never yield inside it: the caller would run with gradients off
                maps = rep.model.feature_maps(x).contiguous()
            yield maps


class PytorchOODDetector(LibraryDetector):
    """Base of every pytorch-ood wrapper. ``target`` is the pytorch-ood class name, ``kind`` how it is
    fed (see the module docstring), ``fit_on`` which ID split it fits on (``fit`` or ``cal``)."""

    target: ClassVar[str] = ""
    kind: ClassVar[str] = "logits"
    fit_on: ClassVar[str] = "fit"

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self._det = None

    @classmethod
    def library_class(cls):
        return getattr(pod, cls.target)

    @classmethod
    def defaults(cls) -> dict:
        sig = inspect.signature(cls.library_class().__init__)
        out = {p.name: p.default for p in sig.parameters.values()
               if p.name not in ("self", *_MODEL_ARGS) and p.default is not inspect.Parameter.empty
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        out.update(POLICY_DEFAULTS.get(cls.target, {}))
        return out

    @classmethod
    def hyperparameter_space(cls) -> dict:
        return dict(getattr(cls.library_class(), "hyperparameter_space", {}) or {})

    # --- construction -------------------------------------------------------------------------------
    def _network_args(self, rep) -> dict:
        """Constructor arguments that are (parts of) the network."""
        model = rep.model
        sig = inspect.signature(self.library_class().__init__).parameters
        first = [p for p in sig if p != "self"][0]
        args = {first: model if self.kind == "model" else None}
        if "head" in sig:
            args["head"] = model.head if self.kind == "maps" else _cpu_fc(model)
        if "backbone" in sig:
            args["backbone"] = None
        if "w" in sig and "b" in sig:
            fc = _cpu_fc(model)
            args["w"], args["b"] = fc.weight.data, fc.bias.data
        return args

    def _build(self, rep):
        params = self.get_params()
        if params.get("d") == "auto":
            params["d"] = vim_dim(rep.features.shape[1])
        return self.library_class()(**self._network_args(rep), **params)

    # --- fit / score -------------------------------------------------------------------------------
    def fit(self, fit, cal=None):
        rep = cal if (self.fit_on == "cal" and cal is not None) else fit
        self._det = self._build(rep)
        if not getattr(self.library_class(), "requires_fit", False):
            return self
        y = _t(rep.labels).long()
        if self.kind == "logits":
            self._det.fit_logits(_t(rep.logits), y)
        elif self.kind == "features":
            self._det.fit_features(_t(rep.features), y)
        elif self.kind == "maps":
            maps = torch.cat([m.cpu() for m in feature_maps(rep)])
            self._det.fit_feature_maps(maps, y)
        else:
            self._fit_model(rep, y)
        return self

    def _fit_model(self, rep, y):  # pragma: no cover - overridden where needed
        raise NotImplementedError(f"{self.name}: fitting for kind {self.kind}")

    def score(self, rep) -> np.ndarray:
        if self._det is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        if self.kind == "logits":
            with torch.no_grad():
                out = self._det.predict_logits(_t(rep.logits))
        elif self.kind == "features":
            with torch.no_grad():
                out = self._det.predict_features(_t(rep.features))
        elif self.kind == "maps":
            with torch.no_grad():
                out = torch.cat([self._det.predict_feature_maps(m).detach().cpu() for m in feature_maps(rep)])
        else:
            out = self._score_model(rep)
        return out.detach().cpu().double().numpy().reshape(-1)

    def _score_model(self, rep) -> torch.Tensor:
        rep.model.eval()
        self._det.model = rep.model
        return torch.cat([self._det.predict(x).detach().cpu() for x in rep.inputs(batch_size=BATCH)])


def _define(name: str, target: str, kind: str, gradients: bool = False, notes: str = "", base=PytorchOODDetector,
            fit_on: str = "fit", toy: str = "", expensive: bool = False, needs_spatial_maps: bool = False):
    cls = getattr(pod, target)
    consumes = {"logits": {"logits"}, "features": {"features"}, "maps": {"model", "features"},
                "taps": {"taps"}, "model": {"model"}}[kind]
    extra = {"class": f"pytorch_ood.detector.{target}", "kind": kind, "fit_on": fit_on,
             "ai_coded": bool(getattr(getattr(cls, "info", None), "ai_coded", False)),
             "hyperparameter_space": dict(getattr(cls, "hyperparameter_space", {}) or {})}
    if target in POLICY_DEFAULTS:
        extra["policy_defaults"] = POLICY_DEFAULTS[target]
    if toy:  # why it cannot separate the contract test's toy problem (tests/test_adapters.py reads this)
        extra["separable_toy"] = toy
    info = DetectorInfo(library="pytorch-ood", library_version=VERSION, paper=_paper(cls),
                        needs_fit=bool(getattr(cls, "requires_fit", False)), needs_gradients=gradients,
                        expensive=expensive, notes=notes, extra=extra)
    sub = type(f"PytorchOOD_{target}", (base,),
               {"target": target, "kind": kind, "fit_on": fit_on, "consumes": frozenset(consumes), "info": info,
                "needs_spatial_maps": needs_spatial_maps, "__doc__": f"pytorch-ood's ``{target}`` (fed from {kind})."})
    sub.name = f"pytorch_ood.{name}"
    DETECTORS[sub.name] = sub
    return sub


# --- detectors that run the network themselves ------------------------------------------------------
class _FitFromFeatures(PytorchOODDetector):
    """Fitted on cached features (``fit_features``), scored on raw inputs (MahalanobisODIN)."""

    def _network_args(self, rep):
        return {"encoder": rep.model.features}

    def fit(self, fit, cal=None):
        self._det = self._build(fit)
        self._det.fit_features(_t(fit.features), _t(fit.labels).long())
        return self

    def _score_model(self, rep):
        rep.model.eval()
        out = [self._det.predict(x).detach().cpu() for x in rep.inputs(batch_size=BATCH)]
        rep.model.zero_grad(set_to_none=True)  # MahalanobisODIN calls backward(), leaving parameter grads
        return torch.cat(out)


class _NACUE(PytorchOODDetector):
    """NAC-UE on the model's feature layers (``tap_layers`` minus ``fc``); fitted on (x, y) batches."""

    def _network_args(self, rep):
        mods = dict(rep.model.named_modules())
        return {"model": rep.model, "layers": [mods[n] for n in feature_layers(rep.model)]}

    def _fit_model(self, rep, y):
        # inputs require grad so that the hooked activations do even when the parameters do not
        batches = [(x.requires_grad_(True), y[i * BATCH:(i + 1) * BATCH])
                   for i, x in enumerate(rep.inputs(batch_size=BATCH))]
        self._det.fit(batches)

    def _score_model(self, rep):
        rep.model.eval()
        return torch.cat([self._det.predict(x.requires_grad_(True)).detach().cpu()
                          for x in rep.inputs(batch_size=BATCH)])


class _HookedGram(pod.Gram):
    """pytorch-ood's Gram with its layer walk replaced by forward hooks on named layers, so that any
    classifier works (the library expects ``feature_layers`` it can chain as modules). The Gram
    statistics, deviations and normalisation are the library's."""

    def __init__(self, model, layers, num_classes, num_poles_list=None):
        super().__init__(head=model, feature_layers=list(layers), num_classes=num_classes,
                         num_poles_list=num_poles_list)
        self._model = model
        self._layer_names = list(layers)

    @torch.no_grad()
    def _create_feature_list(self, data):
        return layer_outputs(self._model, data, self._layer_names)

    def predict(self, x):
        logits, fl = self._create_feature_list(x)
        return self._score(logits, fl)


class _Gram(PytorchOODDetector):
    @classmethod
    def library_class(cls):
        return _HookedGram

    @classmethod
    def defaults(cls):
        return {"num_poles_list": None, "seed": 0, "layers": "4-D feature layers"}

    def _build(self, rep):
        p = self.get_params()
        return _HookedGram(rep.model, conv_layers(rep), int(rep.logits.shape[1]), p["num_poles_list"])

    def fit(self, fit, cal=None):
        self._det = self._build(fit)
        y = _t(fit.labels).long()
        batches = [(x, y[i * BATCH:(i + 1) * BATCH]) for i, x in enumerate(fit.inputs(batch_size=BATCH))]
        # Gram splits each class 90/10 with an unseeded torch.randperm: seed it for reproducible results
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.get_params()["seed"]))
            self._det.to(fit.device).fit(batches)
        return self

    def _score_model(self, rep):
        rep.model.eval()
        return torch.cat([self._det.predict(x).detach().cpu() for x in rep.inputs(batch_size=BATCH)])


class _MultiMahalanobis(PytorchOODDetector):
    """MultiMahalanobis on the cached per-layer statistics: the spatial mean of each 4-D layer output
    (the second half of a tap) or a 2-D layer's values, for the model's feature layers."""

    def _network_args(self, rep):
        return {"model": [torch.nn.Identity()]}  # the module list is only used by predict(x), not here

    @staticmethod
    def _layer_means(rep) -> list[torch.Tensor]:
        taps = rep.taps()
        out = []
        for n, nd in zip(feature_layers(rep.model), layer_ndims(rep)):
            t = taps[n]
            out.append(_t(t[:, t.shape[1] // 2:] if nd == 4 else t).float())
        return out

    def fit(self, fit, cal=None):
        zs = self._layer_means(fit)
        self._det = self.library_class()(model=[torch.nn.Identity()] * len(zs), **self.get_params())
        self._det.fit_structured(zs, _t(fit.labels).long())
        return self

    def score(self, rep):
        if self._det is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        zs = self._layer_means(rep)
        # predict_structured builds a B x B matrix and keeps its diagonal (mmahalanobis.py
        # _calc_gaussian_scores): quadratic in B, so feed it in chunks (same scores)
        out = torch.cat([self._det.predict_structured([z[i:i + BATCH] for z in zs]).detach().cpu()
                         for i in range(0, len(zs[0]), BATCH)])
        return out.double().numpy()


class _WeightedEBO(PytorchOODDetector):
    """WeightedEBO with uniform class weights (the VOS weights come from VOS training; without them the
    weighted energy equals the energy score)."""

    def _network_args(self, rep):
        return {"model": None, "weights": torch.ones(rep.logits.shape[1])}


# --- the wrappers with nothing to add to pytorch-ood's class: (registry name, class, what feeds it) ----------
PLAIN = (
    ("msp", "MaxSoftmax", "logits"),
    ("energy", "EnergyBased", "logits"),
    ("maxlogit", "MaxLogit", "logits"),
    ("entropy", "Entropy", "logits"),
    ("gen", "GEN", "logits"),
    ("rmd", "RMD", "features"),
    ("knn", "KNN", "features"),
    ("she", "SHE", "features"),
    ("gmm", "GMM", "features"),
    ("pnml", "PNML", "features"),
    ("nnguide", "NNGuide", "features"),
    ("fdbd", "fDBD", "features"),
    ("nci", "NCI", "features"),
    ("lts", "LTS", "features"),
    ("react", "ReAct", "maps"),
    ("ash", "ASH", "maps"),
    ("scale", "SCALE", "maps"),
    ("vra", "VRA", "maps"),
)
for _name, _target, _kind in PLAIN:
    _define(_name, _target, _kind)
# --- with options: logits --------------------------------------------------------------------------------------------
_define("temperature_scaling", "TemperatureScaling", "logits", fit_on="cal",
        notes="temperature fitted by LBFGS on the held-out ID cal split")
_define("klmatching", "KLMatching", "logits", fit_on="cal",
        notes="class templates from the held-out ID cal split (the library says: validation data)")
_define("openmax", "OpenMax", "logits", expensive=True,
        toy="Weibull tails fitted on 60 samples per class of a 4-class toy: too few for EVT")
_define("weighted_ebo", "WeightedEBO", "logits", base=_WeightedEBO,
        notes="uniform class weights: without VOS training it reduces to the energy score")
# --- pooled features ------------------------------------------------------------------------------------
_define("mahalanobis", "Mahalanobis", "features",
        notes="0.4.0 sums (does not average) the class scatter before inverting: distances scale "
        "by 1/N, ranks are unchanged")
_define("vim", "ViM", "features", notes="d: no library default; 256 if D > 256 else D // 2 (OpenOOD's default)")
_define("dice", "DICE", "features", notes="p: no library default; 0.9 (DICE paper, OpenOOD dice.yml)",
        toy="p=0.9 keeps 6 of the toy head's 64 weights, so some classes lose all their evidence")
# --- feature maps + head ----------------------------------------------------------------------------------
_define("rankfeat", "RankFeat", "maps", needs_spatial_maps=True,
        notes="on 1x1 maps (LeNet) the rank-1 part is the whole map: the head sees zeros",
        toy="the toy's maps are 1x1: removing the rank-1 part leaves zeros")
# --- several layers -------------------------------------------------------------------------------------
_define("multi_mahalanobis", "MultiMahalanobis", "taps", base=_MultiMahalanobis, expensive=True,
        notes="layers: tap_layers minus fc, spatial means from the representation cache")
_define("gram", "Gram", "model", base=_Gram, expensive=True,
        notes="layers: the 4-D tap_layers (LeNet: conv1, conv2) through forward hooks; "
        "class split seeded (seed=0)")
# --- gradients ---------------------------------------------------------------------------------------------
_define("odin", "ODIN", "model", gradients=True,
        notes="inputs in [0, 1] pixel space (the model normalises inside), so norm_std=None is the paper's eps")
_define("mahalanobis_odin", "MahalanobisODIN", "model", gradients=True, base=_FitFromFeatures,
        expensive=True,
        notes="fitted on cached features, scored with input perturbation")
_define("gradnorm", "GradNorm", "model", gradients=True,
        notes="per-sample gradients of all parameters (torch.func.vmap)", expensive=True)
_define(
    "grad_uncertainty", "GradUncertainty", "model", gradients=True,
    expensive=True,
    notes="library bug: F.binary_cross_entropy's backward divides by max(p(1-p), 1e-12), so for confident "
        "predictions the gradient is far below the documented C*p-1 and the score's sign flips",
    toy="confident toy predictions hit the BCE backward clamp (graduncertainty.py:155): AUROC ~0")
_define("nacue", "NACUE", "model", gradients=True, base=_NACUE, expensive=True,
        notes="layers: tap_layers minus fc")


def register_all(registry) -> None:
    """Register every pytorch-ood wrapper in ``registry``."""
    for name, cls in DETECTORS.items():
        registry.add(name, cls)
