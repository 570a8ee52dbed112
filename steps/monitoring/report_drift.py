"""Step: the Evidently drift report of the batch against the reference."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from models.monitoring.drift import DriftTestConfig, run_drift_report
from models.monitoring.features import DriftColumns
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def report_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    context: dict[str, Any],
    config: DriftTestConfig,
    max_ood_share: float | None = None,
) -> tuple[
    Annotated[dict[str, Any], artifacts.DRIFT_SUMMARY],
    Annotated[HTMLString, artifacts.DRIFT_REPORT],
]:
    """Data drift per column, prediction drift and the OOD share (Evidently, with tests).

    The HTML report is the step's visualization and an MLflow artifact.
    """
    columns = DriftColumns(**context["columns"])
    result = run_drift_report(
        reference, current, columns, config, True, context.get("ood_threshold"), max_ood_share
    )
    summary = {**result.summary(), "context": context}
    drifted = [c for c, r in result.columns.items() if r["drifted"]]
    logger.info(
        "Drift report: %d of %d columns drifted (share %.2f): %s",
        len(drifted),
        len(result.columns),
        result.share,
        drifted,
    )
    tracking.log_metrics(
        {
            "drift_share": result.share,
            "drifted_columns": len(drifted),
            **{f"drift_score_{c}": r["score"] for c, r in result.columns.items()},
            **({"ood_share": result.ood["share"]} if result.ood else {}),
        }
    )
    tracking.log_text(result.html, "drift/report.html")
    tracking.log_json(summary, "drift/summary.json")
    log_metadata(
        metadata={"drift": {"share": result.share, "drifted_columns": drifted or ["none"]}}
    )
    return summary, HTMLString(result.html)
