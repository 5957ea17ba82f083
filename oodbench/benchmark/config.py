"""Where data and caches live, and how many CPU threads torch may use.

* data folder: ``--data-dir``, else ``$OODBENCH_DATA``, else ``../shared/data`` beside the current
  folder if it exists, else ``~/.cache/oodbench/data``.
* cache folder (checkpoints, representations, scores): ``--cache-dir``, else ``$OODBENCH_CACHE``,
  else ``~/.cache/oodbench``.
* CPU threads of a run's jobs: :func:`job_threads` (``--threads``, else ``$OODBENCH_THREADS``, else 1).
* CPU threads of the other commands: ``--threads``, else ``$OODBENCH_THREADS``, else half the cores (at least 1). On a
  2-core machine shared with another busy process, torch's default of one thread per core made
  LeNet training about 10x slower than a single thread, so the default leaves a core free.
* time limit of one score job (a detector's fit and scoring, one seed): ``--timeout``, else
  :data:`DEFAULT_TIMEOUT`. The slowest score job measured here, cifar10's pytorch-ood GradUncertainty,
  took 2,121 s. Time spent training a generative model of the detector's own (the VAE, the WGAN-GP: on
  cifar10 on the CPU, 2,877 s of training per seed and a longer inverter tuning after it) is not counted (:mod:`oodbench.benchmark.jobclock`).
"""
from __future__ import annotations

import os
from pathlib import Path

#: seconds one score job may take, besides training a model of its own, before it is recorded as failed
#: ("timeout after N s")
DEFAULT_TIMEOUT = 3600.0


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("OODBENCH_DATA")
    if env:
        return Path(env).expanduser()
    for cand in (Path.cwd() / "../shared/data", Path.cwd() / "shared/data"):
        if (cand / "MNIST").is_dir():
            return cand.resolve()
    return Path.home() / ".cache" / "oodbench" / "data"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        p = Path(explicit).expanduser()
    else:
        env = os.environ.get("OODBENCH_CACHE")
        p = Path(env).expanduser() if env else Path.home() / ".cache" / "oodbench"
    p.mkdir(parents=True, exist_ok=True)
    return p


def default_threads(fallback: int | None = None) -> int:
    """``$OODBENCH_THREADS``, else ``fallback``, else half the cores (at least 1)."""
    env = os.environ.get("OODBENCH_THREADS")
    if env:
        return max(1, int(env))
    return max(1, fallback or (os.cpu_count() or 2) // 2)


#: torch threads per job of ``oodbench run`` unless ``--threads`` says otherwise: 1, whatever ``--jobs`` and
#: the number of cores. Linear-algebra-heavy detectors (Mahalanobis, ViM, RMD, pNML, Δz's gradient search)
#: round differently with another thread count: a cold ``--jobs 1`` run that gave each job 2 threads
#: differed from the ``--jobs 2`` run (1 thread each) by up to 0.005 AUROC (ViM) and in refusal rates.
JOB_THREADS = 1


def job_threads(n: int | None = None) -> int:
    """Torch threads per job of ``oodbench run``: ``n`` (``--threads``), else ``$OODBENCH_THREADS``, else
    :data:`JOB_THREADS`."""
    return max(1, int(n)) if n else default_threads(JOB_THREADS)


def blas_threads(n: int):
    """A context in which the thread pools of the libraries loaded in this process — numpy's BLAS
    (OpenBLAS, MKL), OpenMP (scikit-learn, faiss) — run ``n`` threads: a score job's linear algebra then
    rounds the same on any machine and in any process, as torch's does with its fixed thread count (a
    float32 matrix product differed by about 1e-7 relative between 1 and 2 BLAS threads)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, int(n)))


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (and a passive OpenMP wait policy); return the number used."""
    n = n or default_threads()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(n)
    return n
