"""Calibration error: top-label ECE (torchmetrics, 15 bins, L1), per level, and its bins.

ECE is torchmetrics' ``MulticlassCalibrationError`` (15 bins, L1), the standard definition.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.tree.merge import TreeTensors, node_probs


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Top-label ECE (L1, equal-width bins) of ``[N, K]`` probabilities, via torchmetrics."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = probs.float().clamp_min(0)
    probs = probs / probs.sum(dim=1, keepdim=True)
    return float(
        multiclass_calibration_error(
            probs, labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"
        )
    )


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (for the reliability diagram)."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1, device=probs.device)
    which = torch.bucketize(conf, edges[1:-1], right=True)
    counts = torch.bincount(which, minlength=n_bins).float()
    conf_sum = torch.zeros(n_bins, device=probs.device).index_add_(0, which, conf)
    acc_sum = torch.zeros(n_bins, device=probs.device).index_add_(0, which, correct)
    safe = counts.clamp_min(1)
    return {
        "edges": edges.cpu().numpy(),
        "confidence": (conf_sum / safe).cpu().numpy(),
        "accuracy": (acc_sum / safe).cpu().numpy(),
        "count": counts.cpu().numpy(),
    }


def level_ece(
    leaf_probs: Tensor, leaf_labels: Tensor, tt: TreeTensors, n_bins: int = 15
) -> dict[str, float]:
    """ECE of every level's marginal prediction, coarse levels by name and the leaves as ``fine``.

    Args:
        leaf_probs: ``[N, n_leaves]`` merged leaf probabilities.
        leaf_labels: ``[N]`` true leaves, on the same device.
        tt: the tree's tensors.
        n_bins: confidence bins.
    """
    level_labels = tt.leaf_paths[leaf_labels]
    out = {"fine": expected_calibration_error(leaf_probs, leaf_labels, n_bins)}
    for level, name in enumerate(tt.tree.level_names[:-1]):
        out[name] = expected_calibration_error(
            node_probs(leaf_probs, tt, level), level_labels[:, level], n_bins
        )
    return out
