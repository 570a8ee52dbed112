"""Step: attack, corrupt and explain the calibrated classifier on the test split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from zenml import log_metadata, step
from zenml.types import HTMLString

from models import robustness as core
from models.classifier_io import TrainedClassifier
from models.data import LabelledImages
from models.report import html_report
from models.robustness import RobustnessConfig
from steps import artifacts, tracking

logger = logging.getLogger(__name__)

PICTURE_HEADINGS = {
    "robustness_curves": "Robustness curves",
    "adversarial_examples": "Adversarial examples",
    "saliency_per_class": "Integrated Gradients, per class",
    "saliency_mistakes": "Integrated Gradients, misclassified images",
    "neighbours": "Nearest training neighbours in feature space",
}


@step
def evaluate_robustness(
    classifier: TrainedClassifier, dataset: LabelledImages, config: RobustnessConfig
) -> tuple[
    Annotated[dict[str, Any], artifacts.ROBUSTNESS],
    Annotated[HTMLString, artifacts.ROBUSTNESS_REPORT],
    Annotated[Image.Image, artifacts.ROBUSTNESS_CURVES],
]:
    """FGSM/PGD accuracy per level, a corruption grid, saliency maps and neighbours.

    The numbers carry flat headline keys (``robust_accuracy_fine_pgd_eps0.1``, ...) that the
    robustness gate and the promotion gate read.
    """
    test_x, test_y = dataset.split("test")
    train_x, train_y = dataset.split("train")
    result = core.evaluate_robustness(classifier, test_x, test_y, config, train_x, train_y)
    metrics = result.metrics
    metrics["dataset_hash"] = dataset.content_hash
    flat = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
    logger.info("Robustness: %s", flat)
    gate = metrics["gate"]
    html = html_report(
        f"hiergan robustness — {dataset.name} test split "
        f"({metrics['attack_images']} images attacked, {metrics['corruption_images']} corrupted)",
        [
            (
                "Gate",
                f"{gate['metric']} = {gate['value']:.4f}, minimum {gate['min_accuracy']:.4f}: "
                + ("passed" if gate["passed"] else "FAILED"),
            ),
            ("Attacks (accuracy per level; graceful degradation)", result.tables["attacks"]),
            ("Corruptions (mean over severities)", result.tables["corruptions"]),
            *[(PICTURE_HEADINGS.get(name, name), png) for name, png in result.pictures.items()],
            (
                "Settings",
                f"PGD: {config.pgd_steps} steps of {config.pgd_step_ratio:g} x eps, "
                f"random start: {config.pgd_random_init}; seed {config.seed}; "
                f"seconds: {metrics['seconds']}",
            ),
        ],
    )
    tracking.log_metrics({f"robustness_{k}": v for k, v in flat.items()})
    tracking.log_json(metrics, "robustness/robustness.json")
    for name, png in result.pictures.items():
        tracking.log_png(png, f"robustness/{name}.png")
    tracking.log_text(html, "robustness/report.html")
    log_metadata(metadata={"robustness": flat})
    return metrics, HTMLString(html), tracking.png_image(result.pictures["robustness_curves"])
