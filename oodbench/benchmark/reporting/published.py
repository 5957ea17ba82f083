"""The mnist report's comparison with OpenOOD's own published MNIST table.

OpenOOD's MNIST benchmark (its LeNet-5 from ``openood/networks/lenet.py``, trained by its MNIST recipe;
``tools/report/report_table.ipynb``, single run, April 2022; ``shared/specs/anchors.md`` §3.5d) is
set against the same postprocessors run by oodbench on two classifiers: the ``mnist-openood`` suite
(OpenOOD's LeNet-5 and recipe, written in our code) and the ``mnist`` suite (our LeNet). The section
reads ``summary.csv`` of both results folders (``results/mnist-openood`` beside ``results/mnist``) and,
when present, the measured explanation of the gaps in ``results/mnist-openood/gaps.md``.

Only AUROC is compared: the published FPR@95 comes from OpenOOD's metric code before commit 873e8c2
(ID as the positive class), another quantity than our FPR@95 (OOD positive). Our far-OOD mean is over
the published far sets we have offline (Texture = DTD, CIFAR-10, Tiny ImageNet, as 28×28 grey);
Places365 is absent here.
"""
from __future__ import annotations

import math

import pandas as pd

#: published AUROC (%) per method: near sets, near mean, far mean (4 sets incl. Places365)
PUBLISHED = {
    "msp": {"fashionmnist": 94.62, "notmnist": 88.77, "near": 91.69, "far": 98.77},
    "odin": {"fashionmnist": 96.55, "notmnist": 89.85, "near": 93.20, "far": 99.36},
    "ebo": {"fashionmnist": 96.95, "notmnist": 88.44, "near": 92.69, "far": 99.39},
    "mds": {"fashionmnist": 98.88, "notmnist": 99.67, "near": 99.28, "far": 99.84},
}
FAR_SETS = ("dtd-grey", "cifar10-grey", "tinyimagenet-grey")
COLUMNS = ("fashionmnist", "notmnist", "near", "far")


def measured(summary: pd.DataFrame, detector: str) -> dict:
    """AUROC (%) of ``detector`` from a ``summary.csv``: mean over seeds per near set, the near mean, and
    the mean over :data:`FAR_SETS` (with the number of seeds)."""
    au = summary[(summary["detector"] == detector) & (summary["metric"] == "auroc")].set_index("test_set")
    if au.empty:
        return {}
    out = {k: 100 * float(au.loc[k, "mean"]) for k in ("fashionmnist", "notmnist") if k in au.index}
    if "near-mean" in au.index:
        out["near"] = 100 * float(au.loc["near-mean", "mean"])
    far = [100 * float(au.loc[k, "mean"]) for k in FAR_SETS if k in au.index]
    if len(far) == len(FAR_SETS):
        out["far"] = sum(far) / len(far)
    out["n_seeds"] = int(au["n_seeds"].max()) if "n_seeds" in au else 1
    return out


def comparison(openood_lenet: pd.DataFrame, our_lenet: pd.DataFrame | None) -> list[list]:
    """Rows: method, then per column published / OpenOOD-LeNet here / our LeNet here (AUROC %)."""
    rows = []
    for method, pub in PUBLISHED.items():
        a = measured(openood_lenet, f"openood.{method}")
        b = measured(our_lenet, f"openood.{method}") if our_lenet is not None else {}
        row = [method.upper()]
        for col in COLUMNS:
            row.append(" / ".join(auroc_cell(v) for v in (pub.get(col), a.get(col), b.get(col))))
        rows.append(row)
    return rows


def auroc_cell(v) -> str:
    """An AUROC already in % with two decimals; ``–`` when missing (also the cifar10 section's cells)."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def section(doc, folder) -> None:
    """The section in the mnist report, when ``<results>/mnist-openood/summary.csv`` exists."""
    other = folder.parent / "mnist-openood"
    if folder.name != "mnist" or not (other / "summary.csv").exists():
        return
    ours = pd.read_csv(folder / "summary.csv") if (folder / "summary.csv").exists() else None
    theirs = pd.read_csv(other / "summary.csv")
    doc.h2("OpenOOD's published MNIST table, reproduced", "openood-mnist")
    seeds = measured(theirs, "openood.msp").get("n_seeds", "?")
    doc.p("AUROC (%) of OpenOOD's postprocessors (run by oodbench in OpenOOD's environment), three numbers "
          "per cell: OpenOOD's published single run (its LeNet-5 and MNIST recipe, April 2022, "
          "`tools/report/report_table.ipynb`) / the same network and recipe trained here (`mnist-openood`, "
          f"mean of {seeds} seeds) / our LeNet (`mnist`, this report). Far = mean over Texture (DTD), CIFAR-10 "
          "and Tiny ImageNet as 28×28 grey; the published far mean also includes Places365 (absent here). "
          "FPR@95 is not compared: the published one is from OpenOOD's earlier metric code with ID as the "
          "positive class.")
    doc.table(["method", "FashionMNIST", "notMNIST", "near mean", "far mean"], comparison(theirs, ours))
    if (other / "gaps.md").exists():
        doc.p((other / "gaps.md").read_text().strip())
