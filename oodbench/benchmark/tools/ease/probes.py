"""Robustness probes: how a detector fitted on the separable problem reacts to inputs it should refuse or
survive — NaN inputs, constant images, a batch of one, a wrong dtype (float16) — each classified as
``ok``, ``clear error``, ``crash`` or ``silent garbage`` (:func:`classify`)."""
from __future__ import annotations

import re
import time

import numpy as np
import torch

from oodbench.adapters.base import DetectorError
from oodbench.benchmark.tools.check.trial import numeric_scores
from oodbench.benchmark.tools.guards import cpu_only, no_network


class ProbeRep:
    """A Representation look-alike with altered arrays (NaN rows, another dtype)."""

    def __init__(self, base, fn):
        self._base, self._fn = base, fn
        self.images = type(base.images)(base.images.name, fn(base.images.x.astype(np.float32)), base.images.y,
                                        base.images.checksum + "-probe")
        self.role, self.store = base.role, base.store

    def __len__(self):
        return len(self._base)

    name = property(lambda self: self._base.name)
    labels = property(lambda self: self._base.labels)
    logits = property(lambda self: self._fn(self._base.logits))
    features = property(lambda self: self._fn(self._base.features))
    preds = property(lambda self: self._base.preds)
    model = property(lambda self: self._base.model)
    context = property(lambda self: self._base.context)
    device = property(lambda self: self._base.device)

    def taps(self):
        return {k: self._fn(v) for k, v in self._base.taps().items()}

    def inputs(self, batch_size=None):
        for x in self._base.inputs(batch_size):
            yield torch.from_numpy(self._fn(x.cpu().numpy()))

    def input_tensor(self):
        return torch.from_numpy(self._fn(self._base.input_tensor().numpy()))


KEYWORDS = {"nan_input": r"nan|finite|inf", "constant_images": r"constant|zero|variance|singular|degenerate",
            "batch_of_one": r"batch|size|shape|sample|at least|dimension",
            "wrong_dtype": r"dtype|type|float|double|half|byte"}


def classify(run, n: int, probe: str, nan_rows=()) -> dict:
    """The outcome of one probe: ``run()`` raising an error whose message names the problem (``clear error``,
    see :data:`KEYWORDS`) or not (``crash``); returning a wrong dtype or shape, or NaN / infinite scores
    (``silent garbage``; NaN inputs that give finite scores count too); else ``ok``."""
    try:
        out = run()
    except Exception as e:  # noqa: BLE001 - the outcome is what we measure
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        clear = re.search(KEYWORDS[probe], str(e), re.I) is not None
        return {"outcome": "clear error" if clear else "crash", "detail": msg}
    try:
        arr = numeric_scores(out, n, "score")
    except DetectorError as e:
        return {"outcome": "silent garbage", "detail": str(e)}
    bad = ~np.isfinite(arr)
    if probe == "nan_input":
        clean = np.ones(n, bool)
        clean[list(nan_rows)] = False
        if bad[clean].any():
            return {"outcome": "silent garbage", "detail": f"NaN/inf for {int(bad[clean].sum())} clean rows too"}
        if bad[~clean].all():
            return {"outcome": "silent garbage", "detail": "returned NaN for the NaN rows without an error "
                                                            "(the harness's output check catches it)"}
        return {"outcome": "silent garbage", "detail": "finite scores for NaN inputs"}
    if bad.any():
        return {"outcome": "silent garbage", "detail": f"{int(bad.sum())} NaN/inf scores of {n}"}
    return {"outcome": "ok", "detail": ""}


def probe_detector(cls, problem) -> dict:
    """Fit on the separable problem, then feed the four probes; also records network attempts."""
    from oodbench.benchmark.data import ImageSet

    conns: list = []
    t0 = time.perf_counter()
    try:
        with no_network(conns):
            det = cls()
            with cpu_only():
                det.fit(problem.reps("fit"), problem.reps("cal"))
    except Exception as e:  # noqa: BLE001
        return {"fit_error": f"{type(e).__name__}: {str(e)[:200]}", "network_attempts": conns}
    base = problem.reps("id_test")
    n = len(base)
    nan_rows = list(range(0, n, 10))

    def with_nan(a):
        a = np.array(a, dtype=np.float32 if a.dtype.kind != "f" else a.dtype, copy=True)
        a[nan_rows] = np.nan
        return a

    def half(a):
        return np.asarray(a).astype(np.float16) if np.asarray(a).dtype.kind == "f" else np.asarray(a)

    x = problem.id_test.x
    const = ImageSet("constant", np.concatenate([np.zeros_like(x[:4]), np.full_like(x[:4], 255)]),
                     np.zeros(8, np.int64), "probe-constant")
    one = ImageSet("one", x[:1], problem.id_test.y[:1], "probe-one")
    st = problem.store
    probes = {
        "nan_input": (lambda: det.score(ProbeRep(base, with_nan)), n, nan_rows),
        "constant_images": (lambda: det.score(st.representation(const, "constant")), 8, ()),
        "batch_of_one": (lambda: det.score(st.representation(one, "one")), 1, ()),
        "wrong_dtype": (lambda: det.score(ProbeRep(base, half)), n, ()),
    }
    out = {}
    for k, (run, m, rows) in probes.items():
        with no_network(conns):
            out[k] = classify(run, m, k, rows)
    out["network_attempts"] = conns
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
