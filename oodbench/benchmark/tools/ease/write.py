"""The files of ``oodbench ease``: ``ease.json`` (everything) and three CSVs, ``libraries.csv`` (one row per
library), ``detectors.csv`` (one row per detector, with the outcome of each probe) and ``quality.csv``."""
from __future__ import annotations

from pathlib import Path


def write(out_dir, data: dict) -> None:
    """Write ``ease.json`` and the CSVs into ``out_dir``."""
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
