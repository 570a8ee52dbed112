"""Is the dataset fit to train on? A Great Expectations suite and the checks GX does not express.

:func:`validate` runs both over a :class:`~models.data.LabelledImages` and returns one
:class:`CheckOutcome` per check (critical or warning) and the GX data docs page;
:func:`format_failures` words the failures for the gate.
"""

from models.validation.checks import (
    CheckOutcome,
    ValidationConfig,
    class_count_table,
    format_failures,
    structural_checks,
    summary_table,
)
from models.validation.suite import validate

__all__ = [
    "CheckOutcome",
    "ValidationConfig",
    "class_count_table",
    "format_failures",
    "structural_checks",
    "summary_table",
    "validate",
]
