"""The deployment sections of a suite report: failure detection, the full-spectrum view and the guard.

Read from the results files only (``results.csv`` rows written by
:func:`oodbench.benchmark.evaluation.rows.deployment_rows`, the ``risk_coverage`` curves of
``curves.json``); definitions in :mod:`oodbench.benchmark.evaluation.failure`.

* **Failure detection**: per detector, misclassification AUROC, AURC, E-AURC and selective risk on
  the ID test set and on the covariate-shifted sets (mean over sets), a per-set FD-AUROC table and
  the risk–coverage figure;
* **Full spectrum**: AUROC / FPR@95 with covariate-shifted ID counted as ID, beside the usual AUROC;
* **The guard**: for detectors with p-values, refusal rates (ID test, covariate sets split by right /
  wrong predictions, near / far OOD) and the accuracy of accepted predictions with Wilson intervals,
  against the unguarded classifier; and a figure of refusal rates against alpha.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from oodbench.benchmark.reporting.figures import pyplot, png_bytes, line_styles
from oodbench.benchmark.reporting.formatting import ci_str, pct
from oodbench.benchmark.reporting.loading import SuiteResults

#: (metric in results.csv, label, higher is better)
FD = (("fd_auroc", "FD-AUROC", True), ("aurc", "AURC", False), ("eaurc", "E-AURC", False),
      ("risk@80", "risk@80", False), ("risk@90", "risk@90", False), ("risk@95", "risk@95", False))
ALPHAS = ("0.01", "0.05", "0.10")
NOTE_FD = ("Failure detection: does the score (higher = more OOD) rank the classifier's wrong predictions above "
           "its right ones? FD-AUROC: AUROC with wrong predictions as positive (50 = chance). AURC: mean "
           "selective risk (error rate among the accepted) when accepting the most confident samples first, "
           "over all coverages; E-AURC: AURC minus the oracle's (0 = perfect ranking); risk@c: selective risk "
           "at c % coverage. Values in %, mean over seeds; `covariate` = mean over the covariate-shifted sets.")
NOTE_GUARD = ("The guard: a prediction is refused when the detector's p-value is ≤ α. Refusal rates (%) on the "
              "ID test set, on the covariate-shifted sets (mean over sets) split by right / wrong predictions, "
              "and on near / far OOD (mean over sets); accepted accuracy = accuracy of the predictions not "
              "refused, against the unguarded classifier on the same samples; [ ] = 95 % Wilson interval "
              "(bounds averaged over seeds).")


def _cells(res: SuiteResults) -> pd.DataFrame:
    """Mean over seeds of every (detector, test_set, metric), with the mean CI bounds."""
    ok = res.ok
    g = ok.groupby(["detector", "test_set", "metric"])
    return pd.DataFrame({"value": g["value"].mean(), "lo": g["ci_low"].mean(), "hi": g["ci_high"].mean()})


def _get(cells, det, ts, metric, col="value"):
    key = (det, ts, metric)
    return float(cells.loc[key, col]) if key in cells.index else float("nan")


def sections(doc, res: SuiteResults, dets: list[str]) -> None:
    """Append the failure-detection, full-spectrum and guard sections (each only when its rows exist)."""
    cells = _cells(res)
    present = set(cells.index.get_level_values("metric")) if len(cells) else set()
    if "aurc" in present:
        _failure_section(doc, res, cells, dets)
    if "fs_auroc" in present:
        _full_spectrum_section(doc, cells, dets)
    if "refusal@0.05" in present:
        _guard_section(doc, res, cells, [d for d in dets if (d, "id", "refusal@0.05") in cells.index])


def _failure_section(doc, res, cells, dets) -> None:
    doc.h2("Failure detection", "failure-detection")
    doc.p(NOTE_FD)
    headers = ["detector"] + [f"ID {lab}" for _, lab, _ in FD] + [f"covariate {lab}" for _, lab, _ in FD[:4]]
    rows, keys = [], []
    for d in dets:
        vals = [_get(cells, d, "id", m) for m, _, _ in FD] + [_get(cells, d, "covariate-mean", m) for m, _, _ in FD[:4]]
        if all(math.isnan(v) for v in vals):
            continue
        rows.append([d] + [pct(v) for v in vals])
        keys.append([d] + vals)
    doc.table(headers, rows, keys, sortable=True)
    cov = [t for t, g in res.test_sets if g == "covariate"]
    sets = ["id"] + [t for t in cov if any((d, t, "fd_auroc") in cells.index for d in dets)]
    doc.h3("FD-AUROC per labelled set (%)")
    rows = [[d] + [pct(_get(cells, d, t, "fd_auroc")) for t in sets] for d in dets
            if (d, "id", "fd_auroc") in cells.index]
    doc.table(["detector"] + sets, rows)
    doc.image("risk_coverage.png", fig_risk_coverage(res, dets),
              "Risk–coverage curves (mean over seeds): ID test and covariate-shifted sets; dotted: the oracle")


def _full_spectrum_section(doc, cells, dets) -> None:
    doc.h3("Full spectrum: covariate-shifted ID counted as ID")
    doc.p("fs-AUROC / fs-FPR@95: near / far OOD against the ID test set plus every covariate-shifted set "
          "(OpenOOD v1.5's full-spectrum setting), beside the usual AUROC against the ID test set alone (%).")
    headers = ["detector", "near fs-AUROC", "near AUROC", "near fs-FPR@95", "far fs-AUROC", "far AUROC",
               "far fs-FPR@95"]
    rows, keys = [], []
    for d in dets:
        vals = []
        for g in ("near", "far"):
            vals += [_get(cells, d, f"{g}-mean", "fs_auroc"), _get(cells, d, f"{g}-mean", "auroc"),
                     _get(cells, d, f"{g}-mean", "fs_fpr95")]
        if all(math.isnan(v) for v in vals):
            continue
        rows.append([d] + [pct(v) for v in vals])
        keys.append([d] + vals)
    doc.table(headers, rows, keys, sortable=True)


def _guard_section(doc, res, cells, dets) -> None:
    if not dets:
        return
    doc.h2("The guard", "guard")
    doc.p(NOTE_GUARD)
    headers = ["detector", "α", "ID refused", "ID right refused", "ID wrong refused", "cov. right refused",
               "cov. wrong refused", "near refused", "far refused", "ID accepted acc.", "ID unguarded acc.",
               "cov. accepted acc.", "cov. unguarded acc."]
    rows = []
    for d in dets:
        for a in ALPHAS:
            def g(ts, m):
                return _get(cells, d, ts, f"{m}@{a}")

            acc = pct(g("id", "accepted_accuracy")) + " " + ci_str(_get(cells, d, "id", f"accepted_accuracy@{a}", "lo"),
                                                                  _get(cells, d, "id", f"accepted_accuracy@{a}", "hi"))
            rows.append([d, a, pct(g("id", "refusal")), pct(g("id", "refusal_right")), pct(g("id", "refusal_wrong")),
                         pct(g("covariate-mean", "refusal_right")), pct(g("covariate-mean", "refusal_wrong")),
                         pct(g("near-mean", "refusal")), pct(g("far-mean", "refusal")), acc,
                         pct(_get(cells, d, "id", "unguarded_accuracy")), pct(g("covariate-mean", "accepted_accuracy")),
                         pct(_get(cells, d, "covariate-mean", "unguarded_accuracy"))])
    doc.table(headers, rows)
    doc.image("guard.png", fig_guard(cells, dets), "The guard: refusal rate against α per detector (mean over seeds)")


def _mean_curve(res: SuiteResults, det: str, sets: list[str]):
    """Coverage grid and mean risk over seeds (and ``sets``) from curves.json; None when absent."""
    risks, cov = [], None
    for sd in sorted(res.curves, key=int):
        rc = res.curves[sd].get(det, {}).get("risk_coverage", {})
        for t in sets:
            if t in rc and rc[t]["risk"]:
                cov = rc[t]["coverage"]
                risks.append(rc[t]["risk"])
    if not risks:
        return None
    return np.asarray(cov, float), np.mean(np.asarray(risks, float), axis=0)


def fig_risk_coverage(res: SuiteResults, dets: list[str]) -> bytes | None:
    """Risk against coverage per detector: ID test, and covariate sets (risk averaged over the sets);
    the oracle (right predictions first) dotted."""
    cov_sets = [t for t, g in res.test_sets if g == "covariate"]
    panels = [("ID test", ["id"])] + ([("covariate-shifted (mean over sets)", cov_sets)] if cov_sets else [])
    curves = {(p, d): _mean_curve(res, d, sets) for p, sets in panels for d in dets}
    panels = [(p, s) for p, s in panels if any(curves[(p, d)] is not None for d in dets)]
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.4 + 0.14 * len(dets) / 2), squeeze=False)
    handles = {}
    for ax, (title, _) in zip(axes.flat, panels):
        oracle = None
        for d, (col, ls) in zip(dets, line_styles(len(dets))):
            c = curves[(title, d)]
            if c is None:
                continue
            (handles[d],) = ax.plot(c[0], 100 * c[1], color=col, ls=ls, lw=1.2, label=d)
            oracle = c
        if oracle is not None:
            x, r = oracle[0], oracle[1][-1]  # full-coverage risk = error rate
            ax.plot(x, 100 * np.maximum(0, x - (1 - r)) / x, color="0.4", ls=":", lw=1.0)
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_xlabel("coverage (fraction accepted)")
        ax.set_ylabel("selective risk (%)")
        ax.grid(alpha=0.3)
    fig.legend([handles[d] for d in dets if d in handles], [d for d in dets if d in handles], loc="lower center",
               ncol=min(3, max(1, len(handles))), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.05 + 0.03 * math.ceil(len(handles) / 3), 1, 1))
    return png_bytes(fig)


def fig_guard(cells, dets: list[str]) -> bytes | None:
    """Per detector with p-values: refusal rate against alpha on ID right / wrong, covariate right /
    wrong and near / far OOD; the diagonal is the nominal false-alarm rate."""
    if not dets:
        return None
    plt = pyplot()
    lines = (("ID right", "id", "refusal_right", "#333333", "-"), ("ID wrong", "id", "refusal_wrong", "#333333", "--"),
             ("cov. right", "covariate-mean", "refusal_right", "#2ca02c", "-"),
             ("cov. wrong", "covariate-mean", "refusal_wrong", "#2ca02c", "--"),
             ("near OOD", "near-mean", "refusal", "#d62728", "-"), ("far OOD", "far-mean", "refusal", "#1f77b4", "-"))
    ncol = min(4, len(dets))
    nrow = math.ceil(len(dets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow + 0.5), squeeze=False)
    x = np.array([float(a) for a in ALPHAS])
    handles = {}
    for ax, d in zip(axes.flat, dets):
        for lab, ts, m, col, ls in lines:
            y = np.array([_get(cells, d, ts, f"{m}@{a}") for a in ALPHAS])
            if np.isnan(y).all():
                continue
            (handles[lab],) = ax.plot(x, 100 * y, color=col, ls=ls, marker="o", ms=3, lw=1.1)
        ax.plot(x, 100 * x, color="0.6", ls=":", lw=0.8)
        ax.set_title(d)
        ax.set_xticks(x)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("α")
        ax.set_ylabel("refused (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(dets):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=6, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return png_bytes(fig)
