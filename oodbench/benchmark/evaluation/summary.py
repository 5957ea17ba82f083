"""The summary of a multi-seed results table: mean ± std over seeds, a 95 % interval on every number,
rank ranges with ties and flags on broken detectors. Written as ``summary.csv`` beside ``results.csv``.

One row per (suite, model, library, detector, group, test_set, metric) of the detector rows of
``results.csv`` (each test set, each ``<group>-mean``, each ``false_alarm@<alpha>``): the OOD metrics, the
failure-detection and full-spectrum metrics (``fd_auroc``, ``aurc``, ``eaurc``, ``risk@<coverage>``,
``fs_auroc``, ``fs_fpr95``) and the guard metrics (``accuracy_gain@<alpha>``, ``refusal@<alpha>``, …);
and one row per (suite, model, test_set) of the classifier's ``accuracy``. Columns

* ``mean``, ``std`` (over seeds, ddof = 1; NaN with one seed), ``n_seeds``;
* ``ci_low`` / ``ci_high``: a 95 % percentile interval from a **two-level bootstrap** with
  ``n_resamples`` resamples (default 1,000): in each resample the seeds are drawn with replacement
  (the same draw for every row), and each drawn seed contributes ``value + se · z`` (z standard
  normal), where ``se`` is that seed's within-seed standard error: ``(ci_high − ci_low) / (2 · 1.96)``
  from the row's stratified bootstrap interval in ``results.csv`` (test samples resampled, see
  :func:`.metrics.replicates`); for a group mean without its own interval the mean of its test sets'
  ``se`` (conservative: the sets share the ID samples); for a false-alarm rate the binomial
  ``sqrt(p (1 − p) / n_id)``. The resample's value is the mean over the drawn seeds; bounds are clipped
  to [0, 1] ([−1, 1] for ``accuracy_gain@…``, a difference of accuracies). ``ci_method`` says what
  went in: ``seeds+ci`` (both levels), ``ci`` (one seed: the within-seed interval alone —
  seed-to-seed variation is *not* included), ``seeds`` (no within-seed interval recorded: seeds
  alone), ``none``;
* ``rank_range`` on each ``<group>-mean`` row: :func:`.ranking.rank_tiers` over the unflagged
  detectors of the group for that metric (Holm-corrected one-sided tests against the best, z-test on
  the two-level bootstrap of the difference; paired when paired replicates are given to
  :func:`summarise`, otherwise unpaired = conservative); ``rank_test`` says which;
* ``flag`` / ``flag_reason`` per (detector, group), on every row of that group:
  ``not_applicable`` (a ``not_applicable_reason`` column of results.csv is non-empty),
  ``degenerate`` (AUROC exactly 0.5 with FPR@95 = 1 on every test set of the group, i.e. constant
  scores; or a recorded ``score_std`` of 0; or p-values with no false alarm at alpha = 0.10 on ID
  test), ``inverted`` (the group's AUROC interval lies entirely below 0.5). Flagged rows get no rank.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from oodbench.benchmark.evaluation.failure import RISK_METRICS
from oodbench.benchmark.evaluation.metrics import METRICS
from oodbench.benchmark.evaluation.ranking import rank_tiers

KEY = ["suite", "model", "library", "detector", "group", "test_set", "metric"]
COLUMNS = KEY + ["mean", "std", "n_seeds", "ci_low", "ci_high", "ci_method", "n_resamples", "rank_range",
                 "rank_test", "flag", "flag_reason"]
HIGHER_BETTER = {"auroc": True, "aupr_in": True, "aupr_out": True, "fpr95": False, "fpr95_id": False}
Z95 = 1.959963984540054
ALARM = "false_alarm@0.10"
#: metrics summarised besides :data:`.metrics.METRICS`: failure detection, full spectrum, and the guard's
#: metrics at each level (``<name>@<alpha>``)
FAILURE_METRICS = ("fd_auroc", *RISK_METRICS, "fs_auroc", "fs_fpr95")
GUARD_PREFIXES = ("false_alarm@", "accuracy_gain@", "accepted_accuracy@", "refusal@", "refusal_right@",
                  "refusal_wrong@")
FLAG_ORDER = ("not_applicable", "degenerate", "inverted")


def _within_se(ok: pd.DataFrame) -> np.ndarray:
    """Within-seed standard error of each row (NaN where none can be said)."""
    lo, hi = ok["ci_low"].to_numpy(float), ok["ci_high"].to_numpy(float)
    se = (hi - lo) / (2 * Z95)
    alarm = ok["metric"].str.startswith("false_alarm@").to_numpy()
    p, n = ok["value"].to_numpy(float), ok["n_id"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(alarm & np.isnan(se), np.sqrt(p * (1 - p) / n), se)
    ok = ok.assign(_se=se)
    is_mean = ok["test_set"].str.endswith("-mean")
    per = ok[~is_mean].groupby(["library", "detector", "seed", "group", "metric"])["_se"]
    set_se = per.mean().where(per.apply(lambda s: s.notna().all()))  # NaN when a set has no interval
    need = is_mean & ok["_se"].isna()
    if need.any():
        keys = pd.MultiIndex.from_frame(ok.loc[need, ["library", "detector", "seed", "group", "metric"]])
        ok.loc[need, "_se"] = set_se.reindex(keys).to_numpy()
    return ok["_se"].to_numpy(float)


def _two_level(v: np.ndarray, se: np.ndarray, u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Replicates (K, R) of the mean over seeds: seeds drawn with ``u`` (R, S) uniforms, within-seed
    normal noise ``z`` (R, S); ``v``, ``se`` (K, S) with NaN se read as 0."""
    s = v.shape[1]
    idx = np.minimum((u[:, :s] * s).astype(int), s - 1)
    return (v[:, idx] + np.nan_to_num(se)[:, idx] * z[None, :, :s]).mean(-1)


def _flags(summ: pd.DataFrame, ok: pd.DataFrame) -> dict:
    """``{(library, detector, group): [(flag, reason), ...]}``."""
    out: dict = {}

    def add(key, flag, reason):
        out.setdefault(key, [])
        if flag not in [f for f, _ in out[key]]:
            out[key].append((flag, reason))

    groups = summ[["library", "detector", "group"]].drop_duplicates()
    groups = groups[groups["group"] != "id"]
    if "not_applicable_reason" in ok:
        na = ok[ok["not_applicable_reason"].fillna("").astype(str).str.strip() != ""]
        for (lib, det), g in na.groupby(["library", "detector"]):
            reason = str(g["not_applicable_reason"].iloc[0])
            for grp in groups[(groups["library"] == lib) & (groups["detector"] == det)]["group"]:
                add((lib, det, grp), "not_applicable", reason)
    per = ok[~ok["test_set"].str.endswith("-mean") & ok["metric"].isin(["auroc", "fpr95"])]
    for (lib, det, grp), g in per.groupby(["library", "detector", "group"]):
        au, fp = g[g["metric"] == "auroc"]["value"], g[g["metric"] == "fpr95"]["value"]
        if len(au) and (au.sub(0.5).abs() <= 1e-9).all() and len(fp) and (fp >= 1 - 1e-9).all():
            add((lib, det, grp), "degenerate",
                "AUROC exactly 50 % with FPR@95 = 100 % on every test set: constant scores")
    if "score_std" in ok:
        zero = ok[pd.to_numeric(ok["score_std"], errors="coerce") == 0]
        for lib, det, grp in zero[["library", "detector", "group"]].drop_duplicates().values:
            for g2 in ([grp] if grp in set(groups["group"]) else groups[groups["detector"] == det]["group"]):
                add((lib, det, g2), "degenerate", "recorded score std 0: constant scores")
    alarm = summ[summ["metric"] == ALARM]
    for _, r in alarm[alarm["mean"] == 0].iterrows():
        for grp in groups[(groups["library"] == r["library"]) & (groups["detector"] == r["detector"])]["group"]:
            add((r["library"], r["detector"], grp), "degenerate",
                "p-values give no false alarm at alpha = 0.10 on ID test (a valid p-value gives about 10 %)")
    au = summ[(summ["metric"] == "auroc") & summ["test_set"].str.endswith("-mean") & (summ["ci_high"] < 0.5)]
    for _, r in au.iterrows():
        add((r["library"], r["detector"], r["group"]), "inverted",
            f"AUROC 95 % interval [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] entirely below 50: "
            "the scores rank ID above OOD")
    return out


def summarise(table: pd.DataFrame, n_resamples: int = 1000, seed: int = 0, paired: dict | None = None,
              alpha: float = 0.05) -> pd.DataFrame:
    """The summary of ``table`` (the long-form ``results.csv``); see the module docstring.

    ``paired`` (optional): ``{(detector, seed, group): array (B,)}`` of group-mean AUROC bootstrap
    replicates on shared resamples (:func:`.metrics.paired_bootstrap`); when every unflagged detector
    of a group has them for the same seeds, that group's AUROC ranks use paired differences."""
    m = table["metric"].astype(str)
    detector_row = (table["detector"] != "classifier") & (
        m.isin(METRICS + FAILURE_METRICS + ("unguarded_accuracy",)) | m.str.startswith(GUARD_PREFIXES))
    classifier_row = (table["detector"] == "classifier") & (m == "accuracy")
    ok = table[(table["status"] == "ok") & (detector_row | classifier_row)].copy()
    if ok.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok["seed"] = ok["seed"].astype(int)
    ok[KEY] = ok[KEY].fillna("")  # the classifier's rows have no library; groupby would drop them
    for c in ("ci_low", "ci_high", "n_id", "value"):
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    ok = ok[ok["value"].notna()]  # undefined values (e.g. a guard that accepts nothing) are not summarised
    ok["_se"] = _within_se(ok)
    ok = ok.sort_values(KEY + ["seed"], kind="mergesort")
    rng = np.random.default_rng(seed)
    n_max = int(ok.groupby(KEY, sort=False)["seed"].nunique().max())
    u, z = rng.random((n_resamples, n_max)), rng.standard_normal((n_resamples, n_max))
    rows, reps = [], {}
    keyed = list(ok.groupby(KEY, sort=True))
    by_s: dict = {}
    for k, g in keyed:
        by_s.setdefault(len(g), []).append((k, g))
    for s, items in sorted(by_s.items()):
        v = np.vstack([g["value"].to_numpy(float) for _, g in items])
        se = np.vstack([g["_se"].to_numpy(float) for _, g in items])
        for a in range(0, len(items), 400):
            t = _two_level(v[a:a + 400], se[a:a + 400], u, z) if n_resamples else np.zeros((len(v[a:a + 400]), 0))
            for i, (k, g) in enumerate(items[a:a + 400]):
                has_se = not np.isnan(se[a + i]).all()
                method = ("seeds+ci" if s > 1 else "ci") if has_se else ("seeds" if s > 1 else "none")
                lo, hi = (np.percentile(t[i], [2.5, 97.5]) if method != "none" and t.shape[1]
                          else (np.nan, np.nan))
                vals = v[a + i]
                low = -1.0 if k[6].startswith("accuracy_gain@") else 0.0
                rows.append(dict(zip(KEY, k), mean=float(vals.mean()),
                                 std=float(vals.std(ddof=1)) if s > 1 else np.nan, n_seeds=s,
                                 ci_low=float(np.clip(lo, low, 1)), ci_high=float(np.clip(hi, low, 1)),
                                 ci_method=method, n_resamples=n_resamples))
                if k[5].endswith("-mean"):
                    reps[k] = (t[i], tuple(g["seed"]))
    summ = pd.DataFrame(rows)
    flags = _flags(summ, ok)
    fkey = list(zip(summ["library"], summ["detector"], summ["group"]))
    summ["flag"] = [",".join(f for f in FLAG_ORDER if f in [x for x, _ in flags.get(k, [])]) for k in fkey]
    summ["flag_reason"] = ["; ".join(f"{f}: {r}" for f, r in flags.get(k, [])) for k in fkey]
    summ["rank_range"], summ["rank_test"] = "", ""
    _ranks(summ, reps, paired, u, alpha)
    return summ[COLUMNS]


def _ranks(summ: pd.DataFrame, reps: dict, paired: dict | None, u: np.ndarray, alpha: float) -> None:
    """Fill ``rank_range`` / ``rank_test`` on the unflagged ``<group>-mean`` rows, per (suite, model,
    group, metric). A comparison is paired when both detectors have paired replicates for the same seeds."""
    means = summ[summ["test_set"].str.endswith("-mean") & summ["metric"].isin(list(HIGHER_BETTER))
                 & (summ["flag"] == "")]
    for (suite, model, grp, metric), g in means.groupby(["suite", "model", "group", "metric"], sort=True):
        keys = [tuple(r[c] for c in KEY) for _, r in g.iterrows()]
        names = [(k[2], k[3]) for k in keys]
        t = np.vstack([reps[k][0] for k in keys])
        tp = np.full_like(t, np.nan)
        if paired and metric == "auroc":
            for i, k in enumerate(keys):
                sd = reps[k][1]
                if all((k[3], s, grp) in paired for s in sd):
                    b = np.vstack([paired[(k[3], s, grp)] for s in sd])  # (seeds, B)
                    idx = np.minimum((u[:, :len(sd)] * len(sd)).astype(int), len(sd) - 1)
                    r_idx = np.arange(u.shape[0]) % b.shape[1]
                    tp[i] = b[idx, r_idx[:, None]].mean(-1)  # seeds and test samples resampled alike for all
        ranks = rank_tiers(names, g["mean"].to_numpy(float), t, HIGHER_BETTER[metric], tp, alpha)
        n_paired = int((~np.isnan(tp[:, 0])).sum()) if tp.shape[1] else 0
        test = ("paired two-level bootstrap, Holm" if n_paired == len(keys) else
                f"two-level bootstrap ({n_paired} of {len(keys)} detectors paired), Holm" if n_paired else
                "unpaired two-level bootstrap, Holm")
        for idx_row, nm in zip(g.index, names):
            summ.at[idx_row, "rank_range"] = ranks.get(nm, "")
            summ.at[idx_row, "rank_test"] = test


def paired_from_curves(curves: dict | None) -> dict:
    """``{(detector, seed, group): replicates}`` from ``curves.json`` entries written by
    :func:`.rows.paired_replicates` (``curves[seed][detector]["paired"]``); detectors whose sample
    counts differ from the most common ones (scored on a subsample) are left out: not paired."""
    from oodbench.benchmark.evaluation.rows import decode_unit

    found, sizes = {}, {}
    for sd, dets in (curves or {}).items():
        for det, c in dets.items():
            p = (c or {}).get("paired")
            if p:
                found[(det, int(sd))] = p
                sizes[(det, int(sd))] = tuple(sorted(p.get("n", {}).items()))
    if not found:
        return {}
    common = pd.Series(list(sizes.values())).value_counts().index[0]
    return {(det, sd, g): decode_unit(v) for (det, sd), p in found.items() if sizes[(det, sd)] == common
            for g, v in p["auroc"].items()}


def csv_text(summ: pd.DataFrame) -> str:
    """``summary.csv``'s text (sorted, 6 significant digits)."""
    import io

    buf = io.StringIO()
    summ.sort_values(KEY, kind="mergesort").to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()
