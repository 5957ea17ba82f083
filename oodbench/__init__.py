"""oodbench: a benchmark harness for out-of-distribution detection on image classifiers.

Start with ``oodbench run mnist`` on the command line, or in Python::

    from oodbench.benchmark.evaluation.runner import evaluate
    table = evaluate("mnist-smoke", detectors=["pytorch_ood.msp"])

Your own classifier and data: ``oodbench.evaluate(model, fit=..., cal=..., id_test=..., tests={...})`` or
``oodbench.Suite.from_file("my-suite.toml")`` (:mod:`oodbench.api`; README, "Your own model and data").

Metrics for your own scores: ``oodbench.metrics.evaluate(id_scores, ood_scores)``.
"""
__version__ = "0.1.0"


def __getattr__(name):
    """``oodbench.evaluate`` and ``oodbench.Suite`` (:mod:`oodbench.api`), imported on first use."""
    if name in ("evaluate", "Suite"):
        from oodbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'oodbench' has no attribute {name!r}")
