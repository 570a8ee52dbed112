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
from models.gan.io import TrainedGan
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def evaluate_classifier(
    classifier: TrainedClassifier, dataset: Dataset, gan: TrainedGan | None = None
) -> tuple[
    Annotated[dict[str, Any], artifacts.EVALUATION],
    Annotated[HTMLString, artifacts.EVALUATION_REPORT],
    Annotated[Image.Image, artifacts.CONFUSION_MATRICES],
]:
    """Metrics of the calibrated classifier on the test split, with a report and pictures.

    Accuracy per level (global and greedy decoding), top-k, mistake severity, hierarchical
    distance@k, ECE and classwise ECE before/after calibration, every decoding (HiClass'
    combiners, conditional-risk minimisation) with hierarchical F1, path consistency, confusion
    matrices. With the Triple-GAN game's tree-conditioned ``gan``: G's samples for every tree
    node, one grid per level, and the conditional fidelity the game measured.
    """
    test_x, test_y = dataset.split("test")
    sections = _generator_sections(gan) if gan is not None and gan.conditioning else []
    result = evaluation.evaluate_classifier(
        classifier,
        test_x,
        test_y,
        f"{dataset.name} test split ({len(test_y)} images)",
        extra_sections=sections,
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


def _generator_sections(gan: TrainedGan) -> list[tuple[str, str | bytes]]:
    """What G believes each node looks like (a grid per level, in MLflow too), and fidelity."""
    from models.tree.hierarchy import Hierarchy
    from models.triple.pictures import level_grids

    tree = Hierarchy.from_dict(gan.conditioning["tree"])  # type: ignore[index]
    grids = level_grids(gan.conditional_generator(), tree)
    sections: list[tuple[str, str | bytes]] = []
    for level, png in grids.items():
        tracking.log_png(png, f"evaluation/generator_{level}.png")
        sections.append(
            (f"What the generator draws for each {level} (inner nodes: leaves mixed)", png)
        )
    fidelity = {
        k: v for k, v in gan.info.items() if k.startswith("fidelity_") and k != "fidelity_fine"
    }
    if fidelity:
        judged_by = gan.info.get("fidelity_judged_by", "")
        table = "| level | conditional fidelity |\n|---|---|\n" + "".join(
            f"| {k.removeprefix('fidelity_')} | {v:.2%} |\n"
            for k, v in fidelity.items()
            if isinstance(v, float)
        )
        sections.append((f"Conditional fidelity of G (judged by {judged_by})", table))
    return sections
