"""A run's arguments, checked before any compute.

:func:`check_run` resolves the suite and the detector patterns and checks the seeds, the numeric
options, the device, the data, cache and output folders; a bad one raises :class:`ArgumentError`
with one line that names the argument and what to give instead. ``oodbench run`` prints that line
(no traceback) within seconds, before any data is loaded or any model trained.
"""
from __future__ import annotations

from pathlib import Path

from oodbench.adapters import registry
from oodbench.benchmark import config
from oodbench.benchmark.data import suites


class ArgumentError(ValueError):
    """An argument of a run is invalid; the message is one line naming it and the fix."""


def _first_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return str(msg).splitlines()[0] if str(msg) else type(e).__name__


def suite(name) -> dict:
    if isinstance(name, dict):
        return name
    try:
        return suites.get(name)
    except KeyError:
        raise ArgumentError(f"unknown suite {name!r}; known: {', '.join(suites.names())} "
                            "(see `oodbench list`)") from None


def detectors(patterns) -> list[str]:
    if isinstance(patterns, str):
        patterns = [patterns]
    try:
        names = registry.resolve(list(patterns))
    except KeyError as e:
        raise ArgumentError(f"--detectors: {_first_line(e).split('; known')[0]} (see `oodbench list` for "
                            "the registered names; patterns like 'pytorch_ood.*' are allowed)") from None
    if not names:
        raise ArgumentError("--detectors: no detector given")
    return names


def seeds(values) -> list[int]:
    out = []
    for v in values:
        try:
            s = int(v)
        except (TypeError, ValueError):
            raise ArgumentError(f"--seeds: {v!r} is not an integer") from None
        if (isinstance(v, float) and s != v) or not 0 <= s < 2 ** 32:
            raise ArgumentError(f"--seeds: {v!r} is not a seed (an integer from 0 to 2**32-1)")
        if s in out:
            raise ArgumentError(f"--seeds: seed {s} is given twice")
        out.append(s)
    if not out:
        raise ArgumentError("--seeds: give at least one seed")
    return out


def _int(name: str, v, lo: int):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ArgumentError(f"{name}: {v!r} is not an integer >= {lo}")


def device(dev) -> str:
    d = str(dev)
    kind, _, index = d.partition(":")
    if kind == "cpu" and not index:
        return d
    if kind != "cuda" or (index and not index.isdigit()):
        raise ArgumentError(f"--device: {d!r} is not a device; give cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise ArgumentError(f"--device {d}: CUDA is not available on this machine (torch {torch.__version__}); "
                            "use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise ArgumentError(f"--device {d}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return d


def data_dir(explicit) -> Path:
    root = config.data_dir(explicit)
    if not root.is_dir():
        where = "--data-dir" if explicit else "the data folder ($OODBENCH_DATA, ../shared/data or ~/.cache/oodbench/data)"
        raise ArgumentError(f"{where} {root} does not exist; run `oodbench download all --data-dir {root}` "
                            "(needs the network) or point --data-dir at a folder laid out like ../shared/data")
    return root


def cache_dir(explicit) -> Path:
    try:
        p = config.cache_dir(explicit)
    except OSError as e:
        raise ArgumentError(f"--cache-dir {explicit}: cannot create it ({e.strerror or e})") from None
    if not p.is_dir():
        raise ArgumentError(f"--cache-dir {p} is not a folder")
    return p


def check_run(suite_arg, detector_args, seed_args, o, default_detectors) -> tuple[dict, list[str], list[int]]:
    """Check everything a run needs before it computes anything; return (suite, detector names, seeds).
    ``o`` is the run's :class:`~oodbench.benchmark.evaluation.runner.RunOptions`."""
    if o.tuning not in ("default", "tuned"):
        raise ArgumentError(f"tuning must be 'default' or 'tuned', got {o.tuning!r}")
    if o.fit_split not in ("train", "fit"):
        raise ArgumentError(f"--fit-split: {o.fit_split!r}; give train (the classifier's training split, OpenOOD's "
                            "protocol) or fit (the held-out fit split)")
    _int("--bootstrap", o.n_boot, 0)
    _int("--batch-size", o.batch_size, 1)
    if o.threads is not None:
        _int("--threads", o.threads, 1)
    if o.timeout is not None and (isinstance(o.timeout, bool) or not isinstance(o.timeout, (int, float))
                                  or not o.timeout >= 0):
        raise ArgumentError(f"--timeout: {o.timeout!r} is not a number of seconds >= 0 (0 = no limit)")
    suite_d = suite(suite_arg)
    seed_list = seeds(seed_args)
    o.device = device(o.device)
    names = detectors(detector_args) if detector_args else default_detectors(o.device)
    data_dir(o.data_dir)
    cache_dir(o.cache_dir)
    return suite_d, names, seed_list
