"""Ease-of-use metrics, measured by code, per library and per detector (``oodbench ease``).

Per library (``pytorch-ood``; ``openood`` where an environment with it exists — it is run there through
a subprocess; the lab's methods, ``oodbench-lab``):

* **install** — on PyPI (``pip index versions``; ``None`` when offline), declared dependencies (the
  distribution's metadata), packages and MB it adds on top of a torch + torchvision environment (the
  closure of its declared requirements over the installed distributions, minus the closure of torch and
  torchvision, sizes from each distribution's RECORD), imports in its source that no declared requirement
  provides (``ast`` scan mapped with ``packages_distributions``), and requirement specifiers of shared
  dependencies that the versions we run do not satisfy;
* **import** — cold import time in a fresh interpreter after ``import torch`` (median of several runs);
* **integration** — code lines (non-blank, non-comment, no docstrings) of our adapter modules for the
  library and, per detector, of its class or registration statement.

Per detector: what it consumes, the library arguments a user must supply (parameters without a default of
the wrapped library class), requirements from its :class:`DetectorInfo` (fit data, OOD data for tuning,
gradients, GPU only), network access during construction and fit (refused and recorded), cost (fit
time, throughput, peak memory, from every ``results/<suite>/run.json``), and robustness probes on the
separable problem: NaN inputs, constant images, a batch of one, a wrong dtype — each classified as
``ok``, ``clear error``, ``crash`` or ``silent garbage``.

Code quality (:mod:`oodbench.benchmark.tools.quality`) of every installed library is added, and the facts that
cannot be measured come from ``ease_facts.json`` (each with a source). Output: ``results/ease/ease.json``
and CSVs ``libraries.csv``, ``detectors.csv``, ``quality.csv``.

This file runs as a plain script in another environment (``python ease.py --dist-facts DIST PKG``) with
the standard library only.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FACTS = HERE / "ease_facts.json"
BASE_DISTS = ("torch", "torchvision")
KEY_DEPS = ("numpy", "torch", "torchvision", "scipy", "pandas", "scikit-learn", "opencv-python", "pillow")
#: library name in DetectorInfo -> (distribution, import package, import statement measured)
LIBRARIES = {
    "pytorch-ood": ("pytorch-ood", "pytorch_ood", "import pytorch_ood.detector"),
    "openood": ("openood", "openood", "import openood.postprocessors"),
    "oodbench-lab": ("oodbench", "oodbench/detectors", "import oodbench.detectors.pvalues"),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------------------------
# install facts (standard library only: runs in any environment)
# ----------------------------------------------------------------------------------------------
def _req_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return _norm(m.group(1)) if m else ""


def _applies(req: str) -> bool:
    """A requirement without an extra whose environment marker holds here."""
    if "extra" in req:
        return False
    if ";" not in req:
        return True
    try:
        from packaging.requirements import Requirement

        m = Requirement(req).marker
        return m is None or m.evaluate({"extra": ""})
    except Exception:
        return True


def _closure(names, md) -> tuple[set, set]:
    seen, missing, todo = set(), set(), [_norm(n) for n in names]
    while todo:
        n = todo.pop()
        if n in seen or n in missing:
            continue
        try:
            d = md.distribution(n)
        except md.PackageNotFoundError:
            missing.add(n)
            continue
        seen.add(n)
        for r in d.requires or []:
            if _applies(r):
                todo.append(_req_name(r))
    return seen, missing


def _size(dist, md) -> int:
    try:
        return sum(int(f.size or 0) for f in (md.distribution(dist).files or []))
    except md.PackageNotFoundError:
        return 0


def _scan_imports(pkg_dir: Path) -> dict:
    """Top-level imported names -> {"files": n, "lazy_only": bool} (lazy = inside a function or a try)."""
    out = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Try)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        guarded.add(id(sub))
        names = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    names.setdefault(a.name.split(".")[0], []).append(id(node) in guarded)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.setdefault(node.module.split(".")[0], []).append(id(node) in guarded)
        for n, g in names.items():
            e = out.setdefault(n, {"files": 0, "lazy_only": True})
            e["files"] += 1
            e["lazy_only"] = e["lazy_only"] and all(g)
    return out


def dist_facts(dist: str, package: str) -> dict:
    """Install facts of ``dist`` in *this* environment (``package`` = its import name or a folder)."""
    import importlib.metadata as md
    import importlib.util

    out = {"distribution": dist, "python": sys.version.split()[0], "executable": sys.executable}
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return {**out, "installed": False}
    out["installed"] = True
    out["version"] = d.version
    reqs = d.requires or []
    declared = sorted({_req_name(r) for r in reqs if _applies(r)})
    extras = sorted({_req_name(r) for r in reqs if "extra" in r} - set(declared))
    out["declared_dependencies"] = declared
    out["declared_requirements"] = sorted(r for r in reqs if "extra" not in r)
    out["extra_only_dependencies"] = extras
    lib, missing = _closure([dist], md)
    base, _ = _closure(BASE_DISTS, md)
    added = sorted(lib - base)
    out["declared_added_packages"] = len(added)
    out["declared_added_mb"] = round(sum(_size(a, md) for a in added) / 2 ** 20, 1)
    out["added_packages_list"] = added
    out["added_packages"] = len(added)
    out["added_mb"] = out["declared_added_mb"]
    out["missing_declared"] = sorted(missing)
    out["base_packages"] = len(base)
    out["env_packages"] = len({_norm(x.metadata["Name"]) for x in md.distributions() if x.metadata["Name"]})
    out["env_versions"] = {}
    for k in KEY_DEPS:
        try:
            out["env_versions"][k] = md.version(k)
        except md.PackageNotFoundError:
            pass
    # undeclared imports
    pdir = Path(package) if "/" in package else None
    if pdir is None:
        spec = importlib.util.find_spec(package)
        locs = list(spec.submodule_search_locations or []) if spec else []
        pdir = Path(locs[0]) if locs else None
    out["package_path"] = str(pdir) if pdir else ""
    if pdir and pdir.is_dir():
        own = {pdir.name, package.split("/")[-1], dist.replace("-", "_")}
        if "/" in package:
            own.add(package.split("/")[0])
        stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
        pmap = md.packages_distributions()
        undeclared, extra_only, not_installed = {}, {}, {}
        for name, e in sorted(_scan_imports(pdir).items()):
            if name in own or name in stdlib or name == "__future__":
                continue
            dists = {_norm(x) for x in pmap.get(name, [])}
            if not dists and _norm(name) in declared:
                continue  # declared, just not installed here (see missing_declared)
            if not dists and _norm(name) in extras:
                extra_only[name] = {**e, "distribution": _norm(name)}
            elif not dists:
                not_installed[name] = e
            elif not dists & (set(declared) | lib):
                (extra_only if dists & set(extras) else undeclared)[name] = {**e, "distribution": sorted(dists)[0]}
        out["undeclared_imports"] = undeclared
        out["extra_only_imports"] = extra_only
        out["imports_not_installed"] = not_installed
        if undeclared:  # what a working install adds: also the undeclared imports that are installed here
            work, _ = _closure([dist] + sorted({e["distribution"] for e in undeclared.values()}), md)
            out["added_packages_list"] = sorted(work - base)
            out["added_packages"] = len(work - base)
            out["added_mb"] = round(sum(_size(a, md) for a in work - base) / 2 ** 20, 1)
    return out


# ----------------------------------------------------------------------------------------------
# measurements in this (oodbench) environment
# ----------------------------------------------------------------------------------------------
def on_pypi(dist: str, timeout: int = 60):
    """``pip index versions`` through the configured index; (True/False, latest) or (None, why)."""
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "index", "versions", dist], capture_output=True, text=True,
                           timeout=timeout)
    except Exception as e:
        return None, f"{type(e).__name__}"
    m = re.search(rf"^{re.escape(dist)} \(([^)]+)\)", r.stdout, re.I | re.M)
    if r.returncode == 0 and m:
        return True, m.group(1)
    if "No matching distribution" in r.stderr or "ERROR: No matching" in r.stdout + r.stderr:
        return False, ""
    return None, (r.stderr.strip().splitlines() or ["?"])[-1][:120]


def import_times(python: str, statement: str, runs: int = 5, env=None) -> dict:
    """Median wall time of ``statement`` in fresh interpreters, after ``import torch`` (timed too)."""
    code = ("import time, json; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            f"{statement}; t2 = time.perf_counter(); print(json.dumps([t1 - t0, t2 - t1]))")
    lib, base, err = [], [], ""
    for _ in range(runs):
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            err = (r.stderr.strip().splitlines() or ["?"])[-1][:300]
            break
        a, b = json.loads(r.stdout.strip().splitlines()[-1])
        base.append(round(a, 3))
        lib.append(round(b, 3))
    med = (lambda v: round(sorted(v)[len(v) // 2], 3) if v else None)
    return {"statement": statement, "runs": lib, "median_s": med(lib), "torch_runs": base,
            "torch_median_s": med(base), "error": err}


def _strip_docstrings(tree) -> set:
    """Line numbers covered by docstrings."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            b = getattr(node, "body", [])
            if b and isinstance(b[0], ast.Expr) and isinstance(getattr(b[0], "value", None), ast.Constant) \
                    and isinstance(b[0].value.value, str):
                lines.update(range(b[0].lineno, b[0].end_lineno + 1))
    return lines


def code_lines(src: str, start: int = 1, end: int | None = None) -> int:
    """Non-blank, non-comment, non-docstring lines of ``src`` (1-based inclusive range)."""
    tree = ast.parse(src)
    doc = _strip_docstrings(tree)
    lines = src.splitlines()
    end = end or len(lines)
    return sum(1 for i in range(start, end + 1) if i not in doc and lines[i - 1].strip()
               and not lines[i - 1].strip().startswith("#"))


def detector_lines(cls, short: str) -> int | None:
    """Lines of the detector's own code in its adapter module: its class statement when defined there
    by name, else the statement that registers / defines it (found by its registered short name)."""
    import inspect

    try:
        path = inspect.getsourcefile(cls)
        src = Path(path).read_text()
    except (TypeError, OSError):
        return None
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return code_lines(src, node.lineno, node.end_lineno)
    names = {short, cls.name}
    for node in tree.body:
        for sub in ast.walk(node):  # an entry of a table: {"msp": dict(...), ...}
            if isinstance(sub, ast.Dict):
                for k, v in zip(sub.keys, sub.values):
                    if isinstance(k, ast.Constant) and k.value in names:
                        return code_lines(src, k.lineno, v.end_lineno)
        best = None
        for sub in ast.walk(node):  # the smallest call / tuple naming it: _define("msp", ...)
            if isinstance(sub, (ast.Call, ast.Tuple, ast.List)) and any(
                    isinstance(c, ast.Constant) and c.value in names for c in ast.walk(sub)):
                if best is None or (sub.end_lineno - sub.lineno) < (best.end_lineno - best.lineno):
                    best = sub
        if best is not None:
            return code_lines(src, best.lineno, best.end_lineno)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in names:
                return code_lines(src, node.lineno, node.end_lineno)
    return None


def required_args(cls) -> list[str]:
    """Parameters without a default of the wrapped library class (``library_class()`` or
    ``info.extra["class"]``); for our own detectors, of the detector's constructor."""
    import importlib
    import inspect

    target = None
    if hasattr(cls, "library_class"):
        try:
            target = cls.library_class()
        except Exception:
            target = None
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


MODEL_ARGS = {"model": "a callable model", "encoder": "a feature encoder", "backbone": "a backbone",
              "head": "the classifier head", "w": "classifier weights W", "b": "classifier bias b",
              "config": "a Config object with the YAML hyperparameters", "net": "a network"}


# ----------------------------------------------------------------------------------------------
# robustness probes
# ----------------------------------------------------------------------------------------------
class ProbeRep:
    """A Representation look-alike with altered arrays (NaN rows, another dtype)."""

    def __init__(self, base, fn):
        import numpy as np

        self._base, self._fn = base, fn
        self.images = type(base.images)(base.images.name, fn(base.images.x.astype(np.float32)), base.images.y,
                                        base.images.checksum + "-probe")
        self.role, self.store = base.role, base.store

    def __len__(self):
        return len(self._base)

    name = property(lambda self: self._base.name)
    labels = property(lambda self: self._base.labels)
    logits = property(lambda self: self._fn(self._base.logits))
    features = property(lambda self: self._fn(self._base.features))
    preds = property(lambda self: self._base.preds)
    model = property(lambda self: self._base.model)
    context = property(lambda self: self._base.context)
    device = property(lambda self: self._base.device)

    def taps(self):
        return {k: self._fn(v) for k, v in self._base.taps().items()}

    def inputs(self, batch_size=None):
        import torch

        for x in self._base.inputs(batch_size):
            yield torch.from_numpy(self._fn(x.cpu().numpy()))

    def input_tensor(self):
        import torch

        return torch.from_numpy(self._fn(self._base.input_tensor().numpy()))


KEYWORDS = {"nan_input": r"nan|finite|inf", "constant_images": r"constant|zero|variance|singular|degenerate",
            "batch_of_one": r"batch|size|shape|sample|at least|dimension",
            "wrong_dtype": r"dtype|type|float|double|half|byte"}


def classify(run, n: int, probe: str, nan_rows=()) -> dict:
    import numpy as np

    try:
        out = run()
    except Exception as e:  # noqa: BLE001 - the outcome is what we measure
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        clear = re.search(KEYWORDS[probe], str(e), re.I) is not None
        return {"outcome": "clear error" if clear else "crash", "detail": msg}
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    arr = np.asarray(out)
    if arr.dtype.kind not in "fiu":
        return {"outcome": "silent garbage", "detail": f"returned dtype {arr.dtype}"}
    if arr.shape != (n,):
        return {"outcome": "silent garbage", "detail": f"returned shape {arr.shape}, expected ({n},)"}
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if probe == "nan_input":
        clean = np.ones(n, bool)
        clean[list(nan_rows)] = False
        if bad[clean].any():
            return {"outcome": "silent garbage", "detail": f"NaN/inf for {int(bad[clean].sum())} clean rows too"}
        if bad[~clean].all():
            return {"outcome": "silent garbage", "detail": "returned NaN for the NaN rows without an error "
                                                            "(the harness's output check catches it)"}
        return {"outcome": "silent garbage", "detail": "finite scores for NaN inputs"}
    if bad.any():
        return {"outcome": "silent garbage", "detail": f"{int(bad.sum())} NaN/inf scores of {n}"}
    return {"outcome": "ok", "detail": ""}


def probe_detector(cls, problem) -> dict:
    """Fit on the separable problem, then feed the four probes; also records network attempts."""
    import numpy as np

    from oodbench.benchmark.tools.guards import cpu_only, no_network
    from oodbench.benchmark.data import ImageSet

    conns: list = []
    t0 = time.perf_counter()
    try:
        with no_network(conns):
            det = cls()
            with cpu_only():
                det.fit(problem.reps("fit"), problem.reps("cal"))
    except Exception as e:  # noqa: BLE001
        return {"fit_error": f"{type(e).__name__}: {str(e)[:200]}", "network_attempts": conns}
    base = problem.reps("id_test")
    n = len(base)
    nan_rows = list(range(0, n, 10))

    def with_nan(a):
        a = np.array(a, dtype=np.float32 if a.dtype.kind != "f" else a.dtype, copy=True)
        a[nan_rows] = np.nan
        return a

    def half(a):
        return np.asarray(a).astype(np.float16) if np.asarray(a).dtype.kind == "f" else np.asarray(a)

    x = problem.id_test.x
    const = ImageSet("constant", np.concatenate([np.zeros_like(x[:4]), np.full_like(x[:4], 255)]),
                     np.zeros(8, np.int64), "probe-constant")
    one = ImageSet("one", x[:1], problem.id_test.y[:1], "probe-one")
    st = problem.store
    probes = {
        "nan_input": (lambda: det.score(ProbeRep(base, with_nan)), n, nan_rows),
        "constant_images": (lambda: det.score(st.representation(const, "constant")), 8, ()),
        "batch_of_one": (lambda: det.score(st.representation(one, "one")), 1, ()),
        "wrong_dtype": (lambda: det.score(ProbeRep(base, half)), n, ()),
    }
    out = {}
    for k, (run, m, rows) in probes.items():
        with no_network(conns):
            out[k] = classify(run, m, k, rows)
    out["network_attempts"] = conns
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


# ----------------------------------------------------------------------------------------------
# costs from results
# ----------------------------------------------------------------------------------------------
def costs_from_results(results_dir) -> dict:
    from oodbench.benchmark.reporting.report import detector_costs

    out = {}
    for rj in sorted(Path(results_dir).glob("*/run.json")):
        try:
            rec = json.loads(rj.read_text())
        except ValueError:
            continue
        for d, c in detector_costs(rec).items():
            out.setdefault(d, {})[rec.get("suite", rj.parent.name)] = {
                k: (round(v, 5) if isinstance(v, float) else v) for k, v in c.items() if k != "info"}
    return out


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
def openood_python(arg=None) -> str | None:
    cand = arg or os.environ.get("OODBENCH_OPENOOD_PYTHON") or str(REPO.parent / "openood-venv" / "bin" / "python")
    return cand if Path(cand).exists() else None


def _run_script(python: str, args: list, timeout=600) -> dict:
    r = subprocess.run([python, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_detectors(patterns=None, skip_probes=False, probe_expensive=False) -> dict:
    """Per detector (in this environment): metadata, required args, adapter lines, probes."""
    from oodbench.adapters import registry
    from oodbench.benchmark.tools import separable

    names = registry.resolve(patterns) if patterns else registry.names()
    problem = None if skip_probes else separable.problem()
    out = {}
    for n in names:
        cls = registry.get(n)
        i = cls.info
        req = required_args(cls)
        e = {"library": i.library, "library_version": i.library_version, "module": cls.__module__,
             "consumes": sorted(cls.consumes), "required_args": req,
             "model_contract": [MODEL_ARGS[a] for a in req if a in MODEL_ARGS],
             "requirements": {"fit_data": bool(i.needs_fit), "ood_tuning": bool(i.needs_ood_tuning),
                              "gradients": bool(i.needs_gradients), "gpu_only": not i.cpu_ok,
                              "expensive": bool(i.expensive)},
             "adapter_lines": detector_lines(cls, n.split(".")[-1])}
        if isinstance(i.extra, dict) and i.extra.get("available") is False:
            e["probes"] = {}
            e["probe_note"] = "not probed: its library is not installed in this environment"
        elif problem is not None and i.expensive and not probe_expensive:
            from oodbench.benchmark.tools.guards import no_network

            conns: list = []
            try:
                with no_network(conns):
                    cls()
            except Exception as ex:  # noqa: BLE001
                e["construct_error"] = f"{type(ex).__name__}: {ex}"[:200]
            e["network_at_construction"] = bool(conns)
            e["probes"] = {}
            e["probe_note"] = "not probed: expensive=True (trains a model); run `oodbench ease --probe-expensive`"
        elif problem is not None:
            pr = probe_detector(cls, problem)
            e["network_at_construction"] = bool(pr.pop("network_attempts", []))
            e["probe_seconds"] = pr.pop("seconds", None)
            if "fit_error" in pr:
                e["probe_fit_error"] = pr["fit_error"]
                e["probes"] = {}
            else:
                e["probes"] = pr
        out[n] = e
    return out


def adapter_lines(modules) -> int:
    total = 0
    for m in sorted(set(modules)):
        p = REPO / (m.replace(".", "/") + ".py")
        if p.exists():
            total += code_lines(p.read_text())
    return total


def measure(out_dir="results/ease", results_dir="results", import_runs=5, openood_py=None, skip_probes=False,
            patterns=None, say=print, probe_expensive=False) -> dict:
    import platform
    import statistics

    from oodbench.benchmark.tools import quality

    t_start = time.perf_counter()
    say("measuring detectors (metadata, adapter lines, robustness probes) ...")
    dets = measure_detectors(patterns, skip_probes, probe_expensive)
    ood_py = openood_python(openood_py)
    if ood_py:
        say(f"measuring OpenOOD detectors in {ood_py} ...")
        sub = _run_script(ood_py, ["--inner-detectors", "openood.*"] + (["--skip-probes"] if skip_probes else []) +
                          (["--probe-expensive"] if probe_expensive else []), timeout=3600)
        if "error" not in sub:
            dets.update(sub)  # measured where the library is installed
        else:
            say(f"  OpenOOD detectors not measured: {sub['error']}")
    libs_present = sorted({e["library"] for e in dets.values()} | {"pytorch-ood"} | ({"openood"} if ood_py else set()))
    ours = dist_facts("oodbench", "oodbench")
    facts = json.loads(FACTS.read_text()) if FACTS.exists() else {}
    libraries, qual = {}, {}
    for lib in libs_present:
        if lib not in LIBRARIES:
            continue
        dist, pkg, stmt = LIBRARIES[lib]
        py = sys.executable
        if lib == "openood":
            py = ood_py
        say(f"{lib}: install facts, import time, code quality ...")
        if lib == "oodbench-lab":
            f = dict(ours)
            pkg_path = REPO / "oodbench" / "detectors"
        elif py == sys.executable:
            f = dist_facts(dist, pkg)
            pkg_path = Path(f.get("package_path") or ".")
        else:
            f = _run_script(py, ["--dist-facts", dist, pkg])
            pkg_path = Path(f.get("package_path") or ".")
        if not f.get("installed", "error" not in f):
            libraries[lib] = {"install": {"error": f.get("error", "not installed")}}
            continue
        pypi, latest = on_pypi(dist) if lib != "oodbench-lab" else (False, "not published: part of oodbench")
        conflicts = pin_conflicts(f, ours)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        ld = {n: e for n, e in dets.items() if e["library"] == lib}
        if lib == "oodbench-lab":  # the lab's code: oodbench/detectors and the lab adapter modules
            mods = sorted({f"oodbench.detectors.{p.stem}" for p in (REPO / "oodbench" / "detectors").glob("*.py")
                           if p.stem != "__init__"} | {e["module"] for e in ld.values()})
            stmt = "import " + ", ".join(mods) if mods else stmt
        imp = import_times(py, stmt, import_runs, env=env)
        mods = {e["module"] for e in ld.values()}
        per_det = [e["adapter_lines"] for e in ld.values() if e.get("adapter_lines") is not None]
        contract = sorted({c for e in ld.values() for c in e.get("model_contract", [])})
        libraries[lib] = {
            "version": f.get("version", ""),
            "distribution": dist,
            "n_detectors": len(ld),
            "install": {"on_pypi": pypi, "pypi_latest": latest if pypi else None,
                        "pypi_query": None if pypi is not None else latest,
                        "declared_dependencies": f.get("declared_dependencies", []),
                        "n_declared_dependencies": len(f.get("declared_dependencies", [])),
                        "extra_only_dependencies": f.get("extra_only_dependencies", []),
                        "added_packages": f.get("added_packages"), "added_packages_list": f.get("added_packages_list"),
                        "added_mb": f.get("added_mb"),
                        "missing_declared": f.get("missing_declared", []),
                        "declared_added_packages": f.get("declared_added_packages"),
                        "declared_added_mb": f.get("declared_added_mb"),
                        "added_method": "closure of its declared requirements plus its undeclared imports that are "
                                        "installed, over the installed distributions of its environment, minus the "
                                        "closure of torch + torchvision; MB = 2^20 bytes summed from each "
                                        "distribution's RECORD (declared requirements alone: "
                                        f"{f.get('declared_added_packages')} packages, {f.get('declared_added_mb')} MB)",
                        "undeclared_imports": sorted(f.get("undeclared_imports", {})) + [
                            f"{k} (not installed)" for k in sorted(f.get("imports_not_installed", {}))],
                        "undeclared_detail": f.get("undeclared_imports", {}),
                        "extra_only_imports": sorted(f.get("extra_only_imports", {})),
                        "imports_not_installed": sorted(f.get("imports_not_installed", {})),
                        "pin_conflicts": conflicts,
                        "env_versions": f.get("env_versions", {}), "environment": f.get("executable", "")},
            "import": imp,
            "integration": {"adapter_modules": sorted(mods), "adapter_code_lines": adapter_lines(mods),
                            "median_lines_per_detector": statistics.median(per_det) if per_det else None,
                            "model_contract": "; ".join(contract) if contract else "",
                            "required_args_union": sorted({a for e in ld.values() for a in e["required_args"]})},
        }
        if lib == "oodbench-lab":
            qual[lib] = quality.analyse(pkg_path, lib)
        elif py == sys.executable:
            qual[lib] = quality.analyse(pkg_path, lib) if pkg_path.is_dir() else {"error": "package not found"}
        else:
            r = subprocess.run([py, str(HERE / "quality.py"), str(pkg_path), lib], capture_output=True, text=True,
                               timeout=300)
            qual[lib] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}
        qual[lib]["path"] = _short_path(qual[lib].get("path", ""))
        qual[lib]["note"] = {"oodbench-lab": "the lab's methods: oodbench/detectors"}.get(lib, "installed package")
    costs = costs_from_results(results_dir)
    for n, e in dets.items():
        e["cost"] = costs.get(n, {})
    import torch

    data = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                        "openood_environment": _short_path(ood_py or "") or "none"},
        "libraries": libraries,
        "detectors": dets,
        "quality": qual,
        "facts": facts,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write(out_dir, data)
    return data


def _short_path(p: str) -> str:
    p = str(p)
    for pre, rep in ((str(REPO) + "/", ""), (str(REPO.parent) + "/", "../")):
        if p.startswith(pre):
            return rep + p[len(pre):]
    m = re.search(r"(site-packages/.*)$", p)
    return m.group(1) if m else p


def pin_conflicts(f: dict, ours: dict) -> list[str]:
    """Requirements of the library on a dependency we share that the versions we run do not satisfy,
    and versions in the library's environment that our own requirements do not accept."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return []
    out = []
    mine = {}
    for r in ours.get("declared_requirements", []):
        try:
            q = Requirement(r)
            mine[_norm(q.name)] = q
        except Exception:
            pass
    here = ours.get("env_versions", {})
    for r in f.get("declared_requirements", []):
        try:
            q = Requirement(r)
        except Exception:
            continue
        n = _norm(q.name)
        if n in here and q.specifier and not q.specifier.contains(here[n], prereleases=True):
            out.append(f"{q} (we run {n} {here[n]})")
    for n, v in sorted((f.get("env_versions") or {}).items()):
        if n in mine and mine[n].specifier and not mine[n].specifier.contains(v, prereleases=True):
            out.append(f"its environment has {n} {v}; we require {mine[n]}")
    return out


def write(out_dir, data: dict) -> None:
    import pandas as pd

    from oodbench.benchmark.io import atomic_write, write_json

    out = Path(out_dir)
    write_json(out / "ease.json", data)
    rows = []
    for lib, d in sorted(data["libraries"].items()):
        i, m, g = d.get("install", {}), d.get("import", {}), d.get("integration", {})
        rows.append({"library": lib, "version": d.get("version"), "on_pypi": i.get("on_pypi"),
                     "declared_dependencies": len(i.get("declared_dependencies", [])),
                     "added_packages": i.get("added_packages"), "added_mb": i.get("added_mb"),
                     "undeclared_imports": " ".join(i.get("undeclared_imports", [])),
                     "pin_conflicts": " | ".join(i.get("pin_conflicts", [])),
                     "import_median_s": m.get("median_s"), "adapter_code_lines": g.get("adapter_code_lines"),
                     "median_lines_per_detector": g.get("median_lines_per_detector"),
                     "detectors": d.get("n_detectors")})
    _csv(out / "libraries.csv", rows, atomic_write, pd)
    rows = []
    for n, e in sorted(data["detectors"].items()):
        r = {"detector": n, "library": e["library"], "consumes": " ".join(e["consumes"]),
             "required_args": " ".join(e["required_args"]), "adapter_lines": e.get("adapter_lines"),
             **{k: v for k, v in e["requirements"].items()},
             "network_at_construction": e.get("network_at_construction")}
        for p, v in sorted((e.get("probes") or {}).items()):
            r[f"probe_{p}"] = v.get("outcome")
        rows.append(r)
    _csv(out / "detectors.csv", rows, atomic_write, pd)
    rows = [{"library": k, **{a: b for a, b in v.items() if not isinstance(b, (dict, list))}}
            for k, v in sorted(data["quality"].items())]
    _csv(out / "quality.csv", rows, atomic_write, pd)


def _csv(path, rows, atomic_write, pd):
    import io

    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    atomic_write(path, buf.getvalue())


def main(a) -> int:
    data = measure(a.out, a.results, a.import_runs, a.openood_python, a.skip_probes, a.detectors,
                   probe_expensive=a.probe_expensive)
    from tabulate import tabulate

    from oodbench.benchmark.reporting.report import library_ease_rows, quality_rows

    h, r = library_ease_rows(data)
    print(tabulate(r, headers=h, tablefmt="github"))
    h, r = quality_rows(data)
    print(tabulate(r, headers=h, tablefmt="github"))
    print(f"wrote {a.out}/ease.json, libraries.csv, detectors.csv, quality.csv in {data['seconds']} s")
    return 0


if __name__ == "__main__":  # runs in another environment (OpenOOD's) too
    if sys.argv[1:2] == ["--dist-facts"]:
        print(json.dumps(dist_facts(sys.argv[2], sys.argv[3]), sort_keys=True))
    elif sys.argv[1:2] == ["--inner-detectors"]:
        sys.path.insert(0, str(REPO))
        skip = "--skip-probes" in sys.argv
        print(json.dumps(measure_detectors([sys.argv[2]], skip, "--probe-expensive" in sys.argv), sort_keys=True,
                         default=str))
    else:
        sys.exit("usage: ease.py --dist-facts DIST PACKAGE | --inner-detectors PATTERN [--skip-probes]")
