"""The novelty protocol (lab_methods.md §6): does a pipeline declare the held-out classes of an open-set
suite as new classes, quickly and purely, without declaring junk?

For an open-set suite (``mnist-open``: LeNet on digits 0–7, test sets of group ``novel`` hold the
digits 8 and 9), one classifier (seed 0) is trained; every image of the ID test set, the far-OOD sets
(junk) and the ``novel`` sets is scored once per method (:func:`score_pool`); then for each stream
seed a stream (:mod:`.novelty_stream`) of ``n_before`` junk-only windows followed by ``n_after`` windows
where the held-out classes arrive is fed to each method:

* ``pipeline:<detector>``: :class:`~oodbench.detectors.novelty.NoveltyDetector` on the detector's
  per-input p-values: the lab's ``stattest`` and ``stattest+energy+maha`` p-values, and conformal
  p-values (on ``cal``) of the pytorch-ood Energy and KNN scores as baselines;
* ``alarm:<detector>``: the naive alarm, raised when a window holds more inputs with ``p <= level``
  than the ``1 - alpha`` quantile of Binomial(window, level) (what an ID-only window would give).

Metrics per (method, seed), then averaged: held-out classes detected (a declared class whose members
are mostly that class) and the delay (images of that class streamed up to the end of the declaring
window); false declarations (declared classes whose members are mostly ID or junk), per 1,000
junk-only windows; purity of the declared classes (members at declaration plus later assignments) and
the adjusted Rand index against the held-out labels after the arrival; number of classes found.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from oodbench.benchmark.evaluation import novelty_stream as ns
from oodbench.detectors.novelty import NoveltyDetector, score_pvalues

LAB = "stattest"
#: truth code of the first unlabelled ``novel`` set (a suite file's folder of one new class); the next +1, …
NOVEL_CODE_BASE = 1000
BASELINES = ("pytorch_ood.energy", "pytorch_ood.knn")


@dataclass
class ProtocolOptions:
    window: int = 500
    q: float = 0.1
    alpha: float = 0.001
    min_size: int = 20
    n_components: int = 32
    cluster: str = "gmm"
    memory: int = 5
    null1: str = "history"
    history: int = 40
    stream_seeds: int = 5
    n_before: int = 240
    n_after: int = 15
    junk_frac: float = 0.15
    novel_frac: float = 0.1
    alarm_level: float = 0.05
    detectors: tuple = (LAB, "stattest+energy+maha", *BASELINES)


def score_pool(session, detectors) -> tuple[ns.Pool, dict]:
    """Per-input p-values of every ID test, junk (``far``) and ``novel`` image under each detector, and
    the novelty detector's ID reference: the ``cal`` split's features, labels and p-values (against
    the detector's own calibration, so slightly conservative; only their ranks are used)."""
    from oodbench.adapters import registry

    d = session.data
    sets = [("id", ns.ID, d.id_test)] + [(t.name, ns.JUNK if t.group == "far" else None, t.images)
                                         for t in d.tests if t.group in ("far", "novel")]
    if not any(code is None for _, code, _ in sets):
        raise ValueError(f"suite {session.name} has no test set of group 'novel' (held-out classes)")
    fit, cal = session.representation(d.fit, "fit"), session.representation(d.cal, "cal")
    reps = [(name, code, session.representation(im, name)) for name, code, im in sets]
    pv = {name: {} for name, _, _ in sets}
    ref_pv, timing = {}, {}
    for det_name in detectors:
        t0 = time.perf_counter()
        det = registry.create(det_name)
        det.fit(fit, cal)
        if det.gives_p_values():
            for name, _, rep in reps:
                pv[name][det_name] = det.p_value(rep)
            ref_pv[det_name] = det.p_value(cal)
        else:
            cal_scores = det.score(cal)
            for name, _, rep in reps:
                pv[name][det_name] = score_pvalues(cal_scores, det.score(rep))
            ref_pv[det_name] = score_pvalues(cal_scores, cal_scores)
        timing[det_name] = time.perf_counter() - t0
    parts, names = [], {}
    for name, code, rep in reps:
        labels = np.asarray(rep.labels, np.int64)
        # held-out classes of a labelled set (mnist-open's digits) keep their labels; an unlabelled
        # novel set (a suite file's folder of images of one new class) gets a code of its own
        if code is None and len(labels) and (labels < 0).all():
            k = NOVEL_CODE_BASE + len(names)
            labels, names[k] = np.full(len(labels), k, np.int64), name
        parts.append((name, code, labels, rep.features, pv[name]))
    pool = ns.build_pool(parts)
    pool.class_names = names
    return pool, {"features": cal.features, "labels": cal.labels, "pvalues": ref_pv, "seconds": timing}


def run_pipeline(pool: ns.Pool, ref: dict, stream: list, method: str, o: ProtocolOptions, seed: int) -> dict:
    """Feed one stream to a fresh novelty detector on ``method``'s p-values; per-window records."""
    det = NoveltyDetector(q=o.q, alpha=o.alpha, min_size=o.min_size, n_components=o.n_components,
                          cluster=o.cluster, memory=o.memory, null1=o.null1, history=o.history, seed=seed)
    det.fit(ref["features"], ref["labels"], ref["pvalues"].get(method))
    windows, classes = [], []
    pred = {}  # stream position (window * size + slot) -> declared class id
    truth_all = pool.truth[np.concatenate(stream)]
    start = 0
    for w, idx in enumerate(stream):
        ids = np.arange(start, start + len(idx))
        start += len(idx)
        res = det.process(pool.features[idx], pool.pvalues[method][idx], ids=ids)
        truth = pool.truth[idx]
        for slot in np.flatnonzero(res.assigned >= 0):
            pred[int(ids[slot])] = int(res.assigned[slot])
        for c in res.declared:
            for i in c.members:
                pred[int(i)] = c.id
            labels, counts = np.unique(truth_all[c.members], return_counts=True)
            classes.append({"id": c.id, "window": w, "size": c.size, "majority": int(labels[counts.argmax()]),
                            "purity_at_declaration": float(counts.max() / counts.sum()),
                            "p_chance": c.p_chance, "p_shift": c.p_shift,
                            "sources": _sources(pool, np.concatenate(stream)[c.members])})
        windows.append({"flagged": int(res.flagged.sum()),
                        "flagged_novel": int(np.sum(res.flagged & (truth >= 0))),
                        "flagged_junk": int(np.sum(res.flagged & (truth == ns.JUNK))),
                        "assigned": int(np.sum(res.assigned >= 0)), "candidates": len(res.candidates),
                        "declared": [c.id for c in res.declared]})
    return {"windows": windows, "classes": classes, "pred": pred}


def _sources(pool: ns.Pool, idx) -> dict:
    names, counts = np.unique(np.asarray(pool.sources)[pool.source[idx]], return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def run_alarm(pool: ns.Pool, stream: list, method: str, o: ProtocolOptions) -> dict:
    """The naive alarm: a window alarms when #{p <= level} exceeds Binomial(window, level)'s 1 - alpha quantile."""
    tau = int(stats.binom.ppf(1 - o.alpha, o.window, o.alarm_level))
    counts = [int(np.sum(pool.pvalues[method][idx] <= o.alarm_level)) for idx in stream]
    return {"threshold": tau, "counts": counts, "alarms": [c > tau for c in counts]}


def pipeline_metrics(run: dict, pool: ns.Pool, stream: list, o: ProtocolOptions) -> dict:
    from sklearn.metrics import adjusted_rand_score

    novel = pool.novel_classes
    classes = run["classes"]
    false = [c for c in classes if c["majority"] < 0]
    false_before = [c for c in false if c["window"] < o.n_before]
    out = {"false_declarations": len(false), "junk_windows_tested": tested_junk_windows(o),
           "false_per_1000_junk_windows": 1000.0 * len(false_before) / max(tested_junk_windows(o), 1),
           "classes_declared": len(classes), "classes_found": len({c["majority"] for c in classes if c["majority"] >= 0}),
           "classes_truth": len(novel),
           "false_main_source": [max(c["sources"], key=c["sources"].get) for c in false]}
    for k in novel:
        first = [c for c in classes if c["majority"] == k]
        if first:
            w = first[0]["window"]
            seen = sum(int(np.sum(pool.truth[idx] == k)) for idx in stream[o.n_before:w + 1])
        out[f"detected_{k}"] = bool(first)
        out[f"delay_{k}"] = seen if first else None
    out["detection_rate"] = float(np.mean([out[f"detected_{k}"] for k in novel]))
    # purity and ARI over the windows after the arrival: the held-out images, and every input given a
    # class whose declared members were mostly held-out images (a junk class's assignments are not scored)
    novel_ids = {c["id"] for c in classes if c["majority"] >= 0}
    y_true, y_pred = [], []
    start = sum(len(idx) for idx in stream[:o.n_before])
    for w in range(o.n_before, len(stream)):
        truth = pool.truth[stream[w]]
        for slot, t in enumerate(truth):
            p = run["pred"].get(start + slot, -1)
            if t >= 0 or p in novel_ids:
                y_true.append(int(t) if t >= 0 else -1)
                y_pred.append(p)
        start += len(truth)
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    given = np.isin(y_pred, list(novel_ids))
    if given.any():
        maj = sum(np.unique(y_true[given & (y_pred == c)], return_counts=True)[1].max() for c in np.unique(y_pred[given]))
        out["purity"] = float(maj / given.sum())
    else:
        out["purity"] = None
    out["ari"] = float(adjusted_rand_score(y_true, y_pred)) if novel_ids else None
    out["coverage"] = float(np.mean(y_pred[y_true >= 0] >= 0)) if np.any(y_true >= 0) else None
    return out


def tested_junk_windows(o: ProtocolOptions) -> int:
    """Junk-only windows in which the pipeline could declare: with ``null1="history"`` the first
    ``history`` windows build its reference and declare nothing."""
    return max(o.n_before - (o.history if o.null1 == "history" else 0), 0)


def alarm_metrics(run: dict, pool: ns.Pool, stream: list, o: ProtocolOptions) -> dict:
    alarms = run["alarms"]
    after = [w for w in range(o.n_before, len(stream)) if alarms[w]]
    out = {"false_per_1000_junk_windows": 1000.0 * sum(alarms[:o.n_before]) / max(o.n_before, 1),
           "threshold": run["threshold"], "detection_rate": float(bool(after)), "classes_found": None}
    out["delay_any"] = (sum(int(np.sum(pool.truth[idx] >= 0)) for idx in stream[o.n_before:after[0] + 1])
                        if after else None)
    return out


def flagging(pool: ns.Pool, methods) -> dict:
    """Per method and per non-ID source of the pool: the AUROC of its p-values against the ID test images
    (smaller p = more OOD) and the share with p <= 0.01 and p <= 0.05 — how much of a source the flagging
    step can pass on to discovery at all (Benjamini–Hochberg in a window with 15 % junk flags at about
    p <= 0.01)."""
    from oodbench.benchmark.evaluation.metrics import auroc

    names = np.asarray(pool.sources)[pool.source]
    out = {}
    for m in methods:
        p = pool.pvalues[m]
        pid = p[names == "id"]
        out[m] = {}
        for src in pool.sources:
            if src == "id":
                continue
            q = p[names == src]
            out[m][src] = {"auroc": auroc(-pid, -q), "p<=0.01": float(np.mean(q <= 0.01)),
                           "p<=0.05": float(np.mean(q <= 0.05))}
        out[m]["id"] = {"auroc": None, "p<=0.01": float(np.mean(pid <= 0.01)), "p<=0.05": float(np.mean(pid <= 0.05))}
    return out


def _mean(vals):
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def aggregate(per_seed: list[dict]) -> dict:
    keys = sorted({k for m in per_seed for k, v in m.items() if isinstance(v, (int, float, bool)) or v is None})
    return {k: _mean([m.get(k) for m in per_seed]) for k in keys}


def evaluate(suite: str = "mnist-open", options: ProtocolOptions | None = None, cache=None, data_dir=None,
             device: str = "cpu", progress: bool = False) -> dict:
    """Run the protocol; returns the result dict that :mod:`~oodbench.benchmark.reporting.novelty` writes."""
    from oodbench.benchmark.evaluation.record import git_commit, versions
    from oodbench.benchmark.evaluation.session import Session

    o = options or ProtocolOptions()
    t0 = time.perf_counter()
    session = Session(suite, seed=0, device=device, cache=cache, data_dir=data_dir, progress=progress)
    pool, ref = score_pool(session, o.detectors)
    t_score = time.perf_counter() - t0
    methods: dict[str, dict] = {}
    trace = {}
    for s in range(o.stream_seeds):
        stream = ns.make_stream(pool, s, o.window, o.n_before, o.n_after, o.junk_frac, o.novel_frac)
        for det_name in o.detectors:
            run = run_pipeline(pool, ref, stream, det_name, o, s)
            methods.setdefault(f"pipeline:{det_name}", []).append(pipeline_metrics(run, pool, stream, o))
            if s == 0:
                trace[f"pipeline:{det_name}"] = {"windows": run["windows"], "classes": run["classes"]}
            alarm = run_alarm(pool, stream, det_name, o)
            methods.setdefault(f"alarm:{det_name}", []).append(alarm_metrics(alarm, pool, stream, o))
            if s == 0:
                trace[f"alarm:{det_name}"] = {"counts": alarm["counts"], "threshold": alarm["threshold"]}
        if progress:
            print(f"stream seed {s} done ({time.perf_counter() - t0:.0f} s)")
    return {"suite": session.name, **({"suite_file": str(suite)} if str(suite).endswith(".toml") else {}),
            "options": {**asdict(o), "detectors": list(o.detectors)},
            "pool": {"sizes": {n: int(np.sum(pool.source == i)) for i, n in enumerate(pool.sources)},
                     "novel_classes": pool.novel_classes,
                     "class_names": {str(k): v for k, v in pool.class_names.items()},
                     "junk_sets": [t.name for t in session.data.tests if t.group == "far"],
                     "novel_sets": [t.name for t in session.data.tests if t.group == "novel"]},
            "flagging": flagging(pool, o.detectors),
            "classifier": {k: session.model_meta.get(k) for k in ("arch", "key", "seed")},
            "methods": {m: {"mean": aggregate(v), "per_seed": v} for m, v in methods.items()},
            "trace_seed0": trace, "seconds": {"scoring": t_score, "total": time.perf_counter() - t0,
                                              "per_detector_scoring": ref["seconds"]},
            "git_commit": git_commit(), "versions": versions()}
