"""Step: choose and fit one calibration map per tree level on the validation split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.calibration import CalibrationConfig, calibrate
from models.calibration.activation_ranges import with_activation_ranges
from models.classifier.io import TrainedClassifier
from models.data.sharded import Dataset
from steps import artifacts, tracking
from steps.materializers import TrainedClassifierMaterializer

logger = logging.getLogger(__name__)


@step(output_materializers={artifacts.CALIBRATED_CLASSIFIER: TrainedClassifierMaterializer})
def calibrate_classifier(
    classifier: TrainedClassifier, dataset: Dataset, config: CalibrationConfig | None = None
) -> tuple[
    Annotated[
        TrainedClassifier,
        ArtifactConfig(name=artifacts.CALIBRATED_CLASSIFIER, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[dict[str, Any], artifacts.CALIBRATION],
    Annotated[Image.Image, artifacts.RELIABILITY_DIAGRAM],
]:
    """One map per level chosen on val (temperature, vector, matrix, Dirichlet or none).

    ECE, classwise ECE and NLL before/after on val; a reliability diagram per level. ``config``
    (default: every strategy, 5 folds) says which maps are compared and how. The int8 runtime's
    activation ranges are fitted on val images too (they travel with the classifier).
    """
    config = config or CalibrationConfig()
    val_images, val_labels = dataset.split("val")
    result = calibrate(
        classifier,
        val_images,
        val_labels,
        strategies=tuple(config.strategies),
        folds=config.folds,
        max_iter=config.max_iter,
    )
    report = result.report
    logger.info("Calibration: %s", {k: v for k, v in report.items() if k != "selection"})
    tracking.log_metrics({k: v for k, v in report.items() if isinstance(v, float)})
    tracking.log_metrics(
        {f"temperature_{k}": v for k, v in report["temperatures"].items() if v is not None}
    )
    tracking.log_params({f"calibration.{k}": v for k, v in report["methods"].items()})
    tracking.log_png(result.diagram_png, "calibration/reliability_val.png")
    log_metadata(metadata={"calibration": report})
    calibrated = result.classifier
    if config.activation_range_images:
        calibrated = with_activation_ranges(
            calibrated, val_images, max_images=config.activation_range_images
        )
    return calibrated, report, tracking.png_image(result.diagram_png)
