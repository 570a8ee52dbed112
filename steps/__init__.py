"""Thin ZenML steps: each calls the core in ``models/``, logs, and returns artifacts."""

from steps.calibrate_classifier import calibrate_classifier
from steps.enforce_data_validation import enforce_data_validation
from steps.enforce_robustness import enforce_robustness
from steps.evaluate_classifier import evaluate_classifier
from steps.evaluate_robustness import evaluate_robustness
from steps.fit_hierarchical_classifier import fit_hierarchical_classifier
from steps.ingest_dataset import ingest_dataset
from steps.package_bento import package_bento
from steps.pretrain_gan import pretrain_gan
from steps.register_model import register_model
from steps.validate_dataset import validate_dataset

__all__ = [
    "calibrate_classifier",
    "enforce_data_validation",
    "enforce_robustness",
    "evaluate_classifier",
    "evaluate_robustness",
    "fit_hierarchical_classifier",
    "ingest_dataset",
    "package_bento",
    "pretrain_gan",
    "register_model",
    "validate_dataset",
]
