"""Data stage: read the source into the dataset artifact, validate it, stop on bad data."""

from steps.data.enforce_data_validation import enforce_data_validation
from steps.data.ingest_dataset import ingest_dataset
from steps.data.validate_dataset import validate_dataset

__all__ = [
    "ingest_dataset",
    "validate_dataset",
    "enforce_data_validation",
]
