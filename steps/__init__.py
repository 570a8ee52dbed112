"""Thin ZenML steps, grouped by stage: each reads its config, calls the core, logs, returns.

``control/`` (the one-run-at-a-time lock), ``data/`` (ingest, validate, the data gate),
``training/`` (GAN, classifier, calibration, the OOD guard), ``evaluation/`` (test metrics,
robustness and its gate, OOD), ``packaging/`` (bento,
registry version), ``promotion/`` (score the aliases, the promotion gate, the alias move),
``monitoring/`` (drift features, the Evidently report, the drift gate). Shared here:
``artifacts`` (artifact names), ``materializers`` (plain files, never pickle), ``tracking``
(MLflow logging that never fails a step).
"""

from steps.control import guard_training_run
from steps.data import enforce_data_validation, ingest_dataset, validate_dataset
from steps.evaluation import (
    enforce_robustness,
    evaluate_classifier,
    evaluate_ood,
    evaluate_robustness,
)
from steps.monitoring import compute_drift_features, gate_drift, report_drift
from steps.packaging import package_bento, register_model
from steps.promotion import decide_promotion, evaluate_registered_models, promote_champion
from steps.training import (
    calibrate_classifier,
    fit_hierarchical_classifier,
    fit_ood_guard,
    play_triple_game,
    pretrain_gan,
)

__all__ = [
    "calibrate_classifier",
    "compute_drift_features",
    "decide_promotion",
    "enforce_data_validation",
    "enforce_robustness",
    "evaluate_classifier",
    "evaluate_ood",
    "evaluate_registered_models",
    "evaluate_robustness",
    "fit_hierarchical_classifier",
    "fit_ood_guard",
    "gate_drift",
    "guard_training_run",
    "ingest_dataset",
    "package_bento",
    "play_triple_game",
    "pretrain_gan",
    "promote_champion",
    "register_model",
    "report_drift",
    "validate_dataset",
]
