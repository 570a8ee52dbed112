"""Reference and batch side by side: the two drift frames a drift report compares, and context."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.classifier.io import TrainedClassifier
from models.data.ingest import DatasetConfig, build_dataset
from models.monitoring.batches import read_batch
from models.monitoring.features import OOD_COLUMN, DriftFeatureConfig, DriftFeatureExtractor
from models.monitoring.reference import check_reference

logger = logging.getLogger(__name__)


@dataclass
class DriftFrames:
    """One row per image of the reference and of the batch, and what they are."""

    reference: pd.DataFrame
    current: pd.DataFrame
    context: dict[str, Any]
    pictures: dict[str, bytes]  # ood_histogram, ood_unusual_images (PNG)


def drift_frames(
    classifier: TrainedClassifier,
    model_facts: dict[str, str],
    dataset: DatasetConfig,
    batch_path: str,
    features: DriftFeatureConfig,
    allow_reference_mismatch: bool = False,
) -> DriftFrames:
    """Drift features of the reference (the validation split of ``dataset``) and of a batch.

    The reference must be the model's training data (``model_facts["dataset_hash"]``); the
    batch is a folder of images, an ``.npz`` or the service's request log. The PCA of the
    embeddings is fitted on the reference.

    Raises:
        models.monitoring.ReferenceMismatchError: the reference is other data than the model's
            and ``allow_reference_mismatch`` is off.
    """
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
        "ood_threshold": extractor.ood_threshold,
    }
    pictures = ood_pictures(reference, current, batch.images, extractor.ood_threshold)
    return DriftFrames(reference, current, context, pictures)


def ood_pictures(
    reference: pd.DataFrame, current: pd.DataFrame, images: Any, threshold: float | None
) -> dict[str, bytes]:
    """The OOD score's histogram (reference vs batch) and the batch's most unusual images.

    A model without a guard gets one picture that says so.
    """
    from models.ood.evaluate import score_histogram_png, unusual_images_png
    from models.reporting.plots import figure_png, pyplot

    if threshold is None or OOD_COLUMN not in current:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "the model carries no OOD guard", ha="center", va="center")
        png = figure_png(fig)
        return {"ood_histogram": png, "ood_unusual_images": png}
    ref, cur = reference[OOD_COLUMN].to_numpy(), current[OOD_COLUMN].to_numpy()
    return {
        "ood_histogram": score_histogram_png(ref, {"batch": cur}, threshold),
        "ood_unusual_images": unusual_images_png(images, cur, threshold),
    }
