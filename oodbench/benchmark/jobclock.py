"""The clock that a score job's time limit (``--timeout``) runs on.

``--timeout`` exists to stop a detector that hangs, not one that is slow because it first has to train its
own model. So the clock stops while a job trains a generative model of its own (the VAE, the WGAN-GP and
its inverter) or waits for another worker that is training that model. Like a classifier, such a model is
cached and shared by every detector built on it. On the CPU schedule, cifar10's WGAN-GP took 2,877 s per
seed to train and its inverter tuning (3,000 iterations at 1.2-2 s each) takes longer again: with the
default one-hour limit, ``wgan_recon`` failed on seeds 0 and 1 with "timeout after 3600 s" while its inverter
was still being tuned.

* :func:`paused` is the ``with`` block that stops the clock. The harness's checkpoint store
  (:class:`~oodbench.benchmark.models.generative.GenerativeCheckpoints`) wraps each ``load_or_train`` in
  it. Nested blocks count once.
* :func:`call_with_timeout` runs a job under the limit. It uses SIGALRM, whose timer :func:`paused`
  suspends and then rearms with the time that was left.
* :func:`listen` registers a callback ``(paused, excluded_s)``, called when the clock stops or starts
  again. A worker process of the local executor forwards these calls to its parent. The parent's backstop
  kills a worker stuck in one C call; it counts the same time as the job's own alarm, so it never kills
  a worker that is training a model.

Training a model is not limited, just as a classifier's training job is not. A model that never
finishes training is therefore stopped only by the user (Ctrl-C, or killing the run).
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager


class JobTimeout(BaseException):
    """Raised in a job that ran past its time limit (a BaseException, so that a detector's own
    ``except Exception`` cannot swallow it)."""


_lock = threading.Lock()
_state = {"depth": 0, "excluded": 0.0, "alarm": False, "listeners": []}


def excluded_seconds() -> float:
    """Seconds this process's clock has stood still so far (all jobs; take differences)."""
    return _state["excluded"]


def listen(callback) -> None:
    """Call ``callback(paused: bool, excluded_s: float)`` whenever the clock stops or starts again."""
    _state["listeners"].append(callback)


def _notify(is_paused: bool) -> None:
    for cb in list(_state["listeners"]):
        cb(is_paused, _state["excluded"])


@contextmanager
def paused():
    """Stop the job clock (and the time limit's alarm) while the block runs: training or waiting for a
    model of the detector's own."""
    with _lock:
        _state["depth"] += 1
        outer = _state["depth"] == 1
    left, t0 = 0.0, time.perf_counter()
    try:
        if outer:
            if _state["alarm"] and threading.current_thread() is threading.main_thread():
                left = signal.setitimer(signal.ITIMER_REAL, 0)[0]
            t0 = time.perf_counter()
            _notify(True)
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
        if outer:
            _state["excluded"] += time.perf_counter() - t0
            _notify(False)
            if left > 0:
                signal.setitimer(signal.ITIMER_REAL, left)


def call_with_timeout(fn, seconds: float | None):
    """``fn()``, stopped with :class:`JobTimeout` once it has run ``seconds`` outside :func:`paused` blocks
    (SIGALRM; no limit when ``seconds`` is falsy, or where SIGALRM is unavailable or this is not the main
    thread)."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn()
    armed = [True]

    def on_alarm(signum, frame):
        if armed[0]:
            raise JobTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    _state["alarm"] = True
    try:
        return fn()
    finally:
        armed[0] = False
        _state["alarm"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
