"""Install facts of a distribution in *this* environment: declared dependencies, packages and MB it adds to a
torch + torchvision environment, imports in its source that no declared requirement provides, requirement
specifiers of shared dependencies that the versions we run do not satisfy, and whether it is on PyPI.

Standard library only (``packaging`` when present): this file also runs as a plain script inside another
environment (OpenOOD's), ``python install.py --dist-facts DIST PACKAGE``, printing the facts as JSON.

* **added packages / MB** — the closure of its declared requirements over the installed distributions,
  minus the closure of torch and torchvision; sizes from each distribution's RECORD;
* **undeclared imports** — an ``ast`` scan of its source mapped to distributions with
  ``packages_distributions``; an import only a requirement extra provides is listed apart.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

BASE_DISTS = ("torch", "torchvision")
KEY_DEPS = ("numpy", "torch", "torchvision", "scipy", "pandas", "scikit-learn", "opencv-python", "pillow")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


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
    # declared for other environments only (a backport for older Pythons, say): declared, not needed here
    elsewhere = {_req_name(r) for r in reqs if "extra" not in r and not _applies(r)} - set(declared)
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
            if _norm(name) in elsewhere or dists & elsewhere:
                continue  # declared with an environment marker that does not hold here
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


if __name__ == "__main__":  # runs in another environment (OpenOOD's) too
    if sys.argv[1:2] == ["--dist-facts"]:
        print(json.dumps(dist_facts(sys.argv[2], sys.argv[3]), sort_keys=True))
    else:
        sys.exit("usage: install.py --dist-facts DIST PACKAGE")
