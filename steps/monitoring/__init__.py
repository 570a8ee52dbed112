"""Monitoring stage: drift features of reference and batch, the Evidently report, the gate."""

from steps.monitoring.compute_drift_features import compute_drift_features
from steps.monitoring.gate_drift import gate_drift
from steps.monitoring.report_drift import report_drift

__all__ = [
    "compute_drift_features",
    "report_drift",
    "gate_drift",
]
