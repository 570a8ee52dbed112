"""Step: attack, corrupt and explain the calibrated classifier on the test split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from zenml import log_metadata, step
from zenml.types import HTMLString

from models import robustness
from models.classifier.io import TrainedClassifier
from models.data.sharded import Dataset, ShardedDataset
from models.robustness.report import robustness_html
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def evaluate_robustness(
    classifier: TrainedClassifier, dataset: Dataset, config: robustness.RobustnessConfig
) -> tuple[
    Annotated[dict[str, Any], artifacts.ROBUSTNESS],
    Annotated[HTMLString, artifacts.ROBUSTNESS_REPORT],
    Annotated[Image.Image, artifacts.ROBUSTNESS_CURVES],
]:
    """FGSM/PGD accuracy per level, a corruption grid, saliency maps and neighbours.

    The numbers carry flat headline keys (``robust_accuracy_fine_pgd_eps0.1``, ...) that the
    robustness gate and the promotion gate read.
    """
    # the neighbour pool: the train split, or a streamed dataset's first neighbour_pool images
    train = (
        dataset.head("train", config.neighbour_pool)
        if isinstance(dataset, ShardedDataset)
        else dataset.split("train")
    )
    result = robustness.evaluate_robustness(classifier, *dataset.split("test"), config, *train)
    metrics = result.metrics | {"dataset_hash": dataset.content_hash}
    flat = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
    logger.info("Robustness: %s", flat)
    html = robustness_html(metrics, result.tables, result.pictures, dataset.name, config)
    tracking.log_metrics({f"robustness_{k}": v for k, v in flat.items()})
    tracking.log_json(metrics, "robustness/robustness.json")
    for name, png in result.pictures.items():
        tracking.log_png(png, f"robustness/{name}.png")
    tracking.log_text(html, "robustness/report.html")
    log_metadata(metadata={"robustness": flat})
    return metrics, HTMLString(html), tracking.png_image(result.pictures["robustness_curves"])
