"""Cross-library agreement: the same method in pytorch-ood and OpenOOD, on the same classifier and the
same cached representations.

For every method both libraries implement (:data:`PAIRS`), both detectors are fitted on the same ID split
(``fit_split``: the classifier's ``train`` split by default, as ``oodbench run``; ``cal`` where they calibrate) and score the ID test set and every test set; per test
set we report the Spearman rank correlation of the two libraries' scores over ID test ∪ that set, each
library's AUROC (our metric code) and their difference. Scores come from the runner's score cache when
``oodbench run`` has produced them (same cache keys), so this costs nothing after the two runs.

Needs OpenOOD (run it in the OpenOOD virtualenv, see docs/openood.md)::

    python -c "from oodbench.benchmark.evaluation.agreement import agreement; agreement('mnist', 'results/mnist')"

writes ``agreement.csv`` and ``agreement.md`` to the folder. :data:`REASONS` states, per pair, why
the libraries differ where they do (file and line in the library; measured facts in the docs).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from oodbench.detectors.sampling import seeded_subset

#: (method, pytorch-ood detector, OpenOOD detector)
PAIRS = [
    ("MSP", "pytorch_ood.msp", "openood.msp"),
    ("Temperature scaling", "pytorch_ood.temperature_scaling", "openood.temp_scaling"),
    ("Energy", "pytorch_ood.energy", "openood.ebo"),
    ("MaxLogit", "pytorch_ood.maxlogit", "openood.mls"),
    ("GEN", "pytorch_ood.gen", "openood.gen"),
    ("KL matching", "pytorch_ood.klmatching", "openood.klm"),
    ("OpenMax", "pytorch_ood.openmax", "openood.openmax"),
    ("Mahalanobis", "pytorch_ood.mahalanobis", "openood.mds"),
    ("RMD", "pytorch_ood.rmd", "openood.rmds"),
    ("KNN", "pytorch_ood.knn", "openood.knn"),
    ("ViM", "pytorch_ood.vim", "openood.vim"),
    ("DICE", "pytorch_ood.dice", "openood.dice"),
    ("SHE", "pytorch_ood.she", "openood.she"),
    ("NNGuide", "pytorch_ood.nnguide", "openood.nnguide"),
    ("fDBD", "pytorch_ood.fdbd", "openood.fdbd"),
    ("NCI", "pytorch_ood.nci", "openood.nci"),
    ("ReAct", "pytorch_ood.react", "openood.react"),
    ("ASH", "pytorch_ood.ash", "openood.ash"),
    ("SCALE", "pytorch_ood.scale", "openood.scale"),
    ("RankFeat", "pytorch_ood.rankfeat", "openood.rankfeat"),
    ("VRA", "pytorch_ood.vra", "openood.vra"),
    ("Gram", "pytorch_ood.gram", "openood.gram"),
    ("ODIN", "pytorch_ood.odin", "openood.odin"),
    ("GradNorm", "pytorch_ood.gradnorm", "openood.gradnorm"),
]

#: why a pair differs where it does, whatever the classifier (pytorch-ood: 0.4.0 wheel,
#: ``pytorch_ood/detector/...``; OpenOOD: ``openood/...`` at 3c35632). Written from the libraries' code and
#: the measured tables (docs/openood.md, results/*/agreement.md); what holds on one classifier only is in
#: :data:`ON_CLASSIFIER`.
REASONS: dict[str, str] = {
    "MSP": "same formula (softmax max); differences are float32 ties only",
    "Temperature scaling": "same data and optimiser (the ID cal split; L-BFGS, lr 0.01, 50 iterations, no line "
                           "search: detector/tscaling.py fit_logits, postprocessors/temp_scaling_postprocessor.py:47), "
                           "different start: T = 1.0 in pytorch-ood, 1.5 in OpenOOD (:16-17); from 1.5 the unsearched "
                           "steps can overshoot to a negative T, which reverses the ranking "
                           "(docs/investigations/temperature_scaling.md)",
    "Energy": "same formula (logsumexp, T=1)",
    "MaxLogit": "same formula",
    "GEN": "pytorch-ood clamps probabilities to [1e-7, 1-1e-7] (detector/gen.py:96), OpenOOD does not "
           "(postprocessors/gen_postprocessor.py:34-35): a tiny probability adds (1e-7)^0.1 = 0.2 instead of "
           "p^0.1 ~ 0.01, which reorders confident inputs",
    "KL matching": "same method (KL(p || class template), templates from the ID cal split; "
                   "detector/klmatching.py, postprocessors/kl_matching_postprocessor.py:21-22,61-67)",
    "OpenMax": "different defaults and fit data: pytorch-ood tailsize 25, alpha 10, euclid_weight 1.0 on all logits of its fit "
               "data (the training split by default; detector/openmax/torch.py); OpenOOD tail 20 and alpha 3 hard-coded "
               "(postprocessors/openmax_postprocessor.py:16-18), 'eucos' distance with eu_weight 0.5 (:59-78), "
               "Weibull fits from libmr on correctly classified training samples; conf = -P(unknown) (:54)",
    "Mahalanobis": "covariance: pytorch-ood inverts the summed class scatter + 1e-6 I in float32 "
                   "(detector/mahalanobis.py:123-127); OpenOOD takes sklearn EmpiricalCovariance of the "
                   "class-centred features, whose precision_ is the pseudo-inverse of the mean covariance "
                   "(postprocessors/mds_postprocessor.py:57-62). The 1/N factor cannot change ranks; the "
                   "null space can: pinv ignores directions with no ID variance, the ridge weighs them by 1e6",
    "RMD": "as Mahalanobis (detector/rmd.py:108-113 vs postprocessors/rmds_postprocessor.py:57-70); the "
           "background term cancels most of the null-space difference",
    "KNN": "same method: pytorch-ood returns the k-th Euclidean distance of normalised features "
           "(sklearn, detector/knn.py predict_features), OpenOOD minus the k-th squared distance (faiss "
           "IndexFlatL2, postprocessors/knn_postprocessor.py:47-56): monotone, k=50 in both",
    "ViM": "same algorithm and d (256 when the features have more than 256 dimensions, else half of them: "
           "adapters/common.py vim_dim); pytorch-ood eigen-decomposes X^T X / N in float32 with "
           "torch.linalg.eigh (detector/vim.py fit_features), OpenOOD sklearn's float64 covariance with "
           "np.linalg.eig (postprocessors/vim_postprocessor.py:42-44)",
    "DICE": "same method and p (0.9 / 90): mask = contribution > percentile (detector/dice.py fit_features, "
            "postprocessors/dice_postprocessor.py:44-47)",
    "SHE": "same method (inner product with the mean feature of correctly classified samples of the predicted "
           "class)",
    "NNGuide": "bank: pytorch-ood uses every sample it is fitted on (the training split by default) and k=10 "
               "(detector/nnguide.py fit_features), OpenOOD keeps only the first loader batches (of 200) covering "
               "alpha = 1 % of its fit split, and K=100 (postprocessors/nnguide_postprocessor.py:46-62)",
    "fDBD": "same method (distance_as_normalizer=True in both)",
    "NCI": "alpha: 0 in pytorch-ood (detector/nci.py), 1e-4 in OpenOOD (configs nci.yml), which adds "
           "alpha * L1 norm of the feature",
    "ReAct": "same method; the 90th-percentile clip comes from the split it is fitted on in pytorch-ood (training by "
             "default) (fit_feature_maps) and from the ID val (cal) split in OpenOOD "
             "(postprocessors/react_postprocessor.py:28-40)",
    "ASH": "different variant, percentile and input: pytorch-ood ash-s at 0.65 on the feature maps before the "
           "classifier's pooling (detector/ash.py:51, default variant 'ash-s'), OpenOOD ash_b at 90 on the pooled "
           "features (networks/ash_net.py:17-21, ash.yml)",
    "SCALE": "percentile and input: 0.65 in pytorch-ood on the feature maps (detector/scale.py), 85 in OpenOOD "
             "(scale.yml) on the pooled features (networks/scale_net.py)",
    "RankFeat": "pytorch-ood removes the rank-1 part of the last block's maps and applies the head "
                "(detector/rankfeat.py); OpenOOD averages the logits of that for blocks 3 and 4 "
                "(postprocessors/rankfeat_postprocessor.py:20-60); our classifiers expose one last block, so "
                "both see the same maps, pooled by the classifier's own pooling",
    "VRA": "pytorch-ood clips each feature at its own 1st/99th percentile (detector/vra.py fit_feature_maps, "
           "np.quantile axis 0), OpenOOD all features at the global 10th/90th percentile of the flattened "
           "activations (postprocessors/vra_postprocessor.py:41-49)",
    "Gram": "layers and powers: pytorch-ood's Gram on the classifier's 4-D tap layers with powers 1..2 "
            "(num_poles_list default range(1, L+1), detector/gram.py) vs OpenOOD's hooks on every Conv2d/ReLU "
            "module with powers 1..5 (postprocessors/gram_postprocessor.py:72-107, gram.yml); deviations are "
            "normalised by a held-out 10 % split in pytorch-ood and by the training set in OpenOOD",
    "ODIN": "same method (T=1000, eps=0.0014; input std registered as 1 because our inputs are pixels); "
            "OpenOOD takes the sign as ge(grad, 0) (odin_postprocessor.py:41), so a zero gradient moves the "
            "pixel by +eps instead of 0",
    "GradNorm": "pytorch-ood sums |gradient| over all parameters per sample (detector/gradnorm.py, vmap); "
                "OpenOOD over the fc layer only (postprocessors/gradnorm_postprocessor.py:18-37), the paper's "
                "choice",
}

#: what holds on one classifier (architecture name → method → text), appended to :data:`REASONS`;
#: measured where it gives figures
ON_CLASSIFIER: dict[str, dict[str, str]] = {
    "lenet": {
        "Mahalanobis": "LeNet's fc1 has dead units on the training split; where both are below chance (mnist "
                       "far-OOD and covariate shift), that is Mahalanobis with a tied covariance on LeNet's fc1 "
                       "features, not either library's covariance estimate (the inverted sets shrink the "
                       "features; they hardly activate the dead units: docs/investigations/mahalanobis_mnist.md)",
        "ViM": "d = 256 of fc1's 500 features",
        "ASH": "LeNet's maps are its pooled features (500×1×1), so only variant and percentile differ",
        "SCALE": "LeNet's maps are its pooled features, so only the percentile differs",
        "RankFeat": "both degenerate: LeNet's maps are 1×1, so the rank-1 part is the whole map and the head "
                    "sees (numerically) zeros; the residual scores are float noise",
        "Gram": "pytorch-ood's layers are conv1 and conv2",
    },
    "airbench": {
        "Temperature scaling": "on this classifier's cal logits, OpenOOD's fit ends at T = -14.05 and -6.61 on "
                               "seeds 0 and 1 (NLL 0.50 → 2.51 and 2.75) and at 0.37 on seed 2; pytorch-ood's at "
                               "0.73-0.74 on all three",
        "ViM": "d = 128 of the 256 pooled features",
        "ASH": "the maps are block3's 256×3×3 output, pooled by a maximum over the 9 positions times 1/9",
        "SCALE": "the maps are block3's 256×3×3 output, pooled by a maximum over the 9 positions times 1/9",
        "Gram": "pytorch-ood's layers are block1, block2 and block3; airbench's GELUs are functional, so "
                "OpenOOD's hooks see its Conv2d modules only (the fixed whitening convolution included)",
    },
    "airbench_wide": {
        "ViM": "d = 256 of the 384 pooled features",
        "ASH": "the maps are block3's 384×3×3 output, pooled by a maximum over the 9 positions times 1/9",
        "SCALE": "the maps are block3's 384×3×3 output, pooled by a maximum over the 9 positions times 1/9",
        "ReAct": "pytorch-ood's clip is the 90th percentile of every value of block3's 384×3×3 maps, which the "
                 "network then pools by their maximum; OpenOOD's the 90th percentile of the pooled maxima",
        "VRA": "pytorch-ood's per-channel percentiles are over every value of block3's 384×3×3 maps, before the "
               "maximum pooling; OpenOOD's over the pooled features",
        "Gram": "pytorch-ood's layers are block1, block2 and block3; airbench's GELUs are functional, so "
                "OpenOOD's hooks see its Conv2d modules only (the fixed whitening convolution included)",
    },
}


def reason(method: str, arch: str | None = None) -> str:
    """Why ``method``'s two implementations differ: :data:`REASONS`, then what holds on ``arch``."""
    extra = ON_CLASSIFIER.get(arch or "", {}).get(method)
    return REASONS.get(method, "") + (f". On {arch}: {extra}" if extra else "")


def _latest_cached(folder: Path, name: str):
    files = sorted(folder.glob(f"{name}-*.npz"), key=lambda p: p.stat().st_mtime)
    files = [f for f in files if f.name[len(name) + 1:-4].isalnum()]  # not another detector with this prefix
    return files[-1] if files else None


def _align(a: dict, b: dict, tname: str, seed: int) -> tuple:
    """Scores of one set from both libraries; when one side was scored on the runner's seeded subsample
    (``subsample_size``), take the same subsample of the other (the indices of ``scoring.subsample``)."""
    x, y = np.asarray(a[tname]), np.asarray(b[tname])
    if len(x) == len(y):
        return x, y
    big, small = (x, y) if len(x) > len(y) else (y, x)
    idx = seeded_subset(len(big), len(small), [seed, len(big), len(small)])
    return (big[idx], small) if len(x) > len(y) else (small, big[idx])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def compare(scores_a: dict, scores_b: dict, tests, method: str, name_a: str, name_b: str, seed: int = 0) -> list[dict]:
    """Rows of the agreement table for one pair from their score dicts (``id`` + test set names)."""
    from oodbench.benchmark.evaluation import metrics

    rows = []
    ia, ib = _align(scores_a, scores_b, "id", seed)
    for tname, group in [("id", "id")] + [(t.name, t.group) for t in tests]:
        if tname == "id":
            a, b = ia, ib
            au_a = au_b = float("nan")
        else:
            oa, ob = _align(scores_a, scores_b, tname, seed)
            a, b = np.concatenate([ia, oa]), np.concatenate([ib, ob])
            au_a, au_b = metrics.auroc(ia, oa), metrics.auroc(ib, ob)
        rows.append({"method": method, "pytorch_ood": name_a, "openood": name_b, "test_set": tname, "group": group,
                     "n": len(a), "spearman": spearman(a, b), "auroc_pytorch_ood": au_a, "auroc_openood": au_b,
                     "auroc_diff": au_a - au_b})
    return rows


def summarise(df: pd.DataFrame, arch: str | None = None) -> pd.DataFrame:
    """One row per method: Spearman on ID test and mean over OOD sets, mean AUROC near/far per library,
    and :func:`reason` on classifier ``arch``."""
    out = []
    for method, g in df.groupby("method", sort=False):
        ood = g[g["test_set"] != "id"]
        row = {"method": method, "pytorch_ood": g["pytorch_ood"].iloc[0], "openood": g["openood"].iloc[0],
               "spearman_id": float(g.loc[g["test_set"] == "id", "spearman"].iloc[0]),
               "spearman_mean": float(ood["spearman"].mean()), "spearman_min": float(ood["spearman"].min())}
        for grp in ("near", "far", "covariate"):
            s = ood[ood["group"] == grp]
            row[f"{grp}_pytorch_ood"] = float(s["auroc_pytorch_ood"].mean())
            row[f"{grp}_openood"] = float(s["auroc_openood"].mean())
        row["max_abs_auroc_diff"] = float(ood["auroc_diff"].abs().max())
        agree = row["max_abs_auroc_diff"] <= 1e-3 and row["spearman_min"] >= 0.999
        row["reason"] = ("they agree here (max |Δ| ≤ 0.001, ρ ≥ 0.999); where they can differ: " if agree else "") \
            + reason(method, arch)
        out.append(row)
    return pd.DataFrame(out)


def to_markdown(summary: pd.DataFrame, df: pd.DataFrame, header: str = "") -> str:
    lines = [header or "# Cross-library agreement: pytorch-ood vs OpenOOD", "",
             "Same classifier, same cached representations, each library's default hyperparameters (no OOD "
             "tuning). Spearman over ID test ∪ each OOD set; AUROC by oodbench's metric code; Δ = pytorch-ood − "
             "OpenOOD. Means are unweighted over test sets.", "",
             "| method | ρ ID | ρ mean | ρ min | near AUROC pood / OpenOOD | far AUROC pood / OpenOOD | "
             "covariate pood / OpenOOD | max abs Δ | why they differ |",
             "|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "–" if v != v else f"{v:.3f}"  # noqa: E731
    for _, r in summary.iterrows():
        lines.append(f"| {r['method']} | {f(r['spearman_id'])} | {f(r['spearman_mean'])} | {f(r['spearman_min'])} | "
                     f"{f(r['near_pytorch_ood'])} / {f(r['near_openood'])} | {f(r['far_pytorch_ood'])} / "
                     f"{f(r['far_openood'])} | {f(r['covariate_pytorch_ood'])} / {f(r['covariate_openood'])} | "
                     f"{f(r['max_abs_auroc_diff'])} | {r['reason']} |")
    lines += ["", "Per test set: `agreement.csv`."]
    return "\n".join(lines) + "\n"


def agreement(suite: str = "mnist", out=None, seed: int = 0, pairs=None, device: str = "cpu", data_dir=None,
              cache_dir=None, threads: int | None = 1, batch_size: int = 512, progress: bool = False,
              use_score_cache: bool = True, compute_missing: bool = True, allow_stale: bool = False,
              fit_split: str = "train") -> pd.DataFrame:
    """Run (or read from the score cache) both libraries' detectors for every pair and write
    ``agreement.csv`` / ``agreement.md`` to ``out`` (when given). Returns the per-test-set table.
    ``compute_missing=False`` skips pairs whose scores are not in the cache (listed as skipped);
    ``allow_stale=True`` then falls back to the newest cached scores of that detector for this model
    (written by an earlier version of the adapter code: for a quick look only, recorded in the output)."""
    from oodbench.adapters import registry
    from oodbench.benchmark import config
    from oodbench.benchmark.evaluation import scorecache
    from oodbench.benchmark.evaluation.features import CORE, TAPS
    from oodbench.benchmark.evaluation.scoring import fit_split_of, score_cached
    from oodbench.benchmark.evaluation.session import Session

    config.set_threads(threads)
    session = Session(suite, seed, device, cache_dir, data_dir, batch_size, progress)
    mat, arch = session.data, session.arch
    pairs = pairs or PAIRS
    known = set(registry.names())
    rows, timing, failures, stale_used = [], {}, {}, []
    for method, a, b in pairs:
        if a not in known or b not in known:
            continue
        got = {}
        for name in (a, b):
            cls = registry.get(name)
            cpath = scorecache.path_for(session, name, None, fit_split_of(name, fit_split)) if use_score_cache \
                else None
            if not compute_missing and (cpath is None or not cpath.exists()):
                stale = _latest_cached(cpath.parent if cpath else session.cache / "scores", name) if allow_stale \
                    else None
                if stale is None:
                    failures[name] = "skipped: no cached scores (run `oodbench run` with this detector first)"
                    break
                stale_used.append(f"{name}: {stale.name}")
                sc = scorecache.load(stale)[0]
                timing[name] = {"seconds": 0.0, "cached": True}
                got[name] = sc
                continue
            t0 = time.perf_counter()
            kinds = {CORE} | ({TAPS} if "taps" in cls.consumes else set())
            try:
                for images in session.all_sets():
                    session.store.ensure(images, kinds)
                scored = score_cached(session, name, None, use_score_cache, fit_split=fit_split)
            except Exception as e:  # recorded, the table goes on
                failures[name] = f"{type(e).__name__}: {e}"
                break
            sc, rec = scored.scores, scored.meta
            got[name] = sc
            timing[name] = {"seconds": time.perf_counter() - t0, "cached": rec.get("cached", False)}
        if len(got) == 2:
            rows += compare(got[a], got[b], mat.tests, method, a, b, int(seed))
    df = pd.DataFrame(rows)
    df.attrs.update({"failures": failures, "timing": timing, "stale": stale_used})
    if out is not None and len(df):
        write(out, df, suite, seed, arch, failures, stale_used)
    return df


def write(out, df: pd.DataFrame, suite: str, seed: int, arch: str, failures: dict | None = None,
          stale: list | None = None, note: str = "") -> None:
    """Write ``agreement.csv`` (the per-test-set table ``df``) and ``agreement.md`` (its summary with
    :func:`reason` for classifier ``arch``, then ``note``, stale cache use and failures) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "agreement.csv", index=False, float_format="%.6g")
    md = to_markdown(summarise(df, arch), df, f"# Cross-library agreement on `{suite}` (seed {seed}, {arch})")
    if note:
        md += "\n" + note.strip() + "\n"
    if stale:
        md += "\nScores from an earlier adapter version (stale cache): " + ", ".join(stale) + "\n"
    if failures:
        md += "\nFailed: " + "; ".join(f"`{k}`: {v}" for k, v in failures.items()) + "\n"
    (out / "agreement.md").write_text(md)


def merge(folder, new: pd.DataFrame, suite: str, seed: int, arch: str, note: str = "") -> pd.DataFrame:
    """Replace the rows of ``new``'s methods in ``folder``'s ``agreement.csv`` by ``new`` (methods in
    :data:`PAIRS` order) and rewrite both files; ``note`` says which rows were recomputed when."""
    old = pd.read_csv(Path(folder) / "agreement.csv")
    df = pd.concat([old[~old["method"].isin(set(new["method"]))], new], ignore_index=True)
    order = {m: i for i, (m, _, _) in enumerate(PAIRS)}
    df = df.sort_values("method", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    write(folder, df, suite, seed, arch, note=note)
    return df
