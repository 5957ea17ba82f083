"""Writing the novelty protocol's results: ``novelty.json`` (everything), ``novelty.md`` (the tables and
how to read them) and ``novelty.png`` (seed 0's stream over time: rejections, clusters, declarations)."""
from __future__ import annotations

from pathlib import Path

from oodbench.benchmark.io import atomic_write, write_json


def _f(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.{digits}f}"
    return f"{int(v)}" if isinstance(v, (int, float)) else str(v)


def _pipeline_text(o: dict) -> list[str]:
    """How the pipeline decided (the options of the run)."""
    head = (f"Pipeline: BH at q = {o['q']} on the window's p-values, PCA ({o['n_components']} dims, fitted on ID "
            f"`fit` features), {o['cluster']} clustering, min size {o['min_size']}; ")
    if o.get("null1", "cohesion") == "history":
        tested = max(o["n_before"] - o["history"], 0)
        return [head + f"the flagged inputs of the first {o['history']} windows are the reference of what rejected "
                "inputs look like (nothing is declared then); each later window clusters that reference together "
                f"with the last {o['memory']} windows' flagged inputs, and a cluster is declared when it holds more "
                "recent inputs than chance (exact window-permutation test), its recent members whose nearest "
                "neighbours are mostly recent still number the min size, and an energy-distance test rejects "
                f"every known class (Bonferroni over the window's clusters); per-window level alpha = {o['alpha']}. "
                f"False declarations per 1,000 junk-only windows are counted over the {tested} junk-only windows "
                "after the reference period, per stream seed. "]
    return [head + f"memory {o.get('memory', 1)} windows; a cluster is declared when its cohesion beats the max-T "
            "axis-permutation null and an energy-distance test rejects every known class (Bonferroni over the "
            f"window's clusters); per-window level alpha = {o['alpha']}. "]


def _flagging_lines(r: dict) -> list[str]:
    """What the flagging step can pass on: per method and source, AUROC against ID and the share of small
    p-values (``flagging`` in novelty.json)."""
    fl = r.get("flagging")
    if not fl:
        return []
    lines = ["## What the flagging step can pass on", "",
             "Per method and pool source: AUROC of the p-values against the ID test images, and the share of "
             "the source's images with p <= 0.01 / p <= 0.05 (in a window with 15 % junk, Benjamini–Hochberg at "
             "q = 0.1 flags at about p <= 0.01; a class whose images rarely get there never reaches the "
             "clustering).", "", "| method | source | AUROC vs ID | p <= 0.01 | p <= 0.05 |", "|---|---|---|---|---|"]
    for m, per in fl.items():
        for src, v in per.items():
            lines.append(f"| {m} | {src} | {_f(v['auroc'])} | {_f(v['p<=0.01'])} | {_f(v['p<=0.05'])} |")
    return lines + [""]


def markdown(r: dict, command: str = "") -> str:
    o = r["options"]
    novel = r["pool"]["novel_classes"]
    names = r["pool"].get("class_names", {})
    shown = [names.get(str(k), str(k)) for k in novel]
    junk = r["pool"].get("junk_sets") or [n for n in r["pool"]["sizes"] if n != "id" and not n.startswith("mnist-")]
    lines = [f"# Novelty detection on `{r['suite']}`", "",
             "Does a pipeline declare the held-out classes as *new classes* (lab_methods.md §6), without",
             "declaring far-OOD junk? Streams of windows of "
             f"{o['window']} inputs: {o['n_before']} junk-only windows ({o['junk_frac']:.0%} junk: "
             f"{', '.join(junk)}; "
             "the rest ID test images), then "
             f"{o['n_after']} windows where the held-out classes {', '.join(shown)} arrive ({o['novel_frac']:.0%} of each window); "
             f"{o['stream_seeds']} stream seeds, one classifier ({r['classifier'].get('arch')}, seed 0).", "",
             *_pipeline_text(o),
             f"Naive alarm: more inputs with p <= {o['alarm_level']} than Binomial(window, "
             f"{o['alarm_level']})'s 1 - alpha quantile.", "",
             "## Results (mean over stream seeds)", "",
             "| method | detection rate | " + " | ".join(f"delay {n}" for n in shown)
             + " | false decl. / 1,000 junk-only windows | false decl. (all) | classes found / truth"
               " | purity | ARI | coverage |",
             "|---" * (8 + len(novel)) + "|"]
    for m, v in r["methods"].items():
        a = v["mean"]
        if m.startswith("alarm:"):
            delays = [_f(a.get("delay_any")) + " (any)"] + ["" for _ in novel[1:]]
            lines.append(f"| {m} | {_f(a['detection_rate'])} | " + " | ".join(delays)
                         + f" | {_f(a['false_per_1000_junk_windows'], 1)} | – | – | – | – | – |")
            continue
        delays = [_f(a.get(f"delay_{k}"), 1) for k in novel]
        lines.append(f"| {m} | {_f(a['detection_rate'])} | " + " | ".join(delays)
                     + f" | {_f(a['false_per_1000_junk_windows'], 1)} | {_f(a['false_declarations'], 2)}"
                     + f" | {_f(a['classes_found'], 2)} / {_f(a['classes_truth'])} | {_f(a['purity'])}"
                     + f" | {_f(a['ari'])} | {_f(a['coverage'])} |")
    lines += ["", "Detection rate: fraction of (held-out class, seed) pairs for which a declared class has that "
              "class as its majority. Delay: images of the class streamed from the arrival to the end of the "
              "declaring window (mean over seeds where it was detected). False declarations: declared classes "
              "whose members are mostly ID or junk. Purity: over all inputs given a new class whose members "
              "were mostly held-out images, after the arrival (members at declaration and later assignments), "
              "the share that is the class's majority label. ARI: adjusted Rand index of the new-class labels "
              "against the held-out labels, over the held-out images and those inputs (– when no such class "
              "was declared). Coverage: share of held-out "
              "images after the arrival that were given a new class.", "",
              *_flagging_lines(r), "## Per stream seed", ""]
    for m, v in r["methods"].items():
        if m.startswith("alarm:"):
            continue
        rows = []
        for s, a in enumerate(v["per_seed"]):
            found = ", ".join(f"{names.get(str(k), k)}: {'yes, delay ' + _f(a.get(f'delay_{k}')) if a.get(f'detected_{k}') else 'no'}"
                              for k in novel)
            rows.append(f"- seed {s}: {found}; false {a['false_declarations']} {a.get('false_main_source') or ''}; "
                        f"purity {_f(a['purity'])}; "
                        f"ARI {_f(a['ari'])}")
        lines += [f"**{m}**", "", *rows, ""]
    secs = r["seconds"]
    lines += ["## Record", "", f"- scoring {secs['scoring']:.0f} s, total {secs['total']:.0f} s; "
              f"git {r['git_commit'] or '?'}; pool sizes {r['pool']['sizes']}"]
    if command:
        lines.append(f"- produced by: `{command}`")
    lines.append("- figure: `novelty.png` (stream seed 0)")
    return "\n".join(lines) + "\n"


def figure(r: dict) -> bytes | None:
    from oodbench.benchmark.reporting.figures import pyplot, png_bytes

    trace = r.get("trace_seed0") or {}
    pipes = [m for m in trace if m.startswith("pipeline:")]
    if not pipes:
        return None
    plt = pyplot()
    o = r["options"]
    lo = max(0, o["n_before"] - 20)
    fig, axes = plt.subplots(len(pipes), 1, figsize=(7, 2.0 * len(pipes)), sharex=True, squeeze=False)
    for ax, m in zip(axes[:, 0], pipes):
        win = trace[m]["windows"][lo:]
        x = list(range(lo, lo + len(win)))
        ax.plot(x, [w["flagged"] for w in win], color="#333333", label="flagged (BH)")
        ax.plot(x, [w["flagged_junk"] for w in win], color="#1f77b4", label="flagged junk")
        ax.plot(x, [w["flagged_novel"] for w in win], color="#d62728", label="flagged held-out")
        ax.plot(x, [w["assigned"] for w in win], color="#2ca02c", ls="--", label="assigned to a new class")
        ax.bar(x, [w["candidates"] for w in win], color="#999999", alpha=0.5, label="clusters >= min size")
        for c in trace[m]["classes"]:
            if c["window"] >= lo:
                ax.axvline(c["window"], color="#d62728" if c["majority"] >= 0 else "#ff7f0e", lw=1, ls=":")
                ax.annotate(f"new {c['majority'] if c['majority'] >= 0 else 'junk/ID'}", (c["window"], ax.get_ylim()[1]),
                            fontsize=6, va="top")
        alarm = trace.get(m.replace("pipeline:", "alarm:"))
        if alarm:
            ax.plot(x, alarm["counts"][lo:], color="#9467bd", lw=0.8, label="naive: #p<=level")
            ax.axhline(alarm["threshold"], color="#9467bd", lw=0.6, ls="--")
        ax.axvline(o["n_before"] - 0.5, color="black", lw=1)
        ax.set_title(f"{m} — arrival of held-out classes at window {o['n_before']}")
        ax.set_ylabel("inputs")
    axes[-1, 0].set_xlabel("window")
    axes[0, 0].legend(loc="upper left", ncol=3)
    fig.tight_layout()
    return png_bytes(fig)


def write(r: dict, out_dir, command: str = "") -> list[Path]:
    out = Path(out_dir)
    write_json(out / "novelty.json", r)
    atomic_write(out / "novelty.md", markdown(r, command))
    paths = [out / "novelty.json", out / "novelty.md"]
    png = figure(r)
    if png is not None:
        atomic_write(out / "novelty.png", png)
        paths.append(out / "novelty.png")
    return paths
