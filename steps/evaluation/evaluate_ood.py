"""Step: the OOD guard on the test split against the project's own OOD sets."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from zenml import log_metadata, step

from models.classifier.io import TrainedClassifier
from models.data.sharded import Dataset
from models.ood.evaluate import evaluate_guard
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def evaluate_ood(
    classifier: TrainedClassifier, dataset: Dataset
) -> tuple[
    Annotated[dict[str, Any], artifacts.OOD_EVALUATION],
    Annotated[Image.Image, artifacts.OOD_HISTOGRAM],
]:
    """AUROC and FPR at 95 % TPR per OOD set, flagged shares; ``ood_auroc`` is the worst set's.

    ``register_model`` tags the version with ``ood_auroc``; the promotion gate can require it.
    """
    metrics, png = evaluate_guard(classifier, dataset.split("test")[0])
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
    logger.info("OOD evaluation: %s", scalars)
    tracking.log_metrics(scalars)
    tracking.log_json(metrics, "ood/evaluation.json")
    tracking.log_png(png, "ood/test_histogram.png")
    log_metadata(metadata={"ood_evaluation": scalars})
    return metrics, tracking.png_image(png)
