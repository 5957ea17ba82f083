"""The critical-difference diagram of a suite (Demšar 2006): average AUROC ranks of the detectors over
blocks = (test set, seed), with the Nemenyi critical difference, as PNG bytes.

Only detectors unflagged in every group and with an AUROC on every block take part (the statistics
are :func:`oodbench.benchmark.evaluation.ranking.friedman_nemenyi`). The axis runs from rank 1 (best)
on the left; detectors whose average ranks differ by less than the critical difference are joined by
a thick bar (a clique: not significantly different by the Nemenyi test).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation.ranking import friedman_nemenyi


def cd_blocks(df: pd.DataFrame, exclude=()) -> pd.DataFrame:
    """Per-set AUROC as a (test set × seed) × detector matrix, without the detectors in ``exclude``."""
    per = df[(df["status"] == "ok") & (df["metric"] == "auroc") & (df["detector"] != "classifier")
             & ~df["test_set"].str.endswith("-mean") & ~df["detector"].isin(list(exclude))]
    if per.empty:
        return pd.DataFrame()
    return per.pivot_table(index=["test_set", "seed"], columns="detector", values="value", aggfunc="mean")


def _cliques(ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``(i, j)`` of sorted ranks with ``ranks[j] - ranks[i] < cd`` (j > i)."""
    out = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out


def fig_cd(df: pd.DataFrame, exclude=(), title: str = "") -> tuple[bytes | None, dict | None]:
    """The diagram's PNG and the Friedman / Nemenyi statistics; ``(None, None)`` with too little data."""
    from oodbench.benchmark.reporting.figures import pyplot, png_bytes

    stats = friedman_nemenyi(cd_blocks(df, exclude))
    if stats is None:
        return None, None
    plt = pyplot()
    r = stats["avg_rank"]
    names, ranks, k = list(r.index), r.to_numpy(float), stats["k"]
    half = (k + 1) // 2
    rows = max(half, k - half)
    cliques = _cliques(ranks, stats["cd"])
    top = 0.4 + 0.25 * len(cliques)  # the clique bars sit between the axis and the first label
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.2 * rows + 0.05 * len(cliques)))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(-(rows + top + 1.0), 2.2)
    ax.axis("off")
    ax.plot([lo, hi], [0, 0], color="k", lw=1)
    step = max(1, int(np.ceil(k / 20)))
    for t in range(lo, hi + 1, step):
        ax.plot([t, t], [0, 0.15], color="k", lw=0.8)
        ax.text(t, 0.3, str(t), ha="center", va="bottom", fontsize=7)
    cd = stats["cd"]
    ax.plot([lo, lo + cd], [1.4, 1.4], color="#c0392b", lw=2)
    ax.text(lo + cd / 2, 1.6, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7, color="#c0392b")
    for i, (n, x) in enumerate(zip(names, ranks)):
        left = i < half
        y = -top - (i if left else k - 1 - i) * 1.0
        xt = lo - 0.4 if left else hi + 0.4
        ax.plot([x, x, xt], [0, y, y], color="0.35", lw=0.6)
        ax.text(xt + (-0.05 if left else 0.05), y, f"{n} ({x:.1f})", ha="right" if left else "left",
                va="center", fontsize=6)
    for c, (i, j) in enumerate(cliques):
        y = -0.3 - 0.25 * c
        ax.plot([ranks[i] - 0.05, ranks[j] + 0.05], [y, y], color="k", lw=1.6, solid_capstyle="round")
    ax.set_title(title or (f"Average AUROC rank over {stats['N']} blocks (test set × seed); Friedman "
                           f"p = {stats['p_chi2']:.2g}; bars join detectors within the Nemenyi CD (α = "
                           f"{stats['alpha']})"), fontsize=8)
    fig.subplots_adjust(left=0.22, right=0.78)
    return png_bytes(fig), stats
