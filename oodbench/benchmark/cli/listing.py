"""`oodbench list`: suites, datasets and detectors with their metadata."""
from __future__ import annotations


def add_parser(sub) -> None:
    ls = sub.add_parser("list", help="suites, datasets and detectors")
    ls.set_defaults(fn=run)


def run(a):
    from tabulate import tabulate

    from oodbench.adapters import registry
    from oodbench.benchmark import data
    from oodbench.benchmark.data import suites

    print("Suites:")
    rows = []
    for n in suites.names():
        s = suites.get(n)
        groups = {}
        for t in s["tests"]:
            groups.setdefault(t["group"], []).append(t["name"])
        rows.append([n, s["id"], ", ".join(f"{k}={v}" for k, v in s["model"].items()),
                     "; ".join(f"{g}: {len(v)}" for g, v in groups.items())])
    print(tabulate(rows, headers=["suite", "ID", "model", "OOD sets"], tablefmt="simple"))
    print("\nDatasets:")
    print(tabulate([[n, ",".join(d["splits"]), d["shape"], d["source"]] for n, d in data.DATASETS.items()],
                   headers=["name", "splits", "shape", "source"], tablefmt="simple"))
    print("\nDetectors:")
    rows = []
    for n in registry.names():
        c = registry.get(n)
        i = c.info
        rows.append([n, f"{i.library} {i.library_version}".strip(), ",".join(sorted(c.consumes)),
                     "yes" if i.needs_fit else "", "yes" if i.needs_gradients else "",
                     "yes" if i.needs_ood_tuning else "", "" if i.cpu_ok else "GPU only", (i.paper or "")[:60]])
    print(tabulate(rows, headers=["name", "library", "consumes", "fit", "grad", "OOD tuning", "device", "paper"],
                   tablefmt="simple"))
    for mod, why in registry.unavailable().items():
        print(f"(not available: {mod}: {why})")
    return 0
