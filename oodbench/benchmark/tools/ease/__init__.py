"""Ease-of-use metrics, measured by code, per library and per detector (``oodbench ease``).

Per library (``pytorch-ood``; ``openood`` where an environment with it exists — it is run there through
a subprocess; the lab's methods, ``oodbench-lab``):

* **install** — on PyPI (``pip index versions``; ``None`` when offline), declared dependencies (the
  distribution's metadata), packages and MB it adds on top of a torch + torchvision environment (the
  closure of its declared requirements over the installed distributions, minus the closure of torch and
  torchvision, sizes from each distribution's RECORD), imports in its source that no declared requirement
  provides (``ast`` scan mapped with ``packages_distributions``), and requirement specifiers of shared
  dependencies that the versions we run do not satisfy;
* **import** — cold import time in a fresh interpreter after ``import torch`` (median of several runs);
* **integration** — code lines (non-blank, non-comment, no docstrings) of our adapter modules for the
  library and, per detector, of its class or registration statement.

Per detector: what it consumes, the library arguments a user must supply (parameters without a default of
the wrapped library class), requirements from its :class:`DetectorInfo` (fit data, OOD data for tuning,
gradients, GPU only), network access during construction and fit (refused and recorded), cost (fit
time, throughput, peak memory, from every ``results/<suite>/run.json``), and robustness probes on the
separable problem: NaN inputs, constant images, a batch of one, a wrong dtype — each classified as
``ok``, ``clear error``, ``crash`` or ``silent garbage``.

Code quality (:mod:`oodbench.benchmark.tools.quality`) of every installed library is added, and the facts that
cannot be measured come from ``ease_facts.json`` (each with a source). Output: ``results/ease/ease.json``
and CSVs ``libraries.csv``, ``detectors.csv``, ``quality.csv``.

The parts: :mod:`.install` (install facts; standard library only, it also runs as a script in OpenOOD's
environment), :mod:`.environments` (import time, running code in another interpreter), :mod:`.lines`
(integration lines), :mod:`.detectors` (per-detector facts), :mod:`.probes` (robustness probes),
:mod:`.measure` (everything put together) and :mod:`.write` (the files).
"""
from __future__ import annotations


def main(args) -> int:
    """``oodbench ease``: measure and write ``results/ease/`` (see :func:`.measure.main`)."""
    from oodbench.benchmark.tools.ease.measure import main as measure_main

    return measure_main(args)
