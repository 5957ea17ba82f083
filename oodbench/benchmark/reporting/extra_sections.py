"""Report sections from the other analyses written into a suite's results folder, when present:
``analysis/stattest.json`` (``oodbench analyse stattest``), ``novelty.json`` (``oodbench novelty``) and, in
the mnist report, the comparison with OpenOOD's published MNIST table (:mod:`.published`); in the cifar10
report, the comparison with OpenOOD's published CIFAR-10 leaderboard (:mod:`.published_cifar10`).
Like the rest of the report they read results files only."""
from __future__ import annotations

from oodbench.benchmark.io import read_json

TITLES = {"calibration": "Calibration on the ID test set", "layers": "Which layers decide",
          "reference_size": "Power against reference size", "severity": "Power against shift severity",
          "alpha": "Rejection rate against alpha", "cost": "Cost against reference size"}


def sections(doc, res) -> None:
    from oodbench.benchmark.reporting import published, published_cifar10

    _stattest(doc, res.folder)
    _novelty(doc, res.folder)
    published.section(doc, res.folder)
    published_cifar10.section(doc, res.folder)


def _stattest(doc, folder) -> None:
    a = read_json(folder / "analysis" / "stattest.json", None)
    if not a:
        return
    doc.h2("The lab detector's behaviour", "stattest-analysis")
    doc.p(f"From `analysis/stattest.md` (`{a.get('command', 'oodbench analyse stattest')}`; classifier seed "
          f"{a.get('classifier', {}).get('seed', '?')}). What each part shows, in the analysis's own words:")
    for key, title in TITLES.items():
        text = a.get("findings", {}).get(key)
        if not text:
            continue
        doc.h3(title)
        doc.p(text)
        fig = a.get("figures", {}).get(key)
        if fig and (folder / "analysis" / fig).exists():
            doc.image(fig, (folder / "analysis" / fig).read_bytes(), title)


def _novelty(doc, folder) -> None:
    if not (folder / "novelty.json").exists():
        return
    doc.h2("Novelty detection", "novelty")
    doc.p("A stream of ID images, junk and held-out classes; has a new class appeared among the rejected "
          "inputs? Metrics and settings: `novelty.md`.")
    if (folder / "novelty.png").exists():
        doc.image("novelty.png", (folder / "novelty.png").read_bytes(), "Novelty stream over time")
