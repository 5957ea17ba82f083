"""PNG figures of the statistical-test analysis (:mod:`.stattest_analysis`), from its result dict.

Each function returns PNG bytes, or ``None`` when there is nothing to draw. Fonts, sizes and the
metadata-free PNG writer are the report's (:mod:`oodbench.benchmark.reporting.figures`).
"""
from __future__ import annotations

import numpy as np

from oodbench.benchmark.reporting.figures import pyplot, png_bytes, line_styles


def subplots(*args, **kw):
    """``plt.subplots`` on the report's pyplot (Agg, fixed fonts and resolution)."""
    return pyplot().subplots(*args, **kw)


def calibration(res: dict) -> bytes | None:
    """QQ plots of the ID test p-values per true class (own-class and final), and the lower tail."""
    cal = res["calibration"]
    rows = cal["per_class"]
    if not rows:
        return None
    fig, axes = subplots(1, 3, figsize=(10.5, 3.4))
    styles = line_styles(len(rows))
    for ax, which, title in ((axes[0], "own", "own-class p-value $P_y$"), (axes[1], "final", "final p-value $P$")):
        for (col, ls), r in zip(styles, rows):
            q = np.asarray(r[which]["qq"])
            ax.plot(np.linspace(0, 1, len(q)), q, color=col, ls=ls, lw=1, label=f"class {r['class']}")
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="uniform quantile", ylabel="observed quantile",
               title=f"ID test, {title}")
    axes[0].legend(ncol=2, loc="upper left")
    a = np.asarray(res["alpha_curves"]["alphas"])
    ax = axes[2]
    ax.loglog(a, np.maximum(cal["alpha_curves"]["own"], 1e-4), label="own-class $P_y$", color="C0")
    ax.loglog(a, np.maximum(cal["alpha_curves"]["final"], 1e-4), label="final $P$ (max over classes)", color="C3")
    ax.loglog(a, a, color="k", lw=0.8, ls=":", label="nominal (= alpha)")
    ax.axvline(cal["min_attainable_p"], color="grey", lw=0.6, ls="--", label="smallest attainable p")
    ax.set(xlabel="alpha", ylabel="ID test rejection rate (log; 0 drawn at 1e-4)", title="lower tail, all classes")
    ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


def layers(res: dict) -> bytes | None:
    """Per set: share of rejections decided by each layer's Fisher term, rejection rate of each layer
    alone against all layers, share of rejections lost without each layer."""
    names = [n for n, v in res["layers"].items() if v.get("dominant_share")]
    if not names:
        return None
    L = res["layers_order"]
    styles = line_styles(len(L))
    fig, axes = subplots(1, 3, figsize=(13, 0.36 * len(names) + 1.6), sharey=True)
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for li, (lname, (col, _)) in enumerate(zip(L, styles)):
        v = np.array([res["layers"][n]["dominant_share"][li] for n in names])
        axes[0].barh(y, v, left=left, color=col, label=lname)
        left += v
    axes[0].set(xlim=(0, 1), title="share of rejections whose largest Fisher term\nis the layer's (ties share)")
    h = 0.8 / (len(L) + 1)
    axes[1].barh(y - 0.4 + h / 2, [res["layers"][n]["rejection_rate"] for n in names], height=h, color="k",
                 label="all layers")
    for key, ax in (("alone_rate", axes[1]), ("lost_without", axes[2])):
        for li, (col, _) in enumerate(styles):
            v = [res["layers"][n][key][li] for n in names]
            off = (li + 1) if ax is axes[1] else li
            hh = h if ax is axes[1] else 0.8 / len(L)
            ax.barh(y - 0.4 + hh * (off + 0.5), v, height=hh, color=col)
    axes[1].set(xlim=(0, 1), title=f"rejection rate at alpha = {res['config']['alpha']}:\n"
                                   "all layers (black), each layer alone (recalibrated)")
    axes[2].set(xlim=(0, 1), title="share of the rejections lost when the layer\nis left out (recalibrated)")
    axes[0].set_yticks(y, [f"{n} ({res['layers'][n]['rejected']} rej.)" for n in names])
    axes[0].invert_yaxis()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(L), title="layer")
    return png_bytes(fig)


def reference_size(res: dict) -> bytes | None:
    """AUROC per OOD set and false alarms against the reference size per class."""
    ref = res["reference_size"]
    if not (rows := ref["rows"]):
        return None
    fig, axes = subplots(1, 2, figsize=(10, 3.4))
    x = np.array([r["effective_mean"] for r in rows])
    for (col, ls), name in zip(line_styles(len(ref["sets"])), ref["sets"]):
        m = np.array([r["summary"]["auroc"][name]["mean"] for r in rows])
        sd = np.array([r["summary"]["auroc"][name]["sd"] for r in rows])
        axes[0].errorbar(x, m, yerr=sd, color=col, ls=ls, marker="o", ms=3, capsize=2, label=name)
    axes[0].set(xscale="log", xlabel="reference samples per class (mean over classes)", ylabel="AUROC",
                title="power against reference size (mean ± sd over repeats)")
    axes[0].legend()
    fa = np.array([r["summary"]["false_alarm"]["mean"] for r in rows])
    fsd = np.array([r["summary"]["false_alarm"]["sd"] for r in rows])
    axes[1].errorbar(x, fa, yerr=fsd, marker="o", ms=3, capsize=2, color="C3", label="ID test false alarms")
    axes[1].axhline(ref["alpha"], color="k", lw=0.8, ls=":", label=f"alpha = {ref['alpha']}")
    axes[1].set(xscale="log", xlabel="reference samples per class (mean over classes)", ylabel="rejection rate",
                ylim=(0, max(2 * ref["alpha"], float(np.max(fa + fsd)) * 1.1)), title="false-alarm rate at alpha")
    axes[1].legend()
    for ax in axes:
        for r in rows:
            if r["whole_split"]:
                ax.axvline(r["effective_mean"], color="grey", lw=0.6, ls="--")
    fig.tight_layout()
    return png_bytes(fig)


def severity(res: dict) -> bytes | None:
    """Rejection rate at alpha, AUROC and classifier accuracy against shift severity."""
    sev = res["severity"]
    if not (shifts := sev["shifts"]):
        return None
    fig, axes = subplots(1, 3, figsize=(11, 3.3))
    base = sev["severity_0"]
    for (col, ls), (name, rows) in zip(line_styles(len(shifts)), shifts.items()):
        s = [0] + [r["severity"] for r in rows]
        axes[0].plot(s, [base["rejection"]] + [r["rejection"] for r in rows], color=col, ls=ls, marker="o", ms=3,
                     label=name)
        axes[1].plot(s, [0.5] + [r["auroc"] for r in rows], color=col, ls=ls, marker="o", ms=3, label=name)
        axes[2].plot(s, [base["accuracy"]] + [r["accuracy"] for r in rows], color=col, ls=ls, marker="o", ms=3,
                     label=name)
    axes[0].axhline(sev["alpha"], color="k", lw=0.8, ls=":", label="alpha")
    axes[0].set(xlabel="severity (0 = clean)", ylabel="rejection rate", title=f"rejected at alpha = {sev['alpha']}")
    axes[1].set(xlabel="severity (0 = clean, drawn at 0.5)", ylabel="AUROC", title="AUROC vs the clean images")
    axes[2].set(xlabel="severity (0 = clean)", ylabel="accuracy", title="classifier accuracy")
    axes[0].legend()
    fig.tight_layout()
    return png_bytes(fig)


def alpha(res: dict) -> bytes | None:
    """Rejection rate against alpha, ID test and every OOD set (log-log)."""
    ac = res["alpha_curves"]
    a = np.asarray(ac["alphas"])
    names = list(ac["rates"])
    fig, ax = subplots(figsize=(6.5, 4))
    for (col, ls), name in zip(line_styles(len(names)), names):
        v = np.maximum(np.asarray(ac["rates"][name]), 1e-4)
        ax.plot(a, v, color="k" if name == "id" else col, ls="-" if name == "id" else ls,
                lw=2 if name == "id" else 1, label="ID test" if name == "id" else name)
    ax.plot(a, a, color="grey", lw=0.8, ls=":", label="y = alpha")
    ax.axvline(res["calibration"]["min_attainable_p"], color="grey", lw=0.6, ls="--", label="smallest attainable p")
    ax.set(xscale="log", yscale="log", xlabel="alpha", ylabel="rejection rate (0 drawn at 1e-4)",
           title="rejection rate against alpha")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    return png_bytes(fig)


def cost(res: dict) -> bytes | None:
    """Fit and scoring time, reference size in memory and peak fit memory against reference size."""
    rows = res["reference_size"]["rows"]
    if not rows:
        return None
    fig, axes = subplots(1, 2, figsize=(10, 3.3))
    x = np.array([r["effective_mean"] for r in rows])

    def col(key):
        return (np.array([r["summary"][key]["mean"] for r in rows]),
                np.array([r["summary"][key]["sd"] for r in rows]))

    for key, label, c in (("fit_s", "fit (s)", "C0"), ("score_ms_per_1000", "scoring (s per 1,000 inputs)", "C1")):
        m, sd = col(key)
        if key == "score_ms_per_1000":
            m, sd = m / 1000.0, sd / 1000.0
        axes[0].errorbar(x, m, yerr=sd, marker="o", ms=3, capsize=2, color=c, label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="reference samples per class", ylabel="seconds",
                title="time")
    for key, label, c in (("model_mib", "fitted reference (MiB)", "C2"), ("peak_fit_mib", "peak during fit (MiB)",
                                                                           "C3")):
        m, sd = col(key)
        axes[1].errorbar(x, m, yerr=sd, marker="o", ms=3, capsize=2, color=c, label=label)
    axes[1].set(xscale="log", yscale="log", xlabel="reference samples per class", ylabel="MiB", title="memory")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


FIGURES = {"calibration": calibration, "layers": layers, "reference_size": reference_size, "severity": severity,
           "alpha": alpha, "cost": cost}
