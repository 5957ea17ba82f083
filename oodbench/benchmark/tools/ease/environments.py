"""Running code in other interpreters: the cold import time of a library, and the environment that has
OpenOOD (it is measured there, through a subprocess, since it cannot be installed beside our numpy)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]


def import_times(python: str, statement: str, runs: int = 5, env=None) -> dict:
    """Median wall time of ``statement`` in fresh interpreters, after ``import torch`` (timed too)."""
    code = ("import time, json; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            f"{statement}; t2 = time.perf_counter(); print(json.dumps([t1 - t0, t2 - t1]))")
    lib, base, err = [], [], ""
    for _ in range(runs):
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            err = (r.stderr.strip().splitlines() or ["?"])[-1][:300]
            break
        a, b = json.loads(r.stdout.strip().splitlines()[-1])
        base.append(round(a, 3))
        lib.append(round(b, 3))
    med = (lambda v: round(sorted(v)[len(v) // 2], 3) if v else None)
    return {"statement": statement, "runs": lib, "median_s": med(lib), "torch_runs": base,
            "torch_median_s": med(base), "error": err}


def openood_python(arg=None) -> str | None:
    """The python of the environment with OpenOOD, found as a run finds it
    (:func:`oodbench.benchmark.tools.openood_env.find_python`: ``arg``, ``$OODBENCH_OPENOOD_PYTHON``, the
    environment ``oodbench setup openood`` builds, or a hand-built ``../openood-venv``); None when there is none."""
    from oodbench.benchmark.tools import openood_env

    py = openood_env.find_python(arg)
    return str(py) if py else None


def run_script(python: str, args: list, timeout=600) -> dict:
    """Run ``python *args`` with this repository on the path; the JSON its last output line holds, or
    ``{"error": ...}``."""
    r = subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(r.stdout.strip().splitlines()[-1])
