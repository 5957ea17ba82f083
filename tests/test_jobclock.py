"""The job clock behind ``--timeout`` (:mod:`oodbench.benchmark.jobclock`): time spent training a model of the
detector's own does not count; anything else does."""
import time

import pytest

from oodbench.benchmark import jobclock


def _sleep(paused_s: float, counted_s: float):
    with jobclock.paused():
        time.sleep(paused_s)
    time.sleep(counted_s)
    return "done"


def test_time_inside_paused_does_not_count_and_the_rest_does():
    assert jobclock.call_with_timeout(lambda: _sleep(1.2, 0.2), 0.6) == "done"
    with pytest.raises(jobclock.JobTimeout):
        jobclock.call_with_timeout(lambda: _sleep(0.0, 1.2), 0.6)
    with pytest.raises(jobclock.JobTimeout):  # what is left after the pause still runs out
        jobclock.call_with_timeout(lambda: _sleep(0.3, 0.3) and _sleep(0.0, 1.0), 0.6)


def test_nested_pauses_count_once_and_listeners_hear_the_outer_one():
    heard = []
    jobclock.listen(lambda paused, excluded: heard.append((paused, excluded)))
    try:
        before = jobclock.excluded_seconds()
        with jobclock.paused():
            with jobclock.paused():
                time.sleep(0.2)
            time.sleep(0.1)
        stood = jobclock.excluded_seconds() - before
    finally:
        jobclock._state["listeners"].clear()
    assert 0.3 <= stood < 1.0
    assert [p for p, _ in heard] == [True, False] and heard[1][1] - heard[0][1] == pytest.approx(stood)


def test_a_timeout_inside_a_pause_leaves_the_clock_running_for_the_next_job():
    with pytest.raises(jobclock.JobTimeout):  # the alarm fires before the pause begins
        jobclock.call_with_timeout(lambda: time.sleep(1.0) or _sleep(0.1, 0.0), 0.3)
    assert jobclock._state["depth"] == 0 and not jobclock._state["alarm"]
    with pytest.raises(jobclock.JobTimeout):
        jobclock.call_with_timeout(lambda: _sleep(0.0, 1.0), 0.3)
