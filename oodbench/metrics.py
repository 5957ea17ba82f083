"""Public, stable metric API: ``oodbench.metrics.evaluate(id_scores, ood_scores)``.

Scores are outlier scores (higher = more OOD); OOD is the positive class. See
:mod:`oodbench.benchmark.evaluation.metrics` for the definitions.
"""
from oodbench.benchmark.evaluation.metrics import (  # noqa: F401
    METRICS,
    aggregate,
    aupr_in,
    aupr_out,
    auroc,
    bootstrap,
    evaluate,
    fpr_at_tpr,
    fpr95_id,
)

__all__ = ["METRICS", "aggregate", "evaluate", "auroc", "fpr_at_tpr", "fpr95_id", "aupr_in", "aupr_out", "bootstrap"]
