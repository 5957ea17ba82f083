"""The report's figures, as PNG bytes (matplotlib, Agg backend).

Per suite: the AUROC heatmap (detectors × test sets), ROC curves per OOD group and per test set,
score histograms of ID test versus each OOD group, and speed versus near-OOD AUROC. For the library
comparison: every detector's group AUROC by library. Each function returns ``None`` when it has
nothing to draw, and the caller leaves the figure out.

ROC curves and histograms come from ``curves.json`` (no raw scores are needed). PNGs are written
without software or date metadata and with fixed fonts, sizes and colours, so the same results files
give byte-identical images.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation.results import GROUPS
from oodbench.benchmark.reporting.loading import SuiteResults
from oodbench.benchmark.reporting.tables import per_set, set_order


def pyplot():
    """pyplot on the Agg backend with the report's fixed fonts and resolution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.hashsalt": "oodbench", "font.size": 8, "axes.titlesize": 8,
                                "legend.fontsize": 7, "figure.dpi": 100, "savefig.dpi": 100,
                                "path.simplify": False})
    return plt


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes without software metadata; the figure is closed. The image is stored with
    a 256-colour palette (median cut, no dithering): plots have few colours, and the palette makes the
    files, and the reports that embed them, about three times smaller. Deterministic."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    import matplotlib.pyplot as plt

    plt.close(fig)
    buf.seek(0)
    rgb = Image.open(buf).convert("RGB")
    out = io.BytesIO()
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def line_styles(n):
    """``n`` distinct (colour, line style) pairs: tab10 / tab20 colours, then dashed, dotted, ..."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"] if n > 10 else matplotlib.colormaps["tab10"]
    ls = ["-", "--", ":", "-."]
    return [(cmap(i % cmap.N), ls[(i // cmap.N) % len(ls)]) for i in range(n)]


def _mean_roc(res: SuiteResults, det: str, sets: list[str]):
    """Mean TPR over seeds (and over ``sets``) on the shared FPR grid; None when absent."""
    tprs, fpr = [], None
    for sd in sorted(res.curves, key=lambda s: int(s)):
        c = res.curves[sd].get(det, {}).get("roc", {})
        for t in sets:
            if t in c:
                fpr = c[t]["fpr"]
                tprs.append(c[t]["tpr"])
    if not tprs:
        return None
    return np.asarray(fpr), np.mean(np.asarray(tprs, dtype=float), axis=0)


def fig_roc(res: SuiteResults, dets: list[str], per_test_set: bool) -> bytes | None:
    """ROC curves of ``dets`` (mean TPR over seeds), one panel per OOD group (TPR also averaged over the
    group's test sets) or, with ``per_test_set``, one panel per test set."""
    plt = pyplot()
    if per_test_set:
        panels = [(f"{t} ({g})", [t]) for t, g in res.test_sets if t in set(set_order(res))]
    else:
        panels = [(f"{g}-OOD (mean over its sets)", [t for t, gg in res.test_sets if gg == g]) for g in GROUPS
                  if any(gg == g for _, gg in res.test_sets)]
    if not panels or not dets or not res.curves:
        return None
    ncol = min(len(panels), 3 if not per_test_set else 5)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow + 0.6 + 0.14 * len(dets) / 3),
                             squeeze=False)
    sty = line_styles(len(dets))
    handles = {}
    for ax, (title, sets) in zip(axes.flat, panels):
        for d, (col, ls) in zip(dets, sty):
            r = _mean_roc(res, d, sets)
            if r is None:
                continue
            (h,) = ax.plot(r[0], r[1], color=col, ls=ls, lw=1.2, label=d)
            handles[d] = h
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.6, ls=":")
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("FPR (ID flagged)")
        ax.set_ylabel("TPR (OOD detected)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.legend([handles[d] for d in dets if d in handles], [d for d in dets if d in handles], loc="lower center",
               ncol=min(4, max(1, len(handles))), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04 + 0.022 * math.ceil(len(handles) / 4), 1, 1))
    return png_bytes(fig)


def fig_hist(res: SuiteResults, dets: list[str]) -> bytes | None:
    """Per detector: score histograms of ID test vs each OOD group (counts summed over the group's
    sets and over seeds, normalised to densities), on the run's shared bin edges."""
    plt = pyplot()
    if not res.curves or not dets:
        return None
    seeds = sorted(res.curves, key=lambda s: int(s))
    ncol = min(4, len(dets))
    nrow = math.ceil(len(dets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.4 * nrow + 0.4), squeeze=False)
    colors = {"id": "#333333", "near": "#d62728", "far": "#1f77b4", "covariate": "#2ca02c"}
    any_drawn = False
    for ax, d in zip(axes.flat, dets):
        h = res.curves[seeds[0]].get(d, {}).get("hist")
        if not h:
            ax.set_title(f"{d} (no curves)")
            ax.axis("off")
            continue
        edges = np.asarray(h["edges"], float)
        by_index = not np.all(np.diff(edges) > 0)  # (near-)constant scores: edges rounded to equal values
        if by_index:
            edges = np.arange(len(edges), dtype=float)
        groups = {"id": ["id"], **{g: [t for t, gg in res.test_sets if gg == g and t in h] for g in GROUPS}}
        for g, sets in groups.items():
            if not sets:
                continue
            cnt = np.sum([h[t] for t in sets], axis=0).astype(float)
            if cnt.sum() == 0:
                continue
            dens = cnt / cnt.sum() / np.diff(edges)
            ax.stairs(dens, edges, color=colors[g], lw=1.2 if g == "id" else 1.0,
                      fill=(g == "id"), alpha=0.25 if g == "id" else 1.0, label=g if g != "id" else "ID test")
            any_drawn = True
        # one bin holds most of the ID mass: a log axis shows the tails
        skewed = max(h["id"]) > 0.5 * max(sum(h["id"]), 1)
        if skewed:
            ax.set_yscale("log")
        ax.set_title(d + (f" (seed {seeds[0]})" if len(seeds) > 1 else "") + (" [log y]" if skewed else ""))
        ax.set_xlabel("score bin index (scores nearly constant)" if by_index else "score (higher = more OOD)")
        ax.tick_params(axis="y", labelleft=False)
    for ax in list(axes.flat)[len(dets):]:
        ax.axis("off")
    if not any_drawn:
        plt.close(fig)
        return None
    hs, ls = [], []
    for ax in axes.flat:
        for hh, ll in zip(*ax.get_legend_handles_labels()):
            if ll not in ls:
                hs.append(hh)
                ls.append(ll)
    fig.legend(hs, ls, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.05 if nrow > 1 else 0.1, 1, 1))
    return png_bytes(fig)


def fig_heatmap(res: SuiteResults, dets: list[str]) -> bytes | None:
    """AUROC (%, mean over seeds) of each detector (rows, leaderboard order) on each test set (columns)."""
    plt = pyplot()
    tab = per_set(res, "auroc")
    sets = set_order(res)
    if tab.empty or not dets or not sets:
        return None
    mat = np.full((len(dets), len(sets)), np.nan)
    for i, d in enumerate(dets):
        for j, t in enumerate(sets):
            if (d, t) in tab.index:
                mat[i, j] = tab.loc[(d, t), "value"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(sets) + 1.8, 0.8 + 0.34 * len(dets)))
    im = ax.imshow(mat * 100, cmap="RdYlGn", vmin=50, vmax=100, aspect="auto")
    for i in range(len(dets)):
        for j in range(len(sets)):
            if not np.isnan(mat[i, j]):
                v = 100 * mat[i, j]
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 62 or v > 93 else "black")
    ax.set_xticks(range(len(sets)))
    grp = dict(res.test_sets)
    ax.set_xticklabels([f"{t}\n({grp.get(t, '')})" for t in sets], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(dets)))
    ax.set_yticklabels(dets, fontsize=7)
    ax.set_title("AUROC (%) per test set, mean over seeds")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    return png_bytes(fig)


def fig_speed(lb: pd.DataFrame) -> bytes | None:
    """Near-OOD AUROC against scoring throughput and against fit time (log axes), one colour per library,
    from the leaderboard ``lb`` (costs from run.json)."""
    plt = pyplot()
    ok = lb[lb["status"] == "ok"] if "status" in lb else lb
    if ok.empty or "throughput_per_s" not in ok or ok["throughput_per_s"].isna().all():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    libs = sorted(ok["library"].unique())
    cmap = line_styles(len(libs))
    for k, (ax, col, xl) in enumerate(zip(axes, ["throughput_per_s", "fit_seconds"],
                                          ["scoring throughput (samples / s, log)", "fit time (s, log)"])):
        for lib, (c, _) in zip(libs, cmap):
            s = ok[(ok["library"] == lib) & ok[col].notna() & ok["near:auroc"].notna()]
            x = np.maximum(s[col].to_numpy(float), 1e-4)
            ax.scatter(x, 100 * s["near:auroc"], color=c, label=lib or "(none)", s=22)
            for xi, yi, d in zip(x, 100 * s["near:auroc"], s["detector"]):
                ax.annotate(d.split(".")[-1], (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("near-OOD AUROC (%)")
        ax.grid(alpha=0.3)
    hs, ls = axes[0].get_legend_handles_labels()
    fig.legend(hs, ls, loc="upper center", ncol=max(1, len(ls)), frameon=False, bbox_to_anchor=(0.5, 0.94))
    fig.suptitle("Speed versus near-OOD AUROC (run.json timings on cached representations; median over seeds)")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return png_bytes(fig)


def fig_libraries(boards: list[tuple[str, pd.DataFrame]]) -> bytes | None:
    """Per suite: each detector's near / far / covariate AUROC as a dot, one colour per library, with the
    library's median as a bar. ``boards``: (suite name, its leaderboard) pairs."""
    plt = pyplot()
    boards = [(n, lb[lb["status"] == "ok"]) for n, lb in boards if len(lb) and (lb["status"] == "ok").any()]
    if not boards:
        return None
    libs = sorted({lib for _, lb in boards for lib in lb["library"].unique()})
    sty = line_styles(len(libs))
    fig, axes = plt.subplots(1, len(boards), figsize=(4.6 * len(boards), 3.8), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, (name, lb) in zip(axes.flat, boards):
        for gi, g in enumerate(GROUPS):
            for li, (lib, (col, _)) in enumerate(zip(libs, sty)):
                v = lb.loc[lb["library"] == lib, f"{g}:auroc"].dropna().to_numpy(float) * 100
                if not len(v):
                    continue
                x = gi + (li - (len(libs) - 1) / 2) * 0.25
                ax.scatter(x + rng.uniform(-0.06, 0.06, len(v)), v, s=9, color=col, alpha=0.7,
                           label=lib if gi == 0 else None)
                ax.plot([x - 0.1, x + 0.1], [np.median(v)] * 2, color=col, lw=2.5)
        ax.set_xticks(range(len(GROUPS)))
        ax.set_xticklabels([f"{g}-OOD" for g in GROUPS])
        ax.set_ylabel("AUROC (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    hs, ls = axes.flat[0].get_legend_handles_labels()
    fig.legend(hs, ls, loc="upper center", ncol=max(1, len(ls)), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return png_bytes(fig)

