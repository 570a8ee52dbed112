"""Thin ZenML steps: each calls the core in ``models/``, logs, and returns artifacts."""

from steps.enforce_data_validation import enforce_data_validation
from steps.ingest_dataset import ingest_dataset
from steps.pretrain_gan import pretrain_gan
from steps.validate_dataset import validate_dataset

__all__ = ["enforce_data_validation", "ingest_dataset", "pretrain_gan", "validate_dataset"]
