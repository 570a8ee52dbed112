"""Step: fit one temperature per tree level on the validation split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import torch
from PIL import Image
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.calibration import (
    conditional_nll,
    expected_calibration_error,
    fit_temperatures,
    reliability_diagram_png,
)
from models.classifier_io import TrainedClassifier
from models.data import LabelledImages
from models.merge import TreeTensors, node_probs
from steps import artifacts, tracking
from steps.materializers import TrainedClassifierMaterializer

logger = logging.getLogger(__name__)


@step(output_materializers={artifacts.CALIBRATED_CLASSIFIER: TrainedClassifierMaterializer})
def calibrate_classifier(
    classifier: TrainedClassifier, dataset: LabelledImages
) -> tuple[
    Annotated[
        TrainedClassifier,
        ArtifactConfig(name=artifacts.CALIBRATED_CLASSIFIER, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[dict[str, Any], artifacts.CALIBRATION],
    Annotated[Image.Image, artifacts.RELIABILITY_DIAGRAM],
]:
    """Temperatures by NLL on val; ECE and NLL before/after on val; a reliability diagram."""
    tree = dataset.hierarchy
    val_x, val_y = dataset.split("val")
    logits = classifier.logits(val_x)
    device = logits[0].device
    tt = TreeTensors(tree, device)
    level_labels = torch.from_numpy(tree.all_level_labels(val_y)).to(device)
    temps = fit_temperatures(logits, level_labels, tt)
    labels = torch.from_numpy(val_y).to(device)
    calibrated = TrainedClassifier(
        classifier.architecture,
        classifier.config,
        tree,
        classifier.state,
        temperatures=[float(t) for t in temps],
        info=dict(classifier.info),
    )
    before, after = classifier.leaf_probs(logits, calibrated=False), calibrated.leaf_probs(logits)
    report: dict[str, Any] = {
        "temperatures": dict(
            zip(tree.level_names, [round(float(t), 4) for t in temps], strict=True)
        ),
        "val_nll_before": dict(
            zip(tree.level_names, conditional_nll(logits, level_labels, tt), strict=True)
        ),
        "val_nll_after": dict(
            zip(tree.level_names, conditional_nll(logits, level_labels, tt, temps), strict=True)
        ),
        "val_ece_fine_before": expected_calibration_error(before, labels),
        "val_ece_fine_after": expected_calibration_error(after, labels),
    }
    for level, name in enumerate(tree.level_names[:-1]):
        node_labels = level_labels[:, level]
        report[f"val_ece_{name}_before"] = expected_calibration_error(
            node_probs(before, tt, level), node_labels
        )
        report[f"val_ece_{name}_after"] = expected_calibration_error(
            node_probs(after, tt, level), node_labels
        )
    calibrated.info.update(
        {
            "val_ece_fine_before": round(report["val_ece_fine_before"], 5),
            "val_ece_fine_after": round(report["val_ece_fine_after"], 5),
        }
    )
    logger.info("Calibration: %s", report)
    png = reliability_diagram_png(
        {"uncalibrated": (before, labels), "calibrated": (after, labels)},
        "fine level, validation split",
    )
    tracking.log_metrics({k: v for k, v in report.items() if isinstance(v, float)})
    tracking.log_metrics({f"temperature_{k}": v for k, v in report["temperatures"].items()})
    tracking.log_png(png, "calibration/reliability_val.png")
    log_metadata(metadata={"calibration": report})
    return calibrated, report, tracking.png_image(png)
