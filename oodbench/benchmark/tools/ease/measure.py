"""``oodbench ease``: every measurement put together, per library and per detector, into
``results/ease/ease.json`` (and the CSVs of :mod:`.write`).

Per library (``pytorch-ood``; ``openood`` where an environment with it exists, measured there through a
subprocess; the lab's methods, ``oodbench-lab``): install facts (:mod:`.install`), cold import time
(:mod:`.environments`), integration lines (:mod:`.lines`) and code quality
(:mod:`oodbench.benchmark.tools.quality`). Per detector: :mod:`.detectors` (with the probes of
:mod:`.probes`) and the cost measured by the runs (fit time, throughput, peak memory, from every
``results/<suite>/run.json``). Facts that cannot be measured come from ``ease_facts.json`` (each with its
source).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from oodbench.benchmark.tools import quality
from oodbench.benchmark.tools.ease import install
from oodbench.benchmark.tools.ease.detectors import measure_detectors
from oodbench.benchmark.tools.ease.environments import REPO, import_times, openood_python, run_script
from oodbench.benchmark.tools.ease.install import dist_facts, on_pypi, pin_conflicts
from oodbench.benchmark.tools.ease.lines import adapter_lines
from oodbench.benchmark.tools.ease.write import write

FACTS = Path(__file__).resolve().parents[1] / "ease_facts.json"
#: library name in DetectorInfo -> (distribution, import package, import statement measured)
LIBRARIES = {
    "pytorch-ood": ("pytorch-ood", "pytorch_ood", "import pytorch_ood.detector"),
    "openood": ("openood", "openood", "import openood.postprocessors"),
    "oodbench-lab": ("oodbench", "oodbench/detectors", "import oodbench.detectors.pvalues"),
}
ADDED_METHOD = ("closure of its declared requirements plus its undeclared imports that are installed, over the "
                "installed distributions of its environment, minus the closure of torch + torchvision; MB = 2^20 "
                "bytes summed from each distribution's RECORD (declared requirements alone: {p} packages, {mb} MB)")


def costs_from_results(results_dir) -> dict:
    """{detector: {suite: cost}} from every ``<results_dir>/<suite>/run.json``."""
    from oodbench.benchmark.reporting.leaderboard import detector_costs

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


def _short_path(p: str) -> str:
    p = str(p)
    for pre, rep in ((str(REPO) + "/", ""), (str(REPO.parent) + "/", "../")):
        if p.startswith(pre):
            return rep + p[len(pre):]
    m = re.search(r"(site-packages/.*)$", p)
    return m.group(1) if m else p


def install_entry(f: dict, pypi, latest, conflicts: list) -> dict:
    """The ``install`` facts of a library from its :func:`~.install.dist_facts` ``f``."""
    return {"on_pypi": pypi, "pypi_latest": latest if pypi else None,
            "pypi_query": None if pypi is not None else latest,
            "declared_dependencies": f.get("declared_dependencies", []),
            "n_declared_dependencies": len(f.get("declared_dependencies", [])),
            "extra_only_dependencies": f.get("extra_only_dependencies", []),
            "added_packages": f.get("added_packages"), "added_packages_list": f.get("added_packages_list"),
            "added_mb": f.get("added_mb"),
            "missing_declared": f.get("missing_declared", []),
            "declared_added_packages": f.get("declared_added_packages"),
            "declared_added_mb": f.get("declared_added_mb"),
            "added_method": ADDED_METHOD.format(p=f.get("declared_added_packages"), mb=f.get("declared_added_mb")),
            "undeclared_imports": sorted(f.get("undeclared_imports", {})) + [
                f"{k} (not installed)" for k in sorted(f.get("imports_not_installed", {}))],
            "undeclared_detail": f.get("undeclared_imports", {}),
            "extra_only_imports": sorted(f.get("extra_only_imports", {})),
            "imports_not_installed": sorted(f.get("imports_not_installed", {})),
            "pin_conflicts": conflicts,
            "env_versions": f.get("env_versions", {}), "environment": f.get("executable", "")}


def integration_entry(ld: dict) -> dict:
    """The ``integration`` facts of a library from the facts of its detectors ``ld``."""
    mods = {e["module"] for e in ld.values()}
    per_det = [e["adapter_lines"] for e in ld.values() if e.get("adapter_lines") is not None]
    contract = sorted({c for e in ld.values() for c in e.get("model_contract", [])})
    return {"adapter_modules": sorted(mods), "adapter_code_lines": adapter_lines(mods),
            "median_lines_per_detector": statistics.median(per_det) if per_det else None,
            "model_contract": "; ".join(contract) if contract else "",
            "required_args_union": sorted({a for e in ld.values() for a in e["required_args"]})}


def code_quality(lib: str, py: str, pkg_path: Path) -> dict:
    """:func:`~oodbench.benchmark.tools.quality.analyse` of the library's package, in its environment."""
    if lib == "oodbench-lab":
        q = quality.analyse(pkg_path, lib)
    elif py == sys.executable:
        q = quality.analyse(pkg_path, lib) if pkg_path.is_dir() else {"error": "package not found"}
    else:
        r = subprocess.run([py, quality.__file__, str(pkg_path), lib], capture_output=True, text=True, timeout=300)
        q = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}
    q["path"] = _short_path(q.get("path", ""))
    q["note"] = {"oodbench-lab": "the lab's methods: oodbench/detectors"}.get(lib, "installed package")
    return q


def measure_library(lib: str, py: str, dets: dict, ours: dict, import_runs: int) -> tuple[dict, dict | None]:
    """(library entry, code quality or None) of ``lib`` in the environment of ``py``."""
    dist, pkg, stmt = LIBRARIES[lib]
    if lib == "oodbench-lab":
        f = dict(ours)
        pkg_path = REPO / "oodbench" / "detectors"
    elif py == sys.executable:
        f = dist_facts(dist, pkg)
        pkg_path = Path(f.get("package_path") or ".")
    else:
        f = run_script(py, [install.__file__, "--dist-facts", dist, pkg])
        pkg_path = Path(f.get("package_path") or ".")
    if not f.get("installed", "error" not in f):
        return {"install": {"error": f.get("error", "not installed")}}, None
    pypi, latest = on_pypi(dist) if lib != "oodbench-lab" else (False, "not published: part of oodbench")
    ld = {n: e for n, e in dets.items() if e["library"] == lib}
    if lib == "oodbench-lab":  # the lab's code: oodbench/detectors and the lab adapter modules
        mods = sorted({f"oodbench.detectors.{p.stem}" for p in (REPO / "oodbench" / "detectors").glob("*.py")
                       if p.stem != "__init__"} | {e["module"] for e in ld.values()})
        stmt = "import " + ", ".join(mods) if mods else stmt
    entry = {"version": f.get("version", ""), "distribution": dist, "n_detectors": len(ld),
             "install": install_entry(f, pypi, latest, pin_conflicts(f, ours)),
             "import": import_times(py, stmt, import_runs, env={**os.environ, "PYTHONPATH": str(REPO)}),
             "integration": integration_entry(ld)}
    return entry, code_quality(lib, py, pkg_path)


def measure(out_dir="results/ease", results_dir="results", import_runs=5, openood_py=None, skip_probes=False,
            patterns=None, say=print, probe_expensive=False) -> dict:
    """Measure everything, write ``out_dir/ease.json`` and the CSVs, and return the data."""
    import platform

    import torch

    t_start = time.perf_counter()
    say("measuring detectors (metadata, adapter lines, robustness probes) ...")
    dets = measure_detectors(patterns, skip_probes, probe_expensive)
    ood_py = openood_python(openood_py)
    if ood_py:
        say(f"measuring OpenOOD detectors in {ood_py} ...")
        sub = run_script(ood_py, ["-m", "oodbench.benchmark.tools.ease.detectors", "--inner-detectors", "openood.*"]
                         + (["--skip-probes"] if skip_probes else [])
                         + (["--probe-expensive"] if probe_expensive else []), timeout=3600)
        if "error" not in sub:
            dets.update(sub)  # measured where the library is installed
        else:
            say(f"  OpenOOD detectors not measured: {sub['error']}")
    libs_present = sorted({e["library"] for e in dets.values()} | {"pytorch-ood"} | ({"openood"} if ood_py else set()))
    ours = dist_facts("oodbench", "oodbench")
    libraries, qual = {}, {}
    for lib in libs_present:
        if lib not in LIBRARIES:
            continue
        py = ood_py if lib == "openood" else sys.executable
        if py is None:  # its detectors are registered, but no environment has it
            libraries[lib] = {"install": {"error": "not installed: no environment with OpenOOD (--openood-python)"}}
            continue
        say(f"{lib}: install facts, import time, code quality ...")
        libraries[lib], q = measure_library(lib, py, dets, ours, import_runs)
        if q is not None:
            qual[lib] = q
    costs = costs_from_results(results_dir)
    for n, e in dets.items():
        e["cost"] = costs.get(n, {})
    data = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                        "openood_environment": _short_path(ood_py or "") or "none"},
        "libraries": libraries,
        "detectors": dets,
        "quality": qual,
        "facts": json.loads(FACTS.read_text()) if FACTS.exists() else {},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write(out_dir, data)
    return data


def main(a) -> int:
    """``oodbench ease`` (arguments from :mod:`oodbench.benchmark.cli.ease`)."""
    data = measure(a.out, a.results, a.import_runs, a.openood_python, a.skip_probes, a.detectors,
                   probe_expensive=a.probe_expensive)
    from tabulate import tabulate

    from oodbench.benchmark.reporting.tables import library_ease_rows, quality_rows

    h, r = library_ease_rows(data)
    print(tabulate(r, headers=h, tablefmt="github"))
    h, r = quality_rows(data)
    print(tabulate(r, headers=h, tablefmt="github"))
    print(f"wrote {a.out}/ease.json, libraries.csv, detectors.csv, quality.csv in {data['seconds']} s")
    return 0
