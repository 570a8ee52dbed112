"""Calibrate a trained classifier on held-out data and say what it changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.calibration.diagram import reliability_diagram_png
from models.calibration.ece import level_ece
from models.calibration.temperature import fit_temperatures, level_nll
from models.classifier.io import TrainedClassifier
from models.tree.merge import TreeTensors


@dataclass
class Calibration:
    """A calibrated classifier, the before/after numbers, and the reliability diagram (PNG)."""

    classifier: TrainedClassifier
    report: dict[str, Any]
    diagram_png: bytes


def calibrate(classifier: TrainedClassifier, images: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit one temperature per level on ``images`` (the validation split) by conditional NLL.

    The report holds the temperatures, each level's NLL and ECE before and after, on the same
    images; the returned classifier is a copy with the temperatures set.
    """
    tree = classifier.tree
    logits = classifier.logits(images)
    device = logits[0].device
    tt = TreeTensors(tree, device)
    level_labels = torch.from_numpy(tree.all_level_labels(labels)).to(device)
    temps = fit_temperatures(logits, level_labels, tt)
    calibrated = TrainedClassifier(
        classifier.architecture,
        classifier.config,
        tree,
        classifier.state,
        temperatures=[float(t) for t in temps],
        info=dict(classifier.info),
    )
    leaf_labels = torch.from_numpy(labels).to(device)
    before = classifier.leaf_probs(logits, calibrated=False)
    after = calibrated.leaf_probs(logits)
    ece_before, ece_after = level_ece(before, leaf_labels, tt), level_ece(after, leaf_labels, tt)
    levels = [*tree.level_names[:-1], "fine"]
    report: dict[str, Any] = {
        "temperatures": dict(
            zip(tree.level_names, [round(float(t), 4) for t in temps], strict=True)
        ),
        "val_nll_before": dict(
            zip(tree.level_names, level_nll(logits, level_labels, tt), strict=True)
        ),
        "val_nll_after": dict(
            zip(tree.level_names, level_nll(logits, level_labels, tt, temps), strict=True)
        ),
        **{f"val_ece_{name}_before": ece_before[name] for name in levels},
        **{f"val_ece_{name}_after": ece_after[name] for name in levels},
    }
    calibrated.info.update(
        {
            "val_ece_fine_before": round(report["val_ece_fine_before"], 5),
            "val_ece_fine_after": round(report["val_ece_fine_after"], 5),
        }
    )
    png = reliability_diagram_png(
        {"uncalibrated": (before, leaf_labels), "calibrated": (after, leaf_labels)},
        "fine level, validation split",
    )
    return Calibration(calibrated, report, png)
