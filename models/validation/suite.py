"""The whole validation of a dataset: the GX suite, then the structural checks."""

from __future__ import annotations

from models.data.dataset import LabelledImages
from models.validation.checks import (
    CheckOutcome,
    ValidationConfig,
    class_count_table,
    structural_checks,
    summary_table,
)
from models.validation.expectations import run_expectations


def validate(data: LabelledImages, config: ValidationConfig) -> tuple[list[CheckOutcome], str]:
    """Every check's outcome (GX expectations first) and the GX data docs page (HTML).

    Nothing here raises on bad data: the gate decides, so that the data docs exist either way.
    """
    summary = summary_table(data)
    outcomes, html = run_expectations(summary, class_count_table(data), data.hierarchy, config)
    return outcomes + structural_checks(data, summary, config), html
