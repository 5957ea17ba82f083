"""The layers only look down: ``oodbench.detectors`` (plain numpy / torch methods) imports neither
``oodbench.adapters`` nor ``oodbench.benchmark``; ``oodbench.adapters`` never imports
``oodbench.benchmark``; no adapter imports another adapter's private names. And the lab's method
works on a plain ``nn.Module`` without the harness."""
import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1] / "oodbench"
MODULES = sorted(ROOT.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """``(imported module, [imported names])`` of every import in the file, nested ones included;
    relative imports resolved."""
    pkg = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            yield mod, [a.name for a in node.names]


def _under(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def _layer_violations(layer: str, forbidden: tuple) -> list:
    bad = []
    for p in MODULES:
        if not _under(_module_name(p), layer):
            continue
        for mod, names in _imports(p):
            full = [mod] + [f"{mod}.{n}" for n in names]
            if any(_under(m, f) for m in full for f in forbidden):
                bad.append(f"{p.relative_to(ROOT.parent)} imports {mod} {names or ''}")
    return bad


def test_modules_found():
    assert len(MODULES) > 50 and any(p.name == "stattest.py" for p in MODULES)


def test_detectors_import_neither_adapters_nor_benchmark():
    assert _layer_violations("oodbench.detectors", ("oodbench.adapters", "oodbench.benchmark")) == []


def test_adapters_never_import_benchmark():
    assert _layer_violations("oodbench.adapters", ("oodbench.benchmark",)) == []


def _adapter_family(mod: str) -> str:
    """``oodbench.adapters.openood.networks`` -> ``oodbench.adapters.openood``."""
    parts = mod.split(".")
    return ".".join(parts[:3])


def test_no_adapter_imports_another_adapters_private_names():
    bad = []
    for p in MODULES:
        me = _module_name(p)
        if not _under(me, "oodbench.adapters"):
            continue
        for mod, names in _imports(p):
            if not _under(mod, "oodbench.adapters") or _adapter_family(mod) == _adapter_family(me):
                continue
            private = [n for n in names if n.startswith("_")] + [s for s in mod.split(".") if s.startswith("_")
                                                                 and s != "__init__"]
            if private:
                bad.append(f"{me} imports {private} from {mod}")
    assert bad == []


def test_no_private_names_imported_across_modules_anywhere():
    """Nothing under oodbench/ imports a ``_private`` name of another oodbench module."""
    bad = [f"{_module_name(p)}: from {mod} import {n}" for p in MODULES for mod, names in _imports(p)
           if _under(mod, "oodbench") for n in names if n.startswith("_") and not n.startswith("__")]
    assert bad == []


def test_the_checker_sees_a_violation(tmp_path):
    """The test above would fail on a detector module importing the harness."""
    pkg = tmp_path / "oodbench" / "detectors"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from oodbench.benchmark.io import atomic_write\n"
                                "from ..adapters import base\n")
    global ROOT, MODULES
    saved = ROOT, MODULES
    ROOT, MODULES = tmp_path / "oodbench", [pkg / "bad.py"]
    try:
        got = _layer_violations("oodbench.detectors", ("oodbench.adapters", "oodbench.benchmark"))
    finally:
        ROOT, MODULES = saved
    assert len(got) == 2 and any("oodbench.benchmark.io" in g for g in got) and any("adapters ['base']" in g
                                                                                  for g in got)


# --------------------------------------------------------------------------------------------------
# the lab's method without the harness
# --------------------------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self, d=6, h=16, k=3):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(d, h), nn.Linear(h, h), nn.Linear(h, k)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_max_simes_fisher_on_a_plain_module_without_the_harness():
    from oodbench.detectors.stattest import MaxSimesFisher
    from oodbench.detectors.taps import module_taps

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net, layers, k = _Net(), ["fc1", "fc2", "out"], 3
    centres = rng.normal(size=(k, 6)) * 3

    def draw(n, ood=False):
        y = rng.integers(0, k, n)
        x = rng.normal(size=(n, 6)) * (4.0 if ood else 0.5) + (0 if ood else centres[y])
        return torch.as_tensor(x, dtype=torch.float32), y

    (xr, yr), (xc, yc), (xi, _), (xo, _) = draw(600), draw(300), draw(200), draw(200, ood=True)
    core = MaxSimesFisher().fit(module_taps(net, xr, layers), yr, module_taps(net, xc, layers), yc, n_classes=k)
    res_id, res_ood = core.evaluate(module_taps(net, xi, layers)), core.evaluate(module_taps(net, xo, layers))
    for r in (res_id, res_ood):
        assert r["p"].shape == (200,) and np.all((r["p"] > 0) & (r["p"] <= 1))
    assert (res_id["p"] <= 0.05).mean() <= 0.12  # false alarms on exchangeable ID data stay near alpha
    assert res_ood["score"].mean() > res_id["score"].mean()


def test_detectors_package_imports_without_harness_in_a_fresh_interpreter():
    import subprocess
    import sys

    code = ("import sys, oodbench.detectors.stattest, oodbench.detectors.vae, oodbench.detectors.wgan, "
            "oodbench.detectors.dz_search, oodbench.detectors.guard, oodbench.detectors.pvalues; "
            "bad = [m for m in sys.modules if m.startswith(('oodbench.benchmark', 'oodbench.adapters'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT.parent, env={**os.environ, "PYTHONPATH": str(ROOT.parent)})
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------------
def test_registry_scoped_restores_and_instances_are_independent():
    from oodbench.adapters.base import Detector
    from oodbench.adapters.registry import REGISTRY, Registry

    class Tmp(Detector):
        pass

    before = REGISTRY.names()
    with REGISTRY.scoped() as reg:
        reg.register("test.tmp")(Tmp)
        reg.remove("stattest")
        assert "test.tmp" in REGISTRY and "stattest" not in REGISTRY
    assert REGISTRY.names() == before
    own = Registry(builtins=False)
    own.add("test.tmp", Tmp)
    assert own.names() == ["test.tmp"] and "test.tmp" not in REGISTRY


def test_a_plugin_that_fails_to_load_is_listed_with_its_error(monkeypatch, capsys):
    from oodbench.adapters import registry as regmod
    from oodbench.benchmark.cli import listing

    class BrokenEntryPoint:
        name = "my.broken"

        def load(self):
            raise ImportError("No module named 'my_missing_dependency'")

    monkeypatch.setattr(regmod, "entry_points", lambda group: [BrokenEntryPoint()])
    fresh = regmod.Registry()
    monkeypatch.setattr(regmod, "REGISTRY", fresh)
    monkeypatch.setattr(regmod, "names", fresh.names)
    monkeypatch.setattr(regmod, "get", fresh.get)
    monkeypatch.setattr(regmod, "unavailable", fresh.unavailable)
    assert fresh.unavailable() == {"entry point my.broken": "ImportError: No module named 'my_missing_dependency'"}
    listing.run(None)
    out = capsys.readouterr().out
    assert "my.broken" in out and "my_missing_dependency" in out and "stattest" in out


def test_optional_detector_methods_are_declared_on_the_base_class():
    from oodbench.adapters import registry
    from oodbench.adapters.base import Detector

    assert Detector().subsample_size("cpu") is None and not Detector.gives_p_values()
    with pytest.raises(NotImplementedError):
        Detector().p_value(None)
    assert registry.get("stattest").gives_p_values() and registry.get("vae").gives_p_values()
    assert not registry.get("pytorch_ood.msp").gives_p_values()


# --------------------------------------------------------------------------------------------------
# what the harness hands a detector
# --------------------------------------------------------------------------------------------------
def test_harness_implements_the_typed_context_and_representation():
    from oodbench.adapters.context import CheckpointStore, FitContext, Representation
    from oodbench.benchmark.models.generative import GenerativeCheckpoints
    from oodbench.benchmark.tools import separable

    sep = separable.problem(n_per_class=10)
    rep = sep.reps("fit")
    assert isinstance(rep, Representation) and isinstance(rep.context, FitContext)
    assert rep.context.train is sep.train and isinstance(rep.context.checkpoints, CheckpointStore)
    assert isinstance(GenerativeCheckpoints(None), CheckpointStore)


def test_fit_context_without_a_store_trains_and_keeps_nothing():
    from oodbench.adapters.context import FitContext

    calls = []

    def train(m):
        calls.append(m)
        return {"steps": 1}

    ctx = FitContext()
    m, meta = ctx.load_or_train("toy", {"a": 1}, "data", 3, lambda: nn.Linear(2, 2), train)
    m2, meta2 = ctx.load_or_train("toy", {"a": 1}, "data", 3, lambda: nn.Linear(2, 2), train)
    assert len(calls) == 2 and not meta["cached"] and meta["steps"] == 1 and meta["seed"] == 3
    with pytest.raises(ValueError, match="train split"):
        ctx.require_train("the VAE detector")


def test_one_cuda_patch_in_two_modes():
    from oodbench.adapters.cuda import CudaCall, cuda_calls
    from oodbench.benchmark.tools.guards import cpu_only

    saved = torch.Tensor.cuda, nn.Module.cuda
    with cpu_only():
        with pytest.raises(CudaCall, match="must work on CPU"):
            torch.ones(1).cuda()
        with pytest.raises(CudaCall):
            nn.Linear(1, 1).cuda()
    with cuda_calls("noop"):
        assert torch.ones(1).cuda().device.type == "cpu"
    assert (torch.Tensor.cuda, nn.Module.cuda) == saved
    with pytest.raises(ValueError, match="mode"):
        with cuda_calls("other"):
            pass
