"""Step: evaluate the calibrated classifier on the test split, which nothing before touched."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from zenml import log_metadata, step
from zenml.types import HTMLString

from models import evaluation
from models.classifier.io import TrainedClassifier
from models.data.sharded import Dataset
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def evaluate_classifier(
    classifier: TrainedClassifier, dataset: Dataset
) -> tuple[
    Annotated[dict[str, Any], artifacts.EVALUATION],
    Annotated[HTMLString, artifacts.EVALUATION_REPORT],
    Annotated[Image.Image, artifacts.CONFUSION_MATRICES],
]:
    """Metrics of the calibrated classifier on the test split, with a report and pictures.

    Accuracy per level (global and greedy decoding), top-k, mistake severity, hierarchical
    distance@k, ECE and classwise ECE before/after calibration, every decoding (HiClass'
    combiners, conditional-risk minimisation) with hierarchical F1, path consistency, confusion
    matrices.
    """
    test_x, test_y = dataset.split("test")
    result = evaluation.evaluate_classifier(
        classifier, test_x, test_y, f"{dataset.name} test split ({len(test_y)} images)"
    )
    metrics = {"split": "test", **result.metrics, "dataset_hash": dataset.content_hash}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, list | dict)}
    logger.info("Test evaluation: %s", scalars)
    tracking.log_metrics({f"test_{k}": v for k, v in metrics.items() if isinstance(v, float | int)})
    tracking.log_metrics(
        {
            f"test_{how}_{k}": v
            for how, row in metrics["decodings"].items()
            for k, v in row.items()
            if isinstance(v, float | int)
        }
    )
    tracking.log_png(result.confusion_png, "evaluation/confusion_matrices.png")
    tracking.log_png(result.reliability_png, "evaluation/reliability_test.png")
    tracking.log_text(result.html, "evaluation/report.html")
    log_metadata(metadata={"evaluation": scalars, "decodings": metrics["decodings"]})
    return metrics, HTMLString(result.html), tracking.png_image(result.confusion_png)
