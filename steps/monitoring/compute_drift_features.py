"""Step: drift features of the reference (validation split) and of the batch, from one model."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import pandas as pd
from PIL import Image
from zenml import log_metadata, step

from models.data.ingest import DatasetConfig
from models.monitoring.compare import drift_frames
from models.monitoring.features import DriftFeatureConfig
from registry.versions import load_monitored_model
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


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
    Annotated[Image.Image, artifacts.OOD_BATCH_HISTOGRAM],
    Annotated[Image.Image, artifacts.OOD_UNUSUAL_IMAGES],
]:
    """Embeddings (PCA fitted on the reference), image statistics, predictions, the OOD score.

    The reference is the validation split of ``dataset``, checked against the model's training
    data hash; the batch is a folder of images, an ``.npz`` or the service's request log. The
    OOD score's histogram (reference vs batch) and the batch's most unusual images are pictures.
    """
    if not model_dir:
        from registry.stack import use_stack_tracking_uri

        use_stack_tracking_uri()
    classifier, model_facts = load_monitored_model(model_dir, alias)
    frames = drift_frames(
        classifier, model_facts, dataset, batch_path, features, allow_reference_mismatch
    )
    context = frames.context
    logger.info(
        "Drift features: %d reference and %d batch images (%s), %d columns",
        len(frames.reference),
        len(frames.current),
        context["batch"]["kind"],
        len(context["columns"]["numerical"]) + len(context["columns"]["categorical"]),
    )
    tracking.log_params(
        {
            "batch_source": context["batch"]["source"],
            "batch_kind": context["batch"]["kind"],
            "model_source": model_facts["source"],
            "dataset_hash": context["reference"]["dataset_hash"],
        }
    )
    tracking.log_metrics(
        {
            "batch_images": len(frames.current),
            "batch_skipped_files": context["batch"]["num_skipped_files"],
        }
    )
    if context["ood_threshold"] is not None:  # without a guard the pictures only say so
        for name, png in frames.pictures.items():
            tracking.log_png(png, f"drift/{name}.png")
    log_metadata(metadata={"drift_context": context})
    pictures = frames.pictures
    return (
        frames.reference,
        frames.current,
        context,
        tracking.png_image(pictures["ood_histogram"]),
        tracking.png_image(pictures["ood_unusual_images"]),
    )
