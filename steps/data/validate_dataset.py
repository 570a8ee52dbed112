"""Step: run the Great Expectations suite and the structural checks over the dataset."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.types import HTMLString

from models.data.sharded import Dataset
from models.validation import ValidationConfig, format_failures, validate
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def validate_dataset(
    dataset: Dataset, config: ValidationConfig
) -> tuple[
    Annotated[HTMLString, artifacts.DATA_DOCS],
    Annotated[list[dict[str, Any]], artifacts.DATA_CHECKS],
]:
    """Validate the per-image summary with GX and run the checks GX does not express.

    Nothing here stops the pipeline: the gate step does, so that the data docs are stored even
    when the data is bad.

    Returns:
        The GX data docs page and every check's outcome (name, success, severity, examples).
    """
    outcomes, html = validate(dataset, config)
    failed = {
        sev: [o for o in outcomes if not o.success and o.severity == sev]
        for sev in ("critical", "warning")
    }
    for sev, items in failed.items():
        if items:
            log = logger.error if sev == "critical" else logger.warning
            log("%s", format_failures(outcomes, sev))  # type: ignore[arg-type]
    logger.info(
        "Data validation of %s: %d checks, %d critical and %d warning failures",
        dataset.content_hash[:12],
        len(outcomes),
        len(failed["critical"]),
        len(failed["warning"]),
    )
    stats = {
        "checks": len(outcomes),
        "critical_failures": len(failed["critical"]),
        "warning_failures": len(failed["warning"]),
    }
    # every file that could not be used, by name (a streamed dataset adds undecodable images)
    skipped = next((o.examples for o in outcomes if o.name == "skipped_files"), [])
    log_metadata(
        metadata={
            "validation": stats | {"dataset_hash": dataset.content_hash},
            "skipped_files": skipped,
        }
    )
    tracking.log_metrics({f"validation_{k}": v for k, v in stats.items()})
    tracking.log_text(html, "validation/data_docs.html")
    tracking.log_json([o.to_dict() for o in outcomes], "validation/checks.json")
    return HTMLString(html), [o.to_dict() for o in outcomes]
