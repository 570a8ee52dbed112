"""The whole validation of a dataset: the GX suite, then the structural checks."""

from __future__ import annotations

from models.data.sharded import Dataset, ShardedDataset
from models.validation.checks import (
    CheckOutcome,
    ValidationConfig,
    class_count_table,
    structural_checks,
    summary_table,
)
from models.validation.expectations import run_expectations
from models.validation.streamed import streamed_summary


def validate(data: Dataset, config: ValidationConfig) -> tuple[list[CheckOutcome], str]:
    """Every check's outcome (GX expectations first) and the GX data docs page (HTML).

    A sharded dataset is streamed once (:func:`~models.validation.streamed.streamed_summary`):
    the images that fail to decode count as skipped files, named in the ``skipped_files`` check.
    Nothing here raises on bad data: the gate decides, so that the data docs exist either way.
    """
    skipped = None
    if isinstance(data, ShardedDataset):
        summary, undecodable = streamed_summary(data)
        skipped = data.skipped + undecodable
    else:
        summary = summary_table(data)
    outcomes, html = run_expectations(summary, class_count_table(data), data.hierarchy, config)
    return outcomes + structural_checks(data, summary, config, skipped), html
