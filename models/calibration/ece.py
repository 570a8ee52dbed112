"""Calibration error: top-label ECE (torchmetrics, 15 bins, L1) and classwise ECE, per level.

ECE is torchmetrics' ``MulticlassCalibrationError`` (15 bins, L1), the standard definition;
classwise ECE is Kull et al.'s (2019).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.tree.merge import TreeTensors, node_probs


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Top-label ECE (L1, equal-width bins) of ``[N, K]`` probabilities, via torchmetrics.

    Where torchmetrics is not installed (a bare GPU machine: torch alone) the same binning is
    computed by :func:`decision_ece` (the unit tests check that the two agree).
    """
    probs = probs.float().clamp_min(0)
    probs = probs / probs.sum(dim=1, keepdim=True)
    try:
        from torchmetrics.functional.classification import multiclass_calibration_error
    except ImportError:
        conf, pred = probs.max(dim=1)
        return decision_ece(conf, pred == labels, n_bins)
    return float(
        multiclass_calibration_error(
            probs, labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"
        )
    )


def decision_ece(confidence: Tensor, correct: Tensor, n_bins: int = 15) -> float:
    """ECE (L1, equal-width bins, torchmetrics' binning) of decisions and their confidences.

    For any decision rule: the confidence is the probability of the decided class, which need
    not be the most probable one (greedy decoding, conditional-risk minimisation).
    """
    edges = torch.linspace(0, 1, n_bins + 1, device=confidence.device)
    which = torch.bucketize(confidence.float(), edges[1:-1], right=True)
    gap = torch.zeros(n_bins, device=confidence.device)
    gap.index_add_(0, which, confidence.float() - correct.float())
    return float(gap.abs().sum() / len(confidence))


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


def classwise_ece(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Classwise ECE (Kull et al. 2019): every class's probability against its frequency.

    For each class ``k``, images are binned by ``p_k`` (equal-width bins) and the gap between
    the bin's mean ``p_k`` and the share of images of class ``k`` in it is averaged (weighted by
    bin size); the result is the mean over classes. Unlike top-label ECE it also judges the
    probabilities of the classes that were not predicted.
    """
    probs = probs.float().clamp_min(0)
    probs = probs / probs.sum(dim=1, keepdim=True)
    n, k = probs.shape
    onehot = torch.nn.functional.one_hot(labels.long(), k).float()
    which = (probs * n_bins).long().clamp_max(n_bins - 1)  # [N, K] bin of each probability
    flat = which + n_bins * torch.arange(k, device=probs.device)[None, :]
    conf = torch.zeros(k * n_bins, device=probs.device).index_add_(
        0, flat.flatten(), probs.flatten()
    )
    freq = torch.zeros(k * n_bins, device=probs.device).index_add_(
        0, flat.flatten(), onehot.flatten()
    )
    return float((conf - freq).abs().sum() / (n * k))


def level_classwise_ece(
    leaf_probs: Tensor, leaf_labels: Tensor, tt: TreeTensors, n_bins: int = 15
) -> dict[str, float]:
    """:func:`classwise_ece` of every level's marginal prediction (names as :func:`level_ece`)."""
    level_labels = tt.leaf_paths[leaf_labels]
    out = {"fine": classwise_ece(leaf_probs, leaf_labels, n_bins)}
    for level, name in enumerate(tt.tree.level_names[:-1]):
        out[name] = classwise_ece(node_probs(leaf_probs, tt, level), level_labels[:, level], n_bins)
    return out
