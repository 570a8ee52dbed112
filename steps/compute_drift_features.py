"""Step: drift features of the reference (validation split) and of the batch, from one model."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from models.batches import read_batch
from models.classifier_io import TrainedClassifier
from models.drift_features import DriftFeatureConfig, DriftFeatureExtractor
from models.ingest import DatasetConfig, build_dataset
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


class ReferenceMismatchError(ValueError):
    """The reference data is not the data the model was trained on."""


def load_monitored_model(model_dir: str | None, alias: str) -> tuple[TrainedClassifier, dict]:
    """The classifier to monitor: a saved directory, else the registry's version at ``alias``.

    Returns:
        The classifier and where it came from (``source``, ``dataset_hash``, registry tags).
    """
    if model_dir:
        classifier = TrainedClassifier.load(model_dir)
        return classifier, {
            "source": f"dir:{model_dir}",
            "dataset_hash": classifier.info.get("dataset_hash", ""),
        }
    from pipelines.registry import load_classifier, use_stack_tracking_uri

    use_stack_tracking_uri()
    classifier, tags = load_classifier(alias)
    return classifier, {
        "source": f"registry:hiergan@{alias} (version {tags.get('version', '?')})",
        "dataset_hash": tags.get("dataset_hash") or classifier.info.get("dataset_hash", ""),
        "version": tags.get("version", ""),
    }


def check_reference(model_hash: str, reference_hash: str, allow_mismatch: bool) -> str | None:
    """Compare the model's training-data hash with the reference's.

    A drift verdict against other data than the model's measures the difference between two
    datasets, not drift: a mismatch is an error unless ``allow_mismatch`` (then a warning).

    Returns:
        A warning when the hashes differ (allowed) or the model records none; else ``None``.

    Raises:
        ReferenceMismatchError: the hashes differ and the mismatch is not allowed.
    """
    if not model_hash:
        return "the model records no dataset hash: the reference cannot be checked"
    if model_hash == reference_hash:
        return None
    message = (
        f"the reference data (hash {reference_hash[:12]}) is not the data the model was "
        f"trained on (hash {model_hash[:12]}): set parameters.dataset to the model's training "
        "dataset"
    )
    if not allow_mismatch:
        raise ReferenceMismatchError(
            message + ", or pass --allow-reference-mismatch to compare anyway"
        )
    return message + " (allowed by allow_reference_mismatch)"


@step
def compute_drift_features(
    batch_path: str,
    dataset: DatasetConfig,
    features: DriftFeatureConfig,
    model_dir: str | None = None,
    alias: str = "champion",
    allow_reference_mismatch: bool = False,
) -> tuple[
    Annotated[pd.DataFrame, artifacts.DRIFT_REFERENCE_FEATURES],
    Annotated[pd.DataFrame, artifacts.DRIFT_BATCH_FEATURES],
    Annotated[dict[str, Any], artifacts.DRIFT_CONTEXT],
]:
    """Embeddings (PCA fitted on the reference), image statistics and predictions per image.

    The reference is the validation split of ``dataset``, checked against the model's training
    data hash; the batch is a folder of images, an ``.npz`` or the service's request log.
    """
    classifier, model_facts = load_monitored_model(model_dir, alias)
    data = build_dataset(dataset)
    warning = check_reference(
        model_facts["dataset_hash"], data.content_hash, allow_reference_mismatch
    )
    if warning:
        logger.warning("Reference check: %s", warning)
    arch = classifier.architecture
    batch = read_batch(batch_path, arch.image_size, arch.channels)
    for skipped in batch.skipped[:20]:
        logger.warning("Skipped %s: %s", skipped.path, skipped.reason)
    extractor = DriftFeatureExtractor(classifier, features)
    reference_x, _ = data.split("val")
    reference = extractor.fit_reference(reference_x)
    current = extractor.transform(batch.images, where=f"batch {batch_path}")
    assert extractor.projection is not None
    columns = extractor.columns
    context: dict[str, Any] = {
        "batch": batch.facts(),
        "model": model_facts,
        "reference": {
            "dataset": data.name,
            "split": "val",
            "num_images": int(len(reference_x)),
            "dataset_hash": data.content_hash,
            "warning": warning or "",
        },
        "columns": {"numerical": columns.numerical, "categorical": columns.categorical},
        "explained_variance_ratio": [
            round(float(v), 5) for v in extractor.projection.explained_variance_ratio
        ],
    }
    logger.info(
        "Drift features: %d reference and %d batch images (%s), %d columns",
        len(reference),
        len(current),
        batch.kind,
        len(columns.all),
    )
    tracking.log_params(
        {
            "batch_source": batch.source,
            "batch_kind": batch.kind,
            "model_source": model_facts["source"],
            "dataset_hash": data.content_hash,
        }
    )
    tracking.log_metrics({"batch_images": len(current), "batch_skipped_files": len(batch.skipped)})
    log_metadata(metadata={"drift_context": context})
    return reference, current, context
