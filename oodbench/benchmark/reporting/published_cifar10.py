"""The cifar10 report's section on OpenOOD v1.5's published CIFAR-10 leaderboard.

OpenOOD's leaderboard (``leaderboard`` branch, ``results/cifar10.csv``; ``shared/specs/anchors.md``
§3.5a) scores postprocessors on a ResNet-18 at 95.06 ± 0.30 % (three checkpoints, the original PNG
CIFAR-10), with near-OOD = CIFAR-100 and Tiny ImageNet (classes overlapping CIFAR-10 removed) and
far-OOD = MNIST, SVHN, Textures and Places365. The offline cifar10 suite differs in the classifier (our
``airbench_wide`` CPU net, or ResNet-18 on a GPU, on a JPEG-decoded copy of CIFAR-10), in the near set (Tiny
ImageNet without its CIFAR-10-like classes only: CIFAR-100 is not offline) and in the far sets (MNIST and
Textures = DTD are the published far sets we have; SVHN and Places365 are not offline; FashionMNIST,
notMNIST and two noise sets are ours). The section states those differences and sets our near and far
AUROC beside the published ones, per implementation (pytorch-ood and OpenOOD run by oodbench). It reads
``summary.csv`` only, like the rest of the report.
"""
from __future__ import annotations

import pandas as pd

from oodbench.benchmark.reporting.formatting import pct
from oodbench.benchmark.reporting.published import auroc_cell

#: published AUROC (%) of OpenOOD v1.5's CIFAR-10 leaderboard (ResNet-18, 3 checkpoints): (near, far)
PUBLISHED = {
    "MSP": (88.03, 90.73), "TempScale": (88.09, 90.97), "ODIN": (82.87, 87.96), "MDS": (84.20, 89.72),
    "RMDS": (89.80, 92.20), "Gram": (58.66, 71.73), "EBO": (87.58, 91.21), "GradNorm": (54.90, 57.55),
    "ReAct": (87.11, 90.42), "MLS": (87.52, 91.10), "KLM": (79.19, 82.68), "ViM": (88.68, 93.48),
    "KNN": (90.64, 92.96), "DICE": (78.34, 84.23), "RankFeat": (79.46, 75.87), "ASH": (75.27, 78.49),
    "SHE": (81.54, 85.32), "GEN": (88.20, 91.35), "Relation": (89.77, 92.21), "SCALE": (82.55, 86.39),
    "OpenMax": (87.62, 89.62), "fDBD": (90.42, 93.16),
}
PUBLISHED_ACCURACY = "95.06 ± 0.30 %"

#: the same method in each wrapped library (None: that library has no such detector)
IMPLEMENTATIONS = {
    "MSP": ("pytorch_ood.msp", "openood.msp"), "TempScale": ("pytorch_ood.temperature_scaling", "openood.temp_scaling"),
    "ODIN": ("pytorch_ood.odin", "openood.odin"), "MDS": ("pytorch_ood.mahalanobis", "openood.mds"),
    "RMDS": ("pytorch_ood.rmd", "openood.rmds"), "Gram": ("pytorch_ood.gram", "openood.gram"),
    "EBO": ("pytorch_ood.energy", "openood.ebo"), "GradNorm": ("pytorch_ood.gradnorm", "openood.gradnorm"),
    "ReAct": ("pytorch_ood.react", "openood.react"), "MLS": ("pytorch_ood.maxlogit", "openood.mls"),
    "KLM": ("pytorch_ood.klmatching", "openood.klm"), "ViM": ("pytorch_ood.vim", "openood.vim"),
    "KNN": ("pytorch_ood.knn", "openood.knn"), "DICE": ("pytorch_ood.dice", "openood.dice"),
    "RankFeat": ("pytorch_ood.rankfeat", "openood.rankfeat"), "ASH": ("pytorch_ood.ash", "openood.ash"),
    "SHE": ("pytorch_ood.she", "openood.she"), "GEN": ("pytorch_ood.gen", "openood.gen"),
    "Relation": (None, "openood.relation"), "SCALE": ("pytorch_ood.scale", "openood.scale"),
    "OpenMax": ("pytorch_ood.openmax", "openood.openmax"), "fDBD": ("pytorch_ood.fdbd", "openood.fdbd"),
}
NEAR_SETS = ("tinyimagenet",)
#: the published far sets that are offline (Textures = DTD); SVHN and Places365 are not
SHARED_FAR_SETS = ("mnist-rgb", "dtd")


def measured(summary: pd.DataFrame, detector: str | None) -> dict:
    """AUROC (%) of ``detector`` from a ``summary.csv``: ``near`` (mean over :data:`NEAR_SETS`), ``far``
    (mean over :data:`SHARED_FAR_SETS`) and ``far_all`` (the suite's far-mean row); empty when absent."""
    if detector is None:
        return {}
    au = summary[(summary["detector"] == detector) & (summary["metric"] == "auroc")].set_index("test_set")["mean"]
    out = {}
    for key, sets in (("near", NEAR_SETS), ("far", SHARED_FAR_SETS)):
        vals = [100 * float(au[s]) for s in sets if s in au.index]
        if len(vals) == len(sets):
            out[key] = sum(vals) / len(vals)
    if "far-mean" in au.index:
        out["far_all"] = 100 * float(au["far-mean"])
    return out


def comparison(summary: pd.DataFrame) -> list[list]:
    """Rows: method, published near, near here (pytorch-ood / OpenOOD), published far, far on the shared
    sets here (pytorch-ood / OpenOOD), far on all our far sets (pytorch-ood / OpenOOD); AUROC %."""
    rows = []
    for method, (near, far) in PUBLISHED.items():
        ours = [measured(summary, name) for name in IMPLEMENTATIONS[method]]
        if not any(ours):
            continue
        pair = lambda key: " / ".join(auroc_cell(m.get(key)) for m in ours)  # noqa: E731
        rows.append([method, auroc_cell(near), pair("near"), auroc_cell(far), pair("far"), pair("far_all")])
    return rows


def _accuracy(summary: pd.DataFrame) -> str:
    acc = summary[(summary["detector"] == "classifier") & (summary["metric"] == "accuracy")
                  & (summary["test_set"] == "id")]
    if acc.empty:
        return "?"
    row = acc.iloc[0]
    return f"{pct(float(row['mean']), row.get('std'))} % (mean of {int(row.get('n_seeds', 1))} seeds)"


def section(doc, folder) -> None:
    """The section in the cifar10 report (and cifar10-* suites), when ``summary.csv`` exists."""
    if not folder.name.startswith("cifar10") or folder.name.startswith("cifar10-open") \
            or not (folder / "summary.csv").exists():
        return
    summary = pd.read_csv(folder / "summary.csv")
    model = str(summary["model"].dropna().iloc[0]) if "model" in summary and summary["model"].notna().any() else "?"
    rows = comparison(summary)
    if not rows:
        return
    doc.h2("Against OpenOOD's published CIFAR-10 leaderboard", "openood-cifar10")
    doc.p(f"**Classifier.** Here: `{model}`, test accuracy {_accuracy(summary)} on our copy of CIFAR-10, whose "
          "train and test images were JPEG-decoded (about 3 points of accuracy against the original PNGs for "
          f"the same network). OpenOOD v1.5: ResNet-18, {PUBLISHED_ACCURACY} over three checkpoints, on the "
          "original images. Logit-based scores (MSP, Energy, MaxLogit) lose AUROC with a weaker classifier.")
    doc.p("**OOD sets.** Near-OOD here is Tiny ImageNet without its CIFAR-10-like classes only; OpenOOD's "
          "near-OOD mean is over CIFAR-100 and Tiny ImageNet, and CIFAR-100 is not in the offline data. "
          "OpenOOD's far-OOD mean is over MNIST, SVHN, Textures and "
          "Places365; of those only MNIST (here 32×32 RGB) and Textures (DTD) are offline, so the *shared far* "
          "column averages those two, and *all far* is this suite's far mean (adding FashionMNIST, notMNIST "
          "and two noise sets, which OpenOOD does not use). The published numbers use OpenOOD's own "
          "hyperparameter search (APS) on its validation split for the methods that have one; here every "
          "detector runs at its library's default hyperparameters (`--tuning default`).")
    doc.p("AUROC (%). Each *here* cell: pytorch-ood's implementation / OpenOOD's, both run by oodbench on the "
          "same representations (– where a library lacks the method or its row is missing).")
    doc.table(["method", "published near", "near here", "published far", "shared far here", "all far here"], rows)
