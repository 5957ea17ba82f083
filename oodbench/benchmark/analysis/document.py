"""``stattest.json``, ``stattest.md`` and the PNG figures of the statistical-test analysis.

Every section of the Markdown has a table, its figure and a "What it shows" sentence generated
from the numbers (:func:`findings`), so a rerun rewrites the conclusions with the data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from oodbench.benchmark.analysis import figures
from oodbench.benchmark.io import atomic_write, write_json

KS_LEVEL = 0.05  # a KS p-value below this counts as "uniformity rejected"
MIN_REJECTED = 20  # layer shares of sets with fewer rejections are not interpreted


def _f(v, nd=3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _ms(d, nd=3) -> str:
    return f"{d['mean']:.{nd}f} ± {d['sd']:.{nd}f}"


# ------------------------------------------------------------------------------------------------
# conclusions from the numbers
# ------------------------------------------------------------------------------------------------
def _calibration_finding(res) -> str:
    cal = res["calibration"]
    a = cal["alpha"]
    rows = cal["per_class"]
    k = len(rows)
    rej = [r["class"] for r in rows if r["own"]["ks_p"] < KS_LEVEL]
    anti = [r["class"] for r in rows if r["own"]["ks_anticonservative_p"] < KS_LEVEL]
    own, fin = cal["pooled"]["own"], cal["pooled"]["final"]
    worst = max(rows, key=lambda r: r["own"]["false_alarm"])
    s = (f"The own-class p-values depart from uniform (KS p < {KS_LEVEL}) in {len(rej)} of {k} classes"
         + (f" ({', '.join(map(str, rej))})" if rej else "")
         + f"; towards too many small p-values (anti-conservative, one-sided KS) in {len(anti)} of {k}"
         + (f" ({', '.join(map(str, anti))})" if anti else "") + ". ")
    s += (f"Pooled over classes, {_pct(own['false_alarm'])} of ID test images get an own-class p-value <= {a} "
          f"(highest class: {worst['class']}, {_pct(worst['own']['false_alarm'])}); the detector's final p-value "
          f"(max over classes) rejects {_pct(fin['false_alarm'])}, "
          + ("within alpha: the max over classes makes it conservative."
             if fin["false_alarm"] <= a else "above alpha: the guarantee does not hold on this test set."))
    return s


def _layers_finding(res) -> str:
    L = res["layers_order"]
    sets = {n: v for n, v in res["layers"].items() if n != "id" and v.get("dominant_share")
            and v["rejected"] >= MIN_REJECTED}
    if not sets:
        return f"No OOD set has {MIN_REJECTED} or more rejections at alpha; the layer shares are not interpreted."
    best = {n: int(np.argmax(v["alone_rate"])) for n, v in sets.items()}
    by_layer = {L[i]: [n for n in sets if best[n] == i] for i in range(len(L))}
    s = (f"Used alone (its own Fisher statistic, recalibrated), the most powerful layer over the {len(sets)} OOD sets "
         f"with >= {MIN_REJECTED} rejections is " + "; ".join(f"{lay} on {len(ns)} ({', '.join(ns)})"
                                                             for lay, ns in by_layer.items() if ns) + ". ")
    diluted = [(n, L[best[n]], v["alone_rate"][best[n]], v["rejection_rate"]) for n, v in sets.items()
               if v["alone_rate"][best[n]] > v["rejection_rate"] + 0.02]
    if diluted:
        s += ("A single layer alone rejects more than all layers combined on " + "; ".join(
            f"{n} ({lay} {_pct(a)} vs {_pct(r)})" for n, lay, a, r in diluted)
              + ": the Fisher sum dilutes a signal carried by one layer. ")
    lost = {(n, L[i]): v["lost_without"][i] for n, v in sets.items() for i in range(len(L))}
    (ln, ll), lv = max(lost.items(), key=lambda kv: kv[1])
    tied = [n for n, v in sets.items() if v["all_tied_share"] >= 0.5]
    s += (f"Leaving one layer out loses at most {_pct(lv)} of a set's rejections ({ll} on {ln}), so "
          + ("no single layer is indispensable. " if lv < 0.1 else "some rejections need that layer. "))
    if tied:
        s += (f"On {', '.join(tied)} at least half of the rejections have every layer at its floor p-value, so no "
              "single layer decides them.")
    return s.strip()


def _reference_finding(res) -> str:
    ref = res["reference_size"]
    rows = ref["rows"]
    counts = ref["fit_per_class"]
    first, last = rows[0], rows[-1]
    gains = {n: last["summary"]["auroc"][n]["mean"] - first["summary"]["auroc"][n]["mean"] for n in ref["sets"]}
    big = max(gains, key=gains.get) if gains else None
    fa = [(r["effective_mean"], r["summary"]["false_alarm"]["mean"]) for r in rows]
    over = [f"{n:.0f}" for n, v in fa if v > ref["alpha"]]
    capped = [str(q) for r in rows for q in r["requested"] if r["whole_split"]]
    partial = [f"{r['requested'][0]} ({sum(c < r['requested'][0] for c in counts)} classes)" for r in rows
               if r["capped"] and not r["whole_split"]]
    s = (f"Mean AUROC over the near/far OOD sets goes from {_f(first['summary']['auroc_mean']['mean'])} with "
         f"{first['effective_mean']:.0f} reference samples per class to {_f(last['summary']['auroc_mean']['mean'])} "
         f"with {last['effective_mean']:.0f}")
    if big is not None:
        s += f"; the largest change is on {big} ({gains[big]:+.3f})"
    s += (". The ID false-alarm rate at alpha stays " + ("within alpha at every size" if not over else
          f"above alpha at {', '.join(over)} per class") + f" ({', '.join(_pct(v) for _, v in fa)}). ")
    if capped:
        s += (f"Requested sizes {', '.join(capped)} exceed what the fit split holds ({min(counts)}–{max(counts)} per "
              f"class) and are the whole split. ")
    if partial:
        s += f"Capped for the classes with fewer samples: {', '.join(partial)}."
    return s.strip()


def _severity_finding(res) -> str:
    sev = res["severity"]
    a = sev["alpha"]
    sh = sev["shifts"]
    if not sh:
        return "No shift was run."
    last = {n: rows[-1] for n, rows in sh.items()}
    mono = [n for n, rows in sh.items() if all(b["rejection"] >= a0["rejection"] - 0.01
                                                 for a0, b in zip(rows, rows[1:]))]
    hi = max(last, key=lambda n: last[n]["rejection"])
    lo = min(last, key=lambda n: last[n]["rejection"])
    s = (f"At the highest severity the rejection rate at alpha = {a} ranges from {_pct(last[lo]['rejection'])} "
         f"({lo}) to {_pct(last[hi]['rejection'])} ({hi}), against {_pct(sev['severity_0']['rejection'])} on clean "
         f"images; it rises (non-decreasing within 1 point) with severity for {len(mono)} of {len(sh)} shifts. ")
    pairs = [(r["rejection_wrong"], r["rejection_right"]) for rows in sh.values() for r in rows
             if r["rejection_wrong"] is not None and r["rejection_right"] is not None]
    if pairs:
        more, same = sum(w > r for w, r in pairs), sum(w == r for w, r in pairs)
        s += (f"Wrong predictions are rejected more often than right ones in {more} of {len(pairs)} shift × severity "
              f"cells (as often in {same}). ")
    acc0 = sev["severity_0"]["accuracy"]
    benign = [(n, r) for n, rows in sh.items() for r in rows if r["accuracy"] >= acc0 - 0.01]
    if benign:
        n, r = max(benign, key=lambda nr: nr[1]["rejection"])
        if r["rejection"] > 2 * a:
            s += (f"Shifts that leave the accuracy within 1 point of clean are still rejected: {n} at severity "
                  f"{r['severity']} rejects {_pct(r['rejection'])} of inputs at {_pct(r['accuracy'])} accuracy. ")
    drops = {n: sev["severity_0"]["accuracy"] - last[n]["accuracy"] for n in last}
    worst = max(drops, key=drops.get)
    s += (f"The largest accuracy drop is {worst} ({_pct(sev['severity_0']['accuracy'])} → "
          f"{_pct(last[worst]['accuracy'])}), where {_pct(last[worst]['rejection'])} of inputs are rejected.")
    return s


def _alpha_finding(res) -> str:
    ac = res["alpha_curves"]
    a = np.asarray(ac["alphas"])
    idr = np.asarray(ac["rates"]["id"])
    above = a[idr > a]
    pmin = res["calibration"]["min_attainable_p"]
    s = ("The ID test rejection rate stays at or below alpha over the whole grid "
         f"({a[0]:g}–{a[-1]:g})" if not above.size else
         f"The ID test rejection rate exceeds alpha at {above.size} of {a.size} grid points "
         f"(e.g. alpha = {above[0]:g})")
    s += f"; below alpha = {pmin:.4f} (the smallest attainable p-value) nothing can be rejected. "
    for target in sorted({0.01, res["config"]["alpha"]}):
        i = int(np.argmin(np.abs(a - target)))
        if a[i] < pmin:
            continue
        ood = {n: v[i] for n, v in ac["rates"].items() if n != "id" and res["groups"].get(n) != "covariate"}
        if ood:
            lo, hi = min(ood, key=ood.get), max(ood, key=ood.get)
            s += (f"At alpha = {a[i]:g}: ID test {_pct(idr[i])}, near/far OOD sets {_pct(ood[lo])} ({lo}) to "
                  f"{_pct(ood[hi])} ({hi}). ")
    return s.strip()


def _cost_finding(res) -> str:
    rows = res["reference_size"]["rows"]
    a, b = rows[0], rows[-1]
    g = lambda r, k: r["summary"][k]["mean"]  # noqa: E731
    C = len(res["reference_size"]["fit_per_class"])
    d = sum(res.get("channels", {}).values())
    if b["effective_mean"] > a["effective_mean"]:  # slope: KiB per added reference sample
        per = (g(b, "model_mib") - g(a, "model_mib")) * 1024 / ((b["effective_mean"] - a["effective_mean"]) * C)
    else:
        per = g(b, "model_mib") * 1024 / max(1e-9, b["effective_mean"] * C)
    raw = f", {per * 1024 / (4 * d):.0f} times the {d} float32 channel statistics it is built from" if d else ""
    return (f"From {a['effective_mean']:.0f} to {b['effective_mean']:.0f} reference samples per class, the fit time "
            f"goes from {g(a, 'fit_s'):.2f} s to {g(b, 'fit_s'):.2f} s (it includes scoring the whole cal split), "
            f"scoring from {g(a, 'score_ms_per_1000') / 1000:.2f} s to {g(b, 'score_ms_per_1000') / 1000:.2f} s per "
            f"1,000 inputs, the fitted reference from {g(a, 'model_mib'):.1f} to {g(b, 'model_mib'):.1f} MiB "
            f"(≈ {per:.0f} KiB per reference sample{raw}) and the peak memory of the fit from "
            f"{g(a, 'peak_fit_mib'):.0f} to {g(b, 'peak_fit_mib'):.0f} MiB.")


FINDINGS = {"calibration": _calibration_finding, "layers": _layers_finding, "reference_size": _reference_finding,
            "severity": _severity_finding, "alpha": _alpha_finding, "cost": _cost_finding}


def findings(res: dict) -> dict:
    return {k: fn(res) for k, fn in FINDINGS.items()}


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------
def _table(head, rows) -> list:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |"
                                                                        for r in rows]


def _calibration_md(res) -> list:
    cal = res["calibration"]
    rows = [[r["class"], r["own"]["n"], r["n_ref"], r["n_cal"], _f(r["own"]["ks_D"]), _f(r["own"]["ks_p"]),
             _f(r["own"]["ks_anticonservative_p"]), _pct(r["own"]["false_alarm"]), _f(r["final"]["ks_p"]),
             _pct(r["final"]["false_alarm"])] for r in cal["per_class"]]
    po, pf = cal["pooled"]["own"], cal["pooled"]["final"]
    rows.append(["all", po["n"], "", "", _f(po["ks_D"]), _f(po["ks_p"]), _f(po["ks_anticonservative_p"]),
                 _pct(po["false_alarm"]), _f(pf["ks_p"]), _pct(pf["false_alarm"])])
    return [f"ID test set ({cal['n']} images), grouped by true class. *Own*: the class's own calibrated p-value "
            f"P_y; *final*: the detector's p-value P = max_c P_c. KS: Kolmogorov–Smirnov against U(0, 1), "
            f"two-sided, and one-sided towards too many small p-values (anti-conservative). Smallest attainable p: "
            f"{cal['min_attainable_p']:.4f} (conformal p-values are discrete, so KS is approximate).", ""] + _table(
        ["class", "n test", "n ref", "n cal", "own KS D", "own KS p", "own KS p (anti-cons.)",
         f"own rejected at {cal['alpha']}", "final KS p", f"final rejected at {cal['alpha']}"], rows)


def _layers_md(res) -> list:
    L = res["layers_order"]
    rows = []
    for n, v in res["layers"].items():
        ds, lw = v.get("dominant_share"), v.get("lost_without")
        rows.append([("ID test" if n == "id" else n), v.get("group", "id"), _pct(v["rejection_rate"]),
                     "–" if v.get("all_tied_share") is None else _pct(v["all_tied_share"])]
                    + [(f"{100 * v['alone_rate'][i]:.0f} / " + ("–" if ds is None else
                        f"{100 * ds[i]:.0f} / {100 * lw[i]:.0f}")) for i in range(len(L))])
    return [f"Rejections at alpha = {res['config']['alpha']}. *All tied*: share of rejections whose layers all "
            "have the same Fisher term (every layer at its floor p-value). Per layer: % of the set rejected by "
            "the layer alone (its own Fisher statistic, recalibrated on cal) / % of rejections whose largest "
            "Fisher term (-2 log p_layer, under the class that decides P) is the layer's (ties share) / % of "
            "rejections lost when the layer is left out (recalibrated).", ""] + _table(
        ["set", "group", "rejected (all layers)", "all tied"] + [f"{lay}: alone / largest / lost" for lay in L], rows)


def _reference_md(res) -> list:
    ref = res["reference_size"]
    rows = []
    for r in ref["rows"]:
        e = r["effective_per_class"]
        sm = r["summary"]
        rows.append([", ".join(map(str, r["requested"])), f"{r['effective_mean']:.0f} ({min(e)}–{max(e)})",
                     "whole split" if r["whole_split"] else ("yes" if r["capped"] else "no"), len(r["runs"]),
                     _ms(sm["auroc_mean"])] + [_ms(sm["auroc"][n]) for n in ref["sets"]]
                    + [_ms(sm["false_alarm"])])
    c = ref["fit_per_class"]
    return [f"The detector refitted on n reference (fit) samples per class, seeded repeats (mean ± sd); the cal "
            f"split stays whole. The fit split holds {min(c)}–{max(c)} samples per class, so larger sizes are capped "
            "at each class's count; a size at or above every class's count is the whole split (deterministic: its "
            f"repeats differ only in the time measurements). AUROC against the scored ID test images; false alarms "
            f"at alpha = {ref['alpha']}.",
            ""] + _table(
        ["requested n", "used per class: mean (min–max)", "capped", "repeats", "mean AUROC"] + ref["sets"]
        + ["ID false alarms"], rows)


def _severity_md(res) -> list:
    sev = res["severity"]
    sevs = [r["severity"] for r in next(iter(sev["shifts"].values()))] if sev["shifts"] else []
    s0 = sev["severity_0"]
    rows = [["clean", "0", _pct(s0["rejection"]), "–", "–", "–", _pct(s0["accuracy"]), "–"]]
    for n, rs in sev["shifts"].items():
        for r in rs:
            rows.append([n, r["severity"], _pct(r["rejection"]), _pct(r["rejection_right"]), _pct(r["rejection_wrong"]),
                         _f(r["auroc"]), _pct(r["accuracy"]), _pct(r["accepted_accuracy"])])
    return [f"The ID test images scored in this section ({sev['n']}) corrupted by every shift of data/shifts.py at "
            f"severities {', '.join(map(str, sevs))}; rejection at alpha = {sev['alpha']} (overall, among right and "
            "among wrong predictions), AUROC against the clean images, the classifier's accuracy and the accuracy "
            "of the accepted predictions.", ""] + _table(
        ["shift", "severity", "rejected", "rejected if right", "rejected if wrong", "AUROC", "accuracy",
         "accuracy accepted"], rows)


def _alpha_md(res) -> list:
    ac = res["alpha_curves"]
    a = list(ac["alphas"])
    cols = [x for x in (0.001, 0.01, 0.05, 0.1, 0.5) if any(abs(x - v) < 1e-9 for v in a)]
    idx = [min(range(len(a)), key=lambda i: abs(a[i] - x)) for x in cols]
    rows = [[("ID test" if n == "id" else n), res["groups"].get(n, "id")] + [_pct(v[i]) for i in idx]
            for n, v in ac["rates"].items()]
    return ["Rejection rate (p <= alpha) on the whole ID test set and on every OOD set as scored (see the header); "
            "the full curves are in the JSON and the figure.", ""] + _table(
        ["set", "group"] + [f"alpha = {x:g}" for x in cols], rows)


def _cost_md(res) -> list:
    rows = []
    for r in res["reference_size"]["rows"]:
        sm = r["summary"]
        rows.append([f"{r['effective_mean']:.0f}", len(r["runs"]), _ms(sm["fit_s"], 2),
                     _ms({k: v / 1000 for k, v in sm["score_ms_per_1000"].items()}, 2), _ms(sm["model_mib"], 1),
                     _ms(sm["peak_fit_mib"], 0)])
    return ["Wall time on this machine (CPU, numpy; shared cores, so times are indicative); the fit includes "
            "computing the whole cal split's statistics. Memory: the fitted reference (`det.core_.nbytes`) and the "
            "peak traced by tracemalloc during the fit (representations excluded: they are extracted before).",
            ""] + _table(["reference per class", "runs", "fit (s)", "scoring (s / 1,000 inputs)",
                          "fitted reference (MiB)", "peak during fit (MiB)"], rows)


SECTIONS = (("calibration", "Calibration on the ID test set", _calibration_md),
            ("layers", "Which layers decide", _layers_md),
            ("reference_size", "Power against reference size", _reference_md),
            ("severity", "Power against shift severity", _severity_md),
            ("alpha", "Rejection rate against alpha", _alpha_md),
            ("cost", "Cost against reference size", _cost_md))


def markdown(res: dict, command: str, figure_names: dict) -> str:
    fd = findings(res)
    cl = res["classifier"]
    sp = res["splits"]
    out = [f"# {res['detector']} on {res['suite']}: calibration, layers, power and cost", "",
           f"Command: `{command}`  ", f"Wall time: {res['wall_seconds']:.0f} s  ",
           f"Classifier: {cl['arch']} (seed {cl['seed']}); detector `{res['detector']}` from the registry, "
           f"alpha = {res['config']['alpha']}.  ",
           f"Splits: fit {sum(sp['fit_per_class'])} ({min(sp['fit_per_class'])}–{max(sp['fit_per_class'])} per "
           f"class), cal {sum(sp['cal_per_class'])}, ID test {sp['id_test']}; the layer, alpha and sweep sections "
           + (f"score seeded subsamples of at most {res['config']['max_eval']} images per set."
              if res["config"]["max_eval"] else "score every image of every set."), ""]
    for key, title, fn in SECTIONS:
        out += [f"## {title}", "", f"**What it shows.** {fd[key]}", ""] + fn(res) + [""]
        if key in figure_names:
            out += [f"![{title}]({figure_names[key]})", ""]
    return "\n".join(out)


def write(res: dict, out_dir, command: str, name: str = "stattest") -> list:
    """Write ``<name>.json``, ``<name>.md`` and ``<name>_<section>.png`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, names = [], {}
    for key, fn in figures.FIGURES.items():
        png = fn(res)
        if png is not None:
            p = out / f"{name}_{key}.png"
            atomic_write(p, png)
            names[key] = p.name
            paths.append(p)
    res = {**res, "command": command, "findings": findings(res), "figures": names}
    write_json(out / f"{name}.json", res)
    atomic_write(out / f"{name}.md", markdown(res, command, names))
    return [out / f"{name}.json", out / f"{name}.md"] + paths
