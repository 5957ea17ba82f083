"""A user's own classifier: a TorchScript file, a ``module:function`` factory (+ a state dict), or an
``nn.Module`` handed to :func:`oodbench.evaluate`, wrapped in the harness's classifier contract.

:class:`UserClassifier` takes float images in [0, 1] (N, C, H, W), applies ``mean`` / ``std`` when given, and
offers ``forward_features`` (logits, penultimate features), ``tap_layers``, ``feature_maps`` / ``head`` / ``fc``
(when the last linear layer maps the features to the logits) — so detectors that consume logits, features,
taps or the model itself all run. What is taken from the network, by module name:

* features: the input of the last ``nn.Linear`` (default), or the output of the module ``features`` names
  (4-D outputs are average-pooled over space);
* taps: the outputs of the modules ``taps`` names; default: the top-level modules with parameters, except
  the last linear layer. They appear as ``taps.<name>`` layers.

An ``nn.Module`` is read through forward hooks. A TorchScript module cannot take hooks, so its top-level
graph is extended to return the inputs and outputs of its top-level modules: with TorchScript, ``features``
and ``taps`` name top-level modules or members of top-level ``nn.Sequential`` containers. The sha256 of the
checkpoint file (the TorchScript file or the weights; of the parameters otherwise) is part of the model key,
hence of every feature and score cache key.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import sys
import warnings

import torch
import torch.nn as nn

from oodbench.benchmark.data.user_images import UserInputError
from oodbench.benchmark.models.architectures import Normalize
from oodbench.detectors.state import state_hash

_OBJECTS: dict[str, nn.Module] = {}


class ModelError(UserInputError):
    """A user's classifier cannot be loaded or does not behave as a classifier of the ID images."""


def register(module: nn.Module) -> str:
    """Keep an in-memory ``nn.Module`` (or ScriptModule) under its parameter hash; usable as ``{"object": key}``."""
    if not isinstance(module, nn.Module):
        raise ModelError(f"model: expected a torch nn.Module, a TorchScript file or a 'module:function' factory, "
                         f"got {type(module).__name__}")
    key = type(module).__name__ + "-" + state_hash(module)[:16]
    _OBJECTS[key] = module
    return key


def _file_sha(path) -> str:
    from oodbench.benchmark.data.datasets import file_digest

    return file_digest(path, "sha256")


def load_net(spec: dict) -> tuple[nn.Module, str, str]:
    """``(network, checkpoint sha256, source)`` of a model spec (``torchscript``, ``factory`` or ``object``)."""
    if "object" in spec:
        net = _OBJECTS[spec["object"]]
        return net, state_hash(net), f"object {type(net).__name__}"
    if "torchscript" in spec:
        p = spec["torchscript"]
        try:
            with warnings.catch_warnings():  # torch.jit is deprecated in new torch versions but still works
                warnings.simplefilter("ignore", FutureWarning)
                net = torch.jit.load(p, map_location="cpu")
        except Exception as e:  # not a TorchScript archive, truncated, saved by torch.save
            raise ModelError(f"model.torchscript: {p} cannot be loaded as TorchScript ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); save it with torch.jit.save") from e
        return net, _file_sha(p), f"torchscript {p}"
    mod_name, fn_name = spec["factory"].split(":")
    base = spec.get("base")
    if base and base not in sys.path:
        sys.path.insert(0, base)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"model.factory: cannot import {spec['factory']} ({type(e).__name__}: {e})") from e
    net = fn()
    if not isinstance(net, nn.Module):
        raise ModelError(f"model.factory: {spec['factory']}() returned {type(net).__name__}, expected an nn.Module")
    if "weights" not in spec:
        return net, state_hash(net), f"factory {spec['factory']}"
    try:
        state = torch.load(spec["weights"], map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict(state)
    except Exception as e:
        raise ModelError(f"model.weights: {spec['weights']} does not load into {spec['factory']}() "
                         f"({type(e).__name__}: {str(e).splitlines()[0]})") from e
    return net, _file_sha(spec["weights"]), f"factory {spec['factory']} + weights {spec['weights']}"


def _is_script(net) -> bool:
    return isinstance(net, torch.jit.ScriptModule)


def _kind(module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


class _Hooks:
    """Inputs / outputs of named modules of an ``nn.Module``, through forward hooks."""

    def __init__(self, net: nn.Module, wanted: list[tuple[str, str]]):
        modules = dict(net.named_modules())
        missing = sorted({n for n, _ in wanted if n not in modules})
        if missing:
            raise ModelError(f"model: no module named {missing}; modules: {[n for n in modules if n][:40]}")
        self.net, self.modules, self.wanted = net, modules, wanted

    def __call__(self, x):
        got: dict = {}

        def hook(name):
            return lambda m, i, o: got.update({(name, "in"): i[0] if i else None, (name, "out"): o})

        hs = [self.modules[n].register_forward_hook(hook(n)) for n in {n for n, _ in self.wanted}]
        try:
            out = self.net(x)
        finally:
            for h in hs:
                h.remove()
        return out, {w: got.get(w) for w in self.wanted}


class _Graph:
    """Inputs / outputs of modules of a TorchScript module, which takes no hooks: its forward graph, copied,
    also returns the inputs and outputs of its top-level modules; a module inside top-level ``nn.Sequential``
    containers (e.g. ``head.3``) is reached by running the container's earlier members on its input."""

    def __init__(self, net, wanted: list[tuple[str, str]]):
        g = net.forward.graph.copy()
        me = next(g.inputs())
        calls = {}
        for node in g.nodes():
            if node.kind() == "prim::CallMethod" and node.s("name") == "forward":
                owner = node.inputsAt(0).node()
                if owner.kind() == "prim::GetAttr" and owner.inputsAt(0).debugName() == me.debugName():
                    calls[owner.s("name")] = (node.inputsAt(1), node.output())  # the last call wins
        self.top = sorted({(n.split(".")[0], "in" if "." in n else io_) for n, io_ in wanted})
        missing = sorted({n for n, _ in self.top if n not in calls})
        if missing:
            raise ModelError(f"model: the TorchScript forward calls no top-level module {missing}; TorchScript "
                             f"modules expose their top-level modules (and members of top-level nn.Sequential "
                             f"containers): {sorted(calls)}. Name them in model.features / model.taps, or give a "
                             "factory")
        self.modules = dict(net.named_modules())
        for n, _ in wanted:  # a nested module: every container on the way must be an nn.Sequential
            parts = n.split(".")
            for i in range(1, len(parts)):
                if _kind(self.modules[".".join(parts[:i])]) != "Sequential":
                    raise ModelError(f"model: {n!r} is inside {'.'.join(parts[:i])!r}, which is not an nn.Sequential; "
                                     "in a TorchScript module name a top-level module or a member of a top-level "
                                     "nn.Sequential (or give a factory)")
        ret = g.return_node()
        values = [ret.inputsAt(0)] + [calls[n][0 if io_ == "in" else 1] for n, io_ in self.top]
        try:
            tup = g.create("prim::TupleConstruct", values)
            tup.insertBefore(ret)
            tup.output().setType(torch._C.TupleType([v.type() for v in values]))
            ret.replaceInput(0, tup.output())
            self.fn = torch._C._create_function_from_graph("oodbench_forward_taps", g)
        except Exception as e:  # torch's graph API is internal: say so rather than fail obscurely
            raise ModelError(f"model: cannot extend this TorchScript graph to return features and taps "
                             f"({type(e).__name__}: {e}); give a factory + weights instead") from e
        self.net, self.wanted = net, wanted

    def _nested(self, name: str, io_: str, t):
        parts = name.split(".")
        for i in range(1, len(parts)):
            container = self.modules[".".join(parts[:i])]
            for child_name, child in container.named_children():
                if child_name == parts[i]:
                    break
                t = child(t)
        return t if io_ == "in" else self.modules[name](t)

    def __call__(self, x):
        out = self.fn(self.net._c, x)
        top = dict(zip(self.top, out[1:]))
        got = {(n, io_): top[(n, io_)] if "." not in n else self._nested(n, io_, top[(n.split(".")[0], "in")])
               for n, io_ in self.wanted}
        return out[0], got


def _pooled(t: torch.Tensor) -> torch.Tensor:
    return t.mean(dim=(2, 3)) if t.ndim == 4 else t.flatten(1)


class UserClassifier(nn.Module):
    """A user's network in the harness's classifier contract (see the module docstring)."""

    def __init__(self, net: nn.Module, spec: dict):
        super().__init__()
        self.net = net.eval()
        mean, std = spec.get("mean"), spec.get("std")
        self.norm = Normalize(mean or [0.0] * len(std), std or [1.0] * len(mean)) if mean or std else nn.Identity()
        script = _is_script(net)
        linears = [n for n, m in net.named_modules() if n and _kind(m) == "Linear"]
        self.last_linear = linears[-1] if linears else None
        if "features" in spec:
            self.features_from = (spec["features"], "out")
        elif self.last_linear is not None:
            self.features_from = (self.last_linear, "in")
        else:
            raise ModelError("model: it has no linear layer whose input would be the penultimate features; "
                             "name the module whose output they are in model.features")
        head = (self.last_linear or "").split(".")[0]  # the top-level module that holds the last linear layer
        top = [n for n, m in net.named_children() if any(True for _ in m.parameters()) and n != head]
        self.tap_names = list(spec.get("taps", top))
        wanted = [self.features_from] + [(n, "out") for n in self.tap_names]
        self._capture = _Graph(net, wanted) if script else _Hooks(net, wanted)
        self.taps = nn.ModuleDict({n.replace(".", "/"): nn.Identity() for n in self.tap_names})
        self.tap_layers = tuple("taps." + n.replace(".", "/") for n in self.tap_names)
        self._fc: nn.Linear | None = None
        self.fc_reason = "not checked"

    def forward_features(self, x):
        out, got = self._capture(self.norm(x))
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"model output must be a tensor of logits (N, classes), got {type(out).__name__}")
        feats = got[self.features_from]
        for n in self.tap_names:
            self.taps[n.replace(".", "/")](got[(n, "out")])
        return out, _pooled(feats)

    def forward(self, x):
        return self.forward_features(x)[0]

    def features(self, x):
        return self.forward_features(x)[1]

    def pool(self, maps):
        return torch.flatten(maps, 1)

    def feature_maps(self, x):
        return self.features(x)[:, :, None, None]

    @property
    def fc(self) -> nn.Linear:
        if self._fc is None:
            raise ModelError(f"not applicable to this model: it needs the linear layer from features to logits "
                             f"({self.fc_reason})")
        return self._fc

    def head(self, maps):
        return self.fc(self.pool(maps))

    def check_head(self, feats: torch.Tensor, logits: torch.Tensor) -> None:
        """Use the last linear layer as ``fc`` when it maps ``feats`` to ``logits``."""
        if self.features_from != (self.last_linear, "in"):
            self.fc_reason = f"features are the output of {self.features_from[0]!r}, not the input of the last linear"
            return
        lin = dict(self.net.named_modules())[self.last_linear]
        w, b = lin.weight.detach(), getattr(lin, "bias", None)
        if w.ndim != 2 or w.shape[1] != feats.shape[1] or w.shape[0] != logits.shape[1]:
            self.fc_reason = f"the last linear layer {self.last_linear!r} does not produce the logits"
            return
        fc = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).to(w.device)
        with torch.no_grad():
            fc.weight.copy_(w)
            if b is not None:
                fc.bias.copy_(b.detach())
            same = torch.allclose(fc(feats), logits, rtol=1e-4, atol=1e-4)
        if same:
            self._fc, self.fc_reason = fc, ""
        else:
            self.fc_reason = f"the logits are not {self.last_linear}(features): something follows the last linear layer"


def _in_channels(net) -> int | None:
    for _, m in net.named_modules():
        if _kind(m) == "Conv2d" and hasattr(m, "weight"):
            return int(m.weight.shape[1])
    return None


def load(spec: dict, data, device="cpu") -> tuple[UserClassifier, dict]:
    """The wrapped classifier of ``spec`` and its record, checked on a few ID ``fit`` images
    (``data``: the suite's :class:`~oodbench.benchmark.data.suites.Materialised`)."""
    from oodbench.detectors.images import to_tensor

    net, sha, source = load_net(spec)
    fit = data.fit
    ch = 3 if fit.x.ndim == 4 else 1
    want = _in_channels(net)
    if want is not None and want != ch:
        raise ModelError(f"mismatched channels: the model's first convolution takes {want} channel(s), the ID "
                         f"images have {ch} ({'RGB' if ch == 3 else 'grey'}); set id.channels = {want} in the "
                         "suite file (or give images with that many channels)")
    model = UserClassifier(net, spec).to(device)
    x = to_tensor(fit.x[:8]).to(device)
    try:
        with torch.no_grad():
            logits, feats = model.forward_features(x)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"the model fails on a batch of ID images of shape {tuple(x.shape)} (float in [0, 1]): "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    n_classes = len(fit.classes) or int(max(fit.y.max(), data.id_test.y.max())) + 1  # 0: no ID labels given
    if logits.ndim != 2 or logits.shape[0] != len(x) or (n_classes and logits.shape[1] != n_classes):
        want = f"({len(x)}, {n_classes}): one logit per ID class" if n_classes else f"({len(x)}, classes)"
        raise ModelError(f"model output has shape {tuple(logits.shape)} for {len(x)} images; expected (N, classes) "
                         f"= {want}")
    model.check_head(feats, logits)
    blob = {k: v for k, v in spec.items() if k not in ("torchscript", "weights", "object", "base")}
    key = hashlib.sha256(json.dumps({"sha256": sha, "spec": blob}, sort_keys=True).encode()).hexdigest()[:20]
    meta = {"arch": spec["name"], "source": source, "sha256": sha, "key": f"user-{key}", "seed": None,
            "features": f"{model.features_from[1]}put of {model.features_from[0]}", "feature_dim": int(feats.shape[1]),
            "taps": list(model.tap_layers), "fc_head": model._fc is not None, "fc_reason": model.fc_reason,
            "cached": True}
    return model.eval(), meta

