"""Calibrate a trained classifier on held-out data and say what it changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.calibration.diagram import level_reliability_png
from models.calibration.ece import level_classwise_ece, level_ece
from models.calibration.guard import keep_no_level_worse
from models.calibration.select import select_calibration
from models.calibration.strategies import STRATEGIES
from models.calibration.temperature import level_nll
from models.classifier.io import TrainedClassifier
from models.tree.merge import TreeTensors


@dataclass
class Calibration:
    """A calibrated classifier, the before/after numbers, and the reliability diagrams (PNG)."""

    classifier: TrainedClassifier
    report: dict[str, Any]
    diagram_png: bytes


def calibrate(
    classifier: TrainedClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    strategies: tuple[str, ...] = STRATEGIES,
    folds: int = 5,
    diagram: bool = True,
    max_iter: int = 200,
) -> Calibration:
    """Choose and fit one calibration map per level on ``images`` (the validation split).

    Every strategy (temperature, vector, matrix, Dirichlet) and the identity are compared per
    level by cross-validated NLL and ECE (:func:`~models.calibration.select.select_calibration`);
    a level keeps the identity unless a map is no worse on both, and a map that leaves a finer
    level's merged prediction worse on these images is dropped
    (:func:`~models.calibration.guard.keep_no_level_worse`). The report holds the choice and
    every candidate's scores, each level's NLL, ECE and classwise ECE before and after, on the
    same images; the returned classifier is a copy with the maps set. ``diagram=False`` skips
    the picture (no matplotlib needed); ``max_iter`` bounds each L-BFGS fit.
    """
    tree = classifier.tree
    logits = classifier.logits(images)
    device = logits[0].device
    tt = TreeTensors(tree, device)
    level_labels = torch.from_numpy(tree.all_level_labels(labels)).to(device)
    maps, selection = select_calibration(
        logits, level_labels, tt, strategies, folds, max_iter=max_iter
    )
    leaf_labels = torch.from_numpy(labels).to(device)
    maps, dropped = keep_no_level_worse(logits, leaf_labels, tt, maps)
    for name in dropped:  # its map left a finer level's merged prediction worse
        selection[name]["chosen"] = "identity"
        selection[name]["dropped_for_finer_levels"] = True
    calibrated = dataclasses.replace(classifier, calibration=maps, info=dict(classifier.info))
    before = classifier.leaf_probs(logits, calibrated=False)
    after = calibrated.leaf_probs(logits)
    levels = [*tree.level_names[:-1], "fine"]
    ece = {"before": level_ece(before, leaf_labels, tt), "after": level_ece(after, leaf_labels, tt)}
    cw = {
        "before": level_classwise_ece(before, leaf_labels, tt),
        "after": level_classwise_ece(after, leaf_labels, tt),
    }
    report: dict[str, Any] = {
        "methods": calibrated.calibration_methods,
        "temperatures": dict(zip(tree.level_names, calibrated.temperatures, strict=True)),
        "selection": selection,
        "val_nll_before": dict(
            zip(tree.level_names, level_nll(logits, level_labels, tt), strict=True)
        ),
        "val_nll_after": dict(
            zip(tree.level_names, level_nll(logits, level_labels, tt, maps), strict=True)
        ),
        **{f"val_ece_{name}_{when}": ece[when][name] for name in levels for when in ece},
        **{f"val_classwise_ece_{name}_{when}": cw[when][name] for name in levels for when in cw},
    }
    calibrated.info.update(
        {
            "calibration_methods": calibrated.calibration_methods,
            "val_ece_fine_before": round(report["val_ece_fine_before"], 5),
            "val_ece_fine_after": round(report["val_ece_fine_after"], 5),
        }
    )
    png = b""
    if diagram:
        png = level_reliability_png(
            {"uncalibrated": before, "calibrated": after}, leaf_labels, tt, "validation split"
        )
    return Calibration(calibrated, report, png)
