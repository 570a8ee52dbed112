"""Scores of a prediction per tree level, and the stratified subsets they are measured on."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.calibration.ece import expected_calibration_error
from models.data.dataset import stratified_fraction
from models.robustness.config import FINE, level_keys
from models.tree.hierarchy import Hierarchy


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``n`` labels, each class in proportion (all when ``n >= len``)."""
    return stratified_fraction(labels, min(1.0, n / max(1, len(labels))), seed)


def level_scores(log_probs: Tensor, labels: np.ndarray, tree: Hierarchy) -> dict[str, float]:
    """Accuracy per level of the merged prediction, graceful degradation and fine ECE.

    ``graceful_<level>``: among images whose leaf is wrong, the share whose node at that coarse
    level is right (NaN-free: 1.0 when no leaf is wrong).
    """
    pred = log_probs.argmax(1).cpu().numpy()
    paths = tree.leaf_paths
    names = level_keys(tree)
    wrong = pred != labels
    out: dict[str, float] = {}
    for level, name in enumerate(names):
        right = paths[pred, level] == paths[labels, level]
        out[f"accuracy_{name}"] = float(right.mean())
        if name != FINE:
            out[f"graceful_{name}"] = float(right[wrong].mean()) if wrong.any() else 1.0
    out["leaf_mistakes"] = int(wrong.sum())
    out["ece_fine"] = expected_calibration_error(
        log_probs.exp(), torch.from_numpy(labels).to(log_probs.device)
    )
    return out
