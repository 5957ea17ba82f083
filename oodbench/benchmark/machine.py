"""The CPU a process runs on, in more detail than torch's ISA level (the checkpoints' ``cpu_capability``).

Float arithmetic in MKL and oneDNN picks its kernels by CPU model and cache sizes, so a checkpoint (and
everything computed from it) is bitwise reproducible on one kind of CPU, not across kinds: two sessions'
machines, both ``AVX512``, trained different mnist LeNet weights from the same checkpoint key. :func:`cpu`
names the kind (``kind``: a hash of the model and its instruction-set flags), and the harness records it
with every checkpoint it trains and in every ``run.json``, so that such a difference can be traced."""
from __future__ import annotations

import functools
import hashlib
import os
import platform


@functools.lru_cache(maxsize=1)
def cpu() -> dict:
    """``kind`` (16 hex digits), ``model_name``, ``family`` / ``model`` / ``stepping``, ``cache_size``,
    ``flags_sha256``, ``vector_flags`` (the avx / amx / fma ones) and ``logical_cores``, from ``/proc/cpuinfo``;
    where it cannot be read (not Linux), ``platform.processor()`` and the machine type stand in."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    return describe(text, platform.machine(), os.cpu_count())


def describe(cpuinfo: str, machine: str, cores) -> dict:
    """:func:`cpu`'s record from the text of ``/proc/cpuinfo`` (its first processor's block)."""
    info = {"machine": machine, "logical_cores": cores}
    first = cpuinfo.split("\n\n", 1)[0]
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines()) if v}
    flags = sorted(fields.get("flags", "").split())
    if fields:
        info.update(model_name=fields.get("model name", ""), family=fields.get("cpu family", ""),
                    model=fields.get("model", ""), stepping=fields.get("stepping", ""),
                    cache_size=fields.get("cache size", ""),
                    flags_sha256=hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
                    vector_flags=[x for x in flags if x.startswith(("avx", "amx", "fma"))])
    else:
        info["model_name"] = platform.processor()
    ident = [machine, info.get("model_name", ""), info.get("family", ""), info.get("model", ""),
             info.get("stepping", ""), info.get("flags_sha256", "")]
    return {"kind": hashlib.sha256("|".join(ident).encode()).hexdigest()[:16], **info}
