"""Gate step: stop the pipeline when a critical data check failed."""

from __future__ import annotations

import logging
from typing import Any

from zenml import step

from models.validation.checks import CheckOutcome, format_failures

logger = logging.getLogger(__name__)


class DataValidationError(RuntimeError):
    """Critical data checks failed; the message names them with example rows."""


@step
def enforce_data_validation(checks: list[dict[str, Any]]) -> None:
    """Raise :class:`DataValidationError` naming every failed critical check.

    Raises:
        DataValidationError: when at least one critical check failed.
    """
    outcomes = [CheckOutcome(**c) for c in checks]
    if any(not o.success and o.severity == "critical" for o in outcomes):
        raise DataValidationError(
            format_failures(outcomes, "critical")
            + "\nThe GX data docs are in this run's 'data_docs' artifact."
        )
    logger.info("Data gate passed: %d checks, no critical failure", len(outcomes))
