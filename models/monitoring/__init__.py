"""Watching the served model: drift features, the Evidently drift report and gate, batches.

:class:`DriftFeatureExtractor` turns images into one row each (trunk embeddings projected on
the reference's principal components, image statistics, the prediction per level);
:func:`run_drift_report` runs Evidently's drift preset on reference vs batch and
:func:`drift_decision` is the gate; :func:`read_batch` reads what is monitored (a folder, an
``.npz`` or the service's request log, whose format is :mod:`.request_store`).
"""

from models.monitoring.batches import BatchError, ImageBatch, read_batch
from models.monitoring.drift import (
    DriftGateConfig,
    DriftResult,
    DriftTestConfig,
    drift_decision,
    run_drift_report,
)
from models.monitoring.features import (
    DriftColumns,
    DriftFeatureConfig,
    DriftFeatureExtractor,
    drift_columns,
)
from models.monitoring.reference import ReferenceMismatchError, check_reference

__all__ = [
    "BatchError",
    "DriftColumns",
    "DriftFeatureConfig",
    "DriftFeatureExtractor",
    "DriftGateConfig",
    "DriftResult",
    "DriftTestConfig",
    "ImageBatch",
    "ReferenceMismatchError",
    "check_reference",
    "drift_columns",
    "drift_decision",
    "read_batch",
    "run_drift_report",
]
