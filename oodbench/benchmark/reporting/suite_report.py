"""The report of one suite: ``results/<suite>/report.md`` and ``report.html``.

Sections, in order: the run's facts (model, seeds, device, versions, split sizes), the classifier's
accuracy, the leaderboard with bootstrap CIs and costs (sortable in the HTML page), AUPR by group,
every metric per test set, the figures, cost per detector, detector metadata, and, when
``results/ease/ease.json`` exists, ease of use and code quality of the libraries used; failures last.
Each section is one function below taking the :class:`Doc` it appends to.
"""
from __future__ import annotations

import pandas as pd

from oodbench.benchmark.evaluation.results import GROUPS
from oodbench.benchmark.evaluation import summary
from oodbench.benchmark.reporting import deployment, extra_sections
from oodbench.benchmark.reporting.cd_diagram import fig_cd
from oodbench.benchmark.reporting.documents import Doc
from oodbench.benchmark.reporting.figures import fig_heatmap, fig_hist, fig_roc, fig_speed
from oodbench.benchmark.reporting.formatting import ci_str, num, pct, yes_no
from oodbench.benchmark.reporting.leaderboard import METRICS, detector_costs, leaderboard
from oodbench.benchmark.reporting.loading import SuiteResults
from oodbench.benchmark.reporting.tables import (accuracy, detector_ease_rows, library_ease_rows, per_set,
                                                 quality_rows, set_order)

NOTE_SIGN = ("Values in %, OOD is the positive class; FPR@95 = fraction of ID flagged at the first threshold "
             "where 95 % of OOD is detected (OpenOOD v1.5 / pytorch-ood 0.4.0). Group values are unweighted "
             "means over the group's test sets, averaged over seeds; ± is the standard deviation over seeds "
             "(ddof = 1), omitted with a single seed.")
NOTE_CI = ("CI: 95 % two-level bootstrap interval of the mean over seeds (`summary.csv`): seeds resampled, and "
           "within each seed a normal draw with the standard error of that seed's stratified bootstrap interval "
           "over the test samples (for a group mean without its own interval, the mean of its sets' errors: "
           "conservative). With one seed it is the within-seed interval alone. Rank: AUROC rank range in the "
           "group — the best and every detector not significantly worse than it (one-sided tests on the "
           "bootstrap of the difference, Holm-corrected at 0.05) share a range; then the same on the rest. "
           "Flagged detectors are listed below the separator and are not ranked among the others.")


def suite_report(res: SuiteResults, ease: dict | None = None) -> Doc:
    """The whole report of one suite from its results files (``ease``: the content of ease.json, if any)."""
    doc = Doc(f"OOD benchmark report: {res.suite}")
    summ = summary.summarise(res.df, paired=summary.paired_from_curves(res.curves))
    lb = leaderboard(res.df, res.record, summ)
    _run_facts(doc, res)
    dets_ok = _leaderboard_section(doc, lb)
    _flags_section(doc, summ)
    _per_set_section(doc, res, dets_ok, summ)
    doc.h2("Figures", "figures")
    _cd_section(doc, res, lb)
    doc.image("auroc_heatmap.png", fig_heatmap(res, dets_ok), "AUROC heatmap: detectors × test sets")
    doc.image("roc_groups.png", fig_roc(res, dets_ok, per_test_set=False),
              "ROC curves per OOD group (TPR averaged over the group's test sets and seeds)")
    doc.image("roc_sets.png", fig_roc(res, dets_ok, per_test_set=True), "ROC curves per test set (mean over seeds)")
    doc.image("score_histograms.png", fig_hist(res, dets_ok), "Score histograms: ID test versus OOD groups")
    doc.image("speed_vs_auroc.png", fig_speed(lb), "Speed versus near-OOD AUROC")
    deployment.sections(doc, res, dets_ok)
    extra_sections.sections(doc, res)
    costs = detector_costs(res.record)
    _cost_section(doc, res.record, costs)
    _metadata_section(doc, costs)
    if ease:
        _ease_sections(doc, ease, costs)
    fails = res.record.get("failures") or []
    if fails:
        doc.h2("Failures", "failures")
        doc.table(["detector", "seed", "error"], [[f["detector"], str(f["seed"]), f["error"][:200]]
                                                  for f in sorted(fails, key=lambda f: (f["detector"], f["seed"]))])
    doc.p(f"Regenerate with `oodbench report` from `{res.folder.name}/results.csv.gz`, `run.json` and "
          "`curves.json.gz`.")
    return doc


def _run_facts(doc: Doc, res: SuiteResults) -> None:
    """What was run, where and with which versions; the classifier's accuracy; how to read the values."""
    rec = res.record
    v = rec.get("versions", {})
    facts = [f"suite `{res.suite}`, model `{rec.get('model', '?')}`, seeds {res.seeds}, device "
             f"`{rec.get('device', '?')}` ({rec.get('device_name', '')}), {rec.get('threads', '?')} CPU thread(s)",
             f"run finished {rec.get('timestamp', '?')}, git `{rec.get('git_commit', '?') or '?'}`",
             "versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)),
             "splits: " + ", ".join(f"{k} {n}" for k, n in sorted((rec.get("split_sizes") or {}).items())),
             f"bootstrap: {(rec.get('bootstrap') or {}).get('n_boot', '?')} resamples",
             f"fit protocol: {_fit_text(rec)} (`--fit-split`; see the README)"]
    for s in rec.get("skipped_test_sets") or []:
        facts.append(f"skipped test set `{s.get('name')}`: {s.get('reason')}")
    doc.bullets(facts)
    from oodbench.benchmark.reporting.leaderboard import weak_seed_warning

    weak = weak_seed_warning(res.df)
    if weak:
        doc.p(weak)
    acc = accuracy(res)
    if acc:
        doc.p("Classifier accuracy (%): " + ", ".join(f"{t} {pct(m, s)}" for t, m, s in acc) + ".")
    doc.p(NOTE_SIGN)


def _leaderboard_section(doc: Doc, lb: pd.DataFrame) -> list[str]:
    """The sortable leaderboard and the AUPR table; returns the detectors that ran, in leaderboard order."""
    doc.h2("Leaderboard", "leaderboard")
    doc.p("Sorted by near-OOD AUROC. In the HTML page, click a column header to sort by it. " + NOTE_CI)
    headers = ["library", "detector"]
    for g in GROUPS:
        headers += [f"{g} rank", f"{g} AUROC", f"{g} AUROC CI", f"{g} FPR@95"]
    headers += ["fit s", "samples/s", "peak MB", "status"]
    rows, keys = [], []
    dets_ok, sep = [], False
    for _, r in lb.iterrows():
        if r["status"] == "ok" and r["flag"] and not sep:
            rows.append(["**flagged: not ranked**"] + [""] * (len(headers) - 1))
            keys.append([None] * len(headers))
            sep = True
        if r["status"] != "ok":
            rows.append([r["library"], r["detector"]] + ["–"] * (len(headers) - 3) + ["failed: " + r["error"][:160]])
            keys.append([r["library"], r["detector"]] + [None] * (len(headers) - 3) + ["failed"])
            continue
        dets_ok.append(r["detector"])
        row, key = [r["library"], r["detector"]], [r["library"], r["detector"]]
        for g in GROUPS:
            rank = r.get(f"{g}:rank") or ("flag" if r["flag"] else "–")
            row += [rank, pct(r.get(f"{g}:auroc"), r.get(f"{g}:auroc:std")),
                    ci_str(r.get(f"{g}:auroc:lo"), r.get(f"{g}:auroc:hi")),
                    pct(r.get(f"{g}:fpr95"), r.get(f"{g}:fpr95:std"))]
            first = rank.split("–")[0]
            key += [int(first) if first.isdigit() else None, r.get(f"{g}:auroc"), r.get(f"{g}:auroc:lo"),
                    r.get(f"{g}:fpr95")]
        row += [num(r.get("fit_seconds")), num(r.get("throughput_per_s")), num(r.get("peak_python_mb")),
                "flagged: " + r["flag"] if r["flag"] else "ok"]
        key += [r.get("fit_seconds"), r.get("throughput_per_s"), r.get("peak_python_mb"), r["flag"] or "ok"]
        rows.append(row)
        keys.append(key)
    doc.table(headers, rows, keys, sortable=True, tid="leaderboard")

    aupr = [(m, lab) for m, lab, _ in METRICS if m.startswith("aupr")]
    headers = ["detector"] + [f"{g} {lab}" for g in GROUPS for _, lab in aupr]
    rows = [[r["detector"]] + [pct(r.get(f"{g}:{m}"), r.get(f"{g}:{m}:std")) for g in GROUPS for m, _ in aupr]
            for _, r in lb.iterrows() if r["status"] == "ok"]
    doc.h3("AUPR by group")
    doc.p("Unlike AUROC and FPR@95, AUPR depends on the ratio of OOD to ID samples: compare it only between "
          "detectors scored on the same samples (`n_id`, `n_ood` in `results.csv.gz`; the expensive detectors "
          "score a subsample on CPU).")
    doc.table(headers, rows)
    return dets_ok


def _flags_section(doc: Doc, summ: pd.DataFrame) -> None:
    """Every flagged (detector, group) with its reasons (see :mod:`oodbench.benchmark.evaluation.summary`)."""
    fl = summ[(summ["flag"] != "") & summ["test_set"].str.endswith("-mean") & (summ["metric"] == "auroc")]
    doc.h2("Flagged detectors", "flags")
    if fl.empty:
        doc.p("No (detector, group) is flagged: no AUROC interval lies entirely below 50 %, no detector gives "
              "constant scores or p-values without false alarms at α = 0.10, none is declared not applicable.")
        return
    doc.p("Flagged (detector, group) pairs are shown apart in the leaderboard and never ranked with the others. "
          "`inverted`: the group's AUROC interval lies entirely below 50 %; `degenerate`: constant scores (AUROC "
          "exactly 50 % with FPR@95 = 100 % on every test set, or a recorded score std of 0) or p-values with no "
          "false alarm at α = 0.10 on ID test; `not_applicable`: the adapter declares that the classifier lacks "
          "what the method needs.")
    doc.table(["detector", "group", "AUROC", "95 % CI", "flag", "reason"],
              [[r["detector"], r["group"], pct(r["mean"], r["std"]), ci_str(r["ci_low"], r["ci_high"]), r["flag"],
                r["flag_reason"]] for _, r in fl.sort_values(["detector", "group"], kind="mergesort").iterrows()])
    known = sorted({d for d in fl["detector"] if d.rsplit(".", 1)[-1] in KNOWN_CAUSES})
    if known:
        doc.p("Causes measured for flagged methods (the same method in either library):")
        doc.bullets([f"`{d}`: {KNOWN_CAUSES[d.rsplit('.', 1)[-1]]}" for d in known])


_MAGNITUDE = ("reads large penultimate activations as evidence of ID data; where OOD inputs excite the network more "
              "than ID inputs (MNIST and notMNIST on the FashionMNIST LeNet: feature L1 norm 532 and 524 against "
              "365) it ranks them as ID (`docs/investigations/fashionmnist_near.md`)")
#: measured causes of below-chance results, by method name (the part after the library prefix)
KNOWN_CAUSES = {
    "nacue": "far-OOD inputs make the classifier unsure, so their neuron states (sigmoid of z · ∂KL/∂z) collapse to "
             "the centre bins every ID histogram fills and count as covered; not the pre-ReLU hooks (post-ReLU "
             "hooks give identical AUROCs): `docs/investigations/nacue_far_ood.md`",
    "dice": _MAGNITUDE, "gradnorm": _MAGNITUDE, "she": _MAGNITUDE,
    "mahalanobis": "the inverted sets (blur, contrast, far-OOD images) shrink LeNet's fc1 activations (mean L1 norm "
                   "82–264 against 593 on ID), and a shrunken feature vector lies closer to a class mean in the tied "
                   "Mahalanobis metric than a typical ID image; LeNet's dead fc1 units are not the cause (those sets "
                   "hardly activate them): `docs/investigations/mahalanobis_mnist.md`",
    "mahalanobis_odin": "as `mahalanobis` (the input perturbation does not change the feature statistics it reads)",
    "mds": "as `pytorch_ood.mahalanobis` (the same method in OpenOOD)",
}


def _cd_section(doc: Doc, res: SuiteResults, lb: pd.DataFrame) -> None:
    """The critical-difference diagram over (test set × seed) blocks of the detectors flagged nowhere."""
    flagged = set(lb.loc[(lb["status"] == "ok") & (lb["flag"] != ""), "detector"]) if "flag" in lb else set()
    png, st = fig_cd(res.df, exclude=flagged)
    if png is None:
        return
    doc.image("cd_diagram.png", png, "Critical-difference diagram: average AUROC rank (Friedman + Nemenyi)")
    doc.p(f"Friedman test over N = {st['N']} blocks (test set × seed) and k = {st['k']} detectors (those flagged "
          f"in no group): χ² = {st['chi2']:.1f}, p = {st['p_chi2']:.2g}; Iman–Davenport F = {st['F']:.2f}, "
          f"p = {st['p_F']:.2g}. Nemenyi critical difference at α = {st['alpha']}: {st['cd']:.2f} ranks "
          "(Demšar 2006). Detectors joined by a bar are not significantly different.")


def _per_set_section(doc: Doc, res: SuiteResults, dets: list[str], summ: pd.DataFrame | None = None) -> None:
    """One table per metric: each detector on each test set (mean ± std over seeds; AUROC with its CI)."""
    doc.h2("Per test set", "per-set")
    sets = set_order(res)
    grp = dict(res.test_sets)
    for m, lab, _ in METRICS:
        tab = per_set(res, m, summ)
        if tab.empty:
            continue
        doc.h3(f"{lab} per test set (%)" + (" with 95 % bootstrap CI" if m == "auroc" else ""))
        headers = ["detector"] + [f"{t} ({grp.get(t, '')})" for t in sets]
        rows, keys = [], []
        for d in dets:
            row, key = [d], [d]
            for t in sets:
                if (d, t) in tab.index:
                    x = tab.loc[(d, t)]
                    s = pct(x["value"], x["std"] if len(res.seeds) > 1 else None)
                    if m == "auroc":
                        s += " " + ci_str(x["lo"], x["hi"])
                    row.append(s)
                    key.append(x["value"])
                else:
                    row.append("–")
                    key.append(None)
            rows.append(row)
            keys.append(key)
        doc.table(headers, rows, keys, sortable=True)


def _fit_text(rec: dict) -> str:
    """What the detectors were fitted on, from the run record (older records: the fit split for all)."""
    sizes = rec.get("split_sizes") or {}
    fs = (rec.get("fit_split") or {}).get("baselines", "fit")
    if fs == "train":
        return (f"third-party baselines fitted on the {sizes.get('train', '?')}-image training split, the lab's "
                f"methods on the {sizes.get('fit', '?')}-image fit split")
    return f"fit on {sizes.get('fit', '?')} ID samples"


def _cost_section(doc: Doc, rec: dict, costs: dict) -> None:
    """Fit and score time, throughput and peak memory per detector, and the representation extraction."""
    doc.h2("Cost", "cost")
    ext = rec.get("extraction") or {}
    doc.p("Per detector, median over seeds, measured by the run on cached representations "
          f"({_fit_text(rec)}; peak = Python allocations "
          "during fit + score, tracemalloc). Representation extraction: " +
          ", ".join(f"seed {s}: {e.get('forward_passes', '?')} forward passes in {num(e.get('forward_seconds'))} s, "
                    f"{e.get('cache_hits', '?')} cache hits" for s, e in sorted(ext.items())) + ".")
    rows, keys = [], []
    for d in sorted(costs):
        c = costs[d]
        rows.append([d, c["info"].get("library", ""), num(c["fit_seconds"]), num(c["score_seconds"]),
                     num(c["throughput_per_s"]), num(c["peak_python_mb"])])
        keys.append([d, c["info"].get("library", ""), c["fit_seconds"], c["score_seconds"], c["throughput_per_s"],
                     c["peak_python_mb"]])
    doc.table(["detector", "library", "fit s", "score s", "samples/s", "peak MB"], rows, keys, sortable=True)


def _metadata_section(doc: Doc, costs: dict) -> None:
    """What each detector needs (fit data, OOD tuning, gradients, a GPU) and its paper, from run.json."""
    doc.h2("Detector metadata", "metadata")
    rows = []
    for d in sorted(costs):
        i = costs[d]["info"]
        rows.append([d, f"{i.get('library', '')} {i.get('library_version', '')}".strip(), yes_no(i.get("needs_fit")),
                     yes_no(i.get("needs_ood_tuning")), yes_no(i.get("needs_gradients")), yes_no(i.get("cpu_ok")),
                     (i.get("paper") or "")[:90]])
    doc.table(["detector", "library", "needs fit", "OOD tuning", "gradients", "CPU ok", "paper"], rows)


def _ease_sections(doc: Doc, ease: dict, costs: dict) -> None:
    """Ease of use and code quality of the libraries (and detectors) that appear in this run."""
    libs = sorted({c["info"].get("library", "") for c in costs.values()})
    doc.h2("Ease of use", "ease")
    doc.p(f"From `{ease.get('_path', 'results/ease/ease.json')}` (`oodbench ease`, measured "
          f"{ease.get('timestamp', '?')}); see the library comparison report for sources and method.")
    h, r = library_ease_rows(ease, libs)
    doc.table(h, r)
    h, r = detector_ease_rows(ease, set(costs))
    doc.table(h, r, [[c for c in row] for row in r], sortable=True)
    doc.h2("Code quality", "quality")
    h, r = quality_rows(ease, libs)
    doc.table(h, r)
