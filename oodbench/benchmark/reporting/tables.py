"""Tables other than the leaderboard, as plain rows of display strings.

Per suite (from :class:`~oodbench.benchmark.reporting.loading.SuiteResults`): each detector's metric
per test set (:func:`per_set`), the test sets in the run's order (:func:`set_order`) and the
classifier's accuracy (:func:`accuracy`).

From ``ease.json`` (``oodbench ease``): one row per library for ease of use
(:func:`library_ease_rows`), one per library for code quality (:func:`quality_rows`) and one per
detector for requirements and robustness probes (:func:`detector_ease_rows`). Each returns
``(headers, rows)``, ready for :meth:`Doc.table <oodbench.benchmark.reporting.documents.Doc.table>`
or ``tabulate``.
"""
from __future__ import annotations

import pandas as pd

from oodbench.benchmark.reporting.formatting import num, pct, yes_no
from oodbench.benchmark.reporting.loading import SuiteResults

#: the robustness probes of ``oodbench ease``, in the order they are shown
PROBES = ("nan_input", "constant_images", "batch_of_one", "wrong_dtype")


def per_set(res: SuiteResults, metric: str, summ: pd.DataFrame | None = None) -> pd.DataFrame:
    """Detector × test set: mean over seeds of ``metric`` and its std over seeds, indexed by
    ``(detector, test_set)`` with columns ``value``, ``std``, ``lo``, ``hi``. ``lo`` / ``hi``: the 95 %
    interval of the mean over seeds from ``summ`` (``summary.summarise``: the two-level bootstrap, seeds
    resampled), the interval every other table shows; without ``summ``, NaN (an average of the per-seed
    intervals would leave the spread between seeds out)."""
    ok = res.ok
    p = ok[(ok["metric"] == metric) & ~ok["test_set"].str.endswith("-mean")]
    if p.empty:
        return pd.DataFrame()
    g = p.groupby(["detector", "test_set"])
    tab = pd.DataFrame({"value": g["value"].mean(), "std": g["value"].std(ddof=1)})
    tab["lo"] = tab["hi"] = float("nan")
    if summ is not None and len(summ):
        s = summ[summ["metric"] == metric].set_index(["detector", "test_set"])
        s = s[~s.index.duplicated()].reindex(tab.index)
        tab["lo"], tab["hi"] = s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float)
    return tab


def set_order(res: SuiteResults) -> list[str]:
    """The test sets that have detector results, in the run's order (near, far, covariate)."""
    order = [t for t, _ in res.test_sets]
    got = set(res.ok["test_set"])
    return [t for t in order if t in got]


def accuracy(res: SuiteResults) -> list[tuple[str, float, float]]:
    """The classifier's accuracy on ID test (``id``) and each test set that has labels: ``(test set,
    mean over seeds, std over seeds or NaN with one seed)``."""
    acc = res.df[(res.df["metric"] == "accuracy") & (res.df["status"] == "ok")]
    if acc.empty:
        return []
    order = ["id"] + set_order(res)
    g = acc.groupby("test_set")["value"]
    m, s = g.mean(), g.std(ddof=1)
    return [(t, float(m[t]), float(s[t]) if len(res.seeds) > 1 else float("nan")) for t in order if t in m.index]


def _entries(ease: dict, section: str, keep=None) -> list[tuple[str, dict]]:
    """The (name, entry) pairs of one section of ease.json, sorted by name; only names in ``keep`` if given."""
    return [(k, v) for k, v in sorted((ease.get(section) or {}).items()) if keep is None or k in keep]


def library_ease_rows(ease: dict, libs=None):
    """Per library (only ``libs`` when given): version, install footprint, undeclared imports, pin
    conflicts, import time and the lines of adapter code this project needed."""
    rows = []
    for lib, d in _entries(ease, "libraries", libs):
        inst = d.get("install", {})
        imp = d.get("import", {})
        eff = d.get("integration", {})
        rows.append([lib, d.get("version", "–") or "–", yes_no(inst.get("on_pypi")),
                     str(inst.get("n_declared_dependencies", "–")),
                     num(inst.get("added_packages")), num(inst.get("added_mb")),
                     ", ".join(inst.get("undeclared_imports") or []) or "none",
                     "; ".join(inst.get("pin_conflicts") or []) or "none",
                     num(imp.get("median_s")), num(eff.get("adapter_code_lines")),
                     num(eff.get("median_lines_per_detector")),
                     str(d.get("n_detectors", "–"))])
    headers = ["library", "version", "on PyPI", "declared deps", "packages added", "MB added", "undeclared imports",
               "pins conflicting with ours", "import s (after torch)", "adapter lines", "lines / detector", "detectors"]
    return headers, rows


def quality_rows(ease: dict, libs=None):
    """Per library (only ``libs`` when given): static-analysis counts of the installed package."""
    rows = []
    for lib, q in _entries(ease, "quality", libs):
        if not q or q.get("error"):
            rows.append([lib] + ["–"] * 10)
            continue
        rows.append([lib, num(q.get("modules")), num(q.get("code_lines")), num(q.get("size_kb")),
                     num(q.get("public_classes")), num(q.get("public_functions")),
                     pct(q.get("docstring_coverage"), digits=0), pct(q.get("type_hint_coverage"), digits=0),
                     num(q.get("test_files_shipped")), num(q.get("hardcoded_cuda_calls")),
                     num(q.get("bare_excepts"))])
    headers = ["library", "modules", "code lines", "size kB", "public classes", "public functions",
               "docstring cov. %", "type-hint cov. %", "test files shipped", "hard-coded .cuda()", "bare except"]
    return headers, rows


def detector_ease_rows(ease: dict, dets=None):
    """Per detector (only ``dets`` when given): what it consumes and needs, and each probe's outcome."""
    rows = []
    for d, e in _entries(ease, "detectors", dets):
        req = e.get("requirements", {})
        pr = e.get("probes", {})
        need = [lab for k, lab in (("fit_data", "fit data"), ("ood_tuning", "OOD tuning"), ("gradients", "gradients"))
                if req.get(k)]
        rows.append([d, e.get("library", ""), ", ".join(e.get("consumes", [])), ", ".join(need) or "none",
                     yes_no(req.get("gpu_only")), yes_no(e.get("network_at_construction")),
                     ", ".join(e.get("required_args") or []) or "none",
                     num(e.get("adapter_lines")),
                     *[(pr.get(p) or {}).get("outcome", "–") for p in PROBES]])
    headers = ["detector", "library", "consumes", "needs", "GPU only", "network at construction",
               "library args a user must supply", "adapter lines", "NaN input", "constant images", "batch of one",
               "wrong dtype"]
    return headers, rows
