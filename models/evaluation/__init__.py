"""How good is the classifier? Hierarchical metrics, the test report, and the promotion gates.

:mod:`.metrics` holds accuracy per level, top-k, mistake severity and hierarchical distance@k
(Bertinetto et al. 2020) and confusion matrices; :func:`evaluate_classifier` is the test-split
evaluation with its HTML report; :func:`split_scores` and :func:`decide` are what the promotion
gate compares (pure decisions on numbers; the registry feeds them).
"""

from models.evaluation.metrics import (
    confusion_matrices,
    confusion_png,
    hierarchical_metrics,
    metrics_table,
)
from models.evaluation.promotion import Decision, PromotionGates, decide
from models.evaluation.report import Evaluation, evaluate_classifier, split_scores

__all__ = [
    "Decision",
    "Evaluation",
    "PromotionGates",
    "confusion_matrices",
    "confusion_png",
    "decide",
    "evaluate_classifier",
    "hierarchical_metrics",
    "metrics_table",
    "split_scores",
]
