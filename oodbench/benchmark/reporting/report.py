"""Reports built from results files alone: one markdown report and one self-contained HTML page per
suite, and one library comparison report.

    oodbench report                      # every results/<suite>/ that has a results.csv, + comparison
    oodbench report --results DIR --out DIR --suites mnist

Inputs per suite (written by ``oodbench run``): ``results.csv``, ``run.json`` and ``curves.json``; and,
when present, ``<results>/ease/ease.json`` (``oodbench ease``) for the ease-of-use, cost, robustness
and code-quality tables. Nothing else is read: no scores, no models, no registry, so a report can be
regenerated on any machine and diffed.

Outputs: ``<out>/<suite>/report.md``, ``<out>/<suite>/report.html`` (images embedded as base64 PNG,
inline CSS and a small inline script that sorts a table by the clicked column; no external resources),
``<out>/<suite>/figures/*.png``; ``<out>/comparison.md`` and ``<out>/comparison.html``.

Output is deterministic: everything is sorted, floats are formatted, PNGs carry no software or date
metadata and the page contains no generation time (only the run's own timestamp from run.json), so
regenerating from the same files gives byte-identical files.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from oodbench.benchmark.io import atomic_write

GROUPS = ("near", "far", "covariate")
METRICS = (("auroc", "AUROC", True), ("fpr95", "FPR@95", False), ("aupr_in", "AUPR-IN", True),
           ("aupr_out", "AUPR-OUT", True))
NOTE_SIGN = ("Values in %, OOD is the positive class; FPR@95 = fraction of ID flagged at the first threshold "
             "where 95 % of OOD is detected (OpenOOD v1.5 / pytorch-ood 0.4.0). Group values are unweighted "
             "means over the group's test sets; ± is the standard deviation over seeds.")
NOTE_CI = ("CI: 95 % stratified bootstrap percentile interval per test set (from results.csv), averaged over "
           "seeds; for a group, the mean of its test sets' bounds — conservative (at least as wide as the "
           "interval of the mean when test sets are independent).")


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
class SuiteResults:
    """``results.csv`` (``df``), ``run.json`` (``record``) and ``curves.json`` (``curves``) of one suite."""

    def __init__(self, folder):
        from oodbench.benchmark.evaluation import results

        self.folder = Path(folder)
        df = results.read(self.folder / "results.csv")
        if df is None:
            raise FileNotFoundError(f"{self.folder / 'results.csv'} not found (run `oodbench run <suite>` first)")
        self.df = df
        self.record = _read_json(self.folder / "run.json")
        self.curves = _read_json(self.folder / "curves.json")
        self.suite = str(df["suite"].iloc[0]) if len(df) else self.folder.name
        test_sets = self.record.get("test_sets") or []
        if not test_sets:  # fall back on the CSV
            per = df[~df["test_set"].str.endswith("-mean") & df["group"].isin(GROUPS)]
            test_sets = [{"name": t, "group": g} for t, g in per[["test_set", "group"]].drop_duplicates().values]
        self.test_sets = [(t["name"], t["group"]) for t in test_sets]
        self.seeds = sorted({int(s) for s in df["seed"].dropna().unique()})

    @property
    def ok(self) -> pd.DataFrame:
        return self.df[(self.df["status"] == "ok") & (self.df["detector"] != "classifier")]


def _read_json(path) -> dict:
    p = Path(path)
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except ValueError:
        return {}


def find_suites(results_dir) -> list[Path]:
    """Folders under ``results_dir`` that hold a ``results.csv`` (sorted by name)."""
    root = Path(results_dir)
    return sorted(p.parent for p in root.glob("*/results.csv"))


# ----------------------------------------------------------------------------------------------
# tables (pure functions of the results files)
# ----------------------------------------------------------------------------------------------
def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(v, std=None, digits=2) -> str:
    if _nan(v):
        return "–"
    s = f"{100 * v:.{digits}f}"
    if std is not None and not _nan(std) and std > 0:
        s += f" ± {100 * std:.{digits}f}"
    return s


def ci_str(lo, hi) -> str:
    if _nan(lo) or _nan(hi):
        return "–"
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def num(v, digits=3) -> str:
    if _nan(v):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
        return f"{v:.{digits - 1}e}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{max(digits - 1, 1)}f}"


def detector_costs(record: dict) -> dict[str, dict]:
    """Per detector: median over seeds of fit seconds, score seconds, throughput and peak Python MB,
    and the library / metadata recorded in run.json."""
    out = {}
    for det, per_seed in sorted((record.get("detectors") or {}).items()):
        recs = [r for _, r in sorted(per_seed.items()) if isinstance(r, dict) and r.get("status") != "failed"]
        if not recs:
            continue

        def med(k):
            v = [r[k] for r in recs if isinstance(r.get(k), (int, float))]
            return float(np.median(v)) if v else float("nan")

        out[det] = {"fit_seconds": med("fit_seconds"), "score_seconds": med("score_seconds"),
                    "throughput_per_s": med("throughput_per_s"), "peak_python_mb": med("peak_python_mb"),
                    "info": recs[0].get("info", {})}
    return out


def leaderboard(res: SuiteResults) -> pd.DataFrame:
    """One row per detector: for each group and metric the mean and std over seeds of the group mean,
    and the group's (conservative) bootstrap CI; sorted by near-OOD AUROC (descending), then name.
    Failed detectors come last with their error."""
    ok = res.ok
    per = ok[~ok["test_set"].str.endswith("-mean")]
    agg = ok[ok["test_set"].str.endswith("-mean")]
    costs = detector_costs(res.record)
    rows = []
    for (lib, det), g in agg.groupby(["library", "detector"], sort=True):
        r = {"library": lib, "detector": det, "status": "ok", "error": ""}
        for grp in GROUPS:
            for m, _, _ in METRICS:
                v = g[(g["group"] == grp) & (g["metric"] == m)]["value"].astype(float)
                r[f"{grp}:{m}"] = float(v.mean()) if len(v) else float("nan")
                r[f"{grp}:{m}:std"] = float(v.std(ddof=0)) if len(v) > 1 else float("nan")
                p = per[(per["detector"] == det) & (per["group"] == grp) & (per["metric"] == m)]
                if len(p) and p["ci_low"].notna().any():
                    by_set = p.groupby("test_set")[["ci_low", "ci_high"]].mean()
                    r[f"{grp}:{m}:lo"], r[f"{grp}:{m}:hi"] = float(by_set["ci_low"].mean()), float(by_set["ci_high"].mean())
                else:
                    r[f"{grp}:{m}:lo"] = r[f"{grp}:{m}:hi"] = float("nan")
        c = costs.get(det, {})
        for k in ("fit_seconds", "score_seconds", "throughput_per_s", "peak_python_mb"):
            r[k] = c.get(k, float("nan"))
        r["n_seeds"] = int(g["seed"].nunique())
        rows.append(r)
    done = {r["detector"] for r in rows}
    failed = res.df[res.df["status"] == "failed"]
    for (lib, det), g in failed.groupby(["library", "detector"], sort=True):
        if det not in done:
            rows.append({"library": lib, "detector": det, "status": "failed",
                         "error": str(g["error"].iloc[0]).splitlines()[0][:160] if len(g) else ""})
    lb = pd.DataFrame(rows)
    if lb.empty:
        return lb
    if "near:auroc" not in lb:
        lb["near:auroc"] = np.nan
    lb["_k"] = lb["near:auroc"].fillna(-1.0)
    lb["_f"] = lb["far:auroc"].fillna(-1.0) if "far:auroc" in lb else -1.0
    lb = lb.sort_values(["_k", "_f", "detector"], ascending=[False, False, True], kind="mergesort")
    return lb.drop(columns=["_k", "_f"]).reset_index(drop=True)


def per_set(res: SuiteResults, metric: str) -> pd.DataFrame:
    """Detector × test set: mean over seeds of ``metric`` and of its CI bounds (MultiIndex columns
    ``(test_set, value|std|lo|hi)``), rows in leaderboard order."""
    ok = res.ok
    p = ok[(ok["metric"] == metric) & ~ok["test_set"].str.endswith("-mean")]
    if p.empty:
        return pd.DataFrame()
    g = p.groupby(["detector", "test_set"])
    tab = pd.DataFrame({"value": g["value"].mean(), "std": g["value"].std(ddof=0), "lo": g["ci_low"].mean(),
                        "hi": g["ci_high"].mean()})
    return tab


def _set_order(res: SuiteResults) -> list[str]:
    order = [t for t, _ in res.test_sets]
    got = set(res.ok["test_set"])
    return [t for t in order if t in got]


def accuracy(res: SuiteResults) -> list[tuple[str, float, float]]:
    acc = res.df[(res.df["metric"] == "accuracy") & (res.df["status"] == "ok")]
    if acc.empty:
        return []
    order = ["id"] + _set_order(res)
    g = acc.groupby("test_set")["value"]
    m, s = g.mean(), g.std(ddof=0)
    return [(t, float(m[t]), float(s[t]) if len(res.seeds) > 1 else float("nan")) for t in order if t in m.index]


# ----------------------------------------------------------------------------------------------
# figures (deterministic PNGs)
# ----------------------------------------------------------------------------------------------
def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.hashsalt": "oodbench", "font.size": 8, "axes.titlesize": 8,
                                "legend.fontsize": 7, "figure.dpi": 100, "savefig.dpi": 100,
                                "path.simplify": False})
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _styles(n):
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
    plt = _mpl()
    if per_test_set:
        panels = [(f"{t} ({g})", [t]) for t, g in res.test_sets if t in set(_set_order(res))]
    else:
        panels = [(f"{g}-OOD (mean over its sets)", [t for t, gg in res.test_sets if gg == g]) for g in GROUPS
                  if any(gg == g for _, gg in res.test_sets)]
    if not panels or not dets or not res.curves:
        return None
    ncol = min(len(panels), 3 if not per_test_set else 5)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow + 0.6 + 0.14 * len(dets) / 3),
                             squeeze=False)
    sty = _styles(len(dets))
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
    return _png(fig)


def fig_hist(res: SuiteResults, dets: list[str]) -> bytes | None:
    """Per detector: score histograms of ID test vs each OOD group (counts summed over the group's
    sets and over seeds, normalised to densities), on the run's shared bin edges."""
    plt = _mpl()
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
    return _png(fig)


def fig_heatmap(res: SuiteResults, dets: list[str]) -> bytes | None:
    plt = _mpl()
    tab = per_set(res, "auroc")
    sets = _set_order(res)
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
    return _png(fig)


def fig_speed(lb: pd.DataFrame) -> bytes | None:
    plt = _mpl()
    ok = lb[lb["status"] == "ok"] if "status" in lb else lb
    if ok.empty or "throughput_per_s" not in ok or ok["throughput_per_s"].isna().all():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    libs = sorted(ok["library"].unique())
    cmap = _styles(len(libs))
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
    return _png(fig)


def fig_libraries(suites: list) -> bytes | None:
    """Per suite: each detector's near / far / covariate AUROC as a dot, one colour per library, with the
    library's median as a bar."""
    plt = _mpl()
    boards = [(s.suite, leaderboard(s)) for s in suites]
    boards = [(n, lb[lb["status"] == "ok"]) for n, lb in boards if len(lb) and (lb["status"] == "ok").any()]
    if not boards:
        return None
    libs = sorted({lib for _, lb in boards for lib in lb["library"].unique()})
    sty = _styles(len(libs))
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
    return _png(fig)


# ----------------------------------------------------------------------------------------------
# markdown / HTML building blocks
# ----------------------------------------------------------------------------------------------
class Doc:
    """Builds the markdown and the HTML of one report side by side from the same calls."""

    def __init__(self, title: str):
        self.title = title
        self.md: list[str] = [f"# {title}", ""]
        self.html: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self.images: dict[str, bytes] = {}

    def h2(self, t, anchor=None):
        self.md += [f"## {t}", ""]
        a = f' id="sec-{anchor}"' if anchor else ""
        self.html.append(f"<h2{a}>{html.escape(t)}</h2>")

    def h3(self, t):
        self.md += [f"### {t}", ""]
        self.html.append(f"<h3>{html.escape(t)}</h3>")

    def p(self, t, md_only=False):
        self.md += [t, ""]
        if not md_only:
            self.html.append(f"<p>{_md_inline(t)}</p>")

    def bullets(self, items):
        self.md += [f"* {i}" for i in items] + [""]
        self.html.append("<ul>" + "".join(f"<li>{_md_inline(i)}</li>" for i in items) + "</ul>")

    def table(self, headers, rows, sort_keys=None, sortable=False, tid=None):
        """rows: lists of display strings; sort_keys: parallel lists of sort values (numbers or strings)."""
        from tabulate import tabulate

        if not rows:
            self.p("(no data)")
            return
        self.md += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        cls = ' class="sortable"' if sortable else ""
        i = f' id="{tid}"' if tid else ""
        out = [f'<div class="wrap"><table{cls}{i}><thead><tr>']
        for k, h in enumerate(headers):
            t = ' title="click to sort"' if sortable else ""
            out.append(f'<th data-col="{k}"{t}>{html.escape(str(h))}</th>')
        out.append("</tr></thead><tbody>")
        for ri, r in enumerate(rows):
            out.append("<tr>")
            for k, c in enumerate(r):
                key = ""
                if sort_keys is not None:
                    v = sort_keys[ri][k]
                    if isinstance(v, (int, float, np.floating, np.integer)) and not _nan(float(v)):
                        key = f' data-sort="{float(v):.10g}"'
                    elif isinstance(v, str):
                        key = f' data-sort="{html.escape(v)}"'
                    else:
                        key = ' data-sort=""'
                left = ""
                if str(c)[:1].isalpha() and str(c) not in ("yes", "no"):
                    left = ' class="l w"' if len(str(c)) > 60 else ' class="l"'  # wrap only long text
                out.append(f"<td{left}{key}>{_md_inline(str(c))}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        self.html.append("".join(out))

    def image(self, name: str, png: bytes | None, alt: str):
        if png is None:
            return
        self.images[name] = png
        self.md += [f"![{alt}](figures/{name})", ""]
        b64 = base64.b64encode(png).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}" '
                         f'data-name="{name}"><figcaption>{html.escape(alt)}</figcaption></figure>')

    def render_md(self) -> str:
        return "\n".join(self.md).rstrip() + "\n"

    def render_html(self) -> str:
        return HTML_TEMPLATE.format(title=html.escape(self.title), body="\n".join(self.html))


def _md_inline(t: str) -> str:
    """Escape HTML and render the little markdown we use: `code`, **bold**, [text](url)."""
    import re

    s = html.escape(t)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)
    s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', s)
    return s


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto; max-width: 1500px;
       padding: 0 1em; color: #222; line-height: 1.4; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }}
th {{ background: #f0f0f0; position: sticky; top: 0; }}
td.l, th:first-child {{ text-align: left; }}
td.w {{ white-space: normal; min-width: 30em; max-width: 60em; }}
table.sortable th {{ cursor: pointer; }}
table.sortable th.asc::after {{ content: " \\25B2"; }}
table.sortable th.desc::after {{ content: " \\25BC"; }}
tr:nth-child(even) td {{ background: #fafafa; }}
figure {{ margin: 1em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 12px; color: #555; }}
code {{ background: #f4f4f4; padding: 0 3px; }}
.wrap {{ overflow-x: auto; }}
</style>
</head>
<body>
{body}
<script>
(function () {{
  function val(td) {{
    var s = td.getAttribute("data-sort");
    if (s === null) s = td.textContent;
    var n = parseFloat(s);
    return (s !== "" && !isNaN(n) && /^[-+0-9.eE]+$/.test(s.trim())) ? n : s.toLowerCase();
  }}
  document.querySelectorAll("table.sortable").forEach(function (table) {{
    table.querySelectorAll("th").forEach(function (th, col) {{
      th.addEventListener("click", function () {{
        var asc = !th.classList.contains("asc");
        table.querySelectorAll("th").forEach(function (h) {{ h.classList.remove("asc", "desc"); }});
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {{
          var x = val(a.cells[col]), y = val(b.cells[col]);
          var empty = function (v) {{ return v === "" || v === "\\u2013"; }};
          if (empty(x) && !empty(y)) return 1;
          if (empty(y) && !empty(x)) return -1;
          if (typeof x === "number" && typeof y === "number") return asc ? x - y : y - x;
          x = String(x); y = String(y);
          return asc ? (x < y ? -1 : x > y ? 1 : 0) : (x < y ? 1 : x > y ? -1 : 0);
        }});
        rows.forEach(function (r) {{ body.appendChild(r); }});
      }});
    }});
  }});
}})();
</script>
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------
# ease-of-use data (written by `oodbench ease`)
# ----------------------------------------------------------------------------------------------
def load_ease(results_dir) -> dict:
    return _read_json(Path(results_dir) / "ease" / "ease.json")


def _yn(v) -> str:
    return "yes" if v is True else ("no" if v is False else ("–" if v is None else str(v)))


def library_ease_rows(ease: dict, libs=None):
    rows = []
    for lib, d in sorted((ease.get("libraries") or {}).items()):
        if libs is not None and lib not in libs:
            continue
        inst = d.get("install", {})
        imp = d.get("import", {})
        eff = d.get("integration", {})
        rows.append([lib, d.get("version", "–") or "–", _yn(inst.get("on_pypi")),
                     str(inst.get("n_declared_dependencies", "–")),
                     num(inst.get("added_packages")) if inst.get("added_packages") is not None else "–",
                     num(inst.get("added_mb")) if inst.get("added_mb") is not None else "–",
                     ", ".join(inst.get("undeclared_imports") or []) or "none",
                     "; ".join(inst.get("pin_conflicts") or []) or "none",
                     num(imp.get("median_s")) if imp.get("median_s") is not None else "–",
                     num(eff.get("adapter_code_lines")) if eff.get("adapter_code_lines") is not None else "–",
                     num(eff.get("median_lines_per_detector")) if eff.get("median_lines_per_detector") is not None else "–",
                     str(d.get("n_detectors", "–"))])
    headers = ["library", "version", "on PyPI", "declared deps", "packages added", "MB added", "undeclared imports",
               "pins conflicting with ours", "import s (after torch)", "adapter lines", "lines / detector", "detectors"]
    return headers, rows


def quality_rows(ease: dict, libs=None):
    rows = []
    for lib, q in sorted((ease.get("quality") or {}).items()):
        if libs is not None and lib not in libs:
            continue
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


PROBES = ("nan_input", "constant_images", "batch_of_one", "wrong_dtype")


def detector_ease_rows(ease: dict, dets=None):
    rows = []
    for d, e in sorted((ease.get("detectors") or {}).items()):
        if dets is not None and d not in dets:
            continue
        req = e.get("requirements", {})
        pr = e.get("probes", {})
        need = [lab for k, lab in (("fit_data", "fit data"), ("ood_tuning", "OOD tuning"), ("gradients", "gradients"))
                if req.get(k)]
        rows.append([d, e.get("library", ""), ", ".join(e.get("consumes", [])), ", ".join(need) or "none",
                     _yn(req.get("gpu_only")), _yn(e.get("network_at_construction")),
                     ", ".join(e.get("required_args") or []) or "none",
                     num(e.get("adapter_lines")) if e.get("adapter_lines") is not None else "–",
                     *[(pr.get(p) or {}).get("outcome", "–") for p in PROBES]])
    headers = ["detector", "library", "consumes", "needs", "GPU only", "network at construction",
               "library args a user must supply", "adapter lines", "NaN input", "constant images", "batch of one",
               "wrong dtype"]
    return headers, rows


# ----------------------------------------------------------------------------------------------
# suite report
# ----------------------------------------------------------------------------------------------
def suite_report(res: SuiteResults, ease: dict | None = None) -> Doc:
    rec = res.record
    doc = Doc(f"OOD benchmark report: {res.suite}")
    lb = leaderboard(res)
    v = rec.get("versions", {})
    facts = [f"suite `{res.suite}`, model `{rec.get('model', '?')}`, seeds {res.seeds}, device "
             f"`{rec.get('device', '?')}` ({rec.get('device_name', '')}), {rec.get('threads', '?')} CPU thread(s)",
             f"run finished {rec.get('timestamp', '?')}, git `{rec.get('git_commit', '?') or '?'}`",
             "versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)),
             "splits: " + ", ".join(f"{k} {n}" for k, n in sorted((rec.get("split_sizes") or {}).items())),
             f"bootstrap: {(rec.get('bootstrap') or {}).get('n_boot', '?')} resamples"]
    for s in rec.get("skipped_test_sets") or []:
        facts.append(f"skipped test set `{s.get('name')}`: {s.get('reason')}")
    doc.bullets(facts)
    acc = accuracy(res)
    if acc:
        doc.p("Classifier accuracy (%): " + ", ".join(f"{t} {pct(m, s)}" for t, m, s in acc) + ".")
    doc.p(NOTE_SIGN)

    # leaderboard
    doc.h2("Leaderboard", "leaderboard")
    doc.p("Sorted by near-OOD AUROC. In the HTML page, click a column header to sort by it. " + NOTE_CI)
    headers = ["library", "detector"]
    for g in GROUPS:
        headers += [f"{g} AUROC", f"{g} AUROC CI", f"{g} FPR@95"]
    headers += ["fit s", "samples/s", "peak MB", "status"]
    rows, keys = [], []
    dets_ok = []
    for _, r in lb.iterrows():
        if r["status"] != "ok":
            rows.append([r["library"], r["detector"]] + ["–"] * (len(headers) - 3) + ["failed: " + r["error"]])
            keys.append([r["library"], r["detector"]] + [None] * (len(headers) - 3) + ["failed"])
            continue
        dets_ok.append(r["detector"])
        row, key = [r["library"], r["detector"]], [r["library"], r["detector"]]
        for g in GROUPS:
            row += [pct(r.get(f"{g}:auroc"), r.get(f"{g}:auroc:std")), ci_str(r.get(f"{g}:auroc:lo"), r.get(f"{g}:auroc:hi")),
                    pct(r.get(f"{g}:fpr95"), r.get(f"{g}:fpr95:std"))]
            key += [r.get(f"{g}:auroc"), r.get(f"{g}:auroc:lo"), r.get(f"{g}:fpr95")]
        row += [num(r.get("fit_seconds")), num(r.get("throughput_per_s")), num(r.get("peak_python_mb")), "ok"]
        key += [r.get("fit_seconds"), r.get("throughput_per_s"), r.get("peak_python_mb"), "ok"]
        rows.append(row)
        keys.append(key)
    doc.table(headers, rows, keys, sortable=True, tid="leaderboard")

    # AUPR summary
    headers = ["detector"] + [f"{g} {lab}" for g in GROUPS for m, lab, _ in METRICS if m.startswith("aupr")]
    rows = [[r["detector"]] + [pct(r.get(f"{g}:{m}"), r.get(f"{g}:{m}:std")) for g in GROUPS for m, _, _ in METRICS
                               if m.startswith("aupr")] for _, r in lb.iterrows() if r["status"] == "ok"]
    doc.h3("AUPR by group")
    doc.table(headers, rows)

    # per-set tables
    doc.h2("Per test set", "per-set")
    sets = _set_order(res)
    grp = dict(res.test_sets)
    for m, lab, _ in METRICS:
        tab = per_set(res, m)
        if tab.empty:
            continue
        doc.h3(f"{lab} per test set (%)" + (" with 95 % bootstrap CI" if m == "auroc" else ""))
        headers = ["detector"] + [f"{t} ({grp.get(t, '')})" for t in sets]
        rows, keys = [], []
        for d in dets_ok:
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

    # figures
    doc.h2("Figures", "figures")
    doc.image("auroc_heatmap.png", fig_heatmap(res, dets_ok), "AUROC heatmap: detectors × test sets")
    doc.image("roc_groups.png", fig_roc(res, dets_ok, per_test_set=False),
              "ROC curves per OOD group (TPR averaged over the group's test sets and seeds)")
    doc.image("roc_sets.png", fig_roc(res, dets_ok, per_test_set=True), "ROC curves per test set (mean over seeds)")
    doc.image("score_histograms.png", fig_hist(res, dets_ok), "Score histograms: ID test versus OOD groups")
    doc.image("speed_vs_auroc.png", fig_speed(lb), "Speed versus near-OOD AUROC")

    # cost
    doc.h2("Cost", "cost")
    costs = detector_costs(rec)
    ext = rec.get("extraction") or {}
    doc.p("Per detector, median over seeds, measured by the run on cached representations "
          f"(fit on {(rec.get('split_sizes') or {}).get('fit', '?')} ID samples; peak = Python allocations "
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

    # metadata
    doc.h2("Detector metadata", "metadata")
    rows = []
    for d in sorted(costs):
        i = costs[d]["info"]
        rows.append([d, f"{i.get('library', '')} {i.get('library_version', '')}".strip(), _yn(i.get("needs_fit")),
                     _yn(i.get("needs_ood_tuning")), _yn(i.get("needs_gradients")), _yn(i.get("cpu_ok")),
                     (i.get("paper") or "")[:90]])
    doc.table(["detector", "library", "needs fit", "OOD tuning", "gradients", "CPU ok", "paper"], rows)

    # ease / quality
    if ease:
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

    # failures
    fails = rec.get("failures") or []
    if fails:
        doc.h2("Failures", "failures")
        doc.table(["detector", "seed", "error"], [[f["detector"], str(f["seed"]), f["error"][:200]]
                                                  for f in sorted(fails, key=lambda f: (f["detector"], f["seed"]))])
    doc.p(f"Regenerate with `oodbench report` from `{res.folder.name}/results.csv`, `run.json` and `curves.json`.")
    return doc


# ----------------------------------------------------------------------------------------------
# library comparison report
# ----------------------------------------------------------------------------------------------
LAB = "lab (oodbench)"


def _lib_label(lib: str) -> str:
    return lib if lib in ("pytorch-ood", "openood", "OpenOOD") else (lib or "?")


def comparison_report(suites: list[SuiteResults], ease: dict) -> Doc:
    doc = Doc("OOD library comparison: pytorch-ood vs OpenOOD vs the lab's methods")
    libs_ease = sorted((ease.get("libraries") or {}).keys())
    perf_libs = sorted({lib for s in suites for lib in s.ok["library"].unique() if lib})
    libs = sorted(set(libs_ease) | set(perf_libs))
    doc.p("Four criteria — ease of use, performance, robustness, code quality — all with measured values. "
          "Performance comes from each suite's results files (`oodbench run`); ease of use, robustness and code "
          "quality from `results/ease/ease.json` (`oodbench ease`), measured by code; the few facts that cannot "
          "be measured come from `oodbench/benchmark/ease_facts.json`, each with its source. "
          "Libraries present: " + ", ".join(f"`{x}`" for x in libs) + ".")
    missing = [lib for lib in ("pytorch-ood", "openood") if lib not in libs]
    if missing:
        doc.p("Not measured here (not installed where `oodbench ease` ran, or no results): " +
              ", ".join(f"`{m}`" for m in missing) + ".")
    if ease.get("environment"):
        env = ease["environment"]
        doc.p("Measured on: " + ", ".join(f"{k} {env[k]}" for k in sorted(env)) + ".")

    # 1 ease
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
    # requirements counts per library
    dets = ease.get("detectors") or {}
    rows = []
    for lib in libs:
        ds = [e for e in dets.values() if e.get("library") == lib]
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

    # 2 performance
    doc.h2("2. Performance", "performance")
    doc.p("Per suite and library over its detectors: the best and the median group AUROC (%), mean over seeds, "
          "and the cost medians. Same representations (one forward pass per dataset) for every library.")
    doc.image("libraries_auroc.png", fig_libraries(suites),
              "AUROC of every detector by library and OOD group (dots: detectors, bars: library medians)")
    for s in suites:
        lb = leaderboard(s)
        ok = lb[lb["status"] == "ok"] if len(lb) else lb
        if ok.empty:
            continue
        doc.h3(f"{s.suite} (model {s.record.get('model', '?')}, seeds {s.seeds})")
        rows, keys = [], []
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
        # same method in several libraries
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

    # 3 robustness
    doc.h2("3. Robustness", "robustness")
    doc.p("Each detector, fitted on the separable toy problem (`oodbench.benchmark.tools.separable`), is fed NaN inputs, "
          "constant images, a batch of one and a wrong dtype. Outcomes: **ok** (valid finite scores), **clear error** "
          "(an exception whose message names the problem), **crash** (an exception that does not, or a dead process), "
          "**silent garbage** (NaN/inf/wrong shape or dtype returned without an error, or finite scores for NaN "
          "input).")
    rows = []
    outcomes = ("ok", "clear error", "crash", "silent garbage")
    for lib in libs:
        ds = [e for e in dets.values() if e.get("library") == lib]
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

    # 4 code quality
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
    doc.p("Regenerate with `oodbench ease` (measurements) and `oodbench report` (this page).")
    return doc


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _write_doc(doc: Doc, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    if doc.images:
        figs = folder / "figures"
        figs.mkdir(exist_ok=True)
        for name, png in sorted(doc.images.items()):
            atomic_write(figs / name, png)
            out.append(figs / name)
    atomic_write(folder / f"{stem}.md", doc.render_md())
    atomic_write(folder / f"{stem}.html", doc.render_html())
    return out + [folder / f"{stem}.md", folder / f"{stem}.html"]


def write_reports(results_dir="results", out_dir=None, suites=None, comparison: bool = True) -> list[Path]:
    """Build every report. ``suites``: names (folder names) to restrict to. Returns the written paths."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else results_dir
    ease = load_ease(results_dir)
    if ease:
        ease["_path"] = "results/ease/ease.json"
    loaded = []
    for folder in find_suites(results_dir):
        if suites and folder.name not in suites:
            continue
        loaded.append(SuiteResults(folder))
    written = []
    for res in loaded:
        written += _write_doc(suite_report(res, ease), out_dir / res.folder.name, "report")
    if comparison and (loaded or ease):
        written += _write_doc(comparison_report(loaded, ease or {}), out_dir, "comparison")
    return written
