"""The library comparison: ``results/comparison.md`` and ``comparison.html``.

pytorch-ood, OpenOOD and the lab's own methods compared on four criteria, all measured:

1. ease of use: install footprint, import time, adapter code, what each detector needs
   (from ``results/ease/ease.json``, written by ``oodbench ease``; documented facts that cannot be
   measured come from ``oodbench/benchmark/tools/ease_facts.json`` with their sources);
2. performance: per suite and library, the best and median group AUROC over its detectors and the
   cost medians (from each suite's leaderboard), and the same method across libraries side by side;
3. robustness: the outcome of each detector on NaN input, constant images, a batch of one and a
   wrong dtype (ease.json);
4. code quality: static analysis of each installed package (ease.json).
"""
from __future__ import annotations

from oodbench.benchmark.evaluation.results import GROUPS
from oodbench.benchmark.reporting.documents import Doc
from oodbench.benchmark.reporting.figures import fig_libraries
from oodbench.benchmark.reporting.formatting import num, pct
from oodbench.benchmark.reporting.leaderboard import leaderboard
from oodbench.benchmark.reporting.loading import SuiteResults
from oodbench.benchmark.reporting.tables import PROBES, detector_ease_rows, library_ease_rows, quality_rows


def comparison_report(suites: list[SuiteResults], ease: dict) -> Doc:
    """The comparison document from every suite's results and the content of ease.json (may be empty)."""
    doc = Doc("OOD library comparison: pytorch-ood vs OpenOOD vs the lab's methods")
    libs_ease = sorted((ease.get("libraries") or {}).keys())
    perf_libs = sorted({lib for s in suites for lib in s.ok["library"].unique() if lib})
    libs = sorted(set(libs_ease) | set(perf_libs))
    doc.p("Four criteria — ease of use, performance, robustness, code quality — all with measured values. "
          "Performance comes from each suite's results files (`oodbench run`); ease of use, robustness and code "
          "quality from `results/ease/ease.json` (`oodbench ease`), measured by code; the few facts that cannot "
          "be measured come from `oodbench/benchmark/tools/ease_facts.json`, each with its source. "
          "Libraries present: " + ", ".join(f"`{x}`" for x in libs) + ".")
    missing = [lib for lib in ("pytorch-ood", "openood") if lib not in libs]
    if missing:
        doc.p("Not measured here (not installed where `oodbench ease` ran, or no results): " +
              ", ".join(f"`{m}`" for m in missing) + ".")
    if ease.get("environment"):
        env = ease["environment"]
        doc.p("Measured on: " + ", ".join(f"{k} {env[k]}" for k in sorted(env)) + ".")
    _ease_section(doc, ease, libs)
    _performance_section(doc, suites)
    _robustness_section(doc, ease, libs)
    _quality_section(doc, ease)
    doc.p("Regenerate with `oodbench ease` (measurements) and `oodbench report` (this page).")
    return doc


def _ease_section(doc: Doc, ease: dict, libs: list[str]) -> None:
    """Install and import measurements per library, what the detectors of each library require, and
    the documented facts."""
    doc.h2("1. Ease of use", "ease")
    h, r = library_ease_rows(ease)
    doc.table(h, r)
    inst_notes = []
    for lib, d in sorted((ease.get("libraries") or {}).items()):
        inst = d.get("install", {})
        imp = d.get("import", {})
        eff = d.get("integration", {})
        if inst.get("added_method") and not any(n.startswith("Packages / MB added") for n in inst_notes):
            inst_notes.insert(0, "Packages / MB added: " + inst["added_method"].split(" (declared")[0])
        if inst.get("declared_added_packages") is not None:
            inst_notes.append(f"**{lib}** declared requirements alone add {inst['declared_added_packages']} packages, "
                              f"{num(inst.get('declared_added_mb'))} MB" +
                              (f"; declared but not installed: {', '.join(inst['missing_declared'])}"
                               if inst.get("missing_declared") else ""))
        if imp.get("runs"):
            inst_notes.append(f"**{lib}** import: `{imp.get('statement', '')}` in a fresh interpreter, runs "
                              f"{', '.join(num(x) for x in imp['runs'])} s (median {num(imp.get('median_s'))} s"
                              + (f"; torch alone {num(imp.get('torch_median_s'))} s" if imp.get('torch_median_s') else "")
                              + ")")
        if eff.get("model_contract"):
            inst_notes.append(f"**{lib}** model contract: {eff['model_contract']}")
    if inst_notes:
        doc.bullets(inst_notes)
    rows = []
    for lib in libs:
        ds = _library_detectors(ease, lib)
        if not ds:
            continue

        def cnt(f):
            return sum(1 for e in ds if f(e))
        rows.append([lib, str(len(ds)), str(cnt(lambda e: e["requirements"].get("fit_data"))),
                     str(cnt(lambda e: e["requirements"].get("ood_tuning"))),
                     str(cnt(lambda e: e["requirements"].get("gradients"))),
                     str(cnt(lambda e: e["requirements"].get("gpu_only"))),
                     str(cnt(lambda e: e.get("network_at_construction"))),
                     str(cnt(lambda e: bool(e.get("required_args")))),
                     str(cnt(lambda e: "model" in e.get("consumes", [])))])
    doc.h3("Requirements (number of detectors)")
    doc.table(["library", "detectors", "need fit data", "need OOD data for tuning", "need gradients",
               "GPU only (cpu_ok=False)",
               "network at construction", "need user-supplied library args", "run the network themselves"], rows)
    facts = ease.get("facts") or {}
    if facts:
        doc.h3("Documented facts (not measurable here)")
        rows = []
        for lib in sorted(facts):
            for f in facts[lib]:
                rows.append([lib, f.get("fact", ""), f.get("source", "")])
        doc.table(["library", "fact", "source"], rows)


def _library_detectors(ease: dict, lib: str) -> list[dict]:
    """The ease.json entries of the detectors of library ``lib``."""
    return [e for e in (ease.get("detectors") or {}).values() if e.get("library") == lib]


def _performance_section(doc: Doc, suites: list[SuiteResults]) -> None:
    """Per suite: each library's best and median group AUROC and cost medians; the same method in
    several libraries side by side; and the figure of every detector's AUROC by library."""
    doc.h2("2. Performance", "performance")
    doc.p("Per suite and library over its detectors: the best and the median group AUROC (%), mean over seeds, "
          "and the cost medians. Same representations (one forward pass per dataset) for every library.")
    boards = [(s, leaderboard(s.df, s.record)) for s in suites]
    doc.image("libraries_auroc.png", fig_libraries([(s.suite, lb) for s, lb in boards]),
              "AUROC of every detector by library and OOD group (dots: detectors, bars: library medians)")
    for s, lb in boards:
        ok = lb[lb["status"] == "ok"] if len(lb) else lb
        if ok.empty:
            continue
        doc.h3(f"{s.suite} (model {s.record.get('model', '?')}, seeds {s.seeds})")
        rows = []
        for lib, g in ok.groupby("library", sort=True):
            row = [lib, str(len(g))]
            for grp in GROUPS:
                col = g[f"{grp}:auroc"].dropna()
                best = g.loc[col.idxmax(), "detector"] if len(col) else "–"
                row += [f"{pct(col.max())} ({best})" if len(col) else "–", pct(col.median()) if len(col) else "–"]
            row += [num(g["fit_seconds"].median()), num(g["throughput_per_s"].median())]
            nfail = int((lb["library"] == lib).sum() - len(g))
            row.append(str(nfail))
            rows.append(row)
        doc.table(["library", "detectors"] + [x for grp in GROUPS for x in (f"best {grp}", f"median {grp}")] +
                  ["median fit s", "median samples/s", "failed"], rows)
        by_method: dict = {}
        for _, r in ok.iterrows():
            by_method.setdefault(str(r["detector"]).split(".")[-1], []).append(r)
        shared = {m: rs for m, rs in by_method.items() if len({x["library"] for x in rs}) > 1}
        if shared:
            doc.p("Same method, different libraries (near / far AUROC %):")
            rows = []
            for m in sorted(shared):
                for r in sorted(shared[m], key=lambda x: x["library"]):
                    rows.append([m, r["library"], r["detector"], pct(r["near:auroc"], r.get("near:auroc:std")),
                                 pct(r["far:auroc"], r.get("far:auroc:std")), num(r["fit_seconds"]),
                                 num(r["throughput_per_s"])])
            doc.table(["method", "library", "detector", "near AUROC", "far AUROC", "fit s", "samples/s"], rows)


def _robustness_section(doc: Doc, ease: dict, libs: list[str]) -> None:
    """Per library and probe, how many detectors gave each outcome; then every detector's outcomes."""
    doc.h2("3. Robustness", "robustness")
    doc.p("Each detector, fitted on the separable toy problem (`oodbench.benchmark.tools.separable`), is fed NaN "
          "inputs, constant images, a batch of one and a wrong dtype. Outcomes: **ok** (valid finite scores), "
          "**clear error** (an exception whose message names the problem), **crash** (an exception that does not, "
          "or a dead process), **silent garbage** (NaN/inf/wrong shape or dtype returned without an error, or "
          "finite scores for NaN input).")
    rows = []
    outcomes = ("ok", "clear error", "crash", "silent garbage")
    for lib in libs:
        ds = _library_detectors(ease, lib)
        if not ds:
            continue
        for p in PROBES:
            c = {o: 0 for o in outcomes}
            for e in ds:
                o = ((e.get("probes") or {}).get(p) or {}).get("outcome")
                if o in c:
                    c[o] += 1
            rows.append([lib, p.replace("_", " ")] + [str(c[o]) for o in outcomes])
    doc.table(["library", "probe", *outcomes], rows)
    h, r = detector_ease_rows(ease)
    doc.h3("Per detector")
    doc.table(h, r, [list(x) for x in r], sortable=True)


def _quality_section(doc: Doc, ease: dict) -> None:
    """Static analysis of each installed library package."""
    doc.h2("4. Code quality", "quality")
    doc.p("Static analysis (Python `ast`) of each installed package: modules, code lines (non-blank, "
          "non-comment), size, public classes and functions, docstring coverage (modules, public classes, "
          "functions and methods with a docstring), type-hint coverage (annotated parameters and returns of "
          "public functions and methods), test files shipped inside the package, hard-coded `.cuda()` calls, "
          "bare `except:`.")
    h, r = quality_rows(ease)
    doc.table(h, r)
    qn = []
    for lib, q in sorted((ease.get("quality") or {}).items()):
        if q and q.get("path"):
            qn.append(f"**{lib}**: `{q['path']}`" + (f" — {q['note']}" if q.get("note") else ""))
    if qn:
        doc.bullets(qn)
