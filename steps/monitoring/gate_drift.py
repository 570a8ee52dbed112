"""Step: the drift gate, which says whether the batch drifted and why."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from models.monitoring.drift import DriftGateConfig, drift_decision
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def gate_drift(
    summary: dict[str, Any], gate: DriftGateConfig
) -> Annotated[dict[str, Any], artifacts.DRIFT_DECISION]:
    """Drifted when Evidently's drifted-share test fails or a trigger column drifts.

    Returns the decision rather than raising: the monitor's CLI turns it into an exit code (3)
    or a retraining run, so a scheduler can act on it while the run itself stays "completed".
    """
    decision = drift_decision(summary, gate)
    decision["context"] = summary.get("context", {})
    if decision["drifted"]:
        logger.warning("Drift detected:\n  %s", "\n  ".join(decision["reasons"]))
    else:
        logger.info(
            "No drift: %d of %d columns drifted (share %.2f < %.2f), no trigger column drifted",
            len(decision["drifted_columns"]),
            len(summary["columns"]),
            decision["share"],
            decision["drift_share"],
        )
    tracking.log_metrics({"drift_detected": float(decision["drifted"])})
    log_metadata(
        metadata={
            "drift_decision": {
                "drifted": decision["drifted"],
                "share": decision["share"],
                "reasons": decision["reasons"] or ["no drift"],
            }
        }
    )
    return decision
