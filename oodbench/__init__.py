"""oodbench: a benchmark harness for out-of-distribution detection on image classifiers.

Start with ``oodbench run mnist`` on the command line, or in Python::

    from oodbench.benchmark.evaluation.runner import evaluate
    table = evaluate("mnist-smoke", detectors=["pytorch_ood.msp"])

Metrics for your own scores: ``oodbench.metrics.evaluate(id_scores, ood_scores)``.
"""
__version__ = "0.1.0"
