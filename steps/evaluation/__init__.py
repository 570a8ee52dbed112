"""Evaluation stage: test-split metrics, robustness, the robustness gate, the OOD guard."""

from steps.evaluation.enforce_robustness import enforce_robustness
from steps.evaluation.evaluate_classifier import evaluate_classifier
from steps.evaluation.evaluate_ood import evaluate_ood
from steps.evaluation.evaluate_robustness import evaluate_robustness

__all__ = [
    "evaluate_classifier",
    "evaluate_robustness",
    "enforce_robustness",
    "evaluate_ood",
]
